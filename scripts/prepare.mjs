// `npm run prepare`: build dist/, the package's only runnable form. npm runs it
//  * after `npm install` in this checkout;
//  * for `npm install <git url>`, in the clone, after installing its
//    devDependencies (typescript among them);
//  * for `npm install <folder>`, in that folder, with nothing installed there:
//    then this folder's own dependencies are installed first (the link npm
//    makes resolves them from here), without scripts, so this does not recurse.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
if (!existsSync(tsc)) {
  // Flags, not the outer npm's environment, decide what goes where.
  execFileSync(
    'npm',
    [
      'install',
      '--prefix',
      root,
      '--include=dev',
      '--no-global',
      '--no-save',
      '--install-links=false',
      '--ignore-scripts',
      '--no-audit',
      '--no-fund',
    ],
    { cwd: root, stdio: 'inherit' },
  );
}
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { cwd: root, stdio: 'inherit' });
