// The package's version, from the package.json above this file (a checkout's
// or an installed package's: dist/src/cli and src/cli sit at different depths).
import { readFileSync } from 'node:fs';

export function packageVersion(): string {
  for (let dir = new URL('./', import.meta.url); ; dir = new URL('../', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'vfio-mig-shim' && pkg.version) return pkg.version;
    } catch {
      // no package.json here: look one level up
    }
    if (new URL('../', dir).href === dir.href) return 'unknown';
  }
}
