// The demo server on its own, the way the replayer runs it: the real server process
// (node dist/src/demo/server.js /dev/fd/3) on one end of a real AF_UNIX SOCK_SEQPACKET socketpair,
// this test playing the kernel on the other end with frames built by the codec. No mount: this
// pins the server's protocol behaviour (INIT negotiation, INTERRUPT handling, no-reply opcodes,
// ENOSYS) independently of what the kernel happens to send.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { CleanupRegistry, waitExit } from './helpers/mount.js';
import { buildForDemo } from './demo-helpers.js';
import { demoServerArgv } from '../src/demo/fixture.js';
import { NODEID } from '../src/demo/tree.js';
import { native } from '../src/proxy/native.js';
import { buildRequest, decodeReply, errnoNumber, INIT_FLAG, Opcode, type DecodedFrame } from '../src/protocol/index.js';

const reg = new CleanupRegistry();
afterEach(() => reg.cleanup());
beforeAll(() => buildForDemo(), 180_000);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Reply {
  at: number;
  raw: Buffer;
  unique: bigint;
  error: number;
}

/** A demo server process on a socketpair; `send` writes one request frame, `next` awaits the next reply frame. */
function startServer() {
  const pair = native().seqpacketPair(2 * 1024 * 1024);
  const [kernelFd, serverFd] = pair.fds;
  const [node, script] = demoServerArgv();
  const child: ChildProcess = spawn(node!, [script!, '/dev/fd/3'], { stdio: ['ignore', 'inherit', 'inherit', serverFd] });
  fs.closeSync(serverFd);
  reg.process(child);
  const exited = waitExit(child);
  reg.defer(async () => {
    // Killing the server ends our pending read with end-of-file; then our end can be closed.
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
    await reading;
    fs.closeSync(kernelFd);
  });
  const replies: Reply[] = [];
  let wake: (() => void) | undefined;
  const buf = Buffer.alloc(2 * 1024 * 1024);
  const reading = new Promise<void>((done) => {
    const loop = () =>
      fs.read(kernelFd, buf, 0, buf.length, null, (err, n) => {
        if (err || n === 0) return done();
        const raw = Buffer.from(buf.subarray(0, n));
        replies.push({ at: Date.now(), raw, unique: raw.readBigUInt64LE(8), error: raw.readInt32LE(4) });
        wake?.();
        loop();
      });
    loop();
  });
  return {
    child,
    send: (frame: Buffer) => fs.writeSync(kernelFd, frame),
    /** The next reply, or undefined after `ms`. */
    async next(ms = 2_000): Promise<Reply | undefined> {
      const end = Date.now() + ms;
      while (replies.length === 0 && Date.now() < end) {
        await Promise.race([new Promise<void>((r) => (wake = r)), sleep(Math.max(1, end - Date.now()))]);
      }
      return replies.shift();
    },
  };
}

const FLAGS = INIT_FLAG.FUSE_ASYNC_READ | INIT_FLAG.FUSE_BIG_WRITES | INIT_FLAG.FUSE_SPLICE_WRITE | INIT_FLAG.FUSE_SPLICE_READ |
  INIT_FLAG.FUSE_PARALLEL_DIROPS | INIT_FLAG.FUSE_MAX_PAGES | INIT_FLAG.FUSE_INIT_EXT;

function init(unique: bigint, minor = 45): Buffer {
  return buildRequest({ opcode: Opcode.INIT, unique, minor, arg: { major: 7, minor, max_readahead: 131072, flags: Number(FLAGS & 0xffffffffn), flags2: 0 } });
}
const decoded = (r: Reply | undefined, opcode: number): DecodedFrame => decodeReply(r!.raw, { opcode }).frame!;
const errno = (name: string) => -errnoNumber(name)!;

describe('the demo server on a socketpair', () => {
  it('negotiates INIT: our minor or the kernel\'s, max_write 1 MiB, never splice', async () => {
    const s = startServer();
    s.send(init(2n));
    const r = decoded(await s.next(), Opcode.INIT);
    expect(r.error).toBe(0);
    expect(r.len).toBe(16 + 64);
    const o = r.args[0]!;
    expect(o).toMatchObject({ major: 7, minor: 45, max_write: 1024 * 1024, max_pages: 256, max_readahead: 131072 });
    const flags = BigInt(o.flags as number);
    expect(flags & INIT_FLAG.FUSE_MAX_PAGES).not.toBe(0n);
    expect(flags & (INIT_FLAG.FUSE_SPLICE_WRITE | INIT_FLAG.FUSE_SPLICE_READ | INIT_FLAG.FUSE_ASYNC_READ)).toBe(0n);

    const old = startServer();
    old.send(init(2n, 22));
    const r22 = decoded(await old.next(), Opcode.INIT);
    // fuse_init_out is 24 bytes for 7.5..7.22 (FUSE_COMPAT_22_INIT_OUT_SIZE).
    expect(r22.len).toBe(16 + 24);
    expect(r22.args[0]).toMatchObject({ major: 7, minor: 22 });
  });

  it('answers EINTR only once FUSE_INTERRUPT names the parked READ; wait-anyway ignores it; never stays outstanding', async () => {
    const s = startServer();
    s.send(init(2n));
    await s.next();
    const read = (unique: bigint, nodeid: bigint) =>
      buildRequest({ opcode: Opcode.READ, unique, nodeid, arg: { fh: 1n, offset: 0n, size: 4096 } });
    const interrupt = (target: bigint) => buildRequest({ opcode: Opcode.INTERRUPT, unique: target | 1n, arg: { unique: target } });

    const t0 = Date.now();
    s.send(read(10n, NODEID.waitEintr));
    s.send(read(12n, NODEID.waitAnyway));
    s.send(read(14n, NODEID.never));
    expect(await s.next(150)).toBeUndefined(); // all three are parked
    s.send(interrupt(12n)); // noted, ignored
    s.send(interrupt(10n));
    const eintr = await s.next(1_000);
    expect(eintr).toMatchObject({ unique: 10n, error: errno('EINTR') });
    expect(eintr!.raw.length).toBe(16);
    const anyway = await s.next(1_000);
    expect(anyway).toMatchObject({ unique: 12n, error: 0 });
    expect(decoded(anyway, Opcode.READ).data!.toString()).toBe('answered anyway, interrupt or not\n');
    expect(anyway!.at - t0).toBeGreaterThanOrEqual(390);
    s.send(interrupt(14n));
    expect(await s.next(600)).toBeUndefined(); // never: not even after an INTERRUPT

    // slow.txt: answered after 300 ms at offset 0; a READ at end-of-file is ordinary.
    const t1 = Date.now();
    s.send(read(16n, NODEID.slow));
    const slow = await s.next(1_000);
    expect(slow).toMatchObject({ unique: 16n, error: 0 });
    expect(slow!.at - t1).toBeGreaterThanOrEqual(290);
    s.send(buildRequest({ opcode: Opcode.READ, unique: 18n, nodeid: NODEID.slow, arg: { fh: 1n, offset: 24n, size: 4096 } }));
    const eof = await s.next(200);
    expect(eof).toMatchObject({ unique: 18n, error: 0 });
    expect(eof!.raw.length).toBe(16);
  });

  it('never answers FORGET/BATCH_FORGET, answers unknown opcodes ENOSYS, broken EIO, a missing name ENOENT', async () => {
    const s = startServer();
    s.send(init(2n));
    await s.next();
    s.send(buildRequest({ opcode: Opcode.FORGET, unique: 4n, nodeid: NODEID.hello, arg: { nlookup: 1n } }));
    s.send(buildRequest({ opcode: Opcode.BATCH_FORGET, unique: 6n, arg: { count: 1 }, items: [{ nodeid: NODEID.hello, nlookup: 1n }] }));
    s.send(buildRequest({ opcode: 4242, unique: 8n, nodeid: 1n }));
    expect(await s.next()).toMatchObject({ unique: 8n, error: errno('ENOSYS') });
    s.send(buildRequest({ opcode: Opcode.READ, unique: 10n, nodeid: NODEID.broken, arg: { fh: 1n, offset: 0n, size: 64 } }));
    expect(await s.next()).toMatchObject({ unique: 10n, error: errno('EIO') });
    s.send(buildRequest({ opcode: Opcode.LOOKUP, unique: 12n, nodeid: 1n, names: ['missing'] }));
    expect(await s.next()).toMatchObject({ unique: 12n, error: errno('ENOENT') });
    s.send(buildRequest({ opcode: Opcode.LOOKUP, unique: 14n, nodeid: 1n, names: ['hello.txt'] }));
    const e = decoded(await s.next(), Opcode.LOOKUP);
    expect(e.args[0]).toMatchObject({ nodeid: NODEID.hello, generation: 0n });
    expect((e.args[0]!.attr as Record<string, unknown>).mtime).toBe(1_704_067_200n);
    expect(await s.next(100)).toBeUndefined(); // nothing for the FORGETs
  });

  it('gives byte-identical replies to the same request sequence in two processes', async () => {
    const frames = [
      init(2n),
      buildRequest({ opcode: Opcode.LOOKUP, unique: 4n, nodeid: 1n, names: ['notes'] }),
      buildRequest({ opcode: Opcode.OPENDIR, unique: 6n, nodeid: NODEID.notes, arg: { flags: 0o200000 } }),
      buildRequest({ opcode: Opcode.READDIR, unique: 8n, nodeid: NODEID.notes, arg: { fh: 1n, offset: 0n, size: 4096 } }),
      buildRequest({ opcode: Opcode.CREATE, unique: 10n, nodeid: NODEID.notes, arg: { flags: 0o101, mode: 0o100644, umask: 0o22 }, names: ['new.txt'] }),
      buildRequest({ opcode: Opcode.WRITE, unique: 12n, nodeid: 100n, arg: { fh: 2n, offset: 0n, size: 5 }, data: Buffer.from('hello') }),
      buildRequest({ opcode: Opcode.GETATTR, unique: 14n, nodeid: 100n, arg: {} }),
      buildRequest({ opcode: Opcode.STATX, unique: 16n, nodeid: NODEID.scratch, arg: { sx_mask: 0xfff } }),
      buildRequest({ opcode: Opcode.STATFS, unique: 18n, nodeid: 1n }),
    ];
    const run = async () => {
      const s = startServer();
      const out: string[] = [];
      for (const f of frames) {
        s.send(f);
        const r = await s.next();
        expect(r, `no reply to unique ${f.readBigUInt64LE(8)}`).toBeDefined();
        out.push(r!.raw.toString('hex'));
      }
      return out;
    };
    const a = await run();
    const b = await run();
    expect(b).toEqual(a);
    const w = decodeReply(Buffer.from(a[5]!, 'hex'), { opcode: Opcode.WRITE }).frame!;
    expect(w.args[0]).toMatchObject({ size: 5 });
  });
});
