// The translators' public names, through the package root as a user imports
// them (package.json "exports" -> dist/), and the root stays loadable
// without fast-check being touched (the differential loads it on demand).
import { describe, expect, it } from 'vitest';
import * as pkg from 'vfio-mig-shim';

const NAMES = [
  'LegacyRegionOverV2', 'V2DeviceOverLegacy', 'v1ToV2State', 'v2ToV1State', 'LEGACY_OVER_V2_DATA_OFFSET',
  'LEGACY_OVER_V2_DEFAULT_WINDOW', 'retryTransient', 'toMigrationError', 'TRANSIENT_RETRIES', 'runDifferential',
  'DIFFERENTIAL_PAIRINGS', 'DEFAULT_DIFF_SEED',
];

describe('package root: translators', () => {
  it.each(NAMES)('exports %s', (name) => {
    expect((pkg as Record<string, unknown>)[name], name).toBeDefined();
  });

  it('the constructors take the signatures of issue 4', async () => {
    const device = new pkg.SimDevice({ size: 1000, seed: 1, pageSize: 256 });
    const region = new pkg.LegacyRegionOverV2(new pkg.SimV2Driver(device, { flags: pkg.MigFlags.STOP_COPY }), {
      windowSize: 128, policy: 'qemu', errorRecovery: 'reset',
    });
    expect(region.size).toBe(pkg.LEGACY_OVER_V2_DATA_OFFSET + 128);
    const dev = new pkg.V2DeviceOverLegacy(new pkg.SimV1Region(new pkg.SimDevice({ size: 1000, seed: 1, pageSize: 256 })));
    expect(await dev.migrationFlags()).toBe(pkg.MigFlags.STOP_COPY | pkg.MigFlags.PRE_COPY);
    const s = await pkg.runDifferential({ seed: 1, runs: 3, pairing: 'v1-all' });
    expect(s).toMatchObject({ pairing: 'v1-all', seed: 1, runs: 3, passed: true });
  });

  it('an unknown pairing or bad count is EINVAL', async () => {
    await expect(pkg.runDifferential({ seed: 1, runs: 0, pairing: 'v1-all' })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(pkg.runDifferential({ seed: 1, pairing: 'nope' as never })).rejects.toMatchObject({ code: 'EINVAL' });
  });
});
