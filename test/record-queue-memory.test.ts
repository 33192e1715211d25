// The pump's queue refills a few regions for the whole recording (native/frame_queue.h Region).
//
// Its regions used to be growable buffers: 1 MiB, doubled as frames came, and freed when more than
// two waited to be refilled. Every drain that found none waiting (JS still held the last ones until
// their commit) started a new buffer, and each byte of it was fresh memory, faulted in as the pump
// copied frames into it: 101 of 235 drains of a 12 s fio run, 62% of the ring thread's CPU spent
// zeroing pages. Now a recording allocates a handful of fixed-size regions and, once they have been
// filled, copies into memory that is already there: the bytes it faults in stay a small share of the
// bytes it records. FUSETRACE_BENCH_CPU is where the recorder reports its queue at the end (the
// bench reads it too).
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildExample } from './helpers/build.js';
import { isMounted, runCommand } from './helpers/mount.js';
import { dbIn, recordDirs, recordingTests } from './helpers/record.js';

const { reg, startRecord } = recordingTests();

/** MiB written through the mount, then read back twice with O_DIRECT. */
const MIB = 256;

describe('pump queue memory', () => {
  for (const relay of [false, true]) {
    it(`${relay ? 'the relay' : 'in-process'}: a few regions for ${MIB * 3} MiB of frames, most of them refilled, not faulted in`, async () => {
      const { work, src, mnt } = recordDirs(reg, 'fusetrace-queue-');
      const report = join(work, 'end.json');
      const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work), {
        extra: relay ? ['--relay'] : [],
        env: { ...process.env, FUSETRACE_BENCH_CPU: report },
      });
      const file = join(mnt, 'data');
      const w = await runCommand('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${MIB}`, 'conv=fsync', 'status=none']);
      expect(w.code, w.stderr).toBe(0);
      for (let i = 0; i < 2; i++) {
        const r = await runCommand('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'iflag=direct', 'status=none']);
        expect(r.code, r.stderr).toBe(0);
      }
      const u = await runCommand('umount', [mnt]);
      expect(u.code, u.stderr).toBe(0);
      const ex = await rec.exited;
      expect(ex.code, rec.stderr()).toBe(0);
      expect(isMounted(mnt)).toBe(false);
      const summary = /: (\d+) frames \((\d+) bytes seen\), \d+ errors?, 0 dropped/.exec(rec.stderr());
      expect(summary, rec.stderr()).not.toBeNull();
      expect(rec.stderr()).toMatch(relay ? /; relayed;/ : /; recorded in-process;/);
      const bytes = Number(summary![2]);
      expect(bytes).toBeGreaterThan(3 * MIB * 2 ** 20);
      const end = JSON.parse(readFileSync(report, 'utf8')) as { queueRegions: number; queueFaulted: number };
      // The queue in use, the regions JS holds until their commit, and the spares waiting.
      expect(end.queueRegions).toBeGreaterThanOrEqual(1);
      expect(end.queueRegions).toBeLessThanOrEqual(8);
      // Faulted in: each region once, as far as it was ever filled; the rest of the bytes went
      // into memory already there.
      expect(end.queueFaulted).toBeGreaterThan(0);
      expect(end.queueFaulted).toBeLessThan(bytes / 2);
    }, 180_000);
  }
});
