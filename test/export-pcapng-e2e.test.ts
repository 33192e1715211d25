// `fusetrace export --format pcapng` on a real recorded session (the demo filesystem server under
// `fusetrace record`: a 300 ms slow.txt, wait-anyway answered after 400 ms, an EIO, a directory
// listing, a write), opened with Debian's tshark and the dissector `fusetrace wireshark` prints: every
// packet has the opcode the trace has, requests and replies point at each other, and a display
// filter on fuse.time selects exactly the slow READs the ledger has. Then a bundle of the same
// session with its data redacted still replays against the demo server with `--data length`.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs, { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { TraceReader } from '../src/store/reader.js';
import { CleanupRegistry } from './helpers/mount.js';
import { runCli } from './demo-helpers.js';
import { buildCli, recorder } from './helpers/record.js';
import { requireFuse } from './helpers/fuse-env.js';
import { demoServerArgv, demoServerPath } from '../src/demo/fixture.js';
import { generateDissector } from '../src/export/wireshark.js';
import { opcodeName } from '../src/protocol/index.js';

// One recording for the whole file: its directory goes when the file is done.
const reg = new CleanupRegistry();
afterAll(() => reg.cleanup());

let work = '';
let db = '';
let session = 0;

beforeAll(async () => {
  requireFuse();
  buildCli();
  if (spawnSync('tshark', ['--version']).status !== 0) throw new Error('tshark is missing: apt-get install tshark (the pcapng tests never skip)');
  work = reg.tempDir('fusetrace-pcapng-test-');
  db = join(work, 'trace.db');
  const mnt = reg.mountpoint();
  const rec = await recorder(reg)(process.execPath, [demoServerPath()], mnt, db);
  for (const f of ['hello.txt', 'slow.txt', 'wait-anyway']) fs.readFileSync(join(mnt, f));
  expect(() => fs.readFileSync(join(mnt, 'broken'))).toThrow(/EIO/);
  fs.readdirSync(join(mnt, 'notes'));
  // One WRITE frame over 256 KiB: Wireshark reads no longer packet, so the export must cut it.
  fs.writeFileSync(join(mnt, 'scratch.txt'), Buffer.alloc(300_000, 'w'));
  expect(spawnSync('umount', [mnt]).status).toBe(0);
  await rec.exited;
  session = 1;
}, 120_000);

/** Runs tshark with the dissector; fails on any Lua error (tshark itself still exits 0 then). */
function tshark(lua: string, args: string[]): string {
  const r = spawnSync('tshark', ['-X', `lua_script:${lua}`, ...args], { encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  expect(r.stderr).not.toMatch(/Lua: Error|lua_script|Error during loading/);
  return r.stdout;
}

interface Packet {
  number: number;
  dir: number;
  unique: bigint;
  opcode: number;
  op: string;
  responseIn: number | null;
  responseTo: number | null;
  time: number | null;
}

function fieldsOf(lua: string, pcap: string, filter?: string): Packet[] {
  const fields = ['frame.number', 'fuse.dir', 'fuse.unique', 'fuse.opcode', 'fuse.op', 'fuse.response_in', 'fuse.response_to', 'fuse.time'];
  const out = tshark(lua, ['-r', pcap, '-T', 'fields', '-E', 'separator=\t', ...fields.flatMap((f) => ['-e', f]), ...(filter ? ['-Y', filter] : [])]);
  return out.trimEnd().split('\n').filter(Boolean).map((l) => {
    const c = l.split('\t');
    return {
      number: Number(c[0]),
      dir: Number(c[1]),
      unique: BigInt(c[2]!),
      opcode: Number(c[3]),
      op: c[4]!,
      responseIn: c[5] ? Number(c[5]) : null,
      responseTo: c[6] ? Number(c[6]) : null,
      time: c[7] ? Number(c[7]) : null,
    };
  });
}

describe('export --format pcapng with the generated Wireshark dissector', () => {
  it('each frame a packet with its opcode, request/response tracking, and fuse.time selecting exactly the slow READs', async () => {
    const pcap = join(work, 'trace.pcapng');
    const exp = await runCli(['--db', db, 'export', String(session), '--format', 'pcapng', '-o', pcap], 30_000);
    expect(exp.code, exp.stderr).toBe(0);
    const ws = await runCli(['wireshark'], 30_000);
    expect(ws.code, ws.stderr).toBe(0);
    const lua = ws.stdout.trim();
    // The shipped file is exactly what the protocol tables generate now.
    expect(readFileSync(lua, 'utf8')).toBe(generateDissector());

    const h = new Database(db, { readonly: true });
    let frames: Array<{ seq: number; dir: number; unique_id: bigint; opcode: number | null }>;
    let requests: Array<{ seq: number; reply_seq: number | null; opcode: number; unique_id: bigint; dur_ns: number | null }>;
    try {
      frames = [...new TraceReader(h).frames(session)].map((f) => ({ seq: f.seq, dir: f.dir, unique_id: BigInt.asIntN(64, f.unique), opcode: f.opcode }));
      requests = h.prepare('SELECT seq, reply_seq, opcode, unique_id, dur_ns FROM requests WHERE session = ?').all(session) as typeof requests;
    } finally {
      h.close();
    }
    const packets = fieldsOf(lua, pcap);
    expect(packets.length).toBe(frames.length);
    const h2 = new Database(db, { readonly: true });
    try {
      expect(Math.max(...[...new TraceReader(h2).frames(session)].map((f) => f.len))).toBeGreaterThan(262144);
    } finally {
      h2.close();
    }
    const bySeq = new Map(requests.map((r) => [r.seq, r]));
    const byReplySeq = new Map(requests.filter((r) => r.reply_seq !== null).map((r) => [r.reply_seq!, r]));
    let paired = 0;
    frames.forEach((f, i) => {
      const p = packets[i]!;
      expect(p.number).toBe(i + 1);
      expect(p.dir).toBe(f.dir);
      expect(p.unique).toBe(BigInt(f.unique_id));
      if (f.dir === 0) {
        // Requests: the opcode the kernel sent, by name; the reply's packet when the ledger has one.
        expect(p.opcode).toBe(f.opcode);
        expect(p.op).toBe(opcodeName(f.opcode!));
        const r = bySeq.get(f.seq);
        if (r?.reply_seq != null) {
          expect(p.responseIn).toBe(r.reply_seq + 1);
          paired++;
        }
      } else if (byReplySeq.has(f.seq)) {
        const r = byReplySeq.get(f.seq)!;
        expect(p.opcode).toBe(r.opcode);
        expect(p.responseTo).toBe(r.seq + 1);
        expect(p.time).toBeCloseTo(r.dur_ns! / 1e9, 6);
      }
    });
    expect(paired).toBeGreaterThan(20);

    // The display filter of the issue: exactly the READs the ledger says took longer than 200 ms.
    const slow = fieldsOf(lua, pcap, 'fuse.opcode == "READ" && fuse.time > 0.2');
    const expected = requests.filter((r) => r.opcode === 15 && r.dur_ns !== null && r.dur_ns > 0.2e9).map((r) => BigInt(r.unique_id)).sort();
    expect(expected.length).toBe(2); // slow.txt (300 ms) and wait-anyway (400 ms)
    expect(slow.map((p) => p.unique).sort()).toEqual(expected);
    expect(slow.every((p) => p.dir === 1 && p.op === 'READ')).toBe(true);

    // tshark -z statistics over the dissector's fields.
    const stats = tshark(lua, ['-r', pcap, '-q', '-z', 'io,stat,0,COUNT(fuse.time)fuse.time && fuse.opcode == "READ",MAX(fuse.time)fuse.time && fuse.opcode == "READ"']);
    const readReplies = requests.filter((r) => r.opcode === 15 && r.reply_seq !== null).length;
    expect(stats).toMatch(new RegExp(`\\|\\s+${readReplies}\\s+\\|`));

    // The packet list's Info of every request is `show --frames`'s line for it (same tables, same printer rules).
    const shown = (await runCli(['--db', db, 'show', String(session), '--frames'], 30_000)).stdout
      .split('\n').map((l) => l.replace(/^[\d.]+ #\d+ /, '').replace(/ \[write .*\]$/, '')).filter((l) => l.startsWith('rx ')).sort();
    const info = tshark(lua, ['-r', pcap, '-T', 'fields', '-e', '_ws.col.Info', '-Y', 'fuse.dir == 0']).trimEnd().split('\n').sort();
    expect(info.length).toBe(frames.filter((f) => f.dir === 0).length);
    expect(info).toEqual(shown);

    // Field names as show --json names them: fuse_read_in.offset is fuse.read_in.offset.
    const verbose = tshark(lua, ['-r', pcap, '-V', '-O', 'fuse', '-Y', 'fuse.opcode == "LOOKUP" && fuse.dir == 0']);
    expect(verbose).toMatch(/fuse_in_header\.nodeid: 1 \(n1\)/);
    expect(verbose).toMatch(/name\[0\] name: slow\.txt/);
    expect(verbose).not.toMatch(/Malformed|Lua Error/);
  }, 120_000);

  it('--filter keeps only the matching requests and their replies, renumbered and still paired', async () => {
    const pcap = join(work, 'reads.pcapng');
    const exp = await runCli(['--db', db, 'export', String(session), '--format', 'pcapng', '--filter', 'op==READ && dur>200ms', '-o', pcap], 30_000);
    expect(exp.code, exp.stderr).toBe(0);
    const lua = (await runCli(['wireshark'], 30_000)).stdout.trim();
    const packets = fieldsOf(lua, pcap).filter((p) => p.op === 'READ');
    expect(packets.length).toBe(4);
    for (const p of packets) {
      if (p.dir === 0) expect(packets.find((q) => q.number === p.responseIn)?.unique).toBe(p.unique);
      else expect(p.time!).toBeGreaterThan(0.2);
    }
  }, 60_000);

  it('--install puts the dissector where tshark loads it by itself', async () => {
    const home = join(work, 'home');
    fs.mkdirSync(home);
    const r = await runCli(['wireshark', '--install'], 30_000, { HOME: home });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(join(home, '.local', 'lib', 'wireshark', 'plugins', 'fusetrace.lua'));
    expect(readFileSync(r.stdout.trim(), 'utf8')).toBe(generateDissector());
    const pcap = join(work, 'install.pcapng');
    expect((await runCli(['--db', db, 'export', '--format', 'pcapng', '-o', pcap], 30_000)).code).toBe(0);
    const t = spawnSync('tshark', ['-r', pcap, '-T', 'fields', '-e', 'fuse.op', '-Y', 'fuse.opcode == "OPEN" && fuse.dir == 0'], { encoding: 'utf8', env: { ...process.env, HOME: home }, timeout: 60_000 });
    expect(t.status, t.stderr).toBe(0);
    expect(t.stdout.trim().split('\n').every((l) => l === 'OPEN')).toBe(true);
    expect(t.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(5);
  }, 60_000);

  it('a bundle with the data redacted replays against the demo server with --data length, every reply matching', async () => {
    const bundle = join(work, 'data-only.db');
    const b = await runCli(['--db', db, 'bundle', String(session), '-o', bundle, '--redact', 'data'], 30_000);
    expect(b.code, b.stderr).toBe(0);
    const replay = await runCli(['--db', bundle, 'replay', '--data', 'length', '--', ...demoServerArgv()], 60_000);
    expect(replay.code, `${replay.stdout}${replay.stderr}`).toBe(0);
    expect(replay.stdout + replay.stderr).toMatch(/all replies matched/);
  }, 90_000);
});
