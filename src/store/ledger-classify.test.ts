/**
 * The lifecycle classifier on hand-made frame sequences that follow fs/fuse/dev.c: what the kernel
 * accepts (write_errno 0), refuses with ENOENT (request_find failed), and what stays outstanding.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Script, busyScript, entryOut, name, openOut, recordScript, row, rows, closeTraces, trace, u32, u64 } from './ledger-frames.fixture.js';
import { rebuildLedger } from './ledger.js';

const ENOENT = 2;
const EINTR = 4;
const EAGAIN = 11;
const EINVAL = 22;

afterEach(closeTraces);

/** fuse_read_in { fh, offset, size, read_flags, lock_owner, flags, padding }. */
const readIn = (fh: number) => [u64(fh), u64(0), u32(4096), u32(0), u64(0), u32(0), u32(0)];
/** fuse_write_in { fh, offset, size, write_flags, lock_owner, flags, padding }. */
const writeIn = (fh: number, flags: number) => [u64(fh), u64(0), u32(4), u32(flags), u64(0), u32(0), u32(0), Buffer.from('data')];

describe('ledger states', () => {
  it('ok and error replies carry errno, times and the reply seq', () => {
    const { db } = trace();
    const s = new Script();
    const lookup = s.req(1, 2, 1, [name('a')]);
    const lookupReply = s.reply(2, 0, [entryOut(2)], { dt: 5000 });
    const missing = s.req(1, 4, 1, [name('nope')]);
    s.reply(4, -ENOENT);
    const { session } = recordScript(db, s);
    const ok = row(db, session, lookup.seq);
    expect(ok).toMatchObject({ state: 'ok', outcome: null, errno: 0, opcode: 1, unique_id: 2, path: '/a', reply_seq: lookupReply.seq });
    expect(ok.start_ns).toBe(Number(lookup.tsNs - 5_000_000_000n));
    expect(ok.dur_ns).toBe(5000);
    expect(ok.fwd_ns).toBe(Number(lookup.tsNs - 5_000_000_000n) + 100);
    expect(row(db, session, missing.seq)).toMatchObject({ state: 'error', errno: ENOENT, path: '/nope' });
  });

  it('interrupt outcomes: eintr, answered anyway, eagain accepted, eagain after the request finished', () => {
    const { db } = trace();
    const s = new Script();
    // answered EINTR
    const r1 = s.req(15, 10, 1, readIn(1));
    const i1 = s.interrupt(10);
    s.reply(10, -EINTR);
    // answered normally after the INTERRUPT
    const r2 = s.req(15, 12, 1, readIn(1));
    const i2 = s.interrupt(12);
    s.reply(12, 0, [Buffer.alloc(10)]);
    // INTERRUPT answered EAGAIN (accepted: the kernel queues it again), then answered
    const r3 = s.req(15, 14, 1, readIn(1));
    const i3 = s.interrupt(14);
    s.reply(15, -EAGAIN);
    s.interrupt(14);
    s.reply(14, -EINTR);
    // libfuse single-threaded: the reply goes first, the INTERRUPT is read afterwards and its
    // EAGAIN answer finds no request (ENOENT)
    const r4 = s.req(15, 16, 1, readIn(1));
    s.interrupt(16);
    s.reply(16, 0, [Buffer.alloc(10)]);
    s.reply(17, -EAGAIN, [], { writeErrno: ENOENT });
    const { session } = recordScript(db, s);
    expect(row(db, session, r1.seq)).toMatchObject({ state: 'interrupted', outcome: 'eintr', errno: EINTR, interrupt_seq: i1.seq });
    expect(row(db, session, r2.seq)).toMatchObject({ state: 'interrupted', outcome: 'answered', errno: 0, interrupt_seq: i2.seq });
    expect(row(db, session, r3.seq)).toMatchObject({ state: 'interrupted', outcome: 'eagain', interrupt_seq: i3.seq });
    expect(row(db, session, r4.seq)).toMatchObject({ state: 'late', outcome: 'interrupt-after-finish', errno: 0 });
    // INTERRUPT frames are not rows of their own.
    const ops = rows(db, session).map((r) => Number(r.opcode));
    expect(ops).not.toContain(36);
    expect(ops.length).toBe(4);
  });

  it('a reply the kernel refuses with ENOENT is late; a second reply is a late duplicate', () => {
    const { db } = trace();
    const s = new Script();
    const r1 = s.req(3, 20, 1, [u32(0), u32(0), u64(0)]);
    s.reply(20, 0, [Buffer.alloc(104)], { writeErrno: ENOENT });
    const r2 = s.req(3, 22, 1, [u32(0), u32(0), u64(0)]);
    s.reply(22, 0, [Buffer.alloc(104)]);
    s.reply(22, 0, [Buffer.alloc(104)], { writeErrno: ENOENT });
    const { session } = recordScript(db, s);
    expect(row(db, session, r1.seq)).toMatchObject({ state: 'late', outcome: 'not-waited', errno: 0 });
    expect(row(db, session, r2.seq)).toMatchObject({ state: 'late', outcome: 'duplicate', errno: 0, reply_seq: r2.seq + 1 });
  });

  it('outstanding requests are aborted when the server crashes, unanswered when the end is unknown', () => {
    const crashed = trace();
    const s = new Script();
    const done = s.req(3, 30, 1, [u32(0), u32(0), u64(0)]);
    s.reply(30, 0, [Buffer.alloc(104)]);
    const stuck = s.req(15, 32, 1, readIn(3));
    const interrupted = s.req(15, 34, 1, readIn(3));
    s.interrupt(34);
    const a = recordScript(crashed.db, s, { endReason: 'server-crash' });
    expect(row(crashed.db, a.session, done.seq).state).toBe('ok');
    expect(row(crashed.db, a.session, stuck.seq)).toMatchObject({ state: 'aborted', outcome: 'server-crash', errno: null, dur_ns: null });
    expect(row(crashed.db, a.session, interrupted.seq)).toMatchObject({ state: 'aborted', outcome: 'server-crash' });
    expect(row(crashed.db, a.session, interrupted.seq).interrupt_seq).not.toBeNull();

    const unknownEnd = trace();
    const b = recordScript(unknownEnd.db, s);
    expect(row(unknownEnd.db, b.session, stuck.seq)).toMatchObject({ state: 'unanswered', outcome: null });
    expect(b.ledger.outstanding).toBe(2);

    const unmounted = trace();
    const c = recordScript(unmounted.db, s, { endReason: 'unmount' });
    expect(row(unmounted.db, c.session, stuck.seq)).toMatchObject({ state: 'aborted', outcome: 'unmount' });
  });

  it('requests that finish beside one that keeps waiting leave it pending; a second reply finds the finished one', () => {
    // Batches of 3: the READ waits across all of them while the LOOKUPs around it finish (their
    // pending entries are removed at the end of each batch, Ledger.sweep), one of them answered twice.
    const { db } = trace();
    const s = new Script();
    const waits = s.req(15, 50, 2, readIn(7));
    const first = s.req(1, 52, 1, [name('a')]);
    s.reply(52, 0, [entryOut(2)]);
    s.reply(52, 0, [entryOut(2)]);
    const second = s.req(1, 54, 1, [name('b')]);
    s.reply(54, -ENOENT);
    s.reply(50, 0, [Buffer.alloc(4096)]);
    const { session, ledger } = recordScript(db, s, { batch: 3 });
    expect(ledger.outstanding).toBe(0);
    expect(row(db, session, waits.seq)).toMatchObject({ state: 'ok', reply_len: 16 + 4096 });
    expect(row(db, session, first.seq)).toMatchObject({ state: 'unknown', outcome: 'duplicate-reply' });
    expect(row(db, session, second.seq)).toMatchObject({ state: 'error', errno: ENOENT, path: '/b' });
  });

  it('a pending request is written as unanswered at once and updated when its reply comes in a later batch', () => {
    const { db } = trace();
    const s = new Script();
    const r = s.req(15, 40, 2, readIn(7));
    s.req(3, 42, 1, [u32(0), u32(0), u64(0)]);
    s.reply(42, 0, [Buffer.alloc(104)]);
    s.reply(40, 0, [Buffer.alloc(4096)]);
    const { session, ledger } = recordScript(db, s, { batch: 2 });
    expect(ledger.outstanding).toBe(0);
    expect(row(db, session, r.seq)).toMatchObject({ state: 'ok', reply_len: 16 + 4096, fh: 7 });
  });

  it('FORGET and BATCH_FORGET are noreply; notifications and NOTIFY_REPLY are notify', () => {
    const { db } = trace();
    const s = new Script();
    s.req(1, 2, 1, [name('f')]);
    s.reply(2, 0, [entryOut(5)]);
    const forget = s.req(2, 4, 5, [u64(1)]);
    const batch = s.req(42, 6, 0, [u32(2), u32(0), u64(8), u64(1), u64(9), u64(3)]);
    // FUSE_NOTIFY_INVAL_ENTRY { parent, namelen, flags } "g"
    const inval = s.reply(0, 3, [u64(1), u32(1), u32(0), Buffer.from('g\0')]);
    // FUSE_NOTIFY_INVAL_INODE for an inode the kernel does not know: the write fails ENOENT
    const invalInode = s.reply(0, 2, [u64(77), u64(0), u64(0)], { writeErrno: ENOENT });
    const notifyReply = s.req(41, 99, 1, [u64(0), u64(0), u32(0), u32(0), u64(0), u64(0)]);
    const { session } = recordScript(db, s, { endReason: 'unmount' });
    expect(row(db, session, forget.seq)).toMatchObject({ state: 'noreply', opcode: 2, path: '/f', errno: null });
    expect(row(db, session, batch.seq)).toMatchObject({ state: 'noreply', opcode: 42 });
    expect(row(db, session, inval.seq)).toMatchObject({ state: 'notify', outcome: 'inval_entry', opcode: 0, unique_id: 0, path: '/g', errno: 0 });
    expect(row(db, session, invalInode.seq)).toMatchObject({ state: 'notify', outcome: 'inval_inode', nodeid: 77, errno: ENOENT });
    expect(row(db, session, notifyReply.seq)).toMatchObject({ state: 'notify', outcome: 'retrieve_reply', opcode: 41 });
  });

  it('what the classifier cannot place is unknown, never ok', () => {
    const { db } = trace();
    const s = new Script();
    const orphan = s.reply(500, 0, [Buffer.alloc(8)]);
    const strayInterrupt = s.interrupt(600);
    const rejected = s.req(3, 50, 1, [u32(0), u32(0), u64(0)]);
    // an error reply with a body: the kernel finds the request, refuses the layout, ends it with EIO
    s.reply(50, -ENOENT, [Buffer.alloc(8)], { writeErrno: EINVAL });
    const badLen = s.req(3, 52, 1, [u32(0), u32(0), u64(0)]);
    s.reply(52, 0, [Buffer.alloc(104)], { writeErrno: 9 /* EBADF */ });
    const notFwd = s.req(3, 54, 1, [u32(0), u32(0), u64(0)]);
    s.reply(54, 0, [Buffer.alloc(104)], { unforwarded: true });
    const { session } = recordScript(db, s);
    expect(row(db, session, orphan.seq)).toMatchObject({ state: 'unknown', outcome: 'no-request', opcode: 0, unique_id: 500 });
    expect(row(db, session, strayInterrupt.seq)).toMatchObject({ state: 'unknown', outcome: 'interrupt-target-unknown', opcode: 36 });
    expect(row(db, session, rejected.seq)).toMatchObject({ state: 'error', outcome: 'reply-rejected', errno: 5 });
    expect(row(db, session, badLen.seq)).toMatchObject({ state: 'unknown', outcome: 'reply-write-errno-9' });
    expect(row(db, session, notFwd.seq)).toMatchObject({ state: 'unknown', outcome: 'reply-not-forwarded' });
  });

  it('frames the proxy did not forward: the pump answers EIO, and the outcome says why', () => {
    const { db } = trace();
    const s = new Script();
    // A READ reply split into pieces (SEQPACKET > 61 KiB): the first piece has the header, the
    // rest unique 0; none is forwarded (EBADMSG); the pump answers the READ with EIO.
    const split = s.req(15, 60, 1, readIn(3));
    const first = Buffer.alloc(100);
    first.writeUInt32LE(200_000, 0); // header says more than this piece
    first.writeBigUInt64LE(60n, 8);
    s.frames.push({ seq: s.frames.length, tsNs: split.tsNs + 50n, fwdNs: null, dir: 1, unique: 60n, opcode: null, error: 0, len: 100, data: first, writeErrno: 74 });
    s.piece(65536);
    s.piece(65536);
    const eio = s.reply(60, -5);
    // A request the socket refused (EMSGSIZE): never forwarded, answered EIO by the pump.
    const big = s.req(16, 62, 1, writeIn(3, 0), { writeErrno: 90 });
    s.reply(62, -5);
    // A lone piece with nothing before it is not placed anywhere: unknown.
    const stray = s.piece(10);
    const { session } = recordScript(db, s, { endReason: 'unmount' });
    expect(row(db, session, split.seq)).toMatchObject({ state: 'error', errno: 5, outcome: 'reply-not-forwarded', reply_seq: eio.seq });
    expect(row(db, session, big.seq)).toMatchObject({ state: 'error', errno: 5, outcome: 'request-not-forwarded', fwd_ns: null });
    expect(row(db, session, stray.seq)).toMatchObject({ state: 'unknown', outcome: 'not-forwarded', opcode: 0 });
    expect(rows(db, session).length).toBe(3);
  });

  it('marks background requests and keeps the issuing pid and comm', () => {
    const { db } = trace();
    const s = new Script();
    const init = s.req(26, 2, 0, [u32(7), u32(45), u32(0), u32(0)], { pid: 0 });
    s.reply(2, 0, [u32(7), u32(45), Buffer.alloc(56)]);
    const open = s.req(14, 4, 1, [u32(0), u32(0)], { pid: 300 });
    s.reply(4, 0, [openOut(9)]);
    const readahead = s.req(15, 6, 1, readIn(9), { pid: 0 });
    const kworkerRead = s.req(15, 8, 1, readIn(9), { pid: 77 });
    const userRead = s.req(15, 10, 1, readIn(9), { pid: 300 });
    const writeback = s.req(16, 12, 1, writeIn(9, 1), { pid: 77 });
    const userWrite = s.req(16, 14, 1, writeIn(9, 0), { pid: 300 });
    const release = s.req(18, 16, 1, [u64(9), u32(0), u32(0), u64(0)], { pid: 300 });
    for (const u of [6, 8, 10, 12, 14, 16]) s.reply(u, 0, []);
    const { session } = recordScript(db, s, { procs: [[300, 'cat'], [77, 'kworker/u8:2']] });
    expect(row(db, session, init.seq)).toMatchObject({ background: 1, pid: 0, comm: null, state: 'ok' });
    expect(row(db, session, open.seq)).toMatchObject({ background: 0, fh: 9, comm: 'cat' });
    expect(row(db, session, readahead.seq).background).toBe(1);
    expect(row(db, session, kworkerRead.seq)).toMatchObject({ background: 1, comm: 'kworker/u8:2' });
    expect(row(db, session, userRead.seq)).toMatchObject({ background: 0, fh: 9 });
    expect(row(db, session, writeback.seq).background).toBe(1);
    expect(row(db, session, userWrite.seq).background).toBe(0);
    expect(row(db, session, release.seq)).toMatchObject({ background: 1, fh: 9 });
  });

  it('never throws on frames cut by snaplen or garbage bytes', () => {
    const { db } = trace();
    const s = new Script();
    const lookup = s.req(1, 2, 1, [name('a-long-file-name')]);
    s.reply(2, 0, [entryOut(3)]);
    const { frames } = s;
    frames[0] = { ...frames[0], data: frames[0].data.subarray(0, 44) };
    frames[1] = { ...frames[1], data: frames[1].data.subarray(0, 20) };
    s.frames.push({ seq: 2, tsNs: frames[1].tsNs + 10n, fwdNs: null, dir: 0, unique: 8n, opcode: null, error: null, len: 3, data: Buffer.from([1, 2, 3]), writeErrno: 0 });
    s.frames.push({ seq: 3, tsNs: frames[1].tsNs + 20n, fwdNs: null, dir: 1, unique: 8n, opcode: null, error: null, len: 2, data: Buffer.from([1, 2]), writeErrno: 0 });
    const { session } = recordScript(db, s);
    expect(row(db, session, lookup.seq)).toMatchObject({ state: 'ok', path: '/' });
    expect(rows(db, session).length).toBe(2);
  });
});

describe('rebuildLedger', () => {
  it('gives the rows the incremental ledger wrote, whatever the batch sizes and memory window', () => {
    const { db } = trace();
    const s = busyScript();
    const { session } = recordScript(db, s, { batch: 7, endReason: 'server-exit', procs: [[300, 'cat']] });
    const incremental = rows(db, session);
    expect(incremental.length).toBeGreaterThan(100);
    const states = new Set(incremental.map((r) => r.state));
    for (const st of ['ok', 'error', 'interrupted', 'late', 'aborted', 'noreply', 'notify', 'unknown']) expect(states).toContain(st);
    for (const batch of [1, 3, 64, 100_000]) {
      for (const recentMax of [4, 65536]) {
        rebuildLedger(db, session, { batch, recentMax });
        expect(rows(db, session)).toEqual(incremental);
      }
    }
    // And the incremental ledger itself does not depend on its batching.
    const other = trace();
    const again = recordScript(other.db, s, { batch: 1, endReason: 'server-exit', procs: [[300, 'cat']], recentMax: 4 });
    expect(rows(other.db, again.session)).toEqual(incremental);
  });

  it('rebuilds from frames alone: deleting the rows and rebuilding restores them', () => {
    const { db } = trace();
    const { session } = recordScript(db, busyScript(), { endReason: 'unmount' });
    const before = rows(db, session);
    db.prepare('DELETE FROM requests WHERE session = ?').run(session);
    expect(rows(db, session)).toEqual([]);
    rebuildLedger(db, session);
    expect(rows(db, session)).toEqual(before);
  });
});

describe('robustness', () => {
  it.each([0x9e3779b9, 0x1234567])('random bytes never throw, and rebuild still equals the incremental rows (seed %i)', (seed) => {
    const { db } = trace();
    const s = new Script();
    // A deterministic PRNG (xorshift32), so a failure reproduces.
    let x = seed;
    const rnd = (n: number) => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % n;
    };
    const opcodes = [1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 26, 35, 36, 41, 42, 44, 45, 51, 99];
    for (let i = 0; i < 3000; i++) {
      const junk = Buffer.alloc(rnd(300));
      for (let j = 0; j < junk.length; j++) junk[j] = rnd(256);
      const unique = rnd(4) === 0 ? 0 : 2 * rnd(200) + rnd(2);
      if (rnd(2) === 0) {
        const f = s.req(opcodes[rnd(opcodes.length)], unique, rnd(12), [junk], { pid: rnd(3) });
        if (rnd(5) === 0) s.frames[s.frames.length - 1] = { ...f, data: f.data.subarray(0, rnd(f.data.length + 1)) };
      } else {
        const f = s.reply(unique, rnd(3) === 0 ? -rnd(40) : rnd(10), [junk], { writeErrno: [0, 0, 0, 2, 22, 74][rnd(6)], unforwarded: rnd(8) === 0 });
        if (rnd(5) === 0) s.frames[s.frames.length - 1] = { ...f, data: f.data.subarray(0, rnd(f.data.length + 1)) };
      }
    }
    const { session, ledger } = recordScript(db, s, { batch: 97, endReason: 'server-crash', recentMax: 16 });
    expect(ledger.failure).toBeNull();
    const incremental = rows(db, session);
    expect(incremental.length).toBeGreaterThan(1000);
    for (const [batch, recentMax] of [[1000, undefined], [1, 16], [5000, 3]] as const) {
      rebuildLedger(db, session, { batch, recentMax });
      expect(rows(db, session)).toEqual(incremental);
    }
  });
});
