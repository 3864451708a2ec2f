// test/lab/fixtures.mjs, the lab's comparison of what it recorded with the
// committed fixtures (docs/trace-format.md "Recording them again"): unchanged,
// changed (exit 3, with the diff), equal to an accepted variant (unchanged),
// --variant adding one. Runs the script as run.sh does, against dist/ (built
// by `npm test` first), on scratch copies of test/fixtures/traces.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURES = join(ROOT, 'test/fixtures/traces');
const RAW = join(FIXTURES, 'raw');

let scratch: string | undefined;
afterEach(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
});

/** A scratch copy of the fixtures (raw/ left out: the recordings are read from the committed raw/). */
function copyOfFixtures(): string {
  scratch = mkdtempSync(join(tmpdir(), 'vfio-mig-fixture-compare-'));
  cpSync(FIXTURES, scratch, { recursive: true, filter: (src) => !src.startsWith(RAW) });
  return scratch;
}

const compare = (fixtures: string, ...flags: string[]) =>
  spawnSync(process.execPath, ['test/lab/fixtures.mjs', RAW, fixtures, ...flags], { cwd: ROOT, encoding: 'utf8' });

/** Drop line `n` (1-based) of a fixture: a recording that no longer matches it. */
function dropLine(path: string, n: number): void {
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.splice(n - 1, 1);
  writeFileSync(path, lines.join('\n'));
}

describe('test/lab/fixtures.mjs', () => {
  it('the committed raw recordings give the committed fixtures: every one unchanged, exit 0', () => {
    const run = compare(FIXTURES);
    expect(run.status).toBe(0);
    const names = readdirSync(FIXTURES).filter((f) => f.endsWith('.jsonl'));
    expect(run.stdout.match(/: unchanged$/gm)).toHaveLength(names.length);
  });

  it('a fixture the recording differs from: CHANGED with the diff, exit 3, nothing written', () => {
    const dir = copyOfFixtures();
    const path = join(dir, 'q72-save-running.jsonl');
    dropLine(path, 5);
    const edited = readFileSync(path, 'utf8');
    const run = compare(dir);
    expect(run.status).toBe(3);
    expect(run.stdout).toContain('lab: fixture q72-save-running: CHANGED');
    expect(run.stdout).toMatch(/^\+\{"v":2/m);
    expect(run.stdout).toContain('1 fixture(s) differ');
    expect(readFileSync(path, 'utf8')).toBe(edited);
  });

  it('a recording equal to an accepted variant of its scenario counts as unchanged', () => {
    const dir = copyOfFixtures();
    // What QEMU recorded becomes the variant; the fixture is another choice QEMU could have made.
    renameSync(join(dir, 'q72-save-running.jsonl'), join(dir, 'variants', 'q72-save-running~as-recorded.jsonl'));
    writeFileSync(join(dir, 'q72-save-running.jsonl'), readFileSync(join(FIXTURES, 'q72-save-prelaunch-cont.jsonl')));
    const run = compare(dir);
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('lab: fixture q72-save-running: unchanged (its accepted variant "as-recorded")');
    // a variant of another scenario is not one of this one's
    renameSync(join(dir, 'variants', 'q72-save-running~as-recorded.jsonl'), join(dir, 'variants', 'q72-resume~as-recorded.jsonl'));
    expect(compare(dir).status).toBe(3);
  });

  it('--variant LABEL adds each changed recording as a variant, with its raw recording, and keeps the fixture', () => {
    const dir = copyOfFixtures();
    const path = join(dir, 'q10-resume.jsonl');
    dropLine(path, 3);
    const edited = readFileSync(path, 'utf8');
    const run = compare(dir, '--variant', 'second-choice');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('added 1 variant(s) "second-choice"');
    expect(readFileSync(path, 'utf8')).toBe(edited);
    expect(readFileSync(join(dir, 'variants', 'q10-resume~second-choice.jsonl'), 'utf8')).toBe(
      readFileSync(join(FIXTURES, 'q10-resume.jsonl'), 'utf8'),
    );
    expect(existsSync(join(dir, 'variants', 'raw', 'q10-resume~second-choice.qemu.log'))).toBe(true);
    expect(compare(dir).stdout).toContain('q10-resume: unchanged (its accepted variant "second-choice")');
  });

  it.each([[['--variant']], [['--variant', 'Bad Label']], [['--variant', 'x', '--write']], [['--overwrite']]])(
    'refuses %j with its usage, exit 2',
    (flags) => {
      const run = compare(FIXTURES, ...flags);
      expect(run.status).toBe(2);
      expect(run.stderr).toMatch(/usage|give one/);
    },
  );
});

describe('the accepted variants (test/fixtures/traces/variants)', () => {
  const VARIANTS = join(FIXTURES, 'variants');
  const variants = readdirSync(VARIANTS).filter((f) => f.endsWith('.jsonl'));

  it('each belongs to a recorded scenario and differs from its fixture', () => {
    expect(variants.sort()).toEqual(['q72-failed-then-completed~no-precopy-read.jsonl', 'q72-save-prelaunch-cont~no-precopy-read.jsonl']);
    for (const v of variants) {
      const scenario = v.slice(0, v.indexOf('~'));
      const fixture = readFileSync(join(FIXTURES, `${scenario}.jsonl`), 'utf8');
      const text = readFileSync(join(VARIANTS, v), 'utf8');
      expect(text).not.toBe(fixture);
      // the same start line (scenario, summary) and the same takeover of the device
      expect(text.split('\n').slice(0, 3)).toEqual(fixture.split('\n').slice(0, 3));
    }
  });
});
