// Issue 12 item 1: a full disk under the trace never reaches the filesystem being traced. The trace
// lives on a 20 MB tmpfs this test mounts (and unmounts); 100 MB are written through libfuse's
// passthrough_ll under `fusetrace record`. The application's write completes and is correct, the
// mount keeps working until the unmount, fusetrace says in one line that recording stopped, and
// its summary counts exactly the frames the file holds.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { buildExample } from './helpers/build.js';
import { isMounted, runCommand } from './helpers/mount.js';
import { CLI, recordingTests } from './helpers/record.js';
import { sha256File, writeDeterministicFile, deterministicSha256 } from './helpers/workloads.js';

const { reg, startRecord } = recordingTests();

const MB = 100;

describe('a full disk under the trace (issue 12 item 1)', () => {
  it('100 MB written through the mount complete and correct while the 20 MB trace disk fills; the summary equals what is stored', async () => {
    const work = reg.tempDir('fusetrace-diskfull-');
    const src = join(work, 'src');
    const mnt = join(work, 'mnt');
    const small = join(work, 'small');
    mkdirSync(src);
    mkdirSync(mnt);
    mkdirSync(small);
    const m = await runCommand('mount', ['-t', 'tmpfs', '-o', 'size=20m,mode=0700', 'fusetrace-test-full', small]);
    expect(m.code, m.stderr).toBe(0);
    reg.mount(small);
    const db = join(small, 'trace.db');
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, db);

    const sha = writeDeterministicFile(join(mnt, 'big'), MB * 1024 * 1024, 'diskfull');
    expect(sha).toBe(deterministicSha256(MB * 1024 * 1024, 'diskfull'));
    // Correct through the mount and underneath it.
    expect((await sha256File(join(mnt, 'big'))).sha256).toBe(sha);
    expect((await sha256File(join(src, 'big'))).sha256).toBe(sha);
    // Still usable after the trace stopped.
    expect(await readdir(mnt)).toEqual(['big']);
    expect(isMounted(mnt)).toBe(true);
    expect(rec.stderr()).toMatch(/full.*recording stops here, the filesystem keeps working/);

    const u = await runCommand('umount', [mnt]);
    expect(u.code, u.stderr).toBe(0);
    const ex = await rec.exited;
    const err = rec.stderr();
    expect(err).not.toMatch(/internal error|\n\s+at |Transport endpoint/);
    expect(ex.code === 0 || ex.code === 1, err).toBe(true);
    const summary = /session \d+ in .*: (\d+) frames \(\d+ bytes seen\), (\d+) frames not kept/.exec(err);
    expect(summary, err).not.toBeNull();
    expect(Number(summary![2])).toBeGreaterThan(0);
    const d = new Database(db, { readonly: true });
    try {
      // What is stored: the frames in the batches (the ground truth; the request index derived from
      // them may stop short where the disk filled before the derivation caught up).
      const stored = d.prepare('SELECT coalesce(sum(count), 0) FROM batches').pluck().get() as number;
      expect(Number(summary![1])).toBe(stored);
    } finally {
      d.close();
    }
    // The trace stays readable on the full disk: a read command shows what is indexed and, where
    // the rest cannot be indexed there, says so in one line instead of failing.
    const stats = spawnSync(process.execPath, [CLI, '--db', db, 'stats'], { encoding: 'utf8', timeout: 60_000 });
    expect(stats.status, stats.stderr).toBe(0);
    expect(stats.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(stats.stderr.split('\n').filter(Boolean).every((l) => /^fusetrace: (session \d+: \d+ frames are not in the request index and cannot be added now \(.*full.*\); showing what is indexed|completing the request index of session \d+)/.test(l)), stats.stderr).toBe(true);
  }, 120_000);
});
