// The project's own documents are the ones its code and tests point to:
// nothing names a document outside the repository, every decision the code
// cites (D<n>) is in docs/SEMANTICS.md and every one there is cited, and
// every section of docs/PROTOCOL.md that is cited exists.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');
const tracked = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
  .split('\n')
  .filter((f) => /\.(ts|mjs|js|md|sh|c|h|json)$/.test(f) && f !== 'package-lock.json' && f !== 'test/docs.test.ts');
const sources = tracked.filter((f) => /^(src|legacy|translate)\/.*\.ts$|^(index|testing)\.ts$/.test(f));

/** The decisions of docs/SEMANTICS.md, by number, in the order they are listed. */
const DECISIONS = [...read('docs/SEMANTICS.md').matchAll(/^\*\*D(\d+)\. /gm)].map((m) => Number(m[1]));

describe('the documents the project points to', () => {
  it('are its own: no file names the design notes it was built from or a folder beside the checkout', () => {
    const outside = /\b(?:SPEC|BRIDGE|LAB|DESIGN|CROSS-VERSION)\.md\b|\.\.\/shared\b|\bSPEC ?§/;
    expect(tracked.length).toBeGreaterThan(100);
    expect(tracked.filter((f) => outside.test(read(f)))).toEqual([]);
  });

  it('docs/SEMANTICS.md numbers its decisions D1..Dn without gaps', () => {
    expect(DECISIONS.length).toBeGreaterThan(40);
    expect(DECISIONS).toEqual(DECISIONS.map((_, i) => i + 1));
  });

  it('every decision the code cites exists, and every decision is cited by the code', () => {
    const cited = new Set(sources.flatMap((f) => [...read(f).matchAll(/\bD(\d+)\b/g)].map((m) => Number(m[1]))));
    expect([...cited].filter((n) => !DECISIONS.includes(n))).toEqual([]);
    expect(DECISIONS.filter((n) => !cited.has(n))).toEqual([]);
  });

  it('every section of docs/PROTOCOL.md that a file cites exists', () => {
    const protocol = read('docs/PROTOCOL.md');
    const sections = new Set([...protocol.matchAll(/^#{2,3} (\d+(?:\.\d+)?)[. ]/gm)].map((m) => m[1]));
    // §6 is a numbered list: its items are cited as 6.1, 6.2, ...
    const differences = protocol.slice(protocol.indexOf('\n## 6. '), protocol.indexOf('\n## 7. '));
    for (const m of differences.matchAll(/^(\d+)\. \*\*/gm)) sections.add(`6.${m[1]}`);
    const hazards = new Set([...protocol.matchAll(/\*\*(H\d+)\. /g)].map((m) => m[1]));
    const missing: string[] = [];
    for (const f of tracked) {
      for (const m of read(f).matchAll(/PROTOCOL\.md §(\d+(?:\.\d+)?)(?: (H\d+))?/g)) {
        if (!sections.has(m[1])) missing.push(`${f}: §${m[1]}`);
        if (m[2] && !hazards.has(m[2])) missing.push(`${f}: ${m[2]}`);
      }
    }
    expect(sections.size).toBeGreaterThan(30);
    expect(missing).toEqual([]);
  });
});
