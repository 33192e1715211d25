import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import {
  buildReply, buildRequest, errnoName, errnoNumber, ERRNOS, formatFlags, formatMode, formatEnum, negotiateInit, parseFlags,
  FOPEN_FLAGS, FORMAT_SETS, INIT_FLAG, isInterruptUnique, interruptTarget, NotifyCode, INIT_FLAGS, OPEN_FLAGS, FATTR_FLAGS, LOCK_TYPES, Opcode, SessionDecoder,
} from './index.js';

describe('errno table', () => {
  it('maps names and numbers both ways', () => {
    expect(errnoName(2)).toBe('ENOENT');
    expect(errnoName(-2)).toBe('ENOENT'); // as fuse_out_header.error carries it
    expect(errnoName(4)).toBe('EINTR');
    expect(errnoName(11)).toBe('EAGAIN');
    expect(errnoName(38)).toBe('ENOSYS');
    expect(errnoName(103)).toBe('ECONNABORTED');
    expect(errnoName(107)).toBe('ENOTCONN');
    expect(errnoName(133)).toBe('EHWPOISON');
    expect(errnoName(0)).toBe('OK');
    expect(errnoName(999)).toBe('E999');
    expect(errnoNumber('ENOENT')).toBe(2);
    expect(errnoNumber('enodata')).toBe(61);
    expect(errnoNumber('EWOULDBLOCK')).toBe(11);
    expect(errnoNumber('ENOTSUP')).toBe(95);
    expect(errnoNumber('E999')).toBe(999);
    expect(errnoNumber('NOPE')).toBeUndefined();
  });

  it('has every Linux errno 1..133 (41 and 58 are unused) exactly once as a primary name', () => {
    const primary = new Map<number, string>();
    for (const [n, name] of ERRNOS) if (!primary.has(n)) primary.set(n, name);
    for (let n = 1; n <= 133; n++) if (n !== 41 && n !== 58) expect(primary.has(n), `errno ${n}`).toBe(true);
    for (const [n, name] of ERRNOS) expect(errnoNumber(name)).toBe(n);
  });
});

describe('flag printing', () => {
  it('prints names in bit order and leftover bits in hex', () => {
    expect(formatFlags(FOPEN_FLAGS, 0)).toBe('0');
    expect(formatFlags(FOPEN_FLAGS, 0b11)).toBe('FOPEN_DIRECT_IO|FOPEN_KEEP_CACHE');
    expect(formatFlags(FOPEN_FLAGS, 0x102)).toBe('FOPEN_KEEP_CACHE|0x100');
    expect(formatFlags(FATTR_FLAGS, 0x801)).toBe('FATTR_MODE|FATTR_KILL_SUIDGID');
  });

  it('prints open flags with the access mode first', () => {
    expect(formatFlags(OPEN_FLAGS, 0o100000)).toBe('O_RDONLY|O_LARGEFILE');
    expect(formatFlags(OPEN_FLAGS, 0o101102)).toBe('O_RDWR|O_CREAT|O_TRUNC|O_LARGEFILE');
    expect(formatFlags(OPEN_FLAGS, 0o4010001)).toBe('O_WRONLY|O_DSYNC|__O_SYNC');
  });

  it('prints 64-bit INIT flags across flags and flags2', () => {
    const v = INIT_FLAG.FUSE_ASYNC_READ | INIT_FLAG.FUSE_INIT_EXT | INIT_FLAG.FUSE_PASSTHROUGH | INIT_FLAG.FUSE_OVER_IO_URING | (1n << 60n);
    expect(formatFlags(INIT_FLAGS, v)).toBe('FUSE_ASYNC_READ|FUSE_INIT_EXT|FUSE_PASSTHROUGH|FUSE_OVER_IO_URING|0x1000000000000000');
    expect(INIT_FLAG.FUSE_PASSTHROUGH).toBe(1n << 37n);
    expect(INIT_FLAG.FUSE_HAS_INODE_DAX).toBe(1n << 33n);
    expect(INIT_FLAG.FUSE_MAP_ALIGNMENT).toBe(1n << 26n);
    expect(INIT_FLAG.FUSE_OVER_IO_URING).toBe(1n << 41n);
    expect(INIT_FLAG.FUSE_REQUEST_TIMEOUT).toBe(1n << 42n);
  });

  it('prints modes and enums, and parses names back', () => {
    expect(formatMode(0o100644)).toBe('reg 0644');
    expect(formatMode(0o41777)).toBe('dir 1777');
    expect(formatMode(0o755)).toBe('0755');
    expect(formatEnum(LOCK_TYPES, 1)).toBe('F_WRLCK');
    expect(formatEnum(LOCK_TYPES, 7)).toBe('7');
    expect(parseFlags(FOPEN_FLAGS, 'FOPEN_DIRECT_IO|keep_cache')).toBeUndefined();
    expect(parseFlags(FOPEN_FLAGS, 'FOPEN_DIRECT_IO|FOPEN_KEEP_CACHE|0x100')).toBe(0x103n);
    expect(parseFlags(INIT_FLAGS, 'passthrough')).toBe(1n << 37n);
    expect(parseFlags(OPEN_FLAGS, 'O_RDWR|O_LARGEFILE')).toBe(0o100002n);
  });
});

describe('INIT negotiation', () => {
  const req = (flags: bigint, minor = 45) => buildRequest({
    opcode: Opcode.INIT, unique: 2n, arg: { major: 7, minor, max_readahead: 131072, flags: Number(flags & 0xffffffffn), flags2: Number(flags >> 32n) },
  });
  const rep = (flags: bigint, minor: number, extra = {}) => buildReply({
    unique: 2n, opcode: Opcode.INIT,
    args: [{ major: 7, minor, max_readahead: 65536, flags: Number(flags & 0xffffffffn), flags2: Number(flags >> 32n), max_write: 1 << 20, max_pages: 256, ...extra }],
  });

  it('combines flags and flags2 only when FUSE_INIT_EXT is set', () => {
    const offered = INIT_FLAG.FUSE_INIT_EXT | INIT_FLAG.FUSE_ASYNC_READ | INIT_FLAG.FUSE_PASSTHROUGH;
    const on = negotiateInit(req(offered), rep(offered, 40, { max_stack_depth: 1, request_timeout: 30 }))!;
    expect(on).toMatchObject({ kernelMinor: 45, serverMinor: 40, minor: 40, maxWrite: 1 << 20, maxPages: 256, maxStackDepth: 1, requestTimeout: 30 });
    expect(on.flags).toBe(offered);
    expect(on.kernelFlags).toBe(offered);
    const withoutExt = offered & ~INIT_FLAG.FUSE_INIT_EXT;
    const off = negotiateInit(req(offered), rep(withoutExt, 40))!;
    expect(off.flags).toBe(INIT_FLAG.FUSE_ASYNC_READ); // flags2 ignored, as fs/fuse/inode.c does
  });

  it('learns the negotiated minor and flags in a session', () => {
    const d = new SessionDecoder();
    d.decode('rx', req(INIT_FLAG.FUSE_SETXATTR_EXT | INIT_FLAG.FUSE_INIT_EXT));
    const r = d.decode('tx', rep(INIT_FLAG.FUSE_INIT_EXT, 8));
    expect(r.request?.name).toBe('INIT');
    expect(d.init?.minor).toBe(8);
    // At 7.8 a LOOKUP reply carries a 120-byte entry_out: the session now decodes it without error.
    d.decode('rx', buildRequest({ opcode: Opcode.LOOKUP, unique: 4n, nodeid: 1n, names: ['x'], minor: 8 }));
    const lk = d.decode('tx', buildReply({ unique: 4n, opcode: Opcode.LOOKUP, args: [{ nodeid: 3n }], minor: 8 }));
    expect(lk.errors).toEqual([]);
    expect(lk.frame!.args[0].nodeid).toBe(3n);
    // An INTERRUPT (unique = target | FUSE_INT_REQ_BIT) answered EAGAIN pairs with the INTERRUPT.
    d.decode('rx', buildRequest({ opcode: Opcode.READ, unique: 6n, nodeid: 3n, arg: { size: 10 }, minor: 8 }));
    d.decode('rx', buildRequest({ opcode: Opcode.INTERRUPT, unique: 7n, arg: { unique: 6n } }));
    const again = d.decode('tx', buildReply({ unique: 7n, error: -11 }));
    expect(again.request?.name).toBe('INTERRUPT');
    expect(isInterruptUnique(7n)).toBe(true);
    expect(interruptTarget(7n)).toBe(6n);
    expect(d.unanswered().map((f) => f.name)).toEqual(['READ']);
    expect(negotiateInit(buildRequest({ opcode: Opcode.LOOKUP, unique: 2n, names: ['a'] }), rep(0n, 45))).toBeUndefined();
  });
});

describe('agreement with the system header (/usr/include/linux/fuse.h, 7.38 on Debian 12)', () => {
  const path = '/usr/include/linux/fuse.h';
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';

  it.skipIf(!text)('every bit flag it defines has the same value in our flag tables', () => {
    const ours = new Map<string, bigint>();
    for (const set of FORMAT_SETS.values()) {
      if (set.kind === 'flags') for (const [name, v] of set.bits) if (set.name !== 'init2') ours.set(name, v);
    }
    let checked = 0;
    for (const m of text.matchAll(/#define\s+((?:FUSE|FATTR|FOPEN|CUSE)_\w+)\s+\(1(?:ULL)?\s*<<\s*(\d+)\)/g)) {
      const [, name, bit] = m;
      if (!ours.has(name)) continue;
      expect(ours.get(name), name).toBe(1n << BigInt(bit));
      checked++;
    }
    expect(checked).toBeGreaterThan(60);
  });

  it.skipIf(!text)('opcode and notify numbers match its enums', () => {
    const opcodes = /enum fuse_opcode \{([^}]*)\}/.exec(text)![1];
    let checked = 0;
    for (const m of opcodes.matchAll(/(FUSE|CUSE)_(\w+)\s*=\s*(\d+)/g)) {
      const name = m[1] === 'CUSE' ? `CUSE_${m[2]}` : m[2];
      if (name.endsWith('BSWAP_RESERVED')) continue;
      expect(Opcode[name], name).toBe(Number(m[3]));
      checked++;
    }
    expect(checked).toBeGreaterThan(45);
    const notify = /enum fuse_notify_code \{([^}]*)\}/.exec(text)![1];
    for (const m of notify.matchAll(/FUSE_NOTIFY_(\w+)\s*=\s*(\d+)/g)) expect(NotifyCode[m[1]], m[1]).toBe(Number(m[2]));
  });
});
