// The README cannot rot: its examples run against the built package, its
// diagram and demo table are the CLI's output, its commands are the ones CI runs.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './support/run-cli.js';

const ROOT = join(import.meta.dirname, '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

function fencedBlocks(lang: string): string[] {
  return [...README.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]);
}

/**
 * The demo's printout as lines before the table and the table's cells (cut
 * where the dashed rule puts the columns), with what depends on the
 * machine's speed (milliseconds, throughput) masked; everything else, the
 * byte counts and fingerprints included, is deterministic for one seed.
 */
function demoView(lines: string[]): { before: string[]; header: string[]; rows: string[][] } {
  const rule = lines.findIndex((l) => /^-+( {2}-+)+$/.test(l));
  expect(rule, 'the dashed rule under the table header').toBeGreaterThan(0);
  const starts = [...lines[rule].matchAll(/-+/g)].map((m) => m.index);
  const mask = (cell: string) => cell.replace(/\b\d+ ms\b/g, '<N> ms').replace(/\b[\d.]+ [KMGT]?i?B\/s\b/g, '<RATE>');
  const cells = (line: string) => starts.map((at, i) => mask(line.slice(at, starts[i + 1]).trim()));
  return { before: lines.slice(0, rule - 1), header: cells(lines[rule - 1]), rows: lines.slice(rule + 1).map(cells) };
}

describe('README.md', () => {
  const examples = fencedBlocks('js');

  it('has library examples for both translators', () => {
    expect(examples.some((e) => e.includes('new LegacyRegionOverV2('))).toBe(true);
    expect(examples.some((e) => e.includes('new V2DeviceOverLegacy('))).toBe(true);
  });

  it.each(examples.map((code, i) => [i + 1, code] as const))('example %i runs against the built package', (i, code) => {
    // Inside the package directory, so `import 'vfio-mig-shim'` resolves to dist/ through "exports".
    const dir = join(ROOT, '.readme-examples');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `example-${i}.mjs`);
    writeFileSync(file, code);
    try {
      execFileSync(process.execPath, [file], { cwd: ROOT, stdio: 'pipe', timeout: 60_000 });
    } catch (e) {
      const err = e as { stderr?: Buffer };
      throw new Error(`README example ${i} failed:\n${err.stderr?.toString() ?? String(e)}`, { cause: e });
    } finally {
      rmSync(file, { force: true });
    }
  });

  it('shows the FSM exactly as `vfio-mig fsm --format mermaid` draws it, right after its marker', async () => {
    const shown = /^\s*```mermaid\n([\s\S]*?)```/.exec(README.split('<!-- fsm-mermaid -->')[1] ?? '')?.[1];
    const r = await runCli('fsm', '--format', 'mermaid');
    expect(r.status, r.stderr).toBe(0);
    expect(shown?.trimEnd()).toBe(r.stdout.trimEnd());
  });

  it('shows the output of `npm start` (demo, default options): same title, columns, rows, byte counts and fingerprints', async () => {
    // `npm start` must run the demo with no options, or the block shows other parameters than it claims.
    expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start).toMatch(/ demo$/);
    const block = /^\s*```\n([\s\S]*?)```/.exec(README.split('<!-- demo-output -->')[1] ?? '')?.[1] ?? '';
    const [prompt, ...shown] = block.trimEnd().split('\n');
    expect(prompt).toBe('$ npm start');
    const r = await runCli('demo');
    expect(r.status, r.stderr).toBe(0);
    expect(demoView(shown)).toEqual(demoView(r.stdout.trimEnd().split('\n')));
  });

  it('opens with the two newcomer commands, and CI runs the test command', () => {
    const commands = fencedBlocks('sh')
      .slice(0, 2)
      .map((c) => c.trim());
    expect(commands).toEqual(['npm install && npm start', 'npm install && npm run setup && npm test']);
    const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
    expect(ci).toMatch(/^npm run setup$/m);
    expect(ci).toMatch(/^npm test( --.*)?$/m);
    expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start).toContain('demo');
  });
});
