// vitest config for the VM lab (test/lab/run.sh runs it inside the guest).
// The checkout is on a read-only 9p mount there: caches and temp files go to
// the guest's /tmp, the JSON report to the results share. Test files run one
// after another: they share the two mtty instances.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const tmp = process.env.LAB_TMP ?? '/tmp/vfio-mig-lab';
const results = process.env.LAB_RESULTS;

export default defineConfig({
  root: fileURLToPath(new URL('../..', import.meta.url)),
  cacheDir: `${tmp}/vite`,
  test: {
    include: ['test/lab/**/*.test.ts'],
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: results ? ['verbose', ['json', { outputFile: `${results}/vitest.json` }]] : ['verbose'],
  },
});
