// The installed `vfio-mig`: the real bin file run as npm installs it (through a
// symlink in node_modules/.bin), from a path with '#', and from the package
// that `npm pack` makes, installed into a scratch project. Tests that call
// main() in-process cannot see any of this.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const execFileAsync = promisify(execFile);

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

const INSTALL_TIMEOUT = 300_000;
const npm = async (args: string[], cwd: string) =>
  (await execFileAsync('npm', args, { cwd, encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 })).stdout;

/** An empty project to install into. */
function project(name: string): string {
  const dir = join(scratch, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), '{"name":"scratch","private":true}\n');
  return dir;
}

/** This checkout's sources as a fresh clone has them: no node_modules, no dist. */
function freshCheckout(name: string): string {
  const dir = join(scratch, name);
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
    .split('\0')
    .filter(Boolean);
  for (const f of files) if (existsSync(join(ROOT, f))) cpSync(join(ROOT, f), join(dir, f));
  return dir;
}

function expectWorkingBin(dir: string): void {
  const bin = join(dir, 'node_modules', '.bin', 'vfio-mig');
  expectHelp(run(bin, ['--help'], false));
  const demo = run(bin, ['demo', '--size', '1MiB', '--window', '64KiB', '--rounds', '1'], false);
  expect(demo.status, demo.stderr).toBe(0);
  expect(demo.stdout.match(/ match [0-9a-f]{12}/g)).toHaveLength(3);
  expectBothEntryPoints(dir);
}

/** The installed package's two entry points load: the root, and the test doubles of 'vfio-mig-shim/testing' working with it. */
function expectBothEntryPoints(dir: string): void {
  const script = `
    const pkg = await import('vfio-mig-shim');
    const { FakeSyscalls } = await import('vfio-mig-shim/testing');
    const sys = new FakeSyscalls({ devices: [{ name: 'd', group: 0 }] });
    const device = new pkg.KernelMigrationDevice(pkg.openGroupDevice(0, 'd', sys));
    console.log(await device.migrationFlags(), 'FakeSyscalls' in pkg);
    await device.close();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr).toBe('');
  expect(r.stdout.trim()).toBe('7 false');
}

describe('npm pack + npm install <tarball>', () => {
  it('installs a working vfio-mig: --help and a small demo', async () => {
    // dist/ is built (npm test builds first); pack it without rebuilding.
    const tarball = await npm(['pack', ROOT, '--ignore-scripts', '--pack-destination', scratch, '--json'], scratch);
    const packed = JSON.parse(tarball)[0];
    const file = join(scratch, packed.filename);
    // The license package.json names ships with the package, and besides dist/ and the usual files only
    // what the install step needs to build the bridge's interposer with the machine's compiler.
    const paths: string[] = packed.files.map((f: { path: string }) => f.path);
    expect(PKG.license).toBe('MIT');
    expect(paths).toContain('LICENSE');
    expect(readFileSync(join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) \d{4} vfio-mig-shim contributors\n/);
    expect(paths.filter((p) => !p.startsWith('dist/')).sort()).toEqual([
      'LICENSE',
      'README.md',
      'package.json',
      'scripts/build-interposer.mjs',
      'src/bridge/interposer.c',
    ]);
    expect(paths).toContain(PKG.bin['vfio-mig'].replace(/^\.\//, ''));
    const dir = project('from-tarball');
    await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', file], dir);
    expectWorkingBin(dir);
    // The install step built the interposer next to the package (this machine has a compiler).
    expect(readdirSync(join(dir, 'node_modules', 'vfio-mig-shim', 'build'))).toEqual([
      expect.stringMatching(/^vfio-mig-interposer-[0-9a-f]{16}\.so$/),
    ]);
  });
});

// Each installs every dependency (dev ones too) and builds the whole project with tsc: minutes on
// a busy 2-core machine. Run side by side, they take the time of one.
describe.concurrent('npm install from sources (the prepare build)', () => {
  it(
    'npm install <git url>: npm installs the devDependencies, prepare builds dist/',
    async () => {
      const repo = freshCheckout('repo');
      const git = (...args: string[]) =>
        execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.org', ...args], { cwd: repo, stdio: 'ignore' });
      git('init', '-q');
      git('add', '-A');
      git('commit', '-q', '-m', 'snapshot');
      const dir = project('from-git');
      await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', `git+file://${repo}`], dir);
      expectWorkingBin(dir);
    },
    INSTALL_TIMEOUT,
  );

  it(
    "npm install <folder> of a fresh clone: prepare installs the folder's own dependencies, then builds",
    async () => {
      const folder = freshCheckout('folder');
      const dir = project('from-folder');
      await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', folder], dir);
      expectWorkingBin(dir);
    },
    INSTALL_TIMEOUT,
  );
});

describe('README', () => {
  it('states the Node version package.json requires, and the install forms tested above', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const major = /^>=(\d+)$/.exec(PKG.engines.node)?.[1];
    expect(major).toBeDefined();
    expect(readme).toContain(`**Node.js ${major} or newer**`);
    expect(readme).toMatch(/`npm install git\+https:\/\/[^`]+`/);
    expect(readme).toMatch(/`npm install \/path\/to\/vfio-mig-shim`/);
    expect(readme).toContain(`npm install ./${PKG.name}-${PKG.version}.tgz`);
  });
});
