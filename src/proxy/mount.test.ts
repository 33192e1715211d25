// unmountFuse through fusermount3 when /etc/mtab misses the mount: a fake fusermount3 first on
// PATH says what the real one says when its read of /proc/self/mounts skipped the line.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unmountFuse } from './mount.js';

let dir: string;
let savedPath: string | undefined;

/** A fusermount3 that fails with "not found" `failures` times (every time with -1), then succeeds; it counts its calls. */
function fakeFusermount(failures: number): void {
  writeFileSync(
    join(dir, 'fusermount3'),
    `#!/bin/sh
n=$(cat "${dir}/calls" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "${dir}/calls"
if [ ${failures} -lt 0 ] || [ $n -le ${failures} ]; then echo "fusermount3: entry for $3 not found in /etc/mtab" >&2; exit 1; fi
exit 0
`,
  );
  chmodSync(join(dir, 'fusermount3'), 0o755);
}

const calls = () => Number(readFileSync(join(dir, 'calls'), 'utf8'));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fusetrace-fakefm-'));
  savedPath = process.env.PATH;
  process.env.PATH = `${dir}:${savedPath}`;
});
afterEach(() => {
  process.env.PATH = savedPath;
  rmSync(dir, { recursive: true, force: true });
});

describe('unmountFuse via fusermount3', () => {
  it('asks again when fusermount3 misses the mount in /etc/mtab', async () => {
    fakeFusermount(2);
    await unmountFuse({ mountpoint: join(dir, 'mnt'), via: 'fusermount3' });
    expect(calls()).toBe(3);
  });

  it('takes a mount that mountinfo does not show either for unmounted', async () => {
    fakeFusermount(-1);
    await unmountFuse({ mountpoint: join(dir, 'mnt'), via: 'fusermount3' });
    expect(calls()).toBe(4);
  });

  it('still fails on any other error', async () => {
    writeFileSync(join(dir, 'fusermount3'), '#!/bin/sh\necho "fusermount3: failed to unmount $3: Device or resource busy" >&2\nexit 1\n');
    chmodSync(join(dir, 'fusermount3'), 0o755);
    await expect(unmountFuse({ mountpoint: join(dir, 'mnt'), via: 'fusermount3' })).rejects.toThrow(/fusermount3 -u: .*busy/);
  });
});
