// The in-process ring at its wrap (issue 12: the crash of passthrough_ll in malloc under load).
//
// When a record did not fit before the end of the ring's data area, the preload wrote a SKIP
// record there: its stamp and, 8 bytes in, its length. With exactly 8 bytes left, that length went
// past the ring, into whatever the server had mapped next; twice it was a malloc arena's header
// (its arena pointer's low half became 8), and the server later died in free() or calloc(). A skip
// is now its stamp alone, and the server maps the ring with an inaccessible page after it.
//
// FUSETRACE_TEST_RING_TAIL=N (native/ring_consumer.cc) starts the ring N bytes before its end, so
// the first record after the takeover wraps with a skip of exactly N bytes; the 6 MiB written
// and read back then wrap the (smallest, FUSETRACE_RING_BYTES=1) ring a few more times. 8 is the
// shortest skip (the one that overran), 64 one exactly a record header long.
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { buildExample } from './helpers/build.js';
import { isMounted, runCommand } from './helpers/mount.js';
import { dbIn, expectCompletePairing, readTrace, recordingTests } from './helpers/record.js';

const { reg, startRecord } = recordingTests();

describe('in-process ring wrap', () => {
  for (const tail of [8, 64]) {
    it(`a first record that meets ${tail} bytes before the ring's end wraps cleanly`, async () => {
      const work = reg.tempDir('fusetrace-ring-');
      const src = join(work, 'src');
      const mnt = join(work, 'mnt');
      mkdirSync(src);
      mkdirSync(mnt);
      const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work), {
        env: { ...process.env, FUSETRACE_TEST_RING_TAIL: String(tail), FUSETRACE_RING_BYTES: '1' },
      });
      const payload = randomBytes(6 << 20);
      writeFileSync(join(mnt, 'data'), payload);
      expect(statSync(join(mnt, 'data')).size).toBe(payload.length);
      const back = readFileSync(join(mnt, 'data'));
      expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));

      const u = await runCommand('umount', [mnt]);
      expect(u.code, u.stderr).toBe(0);
      const ex = await rec.exited;
      expect(ex.code, rec.stderr()).toBe(0);
      expect(isMounted(mnt)).toBe(false);
      expect(rec.stderr()).toMatch(/, 0 dropped[,;].*recorded in-process; ended by unmount; server exited 0$/m);
      const t = readTrace(dbIn(work));
      expect(t.session.server_exit_code).toBe(0);
      expect(t.session.server_signal).toBeNull();
      const { requests } = expectCompletePairing(t.frames, { allowUnanswered: new Set([38 /* DESTROY */]) });
      // Many times the ring: 6 MiB written and read through a ring of about 2 MiB.
      const bytes = t.frames.reduce((n, f) => n + f.len, 0);
      expect(bytes).toBeGreaterThan(12 << 20);
      expect(requests).toBeGreaterThan(50);
    }, 60_000);
  }
});
