import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Compiles dist/ once for the run (test/helpers/dist.ts), instead of once per test file.
    globalSetup: ['test/global-setup.ts'],
    include: ['src/**/*.test.ts', 'src/**/*.test.tsx', 'test/**/*.test.ts', 'test/**/*.test.tsx'],
    // FUSE tests mount real filesystems; running files in parallel on a 2-core machine
    // makes timings noisy and mounts compete, so files run one after another.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
