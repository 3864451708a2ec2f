// The translators' public names, through the package root as a user imports
// them (package.json "exports" -> dist/), and the root stays loadable
// without fast-check being touched (the differential loads it on demand).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as pkg from 'vfio-mig-shim';
import { runCli } from './support/run-cli.js';

const ROOT = join(import.meta.dirname, '..');
const sim = () => new pkg.SimDevice({ size: 1000, seed: 1, pageSize: 256 });

describe('package root: translators', () => {
  it('the constructors take the signatures of issue 4', async () => {
    const region = new pkg.LegacyRegionOverV2(new pkg.SimV2Driver(sim(), { flags: pkg.MigFlags.STOP_COPY }), {
      windowSize: 128,
      policy: 'qemu',
      errorRecovery: 'reset',
    });
    expect(region.size).toBe(pkg.LEGACY_OVER_V2_DATA_OFFSET + 128);
    const dev = new pkg.V2DeviceOverLegacy(new pkg.SimV1Region(sim()));
    expect(await dev.migrationFlags()).toBe(pkg.MigFlags.STOP_COPY | pkg.MigFlags.PRE_COPY);
    const s = await pkg.runDifferential({ seed: 1, runs: 3, pairing: 'v1-all' });
    expect(s).toMatchObject({ pairing: 'v1-all', seed: 1, runs: 3, passed: true });
  });

  it('LEGACY_OVER_V2_DATA_OFFSET (one page) and LEGACY_OVER_V2_DEFAULT_WINDOW (1 MiB) are what a default region uses', async () => {
    expect([pkg.LEGACY_OVER_V2_DATA_OFFSET, pkg.LEGACY_OVER_V2_DEFAULT_WINDOW]).toEqual([4096, 1 << 20]);
    const region = new pkg.LegacyRegionOverV2(new pkg.SimV2Driver(sim(), { flags: pkg.MigFlags.STOP_COPY }));
    expect(region.size).toBe(pkg.LEGACY_OVER_V2_DATA_OFFSET + pkg.LEGACY_OVER_V2_DEFAULT_WINDOW);
    await pkg.writeDeviceState(region, pkg.V1_SAVING);
    expect(await pkg.readU64Field(region, 'pending_bytes')).toBeGreaterThan(0n);
    expect(await pkg.readU64Field(region, 'data_offset')).toBe(BigInt(pkg.LEGACY_OVER_V2_DATA_OFFSET));
  });

  it('TRANSIENT_RETRIES is how many EAGAIN/EINTR retryTransient absorbs before the errno surfaces', async () => {
    expect(pkg.TRANSIENT_RETRIES).toBe(64);
    let calls = 0;
    const alwaysBusy = () => {
      calls++;
      return Promise.reject(new pkg.MigrationError(calls % 2 ? 'EAGAIN' : 'EINTR'));
    };
    await expect(pkg.retryTransient(alwaysBusy)).rejects.toBeInstanceOf(pkg.MigrationError);
    expect(calls).toBe(pkg.TRANSIENT_RETRIES + 1);
    expect(pkg.toMigrationError(new pkg.MigrationError('EBUSY')).code).toBe('EBUSY');
  });

  it('DEFAULT_DIFF_SEED is the seed `vfio-mig diff` uses when none is given', async () => {
    const r = await runCli('diff', '--pairing', 'v1-stop-copy', '--runs', '1', '--json');
    expect(r.status, r.stderr).toBe(0);
    expect(r.json.result.seed).toBe(pkg.DEFAULT_DIFF_SEED);
  });

  it('an unknown pairing or bad count is EINVAL', async () => {
    await expect(pkg.runDifferential({ seed: 1, runs: 0, pairing: 'v1-all' })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(pkg.runDifferential({ seed: 1, pairing: 'nope' as never })).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('importing the root never resolves fast-check; runDifferential does', () => {
    // A resolve hook that refuses 'fast-check' in a fresh node: the import must
    // succeed and the differential must hit the hook (so the hook is live).
    const hook = `export async function resolve(s, c, next) { if (s === 'fast-check') throw new Error('fast-check resolved'); return next(s, c); }`;
    const script = `
      import { register } from 'node:module';
      register('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));
      const pkg = await import('vfio-mig-shim');
      const diff = await pkg.runDifferential({ seed: 1, runs: 1, pairing: 'v1-all' }).then(() => 'ran', (e) => e.message);
      console.log(JSON.stringify({ loaded: typeof pkg.LegacyRegionOverV2, diff }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual({ loaded: 'function', diff: expect.stringContaining('fast-check resolved') });
  });
});
