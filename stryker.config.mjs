// Mutation testing of translate/ and legacy/ with StrykerJS and its vitest
// runner: `npm run mutate` (builds first: some tests import the package
// through dist/). Not part of `npm test` or CI: a full run takes long on a
// small machine. Reports go to reports/mutation/; `incremental` lets a rerun
// reuse the results for code and tests that did not change.
// One file: npm run mutate -- --mutate legacy/v1-transitions.ts
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: 'vitest',
  vitest: { configFile: 'vitest.config.ts' },
  coverageAnalysis: 'perTest',
  mutate: [
    'translate/**/*.ts',
    'legacy/**/*.ts',
    // the differential harness is test machinery, not the product
    '!translate/differential/**',
  ],
  ignorePatterns: ['.lab', '.readme-examples', 'test/lab/work', 'reports'],
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
