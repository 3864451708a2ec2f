// The README cannot rot: its examples run against the built package, its
// diagram is the CLI's output, its commands are the ones CI runs.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderMermaid } from '../src/cli/fsm-render.js';

const ROOT = join(import.meta.dirname, '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

function fencedBlocks(lang: string): string[] {
  return [...README.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]);
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
      throw new Error(`README example ${i} failed:\n${err.stderr?.toString() ?? e}`);
    } finally {
      rmSync(file, { force: true });
    }
  });

  it('shows the FSM exactly as `vfio-mig fsm --format mermaid` draws it', () => {
    const diagram = README.split('<!-- fsm-mermaid -->')[1];
    expect(fencedBlocks('mermaid')[0]?.trimEnd()).toBe(renderMermaid(7));
    expect(diagram).toBeDefined();
  });

  it('shows a real demo output with a matching fingerprint in every row', () => {
    const block = README.split('<!-- demo-output -->')[1]?.match(/```\n([\s\S]*?)```/)?.[1] ?? '';
    const rows = block.split('\n').filter((l) => / (match|MISMATCH) /.test(l));
    expect(rows).toHaveLength(3);
    for (const row of rows) expect(row).toMatch(/ match [0-9a-f]{12}$/);
  });

  it('opens with the two newcomer commands, and CI runs the test command', () => {
    const commands = fencedBlocks('sh').slice(0, 2).map((c) => c.trim());
    expect(commands).toEqual(['npm install && npm start', 'npm install && npm run setup && npm test']);
    const ci = readFileSync(join(ROOT, '.ci/run'), 'utf8');
    expect(ci).toMatch(/^npm run setup$/m);
    expect(ci).toMatch(/^npm test( --.*)?$/m);
    expect(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).scripts.start).toContain('demo');
  });
});
