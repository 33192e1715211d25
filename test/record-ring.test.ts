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
//
// And the ring is populated when it is made and mapped, so the server's first lap through it
// takes no page faults in its request path.
import { describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { buildExample } from './helpers/build.js';
import { isMounted, runCommand } from './helpers/mount.js';
import { dbIn, expectCompletePairing, readTrace, recordDirs, recordingTests } from './helpers/record.js';

const { reg, startRecord } = recordingTests();

describe('in-process ring wrap', () => {
  for (const tail of [8, 64]) {
    it(`a first record that meets ${tail} bytes before the ring's end wraps cleanly`, async () => {
      const { work, src, mnt } = recordDirs(reg, 'fusetrace-ring-');
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

  it("the server has the whole ring mapped from the takeover on, not a page fault per 4 KiB of its first lap", async () => {
    const { work, src, mnt } = recordDirs(reg, 'fusetrace-ring-');
    writeFileSync(join(src, 'f'), 'x');
    const rec = await startRecord(buildExample('passthrough_ll'), ['-f', '-o', `source=${src}`], mnt, dbIn(work));
    // A few requests: the first read after INIT takes the device over and maps the ring.
    let ringKiB = 0;
    let sizeKiB = 0;
    for (let i = 0; i < 100 && ringKiB === 0; i++) {
      expect(readFileSync(join(mnt, 'f'), 'utf8')).toBe('x');
      const smaps = readFileSync(`/proc/${rec.serverPid}/smaps`, 'utf8');
      const at = smaps.indexOf('/memfd:fusetrace-ring');
      if (at >= 0) {
        const entry = smaps.slice(at, smaps.indexOf('VmFlags', at));
        sizeKiB = Number(/\nSize:\s+(\d+) kB/.exec(entry)![1]);
        ringKiB = Number(/\nRss:\s+(\d+) kB/.exec(entry)![1]);
      } else {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    // The default ring: a 64 MiB data area after a 4 KiB header, all of it resident though only a
    // few hundred bytes of records went through.
    expect(sizeKiB).toBeGreaterThanOrEqual(64 * 1024);
    expect(ringKiB).toBeGreaterThanOrEqual(64 * 1024);
    const u = await runCommand('umount', [mnt]);
    expect(u.code, u.stderr).toBe(0);
    expect((await rec.exited).code, rec.stderr()).toBe(0);
    expect(rec.stderr()).toMatch(/recorded in-process/);
  }, 60_000);
});
