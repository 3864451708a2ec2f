// Mutation testing of translate/ and legacy/ with StrykerJS and its vitest
// runner: `npm run mutate` (builds first: some tests import the package
// through dist/). Not part of `npm test` or CI: a full run takes long on a
// small machine. Reports go to reports/mutation/; `incremental` lets a rerun
// reuse the results for code and tests that did not change.
// One file: npm run mutate -- --mutate legacy/v1-transitions.ts
// The default scope is the translators and the v1 region (translate/*.ts,
// legacy/*.ts: 1164 mutants, 30 to 55 minutes at concurrency 2 on a quiet
// 2-core machine). The QEMU client models (legacy/qemu, checked against real
// QEMU's recorded traces) are a run of their own:
//   npm run mutate -- --mutate 'legacy/qemu/**/*.ts'
// A mutant in module-level code that makes a module throw on import is
// reported "Survived" by the vitest runner although every test importing it
// fails (stryker-js issues 6144/6150): check such survivors by hand.
// docs/mutation.md has the last triage.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.config.ts' },
  coverageAnalysis: 'perTest',
  // translate/differential is the differential harness: test machinery, not the product
  mutate: ['translate/*.ts', 'legacy/*.ts'],
  ignorePatterns: ['.lab', '.readme-examples', 'test/lab/work', 'reports'],
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
