// What a v1 region says when it refuses (legacy/v1-region-core.ts,
// legacy/sim-v1-region.ts): the errno a v1 driver would return, and a message
// that names the rule and the state, since `vfio-mig` prints these to the
// user. Also the device-side effects of the refusals (an internal failure
// stops the device; a rejected resume stays rejected until reset).
import { describe, expect, it } from 'vitest';
import { RESUME_REJECTED } from '../legacy/v1-region-core.js';
import { SimV1Region } from '../legacy/sim-v1-region.js';
import { readDeviceState, writeDeviceState, writeU64Field } from '../legacy/v1-registers.js';
import { V1_RESUMING, V1_RUNNING, V1_SAVING, V1_STOP, v1StateName } from '../legacy/v1-state.js';
import { v1AllowedTargets } from '../legacy/v1-transitions.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { SimV2Driver } from '../src/sim/sim-v2-driver.js';
import type { DataSession } from '../src/v2/contracts.js';
import { MigFlags, MigState } from '../src/v2/states.js';
import { LegacyRegionOverV2 } from '../translate/legacy-region-over-v2.js';
import { patched } from './support/patched-device.js';
import { stopCopyStream } from './support/sim-helpers.js';

const SHAPE = { size: 10_000, seed: 1, pageSize: 512 };
const device = (seed = 1) => new SimDevice({ ...SHAPE, seed });
const WINDOW = 4096;
const DATA_OFFSET = 4096;

/** `promise` rejects with exactly this errno and message. */
async function refused(promise: Promise<unknown>, code: string, message: string): Promise<void> {
  await expect(promise).rejects.toMatchObject({ code, message: `${code}: ${message}` });
}

describe('construction', () => {
  it('a window size that is not a positive integer is EINVAL naming it', () => {
    expect(() => new SimV1Region(device(), { windowSize: 0 })).toThrow('EINVAL: windowSize must be a positive integer, got 0');
    expect(() => new SimV1Region(device(), { windowSize: 2.5 })).toThrow('EINVAL: windowSize must be a positive integer, got 2.5');
  });

  it('a caller-supplied window must be exactly windowSize bytes', () => {
    const v2 = new SimV2Driver(device(), { flags: MigFlags.STOP_COPY });
    expect(() => new LegacyRegionOverV2(v2, { window: new Uint8Array(100), windowSize: 64 })).toThrow(
      'EINVAL: window is 100 bytes, windowSize is 64',
    );
  });
});

describe('register and window refusals', () => {
  it('device_state: refused by the policy, not VALID, from the error state', async () => {
    const r = new SimV1Region(device(), { windowSize: WINDOW, policy: 'qemu' });
    // QEMU 7.2 never asks for 000 -> 011 (vfio_migration_set_state's (mask, value) pairs), so 'qemu' has no such arc.
    expect(v1AllowedTargets('qemu', V1_STOP)).not.toContain(V1_RUNNING | V1_SAVING);
    await writeDeviceState(r, V1_STOP);
    await refused(
      writeDeviceState(r, V1_RUNNING | V1_SAVING),
      'EINVAL',
      `transition 000b STOP -> ${v1StateName(V1_RUNNING | V1_SAVING)} refused by policy 'qemu'`,
    );
    await writeDeviceState(r, V1_RUNNING);
    await refused(writeDeviceState(r, 6), 'EINVAL', 'device_state 110b ERROR(110) is not VALID');
    r.armFaults({ failArc: { from: V1_RUNNING, to: V1_STOP, toError: true } });
    await expect(writeDeviceState(r, V1_STOP)).rejects.toMatchObject({ code: 'EIO' });
    await refused(writeDeviceState(r, V1_RUNNING), 'EINVAL', 'device is in the error state (110b); only a reset leaves it');
  });

  it('data_size outside RESUMING, past the window; the window outside RESUMING', async () => {
    const r = new SimV1Region(device(), { windowSize: WINDOW });
    await refused(writeU64Field(r, 'data_size', 8n), 'EINVAL', 'data_size is written only in RESUMING (state 001b RUNNING)');
    await refused(r.writeAt(DATA_OFFSET, new Uint8Array(8)), 'EINVAL', 'data window is written only in RESUMING (state 001b RUNNING)');
    // A write of no bytes moves nothing and is no violation, in any state.
    await r.writeAt(DATA_OFFSET, new Uint8Array(0));
    await writeDeviceState(r, V1_RESUMING);
    await refused(
      writeU64Field(r, 'data_size', BigInt(WINDOW + 1)),
      'EINVAL',
      `data_size ${WINDOW + 1} exceeds the ${WINDOW}-byte data window`,
    );
    await r.reset();
    await r.close();
    await refused(readDeviceState(r), 'EBADF', 'region is closed');
  });
});

describe('a rejected resume (SimV1Region)', () => {
  it('the first exit from RESUMING says why the device rejected the data; after that every exit and data_size write says to reset', async () => {
    const r = new SimV1Region(device(8), { windowSize: WINDOW });
    await writeDeviceState(r, V1_RESUMING);
    const truncated = stopCopyStream(SHAPE, 0).subarray(0, 1000);
    await r.writeAt(DATA_OFFSET, truncated);
    await writeU64Field(r, 'data_size', BigInt(truncated.length));
    await expect(writeDeviceState(r, V1_RUNNING)).rejects.toMatchObject({
      code: 'EINVAL',
      message: expect.stringMatching(/^EINVAL: device rejected the resumed data: ./),
    });
    await refused(writeDeviceState(r, V1_STOP), 'EINVAL', RESUME_REJECTED);
    await refused(writeU64Field(r, 'data_size', 0n), 'EINVAL', RESUME_REJECTED);
    expect(await readDeviceState(r)).toBe(V1_RESUMING);
    await r.reset();
    expect(await readDeviceState(r)).toBe(V1_RUNNING);
  });
});

describe('faults (SimV1Region)', () => {
  it('an injected arc fault names the arc; with toError the device stops as well as reading 110', async () => {
    const r = new SimV1Region(device(), { windowSize: WINDOW });
    r.armFaults({ failArc: { from: V1_RUNNING, to: V1_RUNNING | V1_SAVING, errno: 'EIO', toError: true } });
    expect(r.device.running).toBe(true);
    await refused(writeDeviceState(r, V1_RUNNING | V1_SAVING), 'EIO', 'injected fault on 001b RUNNING -> 011b PRE_COPY(RUNNING|SAVING)');
    expect(await readDeviceState(r)).toBe(6);
    expect(r.device.running).toBe(false);
  });
});

describe('a device that stops taking resume data (LegacyRegionOverV2)', () => {
  it('a data_fd write that takes 0 bytes of a non-empty buffer fails the data_size write with ENOSPC, naming how far it got', async () => {
    const sim = new SimV2Driver(device(), { flags: MigFlags.STOP_COPY });
    let calls = 0;
    // The first write takes 10 bytes, every later one nothing: a driver whose buffer is full.
    const stingy = (session: DataSession): DataSession => ({
      ...session,
      write: async (buf) => (calls++ === 0 ? Math.min(10, buf.length) : 0),
    });
    const dev = patched(sim, {
      setState: async (s) => {
        const session = await sim.setState(s);
        return session && s === MigState.RESUMING ? stingy(session) : session;
      },
    });
    const r = new LegacyRegionOverV2(dev, { windowSize: WINDOW, errorRecovery: 'reset' });
    await writeDeviceState(r, V1_RESUMING);
    await r.writeAt(r.dataOffset, new Uint8Array(64).fill(1));
    await refused(writeU64Field(r, 'data_size', 64n), 'ENOSPC', 'device accepted no more resume data after 10 of 64 bytes');
    expect(calls).toBe(2);
    await r.reset();
    await r.close();
  });
});
