import { describe, expect, it } from 'vitest';
import {
  buildNotify, buildReply, buildRequest, decodeReply, decodeRequest, encode, formatFields, formatLine, layout,
  NOTIFY_TABLE, NotifyCode, Opcode, OPCODE_TABLE, FUSE_INT_REQ_BIT, INIT_FLAG, sizeAt, structs as st,
  type Fields, type StructDesc, type Value,
} from './index.js';

/** Distinct, non-zero sample values for every field of a struct (count/size fields fixed by the caller). */
function sample(desc: StructDesc, seed: number): Fields {
  const out: Fields = {};
  layout(desc).leaves.forEach((leaf, k) => {
    const n = seed * 100 + k + 1;
    const one = (i: number): Value => {
      const m = n + i;
      switch (leaf.type) {
        case 'u8': return m & 0xff;
        case 'u16': return (m * 37) & 0xffff;
        case 'u32': return (m * 2654435761) >>> 0;
        case 'i32': return -m;
        case 'u64': return BigInt(m) * 0x1_0000_0001n + 7n;
        case 'i64': return -BigInt(m) * 3n;
      }
    };
    let t = out;
    for (const p of leaf.path.slice(0, -1)) t = (t[p] ??= {}) as Fields;
    t[leaf.path[leaf.path.length - 1]] = leaf.count === undefined ? one(0) : Array.from({ length: leaf.count }, (_, i) => one(i));
  });
  return out;
}

const PAYLOAD = Buffer.from('payload\x00\xffbytes');

describe('hand-built requests for every opcode', () => {
  for (const info of OPCODE_TABLE) {
    it(`${info.name}: decodes what was built and re-encodes identically`, () => {
      const arg = info.request ? sample(info.request, info.opcode) : undefined;
      const items = info.tail.kind === 'list' ? [sample(info.tail.item, 1), sample(info.tail.item, 2)] : undefined;
      if (arg && items) arg.count = items.length;
      const data = info.tail.kind === 'data' ? PAYLOAD : undefined;
      if (arg && data) arg[info.name === 'IOCTL' ? 'in_size' : 'size'] = data.length;
      const names = Array.from({ length: info.names }, (_, i) => `name-${i}.txt`);
      const buf = buildRequest({ opcode: info.opcode, unique: 1000n + BigInt(info.opcode) * 2n, nodeid: 42n, uid: 1000, gid: 100, pid: 4321, arg, names, items, data });
      const res = decodeRequest(buf, { flags: INIT_FLAG.FUSE_SETXATTR_EXT });
      expect(res.errors).toEqual([]);
      const f = res.frame!;
      expect(f.name).toBe(info.name);
      expect(f.nodeid).toBe(42n);
      expect(f.pid).toBe(4321);
      expect(f.len).toBe(buf.length);
      if (arg) expect(f.args[0]).toEqual(arg);
      expect(f.names).toEqual(names);
      if (items) expect(f.items).toEqual(items);
      if (data) expect(f.data).toEqual(data);
      expect(encode(f).equals(buf)).toBe(true);
      const line = formatLine(f);
      expect(line.startsWith(`rx ${1000 + info.opcode * 2} ${info.name} n42`)).toBe(true);
      expect(line.endsWith('pid 4321')).toBe(true);
    });

    it(`${info.name}: success and error replies`, () => {
      const unique = 7n + BigInt(info.opcode) * 2n;
      const err = buildReply({ unique, error: -13, opcode: info.opcode });
      const er = decodeReply(err, { opcode: info.opcode });
      expect(er.errors).toEqual([]);
      expect(formatLine(er.frame!, { durNs: 310_000 })).toBe(`tx ${unique} EACCES 0.31ms`);
      expect(encode(er.frame!).equals(err)).toBe(true);
      if (info.noReply) return;

      const shape = info.reply;
      const args = shape.kind === 'structs' ? shape.structs.map((s, i) => sample(s, i + 3))
        : shape.kind === 'ioctl' ? [{ ...sample(st.fuse_ioctl_out, 1), flags: 0 }]
          : shape.kind === 'cuse' ? [sample(st.cuse_init_out, 1)] : undefined;
      const data = ['data', 'xattr', 'ioctl', 'cuse'].includes(shape.kind) ? Buffer.from('abc\0def\0') : undefined;
      const dirents = shape.kind === 'dirents'
        ? [{ ino: 1n, off: 1n, type: 4, name: '.', entry: shape.plus ? sample(st.fuse_entry_out, 9) : undefined },
          { ino: 77n, off: 2n, type: 8, name: 'seven-chars', entry: shape.plus ? sample(st.fuse_entry_out, 8) : undefined }]
        : undefined;
      const buf = buildReply({ unique, opcode: info.opcode, args, data, dirents });
      const request = decodeRequest(buildRequest({ opcode: info.opcode, unique, arg: { size: 4096 } })).frame;
      const res = decodeReply(buf, { opcode: info.opcode, request });
      expect(res.errors).toEqual([]);
      const f = res.frame!;
      if (args) expect(f.args).toEqual(args);
      if (data) expect(f.data).toEqual(data);
      if (dirents) {
        expect(f.dirents!.map((d) => [d.ino, d.off, d.type, d.name])).toEqual(dirents.map((d) => [d.ino, d.off, d.type, d.name]));
        if (shape.kind === 'dirents' && shape.plus) expect(f.dirents![1].entry).toEqual(dirents[1].entry);
      }
      expect(encode(f).equals(buf)).toBe(true);
      expect(formatLine(f).startsWith(`tx ${unique} OK`)).toBe(true);
      expect(formatFields(res).length).toBeGreaterThan(1);
    });
  }
});

describe('notify frames (unique 0, code in error)', () => {
  for (const info of NOTIFY_TABLE) {
    it(`${info.name}: decodes, re-encodes and prints`, () => {
      const arg = info.struct ? sample(info.struct, info.code) : undefined;
      const names = info.names ? ['victim'] : undefined;
      if (arg && names) arg.namelen = 6;
      const items = info.tail.kind === 'list' ? [{ nodeid: 5n }, { nodeid: 6n }] : undefined;
      if (arg && items) arg.count = 2;
      const data = info.tail.kind === 'data' ? PAYLOAD : undefined;
      if (arg && data) arg.size = data.length;
      const buf = buildNotify(info.code, { arg, names, items, data });
      const res = decodeReply(buf);
      expect(res.errors).toEqual([]);
      const f = res.frame!;
      expect(f.kind).toBe('notify');
      expect(f.name).toBe(info.name);
      if (arg) expect(f.args[0]).toEqual(arg);
      if (names) expect(f.names).toEqual(names);
      if (items) expect(f.items).toEqual(items);
      if (data) expect(f.data).toEqual(data);
      expect(encode(f).equals(buf)).toBe(true);
      expect(formatLine(f).startsWith(`tx 0 ${info.name}`)).toBe(true);
    });
  }

  it('prints the key fields of each notification', () => {
    const line = (code: number, spec: Parameters<typeof buildNotify>[1]) => formatLine(decodeReply(buildNotify(code, spec)).frame!);
    expect(line(NotifyCode.POLL, { arg: { kh: 9n } })).toBe('tx 0 NOTIFY_POLL kh 9');
    expect(line(NotifyCode.INVAL_INODE, { arg: { ino: 5n, off: 0n, len: -1n } })).toBe('tx 0 NOTIFY_INVAL_INODE n5 off 0 len -1');
    expect(line(NotifyCode.INVAL_ENTRY, { arg: { parent: 1n, flags: 1 }, names: ['foo'] })).toBe('tx 0 NOTIFY_INVAL_ENTRY parent n1 flags FUSE_EXPIRE_ONLY "foo"');
    expect(line(NotifyCode.DELETE, { arg: { parent: 1n, child: 8n }, names: ['gone'] })).toBe('tx 0 NOTIFY_DELETE parent n1 child n8 "gone"');
    expect(line(NotifyCode.STORE, { arg: { nodeid: 3n, offset: 4096n }, data: Buffer.alloc(10) })).toBe('tx 0 NOTIFY_STORE n3 off 4096 size 10 10 bytes');
    expect(line(NotifyCode.RETRIEVE, { arg: { notify_unique: 77n, nodeid: 3n, offset: 0n, size: 100 } })).toBe('tx 0 NOTIFY_RETRIEVE notify_unique 77 n3 off 0 size 100');
    expect(line(NotifyCode.RESEND, {})).toBe('tx 0 NOTIFY_RESEND');
    expect(line(NotifyCode.INC_EPOCH, {})).toBe('tx 0 NOTIFY_INC_EPOCH');
    expect(line(NotifyCode.PRUNE, { items: [{ nodeid: 5n }, { nodeid: 6n }] })).toBe('tx 0 NOTIFY_PRUNE count 2 n5 n6');
    expect(line(99, {})).toBe('tx 0 NOTIFY-99');
  });

  it('flags a name that disagrees with namelen', () => {
    const buf = buildNotify(NotifyCode.INVAL_ENTRY, { arg: { parent: 1n, namelen: 2 }, names: ['foo'] });
    const res = decodeReply(buf);
    expect(res.error?.kind).toBe('bad-name');
    expect(encode(res.frame!).equals(buf)).toBe(true);
  });
});

describe('one-line printer on hand-built frames the captures lack', () => {
  const rx = (spec: Parameters<typeof buildRequest>[0]) => formatLine(decodeRequest(buildRequest(spec)).frame!);
  const tx = (spec: Parameters<typeof buildReply>[0], ns?: number) => formatLine(decodeReply(buildReply(spec), { opcode: spec.opcode }).frame!, { durNs: ns });

  it('prints requests', () => {
    expect(rx({ opcode: Opcode.LOOKUP, unique: 42n, nodeid: 1n, pid: 1234, names: ['foo'] })).toBe('rx 42 LOOKUP n1 "foo" pid 1234');
    expect(rx({ opcode: Opcode.FORGET, unique: 44n, nodeid: 5n, arg: { nlookup: 3n } })).toBe('rx 44 FORGET n5 nlookup 3 pid 0');
    expect(rx({ opcode: Opcode.INTERRUPT, unique: 43n, arg: { unique: 42n } })).toBe('rx 43 INTERRUPT n0 unique 42 pid 0');
    expect(rx({ opcode: Opcode.RENAME2, unique: 8n, nodeid: 1n, pid: 9, arg: { newdir: 2n, flags: 2 }, names: ['a', 'b'] }))
      .toBe('rx 8 RENAME2 n1 "a" "b" newdir n2 flags RENAME_EXCHANGE pid 9');
    expect(rx({ opcode: Opcode.GETLK, unique: 10n, nodeid: 3n, pid: 7, arg: { fh: 1n, owner: 0xabn, lk: { start: 0n, end: 99n, type: 0, pid: 7 } } }))
      .toBe('rx 10 GETLK n3 fh 1 owner 0xab F_RDLCK start 0 end 99 pid 7');
    expect(rx({ opcode: Opcode.POLL, unique: 12n, nodeid: 3n, arg: { fh: 1n, kh: 5n, flags: 1, events: 0x5 } }))
      .toBe('rx 12 POLL n3 fh 1 kh 5 flags FUSE_POLL_SCHEDULE_NOTIFY events POLLIN|POLLOUT pid 0');
    expect(rx({ opcode: Opcode.NOTIFY_REPLY, unique: 77n, nodeid: 3n, arg: { offset: 0n, size: 3 }, data: Buffer.from('abc') }))
      .toBe('rx 77 NOTIFY_REPLY n3 off 0 size 3 3 bytes pid 0');
    expect(rx({ opcode: Opcode.WRITE, unique: 14n, nodeid: 3n, pid: 5, arg: { fh: 2n, offset: 8n, size: 5, write_flags: 2, flags: 0o100001 }, data: Buffer.from('hello') }))
      .toBe('rx 14 WRITE n3 fh 2 off 8 size 5 write_flags FUSE_WRITE_LOCKOWNER flags O_WRONLY|O_LARGEFILE 5 bytes pid 5');
    expect(rx({ opcode: Opcode.SETATTR, unique: 16n, nodeid: 3n, arg: { valid: 0x48, fh: 2n, size: 100n, mode: 0o777 } }))
      .toBe('rx 16 SETATTR n3 valid FATTR_SIZE|FATTR_FH fh 2 size 100 pid 0');
    expect(rx({ opcode: Opcode.TMPFILE, unique: 18n, nodeid: 1n, arg: { flags: 0o20200002, mode: 0o100600, umask: 0o22 }, names: ['/'] }))
      .toBe('rx 18 TMPFILE n1 "/" flags O_RDWR|O_DIRECTORY|__O_TMPFILE mode reg 0600 umask 022 pid 0');
    expect(rx({ opcode: Opcode.BMAP, unique: 20n, nodeid: 3n, arg: { block: 9n, blocksize: 4096 } })).toBe('rx 20 BMAP n3 block 9 blocksize 4096 pid 0');
    expect(rx({ opcode: Opcode.DESTROY, unique: 22n })).toBe('rx 22 DESTROY n0 pid 0');
    expect(rx({ opcode: Opcode.SYNCFS, unique: 24n, nodeid: 1n })).toBe('rx 24 SYNCFS n1 pid 0');
    expect(rx({ opcode: Opcode.CUSE_INIT, unique: 2n, arg: { major: 7, minor: 45, flags: 1 } })).toBe('rx 2 CUSE_INIT n0 major 7 minor 45 flags CUSE_UNRESTRICTED_IOCTL pid 0');
    expect(rx({ opcode: Opcode.REMOVEMAPPING, unique: 26n, nodeid: 3n, arg: { count: 1 }, items: [{ moffset: 0n, len: 4096n }] }))
      .toBe('rx 26 REMOVEMAPPING n3 count 1 0/4096 pid 0');
    expect(rx({ opcode: 99, unique: 28n, nodeid: 3n })).toBe('rx 28 OPCODE-99 n3 pid 0');
  });

  it('prints replies', () => {
    expect(tx({ unique: 42n, error: -2, opcode: Opcode.LOOKUP }, 310_000)).toBe('tx 42 ENOENT 0.31ms');
    expect(tx({ unique: 42n, opcode: Opcode.LOOKUP, args: [{ nodeid: 5n, generation: 0n, attr: { mode: 0o100644, size: 12n } }] }))
      .toBe('tx 42 OK entry n5 gen 0 reg 0644 size 12');
    expect(tx({ unique: 10n, opcode: Opcode.GETLK, args: [{ lk: { type: 2, start: 0n, end: 0n, pid: 0 } }] })).toBe('tx 10 OK lk F_UNLCK start 0 end 0 pid 0');
    expect(tx({ unique: 12n, opcode: Opcode.POLL, args: [{ revents: 1 }] })).toBe('tx 12 OK revents POLLIN');
    expect(tx({ unique: 16n, opcode: Opcode.CREATE, args: [{ nodeid: 9n, attr: { mode: 0o100600 } }, { fh: 3n, open_flags: 0x81 }] }))
      .toBe('tx 16 OK entry n9 gen 0 reg 0600 size 0 open fh 3 flags FOPEN_DIRECT_IO|FOPEN_PASSTHROUGH');
    expect(tx({ unique: 18n, opcode: Opcode.STATX, args: [{ stat: { ino: 9n, mode: 0o40755, size: 4096n } }] })).toBe('tx 18 OK statx ino 9 dir 0755 size 4096');
    expect(tx({ unique: 20n, opcode: Opcode.BMAP, args: [{ block: 77n }] })).toBe('tx 20 OK block 77');
    expect(tx({ unique: 30n, opcode: Opcode.COPY_FILE_RANGE_64, args: [{ bytes_copied: 1n << 33n }] })).toBe('tx 30 OK copied 8589934592');
    expect(tx({ unique: 32n, opcode: Opcode.READ, data: Buffer.alloc(4096) })).toBe('tx 32 OK 4096 bytes');
    expect(tx({ unique: 34n, opcode: Opcode.IOCTL, args: [{ result: 0, flags: 4, in_iovs: 1, out_iovs: 0 }], items: [{ base: 0x1000n, len: 8n }] }))
      .toBe('tx 34 OK ioctl result 0 flags FUSE_IOCTL_RETRY in_iovs 1 out_iovs 0 iovs 4096/8');
    expect(tx({ unique: 2n, opcode: Opcode.CUSE_INIT, args: [{ major: 7, minor: 45, dev_major: 10, dev_minor: 200, max_write: 4096 }], data: Buffer.from('DEVNAME=fuse-test\0') }))
      .toBe('tx 2 OK cuse major 7 minor 45 dev_major 10 dev_minor 200 max_write 4096 "DEVNAME=fuse-test"');
    // An INTERRUPT answered EAGAIN: its unique carries FUSE_INT_REQ_BIT.
    expect(tx({ unique: 42n | FUSE_INT_REQ_BIT, error: -11, opcode: Opcode.INTERRUPT })).toBe('tx 43 EAGAIN');
  });
});

describe('sizes that depend on the negotiated minor', () => {
  it('entry_out and attr_out compat sizes (before 7.9)', () => {
    const buf = buildReply({ unique: 4n, opcode: Opcode.LOOKUP, args: [{ nodeid: 2n, attr: { mode: 0o40755 } }], minor: 8 });
    expect(buf.length).toBe(16 + 120);
    const res = decodeReply(buf, { opcode: Opcode.LOOKUP, minor: 8 });
    expect(res.errors).toEqual([]);
    expect(res.frame!.args[0].nodeid).toBe(2n);
    expect((res.frame!.args[0].attr as Fields).blksize).toBeUndefined();
    // At 7.45 the same 120 bytes are short.
    expect(decodeReply(buf, { opcode: Opcode.LOOKUP }).error?.kind).toBe('short');
    const attr = buildReply({ unique: 6n, opcode: Opcode.GETATTR, args: [{ attr: { ino: 1n } }], minor: 8 });
    expect(attr.length).toBe(16 + 96);
    expect(decodeReply(attr, { opcode: Opcode.GETATTR, minor: 8 }).errors).toEqual([]);
  });

  it('write_in, mknod_in, create_in, getattr and statfs compat layouts', () => {
    const w = buildRequest({ opcode: Opcode.WRITE, unique: 2n, arg: { fh: 1n, offset: 0n, size: 3 }, data: Buffer.from('abc'), minor: 8 });
    expect(w.length).toBe(40 + 24 + 3);
    const wr = decodeRequest(w, { minor: 8 });
    expect(wr.errors).toEqual([]);
    expect(wr.frame!.data!.toString()).toBe('abc');
    const m = buildRequest({ opcode: Opcode.MKNOD, unique: 2n, arg: { mode: 0o10644 }, names: ['p'], minor: 11 });
    expect(m.length).toBe(40 + 8 + 2);
    expect(decodeRequest(m, { minor: 11 }).frame!.names).toEqual(['p']);
    const c = buildRequest({ opcode: Opcode.CREATE, unique: 2n, arg: { flags: 1, mode: 0o100644 }, names: ['f'], minor: 11 });
    expect(c.length).toBe(40 + 8 + 2);
    expect(decodeRequest(c, { minor: 11 }).errors).toEqual([]);
    const g = buildRequest({ opcode: Opcode.GETATTR, unique: 2n, minor: 8 });
    expect(g.length).toBe(40);
    expect(decodeRequest(g, { minor: 8 }).errors).toEqual([]);
    const s = buildReply({ unique: 2n, opcode: Opcode.STATFS, args: [{ st: { blocks: 5n, bsize: 512 } }], minor: 3 });
    expect(s.length).toBe(16 + 48);
    expect(decodeReply(s, { opcode: Opcode.STATFS, minor: 3 }).errors).toEqual([]);
  });

  it('INIT decodes by its length, whatever the context says', () => {
    for (const size of [8, 16, 64]) {
      const buf = buildRequest({ opcode: Opcode.INIT, unique: 2n, arg: { major: 7, minor: size === 8 ? 5 : size === 16 ? 35 : 45 }, argSize: size });
      const res = decodeRequest(buf, { minor: 45 });
      expect(res.errors).toEqual([]);
      expect(res.frame!.args[0].major).toBe(7);
      expect(encode(res.frame!).equals(buf)).toBe(true);
    }
    for (const size of [8, 24, 64]) {
      const buf = buildReply({ unique: 2n, opcode: Opcode.INIT, args: [{ major: 7, minor: 22, max_write: 4096 }], argSizes: [size] });
      const res = decodeReply(buf, { opcode: Opcode.INIT, minor: 45 });
      expect(res.errors).toEqual([]);
      expect(res.frame!.args[0].max_write).toBe(size >= 24 ? 4096 : undefined);
    }
  });

  it('fuse_setxattr_in: 16 bytes with FUSE_SETXATTR_EXT, 8 without, inferred when unknown', () => {
    const value = Buffer.from('blue');
    const ext = buildRequest({ opcode: Opcode.SETXATTR, unique: 2n, arg: { size: 4, flags: 1, setxattr_flags: 1 }, names: ['user.c'], data: value });
    const old = buildRequest({ opcode: Opcode.SETXATTR, unique: 2n, arg: { size: 4, flags: 1 }, argSize: 8, names: ['user.c'], data: value });
    expect(ext.length - old.length).toBe(8);
    for (const [buf, flags] of [[ext, INIT_FLAG.FUSE_SETXATTR_EXT], [old, 0n]] as const) {
      for (const ctx of [{ flags }, {}]) {
        const res = decodeRequest(buf, ctx);
        expect(res.errors).toEqual([]);
        expect(res.frame!.names).toEqual(['user.c']);
        expect(res.frame!.data).toEqual(value);
      }
    }
    expect(decodeRequest(ext, {}).frame!.args[0].setxattr_flags).toBe(1);
    expect(decodeRequest(old, { minor: 31 }).frame!.args[0].setxattr_flags).toBeUndefined();
  });

  it('request extensions (7.38 total_extlen) are split off and kept', () => {
    // A FUSE_EXT_GROUPS extension: header {size 16, type 32}, nr_groups 1, group 100.
    const ext = Buffer.alloc(16);
    ext.writeUInt32LE(16, 0); ext.writeUInt32LE(32, 4); ext.writeUInt32LE(1, 8); ext.writeUInt32LE(100, 12);
    const buf = buildRequest({ opcode: Opcode.MKDIR, unique: 2n, nodeid: 1n, arg: { mode: 0o755, umask: 0o22 }, names: ['d'], ext });
    const res = decodeRequest(buf);
    expect(res.errors).toEqual([]);
    expect(res.frame!.names).toEqual(['d']);
    expect(res.frame!.ext).toEqual([{ type: 32, size: 16, payload: ext.subarray(8) }]);
    expect(formatLine(res.frame!)).toBe('rx 2 MKDIR n1 "d" mode 0755 umask 022 ext 32 pid 0');
    expect(encode(res.frame!).equals(buf)).toBe(true);
  });
});

describe('errors are results, never exceptions', () => {
  const lookup = buildRequest({ opcode: Opcode.LOOKUP, unique: 2n, nodeid: 1n, names: ['foo'] });

  it('short header', () => {
    const res = decodeRequest(lookup.subarray(0, 20));
    expect(res).toMatchObject({ ok: false, error: { kind: 'short' } });
    expect(res.frame).toBeUndefined();
    expect(res.raw.length).toBe(20);
    expect(decodeReply(Buffer.alloc(3)).error?.kind).toBe('short');
  });

  it('a frame cut short of its len (snaplen) keeps what it has', () => {
    const res = decodeRequest(lookup.subarray(0, 42));
    expect(res.error?.kind).toBe('short');
    expect(res.errors.map((e) => e.kind)).toContain('bad-name');
    expect(res.frame!.names).toEqual(['fo']);
    expect(encode(res.frame!).equals(lookup.subarray(0, 42))).toBe(true);
  });

  it('len disagreeing with the frame', () => {
    const extra = Buffer.concat([lookup, Buffer.from([1, 2, 3])]);
    const res = decodeRequest(extra);
    expect(res.error?.kind).toBe('bad-length');
    expect(res.frame!.names).toEqual(['foo']);
    expect(encode(res.frame!).equals(extra)).toBe(true);
  });

  it('unknown opcode, missing NUL, trailing bytes, bad reply error, unpaired reply', () => {
    const unk = buildRequest({ opcode: 4242, unique: 2n, data: Buffer.from('xyz') });
    const u = decodeRequest(unk);
    expect(u.error?.kind).toBe('unknown-opcode');
    expect(u.frame!.name).toBe('OPCODE-4242');
    expect(encode(u.frame!).equals(unk)).toBe(true);

    const noNul = Buffer.from(lookup.subarray(0, lookup.length - 1));
    noNul.writeUInt32LE(noNul.length, 0);
    expect(decodeRequest(noNul).error?.kind).toBe('bad-name');

    const trailing = buildRequest({ opcode: Opcode.GETATTR, unique: 2n, data: Buffer.from('zz') });
    const t = decodeRequest(trailing);
    expect(t.error?.kind).toBe('trailing');
    expect(encode(t.frame!).equals(trailing)).toBe(true);

    const positive = buildReply({ unique: 2n, error: 5 });
    expect(decodeReply(positive, { opcode: 1 }).error?.kind).toBe('bad-error');
    const bodyAfterError = Buffer.concat([buildReply({ unique: 2n, error: -2 }), Buffer.alloc(8)]);
    bodyAfterError.writeUInt32LE(bodyAfterError.length, 0);
    expect(decodeReply(bodyAfterError, { opcode: 1 }).error?.kind).toBe('bad-error');

    const unpaired = buildReply({ unique: 9n, data: Buffer.alloc(8) });
    const up = decodeReply(unpaired);
    expect(up.error?.kind).toBe('unpaired');
    expect(formatLine(up.frame!)).toBe('tx 9 OK 8 bytes');
    expect(encode(up.frame!).equals(unpaired)).toBe(true);
  });

  it('list counts larger than the frame', () => {
    const bf = buildRequest({ opcode: Opcode.BATCH_FORGET, unique: 2n, arg: { count: 1000 }, items: [{ nodeid: 1n, nlookup: 1n }] });
    const res = decodeRequest(bf);
    expect(res.error?.kind).toBe('short');
    expect(res.frame!.items).toHaveLength(1);
    expect(encode(res.frame!).equals(bf)).toBe(true);
  });

  it('editing decoded values changes the encoding (INIT masking)', () => {
    const rep = buildReply({ unique: 2n, opcode: Opcode.INIT, args: [{ major: 7, minor: 45, flags: Number(INIT_FLAG.FUSE_INIT_EXT), flags2: 0x20, max_write: 1 << 20 }] });
    const f = decodeReply(rep, { opcode: Opcode.INIT }).frame!;
    f.args[0].flags2 = 0; // mask FUSE_PASSTHROUGH
    const out = encode(f);
    expect(out.length).toBe(rep.length);
    expect(decodeReply(out, { opcode: Opcode.INIT }).frame!.args[0].flags2).toBe(0);
    expect(sizeAt(st.fuse_init_out)).toBe(64);
  });
});

describe('INIT decodes by its length whatever minor the session negotiated (issue 12 item 8)', () => {
  it("keeps a kernel 7.45 INIT's flags2 when the server negotiated minor 28 (go-fuse)", () => {
    // fuse_in_header (40) + fuse_init_in (64): major 7, minor 45, max_readahead, flags, flags2.
    const b = Buffer.alloc(104);
    b.writeUInt32LE(104, 0);
    b.writeUInt32LE(26, 4);
    b.writeBigUInt64LE(2n, 8);
    b.writeUInt32LE(7, 40);
    b.writeUInt32LE(45, 44);
    b.writeUInt32LE(0x20000, 48);
    b.writeUInt32LE(0x40000000, 52); // FUSE_INIT_EXT
    b.writeUInt32LE(0x12, 56);
    for (const minor of [28, 38, 45]) {
      const r = decodeRequest(b, { minor });
      expect(r.errors, `minor ${minor}`).toEqual([]);
      expect(r.frame!.args[0]!.flags2).toBe(0x12);
    }
  });
});
