// The installed `vfio-mig`: the real bin file run as npm installs it (through a
// symlink in node_modules/.bin), from a path with '#', and from the package
// that `npm pack` makes, installed into a scratch project. Tests that call
// main() in-process cannot see any of this.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const PKG = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const BIN = join(ROOT, PKG.bin['vfio-mig']);
const scratch = mkdtempSync(join(tmpdir(), 'vfio-mig-bin-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function run(file: string, args: string[], viaNode = true): { status: number | null; stdout: string; stderr: string } {
  const r = viaNode
    ? spawnSync(process.execPath, [file, ...args], { encoding: 'utf8', timeout: 120_000 })
    : spawnSync(file, args, { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectHelp(r: ReturnType<typeof run>): void {
  expect(r.stderr).toBe('');
  expect(r.stdout).toMatch(/^vfio-mig: bridge VFIO migration v1/);
  expect(r.status).toBe(0);
}

describe('the bin file', () => {
  it('runs through a symlink, as node_modules/.bin/vfio-mig is', () => {
    const link = join(scratch, 'vfio-mig');
    symlinkSync(BIN, link);
    expectHelp(run(link, ['--help']));
  });

  it("runs from a directory whose name has a '#'", () => {
    const dir = join(scratch, 'a#b');
    mkdirSync(dir);
    cpSync(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify(PKG));
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    expectHelp(run(join(dir, PKG.bin['vfio-mig']), ['--help']));
  });
});

describe('npm pack + npm install <tarball>', () => {
  it('installs a working vfio-mig: --help and a small demo', () => {
    const npm = (args: string[], cwd: string) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 300_000 });
    // dist/ is built (npm test builds first); pack it without rebuilding.
    const tarball = npm(['pack', ROOT, '--ignore-scripts', '--pack-destination', scratch, '--json'], scratch);
    const file = join(scratch, JSON.parse(tarball)[0].filename);
    const project = join(scratch, 'project');
    mkdirSync(project);
    writeFileSync(join(project, 'package.json'), '{"name":"scratch","private":true}\n');
    npm(['install', '--prefer-offline', '--no-audit', '--no-fund', file], project);
    const bin = join(project, 'node_modules', '.bin', 'vfio-mig');
    expectHelp(run(bin, ['--help'], false));
    const demo = run(bin, ['demo', '--size', '1MiB', '--window', '64KiB', '--rounds', '1'], false);
    expect(demo.status, demo.stderr).toBe(0);
    expect(demo.stdout.match(/ match [0-9a-f]{12}/g)).toHaveLength(3);
  });
});
