// The floors of ARCHITECTURE.md, checked on every import of the package's
// sources: a file imports its own floor or one below, never one above, plus
// the rules listed there. The floor list is read from ARCHITECTURE.md itself,
// so the document and the check cannot drift apart.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const ENTRY_POINTS = ['index.ts', 'testing.ts'];

/** The ```floors block of ARCHITECTURE.md, bottom up. */
function floorsOf(markdown: string): string[] {
  const block = /```floors\n([\s\S]*?)```/.exec(markdown);
  if (!block) throw new Error('ARCHITECTURE.md has no ```floors block');
  return block[1]
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

const FLOORS = floorsOf(readFileSync(join(ROOT, 'ARCHITECTURE.md'), 'utf8'));

/** Every .ts file of the package (the entry points and the floors' folders), relative to the root. */
function productFiles(): string[] {
  const out: string[] = [...ENTRY_POINTS];
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(path);
      else if (e.name.endsWith('.ts')) out.push(path);
    }
  };
  for (const top of ['src', 'legacy', 'translate']) walk(top);
  return out;
}

/** Every module a file names: static imports and re-exports (type-only ones too) and dynamic import(). */
function importsOf(source: string): string[] {
  const specs = [
    ...source.matchAll(/^\s*(?:import|export)\b[^'";]*?\bfrom\s*'([^']+)'/gm),
    ...source.matchAll(/^\s*import\s*'([^']+)'/gm),
    ...source.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g),
  ];
  return specs.map((m) => m[1]);
}

/** The floor a file is on: the longest floor folder it lies in (undefined: on none). */
function floorOf(file: string, floors = FLOORS): number | undefined {
  let best: number | undefined;
  let bestLength = -1;
  floors.forEach((folder, i) => {
    if (file.startsWith(`${folder}/`) && folder.length > bestLength) {
      best = i;
      bestLength = folder.length;
    }
  });
  return best;
}

interface Edge {
  from: string;
  to: string;
}

/** Each import of the package's files, relative ones resolved to the .ts file they name; bare ones as written. */
function edges(): Edge[] {
  return productFiles().flatMap((from) =>
    importsOf(readFileSync(join(ROOT, from), 'utf8')).map((spec) => ({
      from,
      to: spec.startsWith('.') ? relative(ROOT, normalize(join(ROOT, dirname(from), spec))).replace(/\.js$/, '.ts') : spec,
    })),
  );
}

const inside = (file: string, folder: string) => file.startsWith(`${folder}/`);

/** The rules of ARCHITECTURE.md: the list of imports that break one, each with the rule it breaks. */
function violations(all: Edge[], floors = FLOORS): string[] {
  const out: string[] = [];
  const kernelFloor = floors.indexOf('src/kernel');
  for (const { from, to } of all) {
    const entry = ENTRY_POINTS.includes(from);
    const f = floorOf(from, floors);
    if (!entry && f === undefined) out.push(`${from}: on no floor`);
    if (to.startsWith('src/') || to.startsWith('legacy/') || to.startsWith('translate/')) {
      const t = floorOf(to, floors);
      if (t === undefined) out.push(`${from} -> ${to}: the target is on no floor`);
      else if (!entry && f !== undefined && t > f) out.push(`${from} -> ${to}: upward (${floors[f]} -> ${floors[t]})`);
      if (inside(to, 'src/kernel/testing') && from !== 'testing.ts' && !inside(from, 'src/kernel/testing')) {
        out.push(`${from} -> ${to}: only testing.ts imports the test doubles`);
      }
      if (inside(to, 'legacy/qemu') && inside(from, 'legacy') && !inside(from, 'legacy/qemu')) {
        out.push(`${from} -> ${to}: the v1 protocol does not import the QEMU models`);
      }
      if (inside(to, 'translate/differential') && inside(from, 'translate') && !inside(from, 'translate/differential')) {
        out.push(`${from} -> ${to}: the translators do not import the differential harness`);
      }
    } else if (to === 'koffi' && !entry && (f === undefined || f < kernelFloor)) {
      out.push(`${from} -> koffi: below src/kernel`);
    } else if (to === 'fast-check' && !inside(from, 'translate/differential')) {
      out.push(`${from} -> fast-check: only the differential harness loads it`);
    } else if (!to.startsWith('node:') && !['koffi', 'fast-check'].includes(to) && !to.startsWith('src/')) {
      out.push(`${from} -> ${to}: a package the product does not depend on`);
    }
  }
  return out;
}

describe('the floors of ARCHITECTURE.md', () => {
  it('are the eight folders the project was specified with, in their order', () => {
    expect(FLOORS).toEqual(['src/uapi', 'src/v2', 'src/sim', 'legacy', 'translate', 'src/kernel', 'src/bridge', 'src/cli']);
  });

  it('every import of the package keeps to them', () => {
    const all = edges();
    expect(all.length).toBeGreaterThan(300); // the parse found the imports
    expect(violations(all)).toEqual([]);
  });

  it('the check catches an upward import, a test double in the product, and koffi below the kernel', () => {
    // Known breaks, checked against the same rules: each must be reported.
    const broken: Edge[] = [
      { from: 'src/v2/fsm.ts', to: 'legacy/v1-state.ts' },
      { from: 'src/cli/main.ts', to: 'src/kernel/testing/fake-syscalls.ts' },
      { from: 'legacy/v1-registers.ts', to: 'legacy/qemu/v1-client.ts' },
      { from: 'translate/state-map.ts', to: 'translate/differential/outcome.ts' },
      { from: 'translate/retry.ts', to: 'koffi' },
      { from: 'index.ts', to: 'fast-check' },
      { from: 'scripts/x.ts', to: 'src/uapi/errors.ts' },
    ];
    expect(violations(broken)).toHaveLength(broken.length);
  });
});
