// scripts/setup.sh on a minimal Debian: it installs with --no-install-recommends,
// so every file the C oracles compile against must come from a package it names
// or from a hard dependency (Depends/Pre-Depends) of one, never from a Recommends
// (gcc only *recommends* libc6-dev, which owns <stdio.h>).
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const hasDpkg = (() => {
  try {
    execFileSync('dpkg-query', ['--version'], { stdio: 'ignore' });
    execFileSync('apt-cache', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** The PACKAGES=( ... ) list of setup.sh, comments dropped, ${KVER} filled in. */
function setupPackages(): string[] {
  const script = readFileSync(join(ROOT, 'scripts/setup.sh'), 'utf8');
  const kver = /^KVER=(\S+)$/m.exec(script)![1];
  const block = /^PACKAGES=\(\n([\s\S]*?)\n\)/m.exec(script)![1];
  return block
    .split('\n')
    .flatMap((line) => line.replace(/#.*$/, '').trim().split(/\s+/))
    .filter(Boolean)
    .map((p) => p.replace(/^"|"$/g, '').replace('${KVER}', kver));
}

/** Every `#include <...>` in the test sources (the C oracles live there). */
function systemHeaders(): string[] {
  const found = new Set<string>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name.endsWith('.ts') && e.name !== 'setup-packages.test.ts')
        for (const m of readFileSync(join(dir, e.name), 'utf8').matchAll(/#include <([\w./]+)>/g)) found.add(m[1]);
    }
  };
  walk(join(ROOT, 'test'));
  return [...found].sort();
}

/** The files gcc reads for `#include <header>` (gcc -M), the header itself included. */
function filesOf(header: string): string[] {
  const deps = execFileSync('gcc', ['-M', '-x', 'c', '-'], { input: `#include <${header}>\n`, encoding: 'utf8' });
  return deps
    .replace(/\\\n/g, ' ')
    .replace(/^[^:]*:/, '')
    .trim()
    .split(/\s+/)
    .filter((f) => f.startsWith('/'));
}

/** The package owning each file (one dpkg-query for all of them). */
function ownersOf(files: string[]): Map<string, string> {
  const real = files.map((f) => realpathSync(f));
  const owners = new Map<string, string>();
  for (const line of execFileSync('dpkg-query', ['-S', ...new Set(real)], { encoding: 'utf8', maxBuffer: 64 << 20 }).split('\n')) {
    const m = /^([^:]+)(?::\w+)?: (\/.*)$/.exec(line);
    if (m) owners.set(m[2], m[1].split(',')[0].trim());
  }
  return new Map(files.map((f, i) => [f, owners.get(real[i]) ?? 'no package']));
}

/** The packages apt installs for `packages` with --no-install-recommends: their hard-dependency closure. */
function hardClosure(packages: string[]): Set<string> {
  const out = execFileSync(
    'apt-cache',
    [
      'depends',
      '--recurse',
      '--no-recommends',
      '--no-suggests',
      '--no-conflicts',
      '--no-breaks',
      '--no-replaces',
      '--no-enhances',
      ...packages,
    ],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  return new Set(
    out
      .split('\n')
      .filter((l) => l && !l.startsWith(' '))
      .map((l) => l.trim()),
  );
}

describe('scripts/setup.sh', () => {
  it.skipIf(!hasDpkg)('installs, without Recommends, the package of every header the C oracles include', () => {
    const headers = systemHeaders();
    expect(headers).toEqual(expect.arrayContaining(['stdio.h', 'errno.h']));
    const closure = hardClosure(setupPackages());
    const needed = headers.flatMap((h) => filesOf(h).map((f) => ({ h, f })));
    const owners = ownersOf(needed.map((n) => n.f));
    const missing = new Map<string, string>();
    for (const { h, f } of needed) {
      const pkg = owners.get(f)!;
      if (!closure.has(pkg)) missing.set(pkg, `${f} (for <${h}>)`);
    }
    expect(Object.fromEntries(missing)).toEqual({});
  });
});
