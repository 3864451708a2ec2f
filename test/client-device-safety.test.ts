// The clients' failure paths are safe on their own, whatever device they are
// given: none SETs a device out of a RESUMING it did not enter, a failed load
// (v1 or v2) leaves the device RUNNING after a reset, and the error says what
// was done to the device (recoveryOf).
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadV1 } from '../legacy/qemu/v1-client.js';
import { SimV1Region } from '../legacy/sim-v1-region.js';
import { readDeviceState } from '../legacy/v1-registers.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { SimV2Driver } from '../src/sim/sim-v2-driver.js';
import { MigrationError } from '../src/uapi/errors.js';
import { loadV2, saveV2 } from '../legacy/qemu/v2-client.js';
import type { MigrationDevice } from '../src/v2/contracts.js';
import { recoveryOf } from '../legacy/qemu/failure-recovery.js';
import { QemuMigrationState } from '../legacy/qemu/qemu-migration-state.js';
import { MigFlags, MigState, stateName } from '../src/v2/states.js';
import { LegacyRegionOverV2 } from '../translate/legacy-region-over-v2.js';
import { RecordingDevice } from './support/recording.js';
import { failure } from './support/errno.js';
import { Sink } from './support/sim-helpers.js';

const ALL = MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY;
const { RUNNING: R, STOP: S, RESUMING: RS } = MigState;

/** A driver in a RESUMING that another user entered and still holds (its session open). */
async function resumingElsewhere(size = 16_384) {
  const device = new SimDevice({ size, seed: 7 });
  const driver = new SimV2Driver(device, { flags: ALL });
  const held = (await driver.setState(RS))!;
  return { device, driver, held, rec: new RecordingDevice(driver) };
}

/** The file a save of a fresh simulated device of `size` bytes gives. */
async function savedFile(size: number, seed = 3): Promise<Buffer> {
  const sink = new Sink();
  await saveV2(new SimV2Driver(new SimDevice({ size, seed }), { flags: ALL }), sink);
  return sink.bytes;
}

const changes = (rec: RecordingDevice) => rec.log.starts().filter((c) => c.startsWith('setState') || c === 'reset');

describe('no client SETs a device out of a RESUMING it did not enter', () => {
  it('saveV2 refuses before touching the device: no SET, no reset, the holder keeps its RESUMING', async () => {
    const { driver, held, rec } = await resumingElsewhere();
    const e = await failure(saveV2(rec, new Sink()));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toMatch(/cannot save from RESUMING/);
    expect(changes(rec)).toEqual([]);
    expect(driver.currentState).toBe(RS);
    // The holder's load is intact: it can still finish it.
    const image = await savedFile(16_384, 9);
    await held.close();
    await driver.reset();
    await loadV2(driver, Readable.from([image]));
  });

  it('loadV2 refuses a device already in RESUMING before touching it', async () => {
    const { driver, rec } = await resumingElsewhere();
    const e = await failure(loadV2(rec, Readable.from([await savedFile(16_384)])));
    expect(e.code).toBe('EBUSY');
    expect(e.message).toMatch(/already in RESUMING/);
    expect(changes(rec)).toEqual([]);
    expect(driver.currentState).toBe(RS);
  });

  it('QemuMigrationState never SETs out of a RESUMING it did not enter: the SET is refused and the ladder resets', async () => {
    const { driver, rec } = await resumingElsewhere();
    const mig = new QemuMigrationState(rec, RS);
    const e = await failure(mig.setOrReset(R));
    expect(e.code).toBe('EBUSY');
    expect(changes(rec)).toEqual(['reset']);
    expect(driver.currentState).toBe(R);
    expect(mig.state).toBe(R);
  });

  it('... nor with a recover state: the recover SET out of RESUMING is refused too, and the device is reset', async () => {
    const { driver, rec } = await resumingElsewhere();
    const mig = new QemuMigrationState(rec, RS);
    expect((await failure(mig.set(S, R))).code).toBe('EBUSY');
    expect(changes(rec)).toEqual(['reset']);
    expect(driver.currentState).toBe(R);
  });

  it('the RESUMING a QemuMigrationState entered itself it leaves with a SET', async () => {
    const driver = new SimV2Driver(new SimDevice({ size: 16_384, seed: 1 }), { flags: ALL });
    const rec = new RecordingDevice(driver);
    const mig = new QemuMigrationState(rec, R);
    await mig.set(RS, R);
    await mig.closeSession();
    expect((await failure(mig.setOrReset(R))).code).toBe('EINVAL'); // no data: the driver refuses, the ladder resets
    expect(changes(rec)).toEqual(['setState(RESUMING)', 'setState(RUNNING)', 'reset']);
  });
});

describe('a failed load leaves the device RUNNING after a reset, and says so', () => {
  it('loadV2: data the device rejects -> the device is reset; recoveryOf says reset', async () => {
    const driver = new SimV2Driver(new SimDevice({ size: 64 * 1024, seed: 1 }), { flags: ALL });
    const e = await failure(loadV2(driver, Readable.from([await savedFile(16_384)])));
    expect(e.code).toBe('EINVAL');
    expect(recoveryOf(e)).toEqual({ reset: true });
    expect(driver.currentState).toBe(R);
    expect(driver.openSessions).toBe(0);
  });

  it('loadV2: a failure after the data (STOP -> RUNNING_P2P) is reset by the ladder; recoveryOf says reset', async () => {
    const driver = new SimV2Driver(new SimDevice({ size: 16_384, seed: 1 }), {
      flags: ALL,
      faults: { failArc: { from: S, to: MigState.RUNNING_P2P, errno: 'EIO' } },
    });
    const e = await failure(loadV2(driver, Readable.from([await savedFile(16_384)])));
    expect(e.code).toBe('EIO');
    expect(recoveryOf(e)).toEqual({ reset: true });
    expect(driver.currentState).toBe(R);
    // The VM start runs with the resuming data_fd still open (QEMU 10): the failure path closes it.
    expect(driver.openHandles).toBe(0);
  });

  it('loadV2: when the reset fails too, recoveryOf carries that error', async () => {
    const driver = new SimV2Driver(new SimDevice({ size: 64 * 1024, seed: 1 }), { flags: ALL });
    const broken: MigrationDevice = {
      migrationFlags: () => driver.migrationFlags(),
      getState: () => driver.getState(),
      setState: (t) => driver.setState(t),
      stopCopySize: () => driver.stopCopySize(),
      reset: async () => {
        throw new MigrationError('ENODEV', 'gone');
      },
      close: () => driver.close(),
    };
    const e = await failure(loadV2(broken, Readable.from([await savedFile(16_384)])));
    expect(e.code).toBe('EINVAL');
    const r = recoveryOf(e);
    expect(r?.reset).toBe(false);
    expect(r && !r.reset && r.error.code).toBe('ENODEV');
    expect(driver.openHandles).toBe(0); // the data_fd is closed even so
  });

  it('loadV1 over LegacyRegionOverV2: data the device rejects -> the v2 device is RUNNING, not left in RESUMING', async () => {
    const driver = new SimV2Driver(new SimDevice({ size: 64 * 1024, seed: 1 }), { flags: ALL });
    const region = new LegacyRegionOverV2(driver, { windowSize: 4096 });
    const e = await failure(loadV1(region, Readable.from([await savedFile(16_384)]), { windowAccess: 'mmap' }));
    expect(e.code).toBe('EINVAL');
    expect(recoveryOf(e)).toEqual({ reset: true });
    expect(stateName(driver.currentState)).toBe('RUNNING');
    expect(driver.openSessions).toBe(0);
    expect(await readDeviceState(region)).toBe(1);
    await region.close();
  });

  it('loadV1 over a v1 region: a rejected stream leaves 001 after a reset, not 100', async () => {
    const region = new SimV1Region(new SimDevice({ size: 64 * 1024, seed: 1 }), { windowSize: 4096 });
    const e = await failure(loadV1(region, Readable.from([await savedFile(16_384)]), { windowAccess: 'mmap' }));
    expect(recoveryOf(e)).toEqual({ reset: true });
    expect(await readDeviceState(region)).toBe(1);
  });

  it('a load refused before the device was touched carries no recovery note', async () => {
    const { rec } = await resumingElsewhere();
    expect(recoveryOf(await failure(loadV2(rec, Readable.from([await savedFile(16_384)]))))).toBeUndefined();
  });
});
