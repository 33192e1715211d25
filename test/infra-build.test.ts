import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { requireFuse } from './helpers/fuse-env.js';
import { buildExample } from './helpers/build.js';

describe('buildExample', () => {
  it('compiles every libfuse example the tests use, and caches the binary', () => {
    requireFuse();
    for (const name of ['hello', 'hello_ll', 'passthrough', 'passthrough_ll', 'passthrough_fh', 'notify_inval_inode', 'notify_store_retrieve']) {
      const bin = buildExample(name);
      const help = spawnSync(bin, ['--help'], { encoding: 'utf8' });
      expect(help.stdout + help.stderr, name).toMatch(/usage|options/i);
      const before = statSync(bin).mtimeMs;
      expect(buildExample(name)).toBe(bin);
      expect(statSync(bin).mtimeMs).toBe(before);
    }
  });
});
