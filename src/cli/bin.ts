#!/usr/bin/env node
// The `vfio-mig` executable (package.json "bin"). It always runs the CLI:
// main.ts stays an importable module with no "am I the entry point?" guess,
// which a symlink (node_modules/.bin) or a '#' in the path would defeat.
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  exit: (status) => process.exit(status),
});
