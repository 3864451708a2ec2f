// vitest config for the VM lab (test/lab/run.sh runs it inside the guest).
// The checkout is on a read-only 9p mount there: caches and temp files go to
// the guest's /tmp, the JSON report to the results share. Test files run one
// after another: they share the two mtty instances.
// The tests exercise the built package (dist/, what `import 'vfio-mig-shim'`
// loads; run.sh builds it): every `../index.js` import resolves to
// dist/index.js (and `../testing.js` to dist/testing.js) and dist/ is left to
// node, untransformed — transforming the TypeScript sources under TCG costs
// about a minute.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const root = fileURLToPath(new URL('../..', import.meta.url));
const tmp = process.env.LAB_TMP ?? '/tmp/vfio-mig-lab';
const results = process.env.LAB_RESULTS;

export default defineConfig({
  root,
  cacheDir: `${tmp}/vite`,
  resolve: {
    alias: [
      { find: /^(\.\.\/)+index\.js$/, replacement: `${root}dist/index.js` },
      { find: /^(\.\.\/)+testing\.js$/, replacement: `${root}dist/testing.js` },
    ],
  },
  test: {
    include: ['test/lab/**/*.test.ts'],
    fileParallelism: false,
    maxWorkers: 1,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    server: { deps: { external: [/\/dist\//] } },
    reporters: results ? ['verbose', ['json', { outputFile: `${results}/vitest.json` }]] : ['verbose'],
  },
});
