// LegacyRegionOverV2 at its edges: options checking, the inspect() snapshot,
// close() and reset() before/after first use, and the paths where the v2
// device misbehaves (no data session, a GET or a reset that fails after a
// failed SET, an estimate that throws synchronously). Driven through the v1
// registers over SimV2Driver, with small wrappers that inject the faults the
// simulated driver cannot produce.
import { describe, expect, it } from 'vitest';
import { errnoOf, failure } from './support/errno.js';
import { readRegion, stopCopyStream } from './support/sim-helpers.js';
import { RecordingDevice } from './support/recording.js';
import { RESUME_REJECTED } from '../legacy/v1-region-core.js';
import { readDeviceState, readU64Field, writeDeviceState, writeU64Field } from '../legacy/v1-registers.js';
import { V1_POLICIES } from '../legacy/v1-transitions.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { SimV2Driver } from '../src/sim/sim-v2-driver.js';
import { MigrationError } from '../src/uapi/errors.js';
import type { MigrationDevice } from '../src/v2/contracts.js';
import { MigFlags, MigState } from '../src/v2/states.js';
import { LegacyRegionOverV2, type ErrorRecovery } from '../translate/legacy-region-over-v2.js';
import { patched } from './support/patched-device.js';

const { STOP_COPY: SC_F, P2P, PRE_COPY: PC_F } = MigFlags;
const ALL = SC_F | P2P | PC_F;
const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, ERROR: ERR } = MigState;
const SIZE = 6000;
const PAGE = 512;
const WINDOW = 700;

function driverOf(flags: number, seed = 3): SimV2Driver {
  return new SimV2Driver(new SimDevice({ size: SIZE, seed, pageSize: PAGE }), { flags });
}

function region(device: MigrationDevice, errorRecovery?: ErrorRecovery) {
  return new LegacyRegionOverV2(device, { windowSize: WINDOW, errorRecovery });
}

const deviceCalls = (rec: RecordingDevice) => rec.log.starts();

describe('options', () => {
  it('an errorRecovery other than expose/reset is refused with EINVAL naming the value', () => {
    const bad = { errorRecovery: 'retry' as unknown as ErrorRecovery };
    const e = failure(() => new LegacyRegionOverV2(driverOf(ALL), bad));
    expect(e.code).toBe('EINVAL');
    expect(e.message).toContain("got 'retry'");
    expect(new LegacyRegionOverV2(driverOf(ALL), { errorRecovery: 'reset' }).errorRecovery).toBe('reset');
  });
});

describe('inspect()', () => {
  it('before first use: 001, no v2 state, nothing emulated or held, no takeover; after it: RUNNING kept', async () => {
    const r = region(driverOf(SC_F));
    expect(r.inspect()).toStrictEqual({
      deviceState: 1,
      v2State: undefined,
      emulatedPrecopy: false,
      session: null,
      stagedBytes: 0,
      closed: false,
    });
    await readDeviceState(r);
    expect(r.inspect()).toStrictEqual({
      deviceState: 1,
      v2State: R,
      emulatedPrecopy: false,
      session: null,
      stagedBytes: 0,
      closed: false,
      takeover: { found: R, action: 'kept' },
    });
  });

  it('names the held session by the state that opened it: resuming in 100, saving in 010', async () => {
    const r = region(driverOf(ALL));
    await writeDeviceState(r, 4);
    expect(r.inspect().session).toBe('resuming');
    await r.reset();
    await writeDeviceState(r, 2);
    expect(r.inspect().session).toBe('saving');
  });
});

describe('first use and close()', () => {
  it('a device left in RESUMING whose reset fails is refused with a message naming "the v2 device" and its state', async () => {
    const driver = driverOf(ALL);
    await driver.setState(RS);
    const failingReset = patched(driver, {
      reset: () => Promise.reject(new MigrationError('EIO', 'reset refused')),
    });
    const e = await failure(readDeviceState(region(failingReset)));
    expect(e.code).toBe('EIO');
    expect(e.message).toContain('the v2 device was left in RESUMING');
  });

  it('close() is idempotent: the device is closed once, the region stays closed (EBADF)', async () => {
    const rec = new RecordingDevice(driverOf(ALL));
    const r = region(rec);
    await readDeviceState(r);
    await r.close();
    await r.close();
    expect(deviceCalls(rec).filter((c) => c === 'close')).toEqual(['close']);
    expect(r.inspect().closed).toBe(true);
    expect(await errnoOf(readDeviceState(r))).toBe('EBADF');
  });
});

describe('reset() before and after first use', () => {
  it('a reset() before any access takes the device over: the next access asks the device nothing, flags are known', async () => {
    const rec = new RecordingDevice(driverOf(SC_F)); // no PRE_COPY: 011 is emulated
    const r = region(rec);
    await r.reset();
    expect(deviceCalls(rec)).toEqual(['reset', 'migrationFlags']);
    expect(r.inspect()).toMatchObject({ deviceState: 1, v2State: R });
    expect(r.inspect().takeover).toBeUndefined();
    rec.log.clear();
    await writeDeviceState(r, 3);
    expect(deviceCalls(rec)).toEqual([]); // emulated over RUNNING: no GET, no flags, no SET
    expect(r.inspect().emulatedPrecopy).toBe(true);
    // A later reset is one VFIO_DEVICE_RESET and nothing else: the flags do not change.
    rec.log.clear();
    await r.reset();
    expect(deviceCalls(rec)).toEqual(['reset']);
  });
});

describe('device_state writes the translator refuses itself', () => {
  it('010 -> 011 is EINVAL under every policy and reaches no device (D15: v2 has no STOP_COPY -> PRE_COPY)', async () => {
    for (const policy of V1_POLICIES) {
      const rec = new RecordingDevice(driverOf(SC_F)); // without PRE_COPY a path SC->S->R would exist
      const r = new LegacyRegionOverV2(rec, { windowSize: WINDOW, policy });
      await writeDeviceState(r, 2);
      rec.log.clear();
      expect(`${policy} ${await errnoOf(writeDeviceState(r, 3))}`).toBe(`${policy} EINVAL`);
      expect(deviceCalls(rec)).toEqual([]);
      expect(await readDeviceState(r)).toBe(2);
    }
  });

  it('after a rejected resume, leaving 100 is refused without another SET (D25: final until reset)', async () => {
    const stream = stopCopyStream({ size: SIZE, seed: 5, pageSize: PAGE });
    const rec = new RecordingDevice(driverOf(SC_F, 77));
    const r = new LegacyRegionOverV2(rec, { windowSize: 4096 });
    await writeDeviceState(r, 4);
    await r.writeAt(r.dataOffset, stream.subarray(0, 1000));
    await writeU64Field(r, 'data_size', 1000n); // incomplete: the device refuses to leave RESUMING
    expect(await errnoOf(writeDeviceState(r, 1))).toBe('EINVAL');
    rec.log.clear();
    for (const to of [1, 0]) {
      const e = await failure(writeDeviceState(r, to));
      expect(e.code).toBe('EINVAL');
      expect(e.message).toContain(RESUME_REJECTED);
    }
    expect(deviceCalls(rec)).toEqual([]);
  });

  it('a failed exit from RESUMING with an errno other than EINVAL is no rejection: the same write succeeds next time', async () => {
    const stream = stopCopyStream({ size: SIZE, seed: 5, pageSize: PAGE });
    const driver = driverOf(SC_F, 77);
    const r = new LegacyRegionOverV2(driver, { windowSize: 8192 });
    await writeDeviceState(r, 4);
    await r.writeAt(r.dataOffset, stream.subarray(0, stream.length));
    await writeU64Field(r, 'data_size', BigInt(stream.length));
    driver.faults.arm({ failArc: { from: RS, to: S, errno: 'EIO' } });
    expect(await errnoOf(writeDeviceState(r, 1))).toBe('EIO');
    expect(await readDeviceState(r)).toBe(4);
    await writeDeviceState(r, 1);
    expect(await readDeviceState(r)).toBe(1);
    expect(driver.currentState).toBe(R);
  });
});

describe('emulated pre-copy (a device without PRE_COPY)', () => {
  it('pending_bytes in emulated 011 closes the empty iteration: after 011 -> 010 data_offset fills a real chunk', async () => {
    const r = region(driverOf(SC_F));
    await writeDeviceState(r, 3);
    expect(await readU64Field(r, 'pending_bytes')).toBe(0n);
    await writeDeviceState(r, 2);
    const off = await readU64Field(r, 'data_offset');
    expect(await readU64Field(r, 'data_size')).toBe(BigInt(WINDOW));
    const reference = stopCopyStream({ size: SIZE, seed: 3, pageSize: PAGE });
    expect(await readRegion(r, Number(off), WINDOW)).toEqual(new Uint8Array(reference.subarray(0, WINDOW)));
  });

  it('011 -> 010 failing at STOP -> STOP_COPY shows 000 over STOP, pre-copy no longer emulated (D26)', async () => {
    const driver = driverOf(SC_F);
    const r = region(driver);
    await writeDeviceState(r, 3);
    driver.faults.arm({ failArc: { from: S, to: SC, errno: 'EIO' } });
    expect(await errnoOf(writeDeviceState(r, 2))).toBe('EIO');
    expect(r.inspect()).toMatchObject({ deviceState: 0, v2State: S, emulatedPrecopy: false, session: null });
  });

  it("011 -> 010 leaving the device in ERROR shows 110b with pre-copy no longer emulated ('expose', D28)", async () => {
    const driver = driverOf(SC_F);
    const r = region(driver);
    await writeDeviceState(r, 3);
    driver.faults.arm({ failArc: { from: R, to: S, errno: 'EIO', toError: true } });
    expect(await errnoOf(writeDeviceState(r, 2))).toBe('EIO');
    expect(r.inspect()).toMatchObject({ deviceState: 6, v2State: ERR, emulatedPrecopy: false, session: null });
  });
});

describe('a SET that fails part-way', () => {
  it('010 -> 001 stopping at STOP drops the saving session and its staged bytes (a session lives only in its group)', async () => {
    const driver = driverOf(SC_F | PC_F); // no P2P: the path is STOP_COPY -> STOP -> RUNNING
    const r = region(driver);
    await writeDeviceState(r, 2);
    expect(await readU64Field(r, 'pending_bytes')).toBeGreaterThan(0n);
    expect(r.inspect().stagedBytes).toBeGreaterThan(0);
    driver.faults.arm({ failArc: { from: S, to: R, errno: 'EIO' } });
    expect(await errnoOf(writeDeviceState(r, 1))).toBe('EIO');
    expect(r.inspect()).toMatchObject({ deviceState: 0, v2State: S, session: null, stagedBytes: 0 });
    expect(driver.openHandles).toBe(0);
  });

  it('when even the GET after a failed SET fails, the write fails with the SET errno and the last known state stays (D27)', async () => {
    const driver = driverOf(ALL);
    let getFails = false;
    const r = region(
      patched(driver, {
        getState: () => (getFails ? Promise.reject(new MigrationError('ENODEV', 'gone')) : driver.getState()),
        setState: () => {
          getFails = true;
          return Promise.reject(new MigrationError('EIO', 'SET failed'));
        },
      }),
    );
    const e = await failure(writeDeviceState(r, 0));
    expect(e.code).toBe('EIO');
    expect(e.message).toContain('SET failed');
    expect(r.inspect()).toMatchObject({ deviceState: 1, v2State: R });
  });

  it("errorRecovery 'reset' whose reset fails too shows the ERROR the device is in (110b), with the SET errno", async () => {
    const driver = driverOf(SC_F | PC_F); // no P2P: RUNNING -> STOP is one arc
    const r = region(patched(driver, { reset: () => Promise.reject(new MigrationError('EIO', 'reset refused')) }), 'reset');
    driver.faults.arm({ failArc: { from: R, to: S, errno: 'ENOSPC', toError: true } });
    expect(await errnoOf(writeDeviceState(r, 0))).toBe('ENOSPC');
    expect(await readDeviceState(r)).toBe(6);
    expect(r.inspect().v2State).toBe(ERR);
  });
});

describe('reset() that fails', () => {
  it('shows the state the device reports afterwards (here ERROR: 110b), pre-copy no longer emulated', async () => {
    const driver = driverOf(SC_F);
    let broken = false;
    const r = region(
      patched(driver, {
        getState: () => (broken ? Promise.resolve(ERR) : driver.getState()),
        reset: () => {
          broken = true;
          return Promise.reject(new MigrationError('EIO', 'reset failed, device dead'));
        },
      }),
    );
    await writeDeviceState(r, 3);
    expect(r.inspect().emulatedPrecopy).toBe(true);
    expect(await errnoOf(r.reset())).toBe('EIO');
    expect(await readDeviceState(r)).toBe(6);
    expect(r.inspect()).toMatchObject({ v2State: ERR, emulatedPrecopy: false });
  });
});

describe('a v2 device that breaks its contract', () => {
  it('a saving SET that returns no data session fails the first stream access with EIO naming the state', async () => {
    const driver = driverOf(ALL);
    const r = region(patched(driver, { setState: async (t) => (await driver.setState(t), null) }));
    await writeDeviceState(r, 2);
    const e = await failure(readU64Field(r, 'pending_bytes'));
    expect(e.code).toBe('EIO');
    expect(e.message).toContain('gave no data session for STOP_COPY');
  });

  it('an MIG_DATA_SIZE estimate that throws synchronously counts as 0: pending_bytes is the staged bytes (D18)', async () => {
    const driver = driverOf(ALL);
    const r = region(
      patched(driver, {
        stopCopySize: () => {
          throw new MigrationError('ENOTTY', 'no estimate');
        },
      }),
    );
    await writeDeviceState(r, 2);
    expect(await readU64Field(r, 'pending_bytes')).toBe(BigInt(WINDOW));
  });
});
