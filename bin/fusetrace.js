#!/usr/bin/env -S node --no-concurrent-recompilation
// --no-concurrent-recompilation: V8 optimises hot functions on the main thread instead of on a
// background compiler thread. While recording, the background compiler competed with the FUSE
// server and its callers for this machine's 2 CPUs: find+stat over 20,000 names through
// `fusetrace record` took 0.76-0.93 s with it and 0.61-0.71 s without (direct: 0.56-0.62 s).
import { run } from '../dist/src/cli/main.js';
run();
