// End-to-end tests of `fusetrace record`: the real CLI (node bin/fusetrace.js, from dist/), real
// mounts, real FUSE servers (libfuse examples, test/servers, gocryptfs), real SQLite traces.
// Every test registers its mounts and processes with a CleanupRegistry, so a failing test still
// unmounts (never lazily) and stops what it started, by PID.
import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildExample, buildServer } from './helpers/build.js';
import { isMounted, mountAt, runDirect, unmount, waitExit } from './helpers/mount.js';
import { copyInOut, fileChurn, lsTree, populateTree, sha256File, writeDeterministicFile } from './helpers/workloads.js';
import { gocryptfsArgs, gocryptfsInit } from './helpers/gocryptfs.js';
import { CLI, dbIn, expectCompletePairing, FUSE_INTERRUPT, FUSE_NOTIFY_REPLY, inNamespaceAs, readTrace, recordingTests } from './helpers/record.js';

const { reg, startRecord } = recordingTests();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** The server's environment that keeps it on the socket relay (no in-process takeover, native/ring.h). */
const RELAY = { ...process.env, FUSETRACE_INPROCESS: '0' };
const transportOf = (meta: string | null) => JSON.parse(meta!).transport as string;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (pidAlive(pid)) {
    // A zombie is gone for our purposes only once reaped; our children are reaped by node.
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
    if (st === 'Z') return true;
    if (Date.now() > end) return false;
    await sleep(20);
  }
  return true;
}

describe('fusetrace record with libfuse hello', () => {
  for (const transport of ['in-process', 'relay']) {
  it(`records every frame of ls + cat with complete pairing, ends on user unmount with exit 0 (${transport})`, async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    // The relay through the command-line flag here; the other relay tests use FUSETRACE_INPROCESS=0.
    const rec = await startRecord(buildExample('hello'), ['-f'], mnt, dbIn(work), {
      extra: ['--name', 'hello-test', ...(transport === 'relay' ? ['--relay'] : [])],
    });
    expect(mountAt(mnt)?.fsType).toBe('fuse.example-hello');
    const ls = spawnSync('ls', ['-l', mnt], { encoding: 'utf8' });
    expect(ls.stdout).toContain('hello');
    expect(readFileSync(join(mnt, 'hello'), 'utf8')).toBe('Hello World!\n');
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect(await rec.exited).toEqual({ code: 0, signal: null });
    expect(await waitGone(rec.serverPid)).toBe(true);
    expect(isMounted(mnt)).toBe(false);

    const { session, frames, procs } = readTrace(rec.db);
    expect(session).toMatchObject({ end_reason: 'unmount', exit_status: 0, dropped: 0, kernel_minor: 45 });
    expect(transportOf(session.meta)).toBe(transport);
    if (transport === 'relay') {
      // libfuse reads end-of-file instead of ENODEV and exits non-zero; that is recorded, not our status.
      expect(session.server_exit_code).not.toBe(0);
      expect(rec.stderr()).toMatch(/; relayed; ended by unmount/);
    } else {
      // In-process the server holds /dev/fuse itself: it reads ENODEV and exits 0, as natively.
      expect(session.server_exit_code).toBe(0);
      expect(rec.stderr()).toMatch(/; recorded in-process; ended by unmount/);
    }
    expect(session.ended_mono_ns).not.toBeNull();
    expect(session.frames).toBe(frames.length);
    expectCompletePairing(frames);
    expect(frames[0]).toMatchObject({ dir: 0, opcode: 26 }); // FUSE_INIT first
    const opcodes = new Set(frames.filter((f) => f.dir === 0).map((f) => f.opcode));
    for (const op of [1 /* LOOKUP */, 14 /* OPEN */, 15 /* READ */, 18 /* RELEASE */]) expect(opcodes).toContain(op);
    // The READ reply carries the file's bytes.
    const read = frames.find((f) => f.dir === 0 && f.opcode === 15)!;
    const reply = frames.find((f) => f.dir === 1 && f.unique_id === read.unique_id)!;
    expect(reply.data.subarray(16).toString()).toBe('Hello World!\n');
    expect(reply.ts_ns).toBeGreaterThan(read.ts_ns);
    // ls ran as its own process; the reads came from this test's node process.
    expect(procs.map((p) => p.comm)).toEqual(expect.arrayContaining(['ls', 'node']));
    expect(procs.find((p) => p.pid === process.pid)?.comm).toBe('node');
    expect(rec.stderr()).toMatch(/fusetrace: session 1 in .*ended by unmount/);
    // The request ledger ran while recording: one row per request, every one answered.
    const d = new Database(rec.db, { readonly: true });
    try {
      const states = d.prepare('SELECT state, count(*) AS n FROM requests WHERE session = ? GROUP BY state').all(session.id) as Array<{ state: string; n: number }>;
      const byState = Object.fromEntries(states.map((r) => [r.state, r.n]));
      expect(byState.unanswered ?? 0).toBe(0);
      expect((byState.ok ?? 0) + (byState.error ?? 0)).toBe(frames.filter((f) => f.dir === 0).length);
    } finally {
      d.close();
    }
  });
  }

  it('masks the INIT bits that need a real /dev/fuse fd and records the change', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('hello'), ['-f'], mnt, dbIn(work));
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    await rec.exited;
    const { session, frames } = readTrace(rec.db);
    const changes = JSON.parse(session.init_changes!);
    const offered = BigInt(changes.kernelFlags);
    const forwarded = BigInt(changes.kernelFlagsForwarded);
    const PASSTHROUGH = 1n << 37n;
    // The kernel offers FUSE_PASSTHROUGH (6.9+); the server must not see it.
    expect(offered & PASSTHROUGH).toBe(PASSTHROUGH);
    expect(forwarded & PASSTHROUGH).toBe(0n);
    expect(changes.maskedFlags).toContain('FUSE_PASSTHROUGH');
    // The recorded INIT request is the one delivered to the server: flags/flags2 as forwarded.
    const init = frames[0].data;
    const flags = BigInt(init.readUInt32LE(40 + 12)) | (BigInt(init.readUInt32LE(40 + 16)) << 32n);
    expect(flags).toBe(forwarded);
    expect(session.max_write).toBe(changes.maxWrite.forwarded);
  });

  it("keeps the server's own mount options (it mounts by itself) and adds fusetrace's -o", async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('hello'), ['-f', '-o', 'fsname=myhello,ro,clone_fd'], mnt, dbIn(work), {
      extra: ['-o', 'allow_other,default_permissions'],
    });
    const line = readFileSync('/proc/self/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mnt)!;
    const [source, , fstype, options] = line.split(' ');
    // As hello mounts without fusetrace: libfuse adds no subtype to an explicit fsname.
    expect([source, fstype]).toEqual(['myhello', 'fuse']);
    expect(options.split(',')).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev', 'allow_other', 'default_permissions']));
    // Another user can read: allow_other reached the kernel.
    const r = spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', 'cat', join(mnt, 'hello')], { encoding: 'utf8' });
    expect(r.stdout).toBe('Hello World!\n');
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect((await rec.exited).code).toBe(0);
    const meta = JSON.parse(readTrace(rec.db).session.meta!);
    // The server's own mount(2), exactly as it made it (MS_RDONLY|MS_NOSUID|MS_NODEV = 7), and what fusetrace mounted.
    expect(meta.serverMount).toMatchObject({ source: 'myhello', fstype: 'fuse', flags: 7, target: mnt });
    expect(meta.serverMount.data).toMatch(/^fd=\d+,rootmode=40000,user_id=0,group_id=0$/);
    expect(meta.mountOptions).toMatch(/^fd=\d+,rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions$/);
  });

  it('ends with exit 0 on SIGINT and on SIGTERM: unmounted, server gone, trace committed', async () => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const work = reg.tempDir();
      const mnt = reg.mountpoint();
      const rec = await startRecord(buildExample('hello'), ['-f'], mnt, dbIn(work));
      expect(readFileSync(join(mnt, 'hello'), 'utf8')).toBe('Hello World!\n');
      rec.child.kill(sig);
      expect(await rec.exited).toEqual({ code: 0, signal: null });
      expect(isMounted(mnt)).toBe(false);
      expect(await waitGone(rec.serverPid)).toBe(true);
      const { session, frames } = readTrace(rec.db);
      expect(session).toMatchObject({ end_reason: 'signal', exit_status: 0 });
      expect(session.ended_mono_ns).not.toBeNull();
      // The RELEASE after the read may still be outstanding when the signal's unmount ends the
      // connection (expectCompletePairing allows it at the end; seen once in CI): the ledger must
      // then say that the signal ended it.
      expectCompletePairing(frames);
      const d = new Database(rec.db, { readonly: true });
      const states = d.prepare("SELECT opcode, state, outcome FROM requests WHERE state NOT IN ('ok', 'error', 'noreply')").all();
      d.close();
      for (const r of states) expect(r).toEqual({ opcode: 18, state: 'aborted', outcome: 'signal' });
      expect(rec.stderr()).toContain(`${sig} received`);
    }
  });

  it('SIGINT on a busy mount says so and keeps recording; a second SIGINT aborts the connection', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('hello'), ['-f'], mnt, dbIn(work));
    const holder = reg.process(spawn('sleep', ['60'], { cwd: mnt, stdio: 'ignore' })); // cwd keeps the mount busy
    await sleep(200);
    rec.child.kill('SIGINT');
    const deadline = Date.now() + 5000;
    while (!/cannot unmount/.test(rec.stderr()) && Date.now() < deadline) await sleep(50);
    expect(rec.stderr()).toMatch(/fusetrace: cannot unmount .*busy.*signal again to abort the connection/);
    expect(rec.child.exitCode).toBeNull();
    expect(readFileSync(join(mnt, 'hello'), 'utf8')).toBe('Hello World!\n'); // still served
    rec.child.kill('SIGINT');
    expect(await rec.exited).toEqual({ code: 0, signal: null });
    expect(rec.stderr()).toMatch(/SIGINT again: connection aborted/);
    await expect(stat(join(mnt, 'hello'))).rejects.toMatchObject({ code: 'ENOTCONN' });
    holder.kill('SIGKILL');
    await waitExit(holder);
    expect(await unmount(mnt)).toBe('umount');
    const { session } = readTrace(rec.db);
    expect(session).toMatchObject({ end_reason: 'signal', exit_status: 0 });
  });

  // In-process a reply's record is written before its write() and published after it. A server
  // killed in between (FUSETRACE_TEST_WRITE_DELAY_US widens that moment to 1 s) has handed the
  // reply to the kernel; the trace keeps it, as not known to be forwarded, instead of losing it.
  it('keeps the reply a server was writing when it was killed (in-process)', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const env = { ...process.env, FUSETRACE_TEST_WRITE_DELAY_US: '1000000' };
    const rec = await startRecord(buildExample('hello'), ['-f'], mnt, dbIn(work), { env });
    const cat = reg.process(spawn('cat', [join(mnt, 'hello')], { stdio: 'ignore' }));
    await sleep(400); // LOOKUP read, answered, its reply's record not yet published
    process.kill(rec.serverPid, 'SIGKILL');
    await waitExit(cat);
    expect(await rec.exited).toEqual({ code: 137, signal: null });
    expect(rec.stderr()).not.toMatch(/ring bytes lost/);
    const { session, frames } = readTrace(rec.db);
    expect(transportOf(session.meta)).toBe('in-process');
    const lookup = frames.find((f) => f.dir === 0 && f.opcode === 1)!;
    expect(lookup).toBeDefined();
    const reply = frames.find((f) => f.dir === 1 && f.unique_id === lookup.unique_id)!;
    expect(reply).toBeDefined();
    expect(reply.len).toBe(reply.data.readUInt32LE(0));
    expect(reply.fwd_ns).toBeNull();
    expect(await unmount(mnt)).toBe('umount');
  });

  it('mirrors a native crash: the server killed by SIGSEGV leaves a disconnected mount (ENOTCONN), exit 139', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('hello'), ['-f'], mnt, dbIn(work));
    expect(readFileSync(join(mnt, 'hello'), 'utf8')).toBe('Hello World!\n');
    process.kill(rec.serverPid, 'SIGSEGV');
    expect(await rec.exited).toEqual({ code: 139, signal: null });
    // Not lazily unmounted: the mount is still there, and dead.
    expect(isMounted(mnt)).toBe(true);
    await expect(stat(join(mnt, 'hello'))).rejects.toMatchObject({ code: 'ENOTCONN' });
    const { session, frames } = readTrace(rec.db);
    expect(session).toMatchObject({ end_reason: 'server-crash', server_signal: 'SIGSEGV', exit_status: 139 });
    // cat's RELEASE is sent after close(2), in the background: the crash may leave it unanswered.
    expectCompletePairing(frames, { allowUnanswered: new Set([18]) });
    expect(rec.stderr()).toMatch(/left disconnected/);
    expect(await unmount(mnt)).toBe('umount');
  });

  it('keeps everything committed before fusetrace is SIGKILLed; the server then exits', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('hello'), ['-f'], mnt, dbIn(work));
    for (let i = 0; i < 20; i++) expect(readFileSync(join(mnt, 'hello'), 'utf8')).toBe('Hello World!\n');
    await sleep(400); // > 100 ms commit period
    rec.child.kill('SIGKILL');
    expect((await rec.exited).signal).toBe('SIGKILL');
    // Our /dev/fuse fd closed with us: the connection is aborted, the server reads end-of-file.
    expect(await waitGone(rec.serverPid)).toBe(true);
    await expect(stat(join(mnt, 'hello'))).rejects.toMatchObject({ code: 'ENOTCONN' });
    const { session, frames } = readTrace(rec.db);
    expect(session.ended_mono_ns).toBeNull();
    expect(session.end_reason).toBeNull();
    expect(frames.filter((f) => f.dir === 0 && f.opcode === 15).length).toBeGreaterThanOrEqual(1);
    expect(frames.filter((f) => f.dir === 0 && f.opcode === 14).length).toBeGreaterThanOrEqual(20);
    expectCompletePairing(frames, { allowUnanswered: new Set([18]) });
    expect(await unmount(mnt)).toBe('umount');
  });

  it('refuses a busy mountpoint, a missing server and a bad --snaplen with one line and exit 2', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    await runDirect(buildExample('hello'), ['-f'], mnt, { registry: reg });
    const run = (args: string[]) => spawnSync(process.execPath, [CLI, '--db', dbIn(work), 'record', ...args], { encoding: 'utf8', timeout: 20_000 });
    const busy = run(['--', buildExample('hello'), '-f', mnt]);
    expect(busy.status).toBe(2);
    expect(busy.stderr).toMatch(/^fusetrace: mountpoint .* is busy: already a fuse\.example-hello mount/);
    expect(busy.stderr.trim().split('\n')).toHaveLength(1);
    const missing = run(['--', join(work, 'no-such-server'), '-f', work]);
    expect(missing.status).toBe(2);
    expect(missing.stderr.trim()).toBe(`fusetrace: server not found or not executable: ${join(work, 'no-such-server')}`);
    const snap = run(['--snaplen', 'x', '--', buildExample('hello'), '-f', work]);
    expect(snap.status).toBe(2);
    expect(snap.stderr.trim()).toBe("fusetrace: --snaplen must be a positive number of bytes, got 'x'");
    // Without a mountpoint the server itself refuses (it mounts by itself): its status, one line of ours.
    const nomnt = run(['--', buildExample('hello'), '-f']);
    expect(nomnt.status).toBe(2);
    expect(nomnt.stderr).toMatch(/^fusetrace: .*example-hello exited with status 2 before it mounted anything: nothing was recorded$/m);
    expect(existsSync(dbIn(work))).toBe(false); // nothing recorded, no trace file left
    // A trace file that is not ours is refused before the mount: no mount is left unserved.
    const foreign = join(work, 'foreign.db');
    writeFileSync(foreign, 'not a database');
    const free = reg.mountpoint();
    const f = spawnSync(process.execPath, [CLI, '--db', foreign, 'record', '--', buildExample('hello'), '-f', free], { encoding: 'utf8', timeout: 20_000 });
    expect(f.status).toBe(2);
    expect(f.stderr.trim().split('\n')).toHaveLength(1);
    expect(isMounted(free)).toBe(false);
  });

  it('--snaplen keeps only the first bytes of each frame, with the full length', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('hello'), ['-f'], mnt, dbIn(work), { extra: ['--snaplen', '48'] });
    expect(readFileSync(join(mnt, 'hello'), 'utf8')).toBe('Hello World!\n');
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    await rec.exited;
    const { session, frames } = readTrace(rec.db);
    expect(session.snaplen).toBe(48);
    const big = frames.filter((f) => f.len > 48);
    expect(big.length).toBeGreaterThan(0);
    for (const f of frames) expect(f.cap_len).toBe(Math.min(f.len, 48));
  });
});

describe('fusetrace record with libfuse passthrough_ll', () => {
  for (const [variant, transport] of [[[], 'in-process'], [['-o', 'clone_fd'], 'in-process'], [[], 'relay']] as const) {
    it(`serves 200 MB in and out, ls -lR and 2,000-file churn identically to the source ${variant.join(' ')} (${transport})`, async () => {
      const work = reg.tempDir();
      const src = join(work, 'src');
      populateTree(src);
      const mnt = reg.mountpoint();
      const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`, ...variant], mnt, dbIn(work), {
        env: transport === 'relay' ? RELAY : process.env,
      });
      const copy = await copyInOut(mnt, { mb: 200 });
      expect(copy.readBack).toBe(copy.expected);
      expect(copy.copiedOut).toBe(copy.expected);
      expect(copy.statSize).toBe(200 << 20);
      expect(await lsTree(mnt)).toBe(await lsTree(src));
      const churnMnt = fileChurn(mnt, 2000);
      mkdirSync(join(work, 'direct'));
      const churnDirect = fileChurn(join(work, 'direct'), 2000);
      expect(churnMnt.map((p) => [p.phase, p.entries, p.links, p.digest])).toEqual(
        churnDirect.map((p) => [p.phase, p.entries, p.links, p.digest]),
      );
      rec.child.kill('SIGTERM');
      expect(await rec.exited).toEqual({ code: 0, signal: null });
      expect(isMounted(mnt)).toBe(false);
      const { session, frames } = readTrace(rec.db);
      expect(session.dropped).toBe(0);
      expect(transportOf(session.meta)).toBe(transport);
      const { requests } = expectCompletePairing(frames);
      expect(requests).toBeGreaterThan(10_000);
      // The big WRITEs went through whole: max_write is libfuse's 1 MiB unless the socket forced a clamp.
      const writes = frames.filter((f) => f.dir === 0 && f.opcode === 16);
      const written = writes.reduce((s, f) => s + f.data.readUInt32LE(40 + 16), 0);
      expect(written).toBeGreaterThanOrEqual(200 << 20);
      expect(Math.max(...writes.map((f) => f.len))).toBeGreaterThan(128 << 10);
    }, 240_000);
  }
});

describe('hazards', () => {
  // splice_fs answers READ the way passthrough_hp does: vmsplice the header into a pipe, splice
  // the file data behind it, splice the pipe into the fuse fd. Page-cache reads of 128 KiB make
  // replies of 128 KiB + 16, above the ~61 KiB where a pipe->socket splice splits into messages.
  // Relay and in-process with the seccomp filter: libfuse falls back to writev. In-process without
  // it (and with SPLICE_READ too): the preload turns each splice into a recorded read or write.
  for (const [transport, seccomp, splice] of [
    ['relay', true, []],
    ['in-process', true, []],
    ['in-process', false, ['--splice-read']],
  ] as const) {
  it(`splice-writing server: replies > 61 KiB arrive whole (${transport}, ${seccomp ? 'seccomp' : 'no seccomp'} ${splice.join(' ')})`, async () => {
    const work = reg.tempDir();
    const source = join(work, 'source.bin');
    const sha = writeDeterministicFile(source, 8 << 20, 'splice');
    const mnt = reg.mountpoint();
    const env = { ...(transport === 'relay' ? RELAY : process.env), ...(seccomp ? {} : { FUSETRACE_SECCOMP: '0' }) };
    const rec = await startRecord(buildServer('splice_fs'), ['-f', `--source=${source}`, ...splice], mnt, dbIn(work), { env });
    const got = await sha256File(join(mnt, 'big'));
    expect(got).toEqual({ sha256: sha, bytes: 8 << 20 });
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect((await rec.exited).code).toBe(0);
    const { session, frames } = readTrace(rec.db);
    expect(transportOf(session.meta)).toBe(transport);
    expect(session.dropped).toBe(0);
    expectCompletePairing(frames);
    const reads = new Set(frames.filter((f) => f.dir === 0 && f.opcode === 15).map((f) => f.unique_id));
    const replies = frames.filter((f) => f.dir === 1 && reads.has(f.unique_id));
    expect(Math.max(...replies.map((f) => f.len))).toBeGreaterThan(61 << 10);
    expect(replies.every((f) => f.error === 0 && f.write_errno === 0)).toBe(true);
    expect(frames.filter((f) => f.write_errno === 74 /* EBADMSG: partial */)).toEqual([]);
  });
  }

  it('without the seccomp filter the split replies are caught: recorded as partial, never forwarded, requester answered EIO', async () => {
    const work = reg.tempDir();
    const source = join(work, 'source.bin');
    writeDeterministicFile(source, 2 << 20, 'splice');
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildServer('splice_fs'), ['-f', `--source=${source}`], mnt, dbIn(work), {
      env: { ...RELAY, FUSETRACE_SECCOMP: '0' },
    });
    // The read finishes (no hang): the kernel got EIO for the split replies and fell back to
    // smaller reads, whose replies fit in one message.
    const r = spawnSync('dd', [`if=${join(mnt, 'big')}`, 'of=/dev/null', 'bs=1M'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.error).toBeUndefined();
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect((await rec.exited).code).toBe(0);
    const { frames } = readTrace(rec.db);
    const partial = frames.filter((f) => f.write_errno === 74);
    expect(partial.length).toBeGreaterThan(0);
    for (const f of partial) {
      expect(f.dir).toBe(1);
      expect(f.fwd_ns).toBeNull(); // never forwarded
      expect(f.data.length === 0 || f.data.length < 16 || f.data.readUInt32LE(0) !== f.len).toBe(true);
    }
    // The first piece of each split reply names its unique: the proxy answered it with EIO, and
    // the kernel still knew the unique (write_errno 0). Continuation pieces get no reply.
    const partialUniques = new Set(partial.map((f) => f.unique_id));
    const eio = frames.filter((g) => g.dir === 1 && g.len === 16 && g.error === -5 && partialUniques.has(g.unique_id));
    expect(eio.length).toBeGreaterThan(0);
    expect(eio.map((g) => g.write_errno)).toEqual(eio.map(() => 0));
    expect(rec.stderr()).toMatch(/\d+ partial \(not forwarded\)/);
  });

  it('clamps max_write/max_pages in the INIT reply when the socket cannot carry 1 MiB frames', async () => {
    const work = reg.tempDir();
    const src = join(work, 'src');
    mkdirSync(src);
    const mnt = reg.mountpoint();
    // 128 KiB asked, the kernel doubles it: sk_sndbuf 256 KiB, far below a 1 MiB WRITE frame.
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work), {
      // The socket carries frames only on the relay; in-process the server writes /dev/fuse itself.
      env: { ...RELAY, FUSETRACE_SNDBUF: String(128 << 10) },
    });
    const copy = await copyInOut(mnt, { mb: 16 });
    expect(copy.readBack).toBe(copy.expected);
    expect(copy.copiedOut).toBe(copy.expected);
    rec.child.kill('SIGINT');
    expect((await rec.exited).code).toBe(0);
    const { session, frames } = readTrace(rec.db);
    const changes = JSON.parse(session.init_changes!);
    const maxFrame = JSON.parse(session.meta!).maxFrame as number;
    expect(maxFrame).toBeLessThan(256 << 10);
    expect(changes.clamped).toBe(true);
    expect(changes.maxWrite.server).toBe(1 << 20); // libfuse's default
    expect(changes.maxWrite.forwarded).toBeLessThanOrEqual(maxFrame - 80);
    expect(changes.maxPages.forwarded).toBe(Math.floor((maxFrame - 80) / 4096));
    expect(session.max_write).toBe(changes.maxWrite.forwarded);
    // The INIT reply as recorded is the one the kernel got.
    const reply = frames.find((f) => f.dir === 1 && f.unique_id === frames[0].unique_id)!;
    expect(reply.data.readUInt32LE(16 + 20)).toBe(changes.maxWrite.forwarded);
    expect(Math.max(...frames.map((f) => f.len))).toBeLessThanOrEqual(maxFrame);
    expect(frames.filter((f) => f.write_errno !== 0)).toEqual([]);
    expectCompletePairing(frames);
  });

  it('says so in one line, with its status, when the server exits before it mounted anything', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord('sh', ['-c', 'exit 3', 'sh'], mnt, dbIn(work), { noWait: true });
    expect(await rec.exited).toEqual({ code: 3, signal: null });
    expect(rec.stderr()).toBe('fusetrace: sh exited with status 3 before it mounted anything: nothing was recorded\n');
    expect(isMounted(mnt)).toBe(false);
    expect(existsSync(rec.db)).toBe(false);
  });

  it('without interception (FUSETRACE_INTERCEPT=0) says so when the server ignores /dev/fd/N and exits before INIT', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    // `false` stands for a libfuse 2 / fuser program: it never reads the fd it was given.
    const rec = await startRecord('false', [], mnt, dbIn(work), { noWait: true, env: { ...process.env, FUSETRACE_INTERCEPT: '0' } });
    expect(await rec.exited).toEqual({ code: 1, signal: null });
    expect(rec.stderr()).toMatch(/^fusetrace: the server exited before answering FUSE_INIT: it may not accept a mounted fd as \/dev\/fd\/N/m);
    expect(isMounted(mnt)).toBe(false);
    const { session } = readTrace(rec.db);
    expect(session).toMatchObject({ end_reason: 'server-exit', server_exit_code: 1, exit_status: 1 });
  });

  it("a server that exits by itself (SIGTERM to libfuse) is unmounted like fuse_session_unmount would; fusetrace exits with the server's status", async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('hello'), ['-f'], mnt, dbIn(work));
    expect(readFileSync(join(mnt, 'hello'), 'utf8')).toBe('Hello World!\n');
    // libfuse's handler ends the loop; fuse_main() then returns 8 for "terminated by a signal".
    process.kill(rec.serverPid, 'SIGTERM');
    const exit = await rec.exited;
    expect(isMounted(mnt)).toBe(false);
    const { session } = readTrace(rec.db);
    expect(session).toMatchObject({ end_reason: 'server-exit', server_signal: null, exit_status: exit.code });
    expect(session.server_exit_code).toBe(exit.code);
    expect(exit.code).toBe(8);
  });

  it('a SIGINTed read is recorded with its FUSE_INTERRUPT and the EINTR reply; notifies pass both ways', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildServer('interrupt_fs'), ['-f', '--delay-ms=300', '--wait-ms=10000'], mnt, dbIn(work));
    const r = spawnSync(buildServer('sigread'), [join(mnt, 'slow_eintr'), '200'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stdout.trim()).toMatch(/^error EINTR signal=1/);
    const ctl = (name: string) => expect(readFileSync(join(mnt, name), 'utf8')).toBe('ok\n');
    expect(readFileSync(join(mnt, 'data'), 'utf8')).toMatch(/^generation 0/);
    ctl('ctl_inval_inode');
    expect(readFileSync(join(mnt, 'data'), 'utf8')).toMatch(/^generation 1/);
    ctl('ctl_store');
    ctl('ctl_retrieve');
    expect(readFileSync(join(mnt, 'retrieved'), 'utf8')).toMatch(/^stored by notify 1/);
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    await rec.exited;
    const { session, frames } = readTrace(rec.db);
    // interrupt_fs polls the fuse fd before it reads: the takeover happens at that poll.
    expect(transportOf(session.meta)).toBe('in-process');
    expectCompletePairing(frames);
    const intr = frames.find((f) => f.dir === 0 && f.opcode === FUSE_INTERRUPT)!;
    expect(intr).toBeDefined();
    const target = Number(intr.data.readBigUInt64LE(40)); // fuse_interrupt_in.unique
    const read = frames.find((f) => f.dir === 0 && f.unique_id === target)!;
    expect(read.opcode).toBe(15);
    const reply = frames.find((f) => f.dir === 1 && f.unique_id === target)!;
    expect(reply.error).toBe(-4); // -EINTR
    expect(reply.seq).toBeGreaterThan(intr.seq);
    const notifies = frames.filter((f) => f.dir === 1 && f.unique_id === 0);
    expect(notifies.map((f) => f.error)).toEqual(expect.arrayContaining([2 /* INVAL_INODE */, 4 /* STORE */, 5 /* RETRIEVE */]));
    expect(notifies.every((f) => f.write_errno === 0)).toBe(true);
    expect(frames.some((f) => f.dir === 0 && f.opcode === FUSE_NOTIFY_REPLY)).toBe(true);
  });

  /**
   * Killability (hazard 4). The server is SIGSTOPped, four processes each start a LOOKUP in their
   * own directory (separate directory locks), then all four are SIGKILLed. Natively all four die
   * at once (their requests are still pending in the kernel). A request the proxy has read from
   * /dev/fuse counts as sent: its process waits for the reply. The gate keeps at most one request
   * unread in the socket, so three of four die at once; without it (FUSETRACE_GATE=0) none do.
   */
  async function killedQuickly(env: NodeJS.ProcessEnv): Promise<number> {
    const work = reg.tempDir();
    const src = join(work, 'src');
    for (let i = 0; i < 4; i++) mkdirSync(join(src, `d${i}`), { recursive: true });
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work), { env });
    for (let i = 0; i < 4; i++) expect(statSync(join(mnt, `d${i}`)).isDirectory()).toBe(true);
    process.kill(rec.serverPid, 'SIGSTOP');
    reg.defer(() => {
      try { process.kill(rec.serverPid, 'SIGCONT'); } catch { /* gone */ }
    });
    await sleep(300);
    const readers = [0, 1, 2, 3].map((i) => reg.process(spawn('stat', [join(mnt, `d${i}`, 'x')], { stdio: 'ignore' })));
    await sleep(500);
    for (const c of readers) expect(c.exitCode).toBeNull();
    const t0 = Date.now();
    for (const c of readers) c.kill('SIGKILL');
    const deaths = await Promise.all(readers.map((c) => Promise.race([waitExit(c).then(() => Date.now() - t0), sleep(1000).then(() => -1)])));
    process.kill(rec.serverPid, 'SIGCONT');
    await Promise.all(readers.map((c) => waitExit(c)));
    rec.child.kill('SIGTERM');
    expect((await rec.exited).code).toBe(0);
    return deaths.filter((ms) => ms >= 0 && ms < 500).length;
  }

  it('killability: with the server stopped, SIGKILLed readers die at once except the one request held unread', async () => {
    // On the relay the gate holds all but one request back in the kernel.
    expect(await killedQuickly(RELAY)).toBe(3);
    expect(await killedQuickly({ ...RELAY, FUSETRACE_GATE: '0' })).toBe(0);
    // In-process the server reads /dev/fuse itself: every reader dies at once, as natively.
    expect(await killedQuickly(process.env)).toBe(4);
  });
});

describe('in-process takeover', () => {
  // interrupt_fs --nonblock polls, then reads a non-blocking fd (an event loop's): the takeover
  // happens at its first poll, must wait for the pump's answer on that non-blocking socket, and
  // the device it gets in exchange must be non-blocking too (the loop takes EAGAIN for "nothing").
  it('takes over from an event loop that polls a non-blocking fuse fd', async () => {
    const work = reg.tempDir();
    const mnt = reg.mountpoint();
    const rec = await startRecord(buildServer('interrupt_fs'), ['-f', '--nonblock'], mnt, dbIn(work));
    for (let i = 0; i < 5; i++) expect(readFileSync(join(mnt, 'data'), 'utf8')).toMatch(/^generation 0/);
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect(await rec.exited).toEqual({ code: 0, signal: null });
    const { session, frames } = readTrace(rec.db);
    expect(transportOf(session.meta)).toBe('in-process');
    expect(session).toMatchObject({ end_reason: 'unmount', server_exit_code: 0, dropped: 0 });
    expectCompletePairing(frames);
    expect(frames.filter((f) => f.dir === 0 && f.opcode === 15).length).toBeGreaterThan(0); // READs
  });
});

describe('a server that goes to the background', () => {
  // libfuse without -f forks (fuse_daemonize): the process fusetrace started exits 0 at once and
  // its child serves. The session goes on until the unmount, which the child sees and exits on.
  for (const transport of ['in-process', 'relay']) {
    it(`records a daemonizing server until the unmount (${transport})`, async () => {
      const work = reg.tempDir();
      const mnt = reg.mountpoint();
      const server = buildExample('hello');
      const rec = await startRecord(server, [], mnt, dbIn(work), { env: transport === 'relay' ? RELAY : process.env, daemon: true });
      for (let i = 0; i < 3; i++) expect(readFileSync(join(mnt, 'hello'), 'utf8')).toBe('Hello World!\n');
      const serving = () =>
        readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
          try {
            const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
            return argv[0] === server && readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z';
          } catch {
            return false;
          }
        });
      expect(serving().length).toBe(1); // the background child
      // fusetrace notices the fork once the first process has exited and the socket stayed open.
      for (let i = 0; i < 100 && !/the server went to the background/.test(rec.stderr()); i++) await sleep(50);
      expect(rec.stderr()).toMatch(/the server went to the background/);
      expect(spawnSync('umount', [mnt]).status).toBe(0);
      expect(await rec.exited).toEqual({ code: 0, signal: null });
      expect(rec.stderr()).toMatch(/ended by unmount; server in the background/);
      const { session, frames } = readTrace(rec.db);
      expect(transportOf(session.meta)).toBe(transport);
      expect(session).toMatchObject({ end_reason: 'unmount', exit_status: 0 });
      expectCompletePairing(frames);
      // The child saw the unmount and is gone.
      for (let i = 0; i < 100 && serving().length > 0; i++) await sleep(50);
      expect(serving()).toEqual([]);
    });
  }
});

describe('trace order', () => {
  // Replay walks the recorded order, so a reply must come before every request the kernel could
  // only send once it had that reply (a GETATTR after a WRITE's reply sees the new size). The
  // preload reserves a reply's place in the ring before its write; FUSETRACE_TEST_WRITE_DELAY_US
  // holds each server thread 20 ms between the write and the publish, which, with the place taken
  // after the write, let the next request (read by another libfuse worker) in ahead of the reply.
  for (const transport of ['in-process', 'relay']) {
    it(`records each reply before every request read after its write returned (${transport})`, async () => {
      const work = reg.tempDir();
      const src = join(work, 'src');
      mkdirSync(src);
      const mnt = reg.mountpoint();
      const env = { ...(transport === 'relay' ? RELAY : process.env), FUSETRACE_TEST_WRITE_DELAY_US: '20000' };
      const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work), { env });
      for (let i = 0; i < 8; i++) {
        writeFileSync(join(mnt, `f${i}`), 'x'.repeat(i + 1));
        expect(statSync(join(mnt, `f${i}`)).size).toBe(i + 1);
      }
      expect(spawnSync('umount', [mnt]).status).toBe(0);
      expect((await rec.exited).code).toBe(0);
      const { session, frames } = readTrace(rec.db);
      expect(transportOf(session.meta)).toBe(transport);
      expectCompletePairing(frames);
      const replies = frames.filter((f) => f.dir === 1 && f.unique_id !== 0 && f.fwd_ns !== null);
      const requests = frames.filter((f) => f.dir === 0);
      let pairs = 0;
      const misordered: string[] = [];
      for (const p of replies) {
        for (const q of requests) {
          if (q.ts_ns <= p.fwd_ns!) continue;
          pairs++;
          if (q.seq < p.seq) misordered.push(`request seq ${q.seq} (op ${q.opcode}) before reply seq ${p.seq}`);
        }
      }
      expect(pairs).toBeGreaterThan(100);
      expect(misordered).toEqual([]);
    });
  }
});

describe('trace order of interrupts', () => {
  // In-process each server thread records a request after its read() returned. A thread held
  // there (FUSETRACE_TEST_READ_DELAY_US: 400 ms for every request but FUSE_INTERRUPT) lets the
  // INTERRUPT naming its request, read 200 ms later by another passthrough_ll worker, reach the
  // ring first; the pump holds it back until its target is recorded.
  it('records a FUSE_INTERRUPT after the request it names, even when its thread recorded it first', async () => {
    const work = reg.tempDir();
    const src = join(work, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'data'), 'some bytes\n');
    const mnt = reg.mountpoint();
    const env = { ...process.env, FUSETRACE_TEST_READ_DELAY_US: '400000' };
    // cache=never: direct I/O, so the READ is the reader's own request (page-cache reads are sent
    // in the background and never interrupted).
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src},cache=never`], mnt, dbIn(work), { env });
    const r = spawnSync(buildServer('sigread'), [join(mnt, 'data'), '200'], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stdout).toMatch(/signal=1/);
    expect(spawnSync('umount', [mnt]).status).toBe(0);
    expect((await rec.exited).code).toBe(0);
    const { session, frames } = readTrace(rec.db);
    expect(transportOf(session.meta)).toBe('in-process');
    const intr = frames.find((f) => f.dir === 0 && f.opcode === FUSE_INTERRUPT)!;
    expect(intr).toBeDefined();
    const target = Number(intr.data.readBigUInt64LE(40));
    const read = frames.find((f) => f.dir === 0 && f.unique_id === target)!;
    expect(read.opcode).toBe(15);
    // The INTERRUPT was read while the READ's thread was still held: its timestamp is earlier.
    expect(intr.ts_ns).toBeLessThan(read.ts_ns + 400e6);
    expect(intr.seq).toBeGreaterThan(read.seq);
    expectCompletePairing(frames);
  });
});

describe('other servers and users', () => {
  it('gocryptfs (go-fuse) serves a 32 MB copy and a tree through fusetrace', async () => {
    const work = reg.tempDir();
    const cipher = join(work, 'cipher');
    mkdirSync(cipher);
    gocryptfsInit(cipher);
    const mnt = reg.mountpoint();
    const rec = await startRecord('gocryptfs', gocryptfsArgs(cipher), mnt, dbIn(work));
    const copy = await copyInOut(mnt, { mb: 32 });
    expect(copy.readBack).toBe(copy.expected);
    expect(copy.copiedOut).toBe(copy.expected);
    populateTree(join(mnt, 'tree'));
    populateTree(join(work, 'tree'));
    expect(await lsTree(join(mnt, 'tree'))).toBe(await lsTree(join(work, 'tree')));
    rec.child.kill('SIGINT');
    expect((await rec.exited).code).toBe(0);
    const { session, frames } = readTrace(rec.db);
    // Go makes its own syscalls, past the preload's libc wrappers: it never asks to take /dev/fuse
    // over and stays on the relay, by itself.
    expect(transportOf(session.meta)).toBe('relay');
    expect(rec.stderr()).toMatch(/; relayed; /);
    expectCompletePairing(frames);
  }, 120_000);

  it('runs as an ordinary user through fusermount3 (SCM_RIGHTS) and unmounts with fusermount3 -u', async () => {
    const nobody = 65534;
    const work = reg.tempDir();
    chownSync(work, nobody, nobody);
    const mnt = reg.mountpoint();
    chownSync(mnt, nobody, nobody);
    const server = buildExample('hello');
    expect(statSync(server).mode & 0o005).toBe(0o005);
    const rec = await startRecord(server, ['-f'], mnt, dbIn(work), { asUser: nobody });
    const line = readFileSync(`/proc/${rec.pid}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === mnt)!;
    expect(line).toMatch(/ - fuse\.example-hello example-hello rw,user_id=65534,group_id=65534/);
    expect(inNamespaceAs(rec.pid, nobody, ['cat', join(mnt, 'hello')]).stdout).toBe('Hello World!\n');
    rec.child.kill('SIGTERM'); // unshare, sh and setpriv exec()ed: this PID is fusetrace itself
    expect(await rec.exited).toEqual({ code: 0, signal: null });
    expect(rec.stderr()).not.toMatch(/cannot unmount/);
    const { session, frames } = readTrace(rec.db);
    expect(JSON.parse(session.meta!)).toMatchObject({ uid: nobody, mountedVia: 'fusermount3', transport: 'in-process' });
    expect(session).toMatchObject({ end_reason: 'signal', exit_status: 0 });
    expectCompletePairing(frames);
  });
});
