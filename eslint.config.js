// ESLint (flat config): typescript-eslint's type-aware recommended rules on
// the TypeScript (the package, its tests, the lab), ESLint's recommended
// rules on the plain JavaScript (scripts, benchmarks, configs). `npm run
// lint`, which `npm test` (and so CI) runs. What is switched off, and why:
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** The Node globals the .mjs scripts and benchmarks use (no browser, no test globals). */
const NODE_GLOBALS = Object.fromEntries(
  [
    'process',
    'console',
    'Buffer',
    'URL',
    'setTimeout',
    'clearTimeout',
    'setImmediate',
    'performance',
    'queueMicrotask',
    'structuredClone',
  ].map((g) => [g, 'readonly']),
);

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.lab/', '.readme-examples/', '.stryker-tmp/', 'reports/', 'build/', 'test/lab/work/'] },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['vitest.config.ts'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // A leading underscore marks a parameter kept for its position (an interface's
      // signature), as tsconfig's noUnusedParameters already accepts.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // Cleanup paths catch an error (typed unknown), go on closing, and rethrow the
      // first one as it was: rethrowing an unknown is allowed, throwing a non-Error is not.
      '@typescript-eslint/only-throw-error': ['error', { allowThrowingUnknown: true }],
    },
  },
  {
    // In the suites only (the package keeps every rule):
    files: ['test/**/*.ts'],
    rules: {
      // The CLI's --json output and parsed protocol frames are `any` by nature and are
      // checked with expect(); typing every access would add casts the assertions make
      // pointless.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      // The FSM tables and the path oracle feed numbers that are no state (8, -1) on
      // purpose and compare them with MigState members.
      '@typescript-eslint/no-unsafe-enum-comparison': 'off',
      // Test doubles implement the async device contracts; `async` turns their throws
      // into rejections, as the real implementations give.
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    languageOptions: { globals: NODE_GLOBALS },
  },
);
