// native().batchScheduling(): every thread of the calling process ends up under SCHED_BATCH, and a
// child it starts inherits it (the replayed server does). Run in a child process, so that this
// test worker keeps its own scheduling.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../test/helpers/fuse-env.js';

const SCHED_BATCH = 3;

describe('batchScheduling', () => {
  it('puts every thread, and a child started after, under SCHED_BATCH', () => {
    const addon = join(repoRoot(), 'build', 'Release', 'fusetrace.node');
    // policy is field 41 of /proc/PID/task/TID/stat (proc(5)), counted after the ")" of comm.
    const script = `
      const fs = require('node:fs');
      const policies = (pid) => fs.readdirSync('/proc/' + pid + '/task').map((t) => {
        const stat = fs.readFileSync('/proc/' + pid + '/task/' + t + '/stat', 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[41 - 3]);
      });
      const before = policies(process.pid);
      const changed = require(${JSON.stringify(addon)}).batchScheduling();
      const after = policies(process.pid);
      const child = require('node:child_process').spawnSync('sh', ['-c', 'cat /proc/$$/stat'], { encoding: 'utf8' }).stdout;
      const childPolicy = Number(child.slice(child.lastIndexOf(')') + 2).split(' ')[41 - 3]);
      console.log(JSON.stringify({ before, changed, after, childPolicy }));
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { before: number[]; changed: number; after: number[]; childPolicy: number };
    expect(out.before.every((p) => p === 0)).toBe(true);
    expect(out.changed).toBe(out.after.length);
    expect(out.after.every((p) => p === SCHED_BATCH)).toBe(true);
    expect(out.childPolicy).toBe(SCHED_BATCH);
  });
});
