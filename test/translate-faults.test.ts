// Faults through the translators: each fault of a plan (arc failure, ERROR,
// data-path errno, truncated or corrupt stream) injected in the device
// behind a translator surfaces as the error the face promises, a reset
// recovers, and no session, staged byte or unclosed data_fd outlives it.
//  v1 face: the QEMU 7.2 client over LegacyRegionOverV2(SimV2Driver).
//  v2 face: the QEMU 8+ client over V2DeviceOverLegacy(SimV1Region).
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { failure } from './support/errno.js';
import { Sink } from './support/sim-helpers.js';
import { isV1Fatal, loadV1, saveV1 } from '../legacy/qemu/v1-client.js';
import { SimV1Region } from '../legacy/sim-v1-region.js';
import { readDeviceState } from '../legacy/v1-registers.js';
import type { FaultPlan } from '../src/sim/faults.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { SimV2Driver } from '../src/sim/sim-v2-driver.js';
import { loadV2, saveV2 } from '../legacy/qemu/v2-client.js';
import { MigFlags, MigState } from '../src/v2/states.js';
import { LegacyRegionOverV2, type ErrorRecovery } from '../translate/legacy-region-over-v2.js';
import { V2DeviceOverLegacy } from '../translate/v2-device-over-legacy.js';

const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, PRE_COPY: PC } = MigState;
const FLAGS = MigFlags.STOP_COPY | MigFlags.PRE_COPY;
const SIZE = 200_000;
const PAGE = 4096;

// ---- v1 face ---------------------------------------------------------------------

function v1Rig(errorRecovery: ErrorRecovery = 'expose', faults: FaultPlan = {}) {
  const device = new SimDevice({ size: SIZE, seed: 21, pageSize: PAGE });
  const driver = new SimV2Driver(device, { flags: FLAGS, faults });
  const region = new LegacyRegionOverV2(driver, { windowSize: 16 * 1024, errorRecovery });
  return { device, driver, region };
}

/** Nothing survives: no session held by the translator or the driver, no unclosed data_fd, nothing staged. */
function expectClean(r: ReturnType<typeof v1Rig>): void {
  expect(r.region.inspect()).toMatchObject({ session: null, stagedBytes: 0 });
  expect(r.driver.openSessions).toBe(0);
  expect(r.driver.openHandles).toBe(0);
}

async function v1Save(r: ReturnType<typeof v1Rig>) {
  const sink = new Sink();
  const result = await saveV1(r.region, sink, { precopyRounds: 2, windowAccess: 'mmap', betweenRounds: () => void r.device.step(5) });
  return { sink, result };
}

/** After recovery a whole migration still works. */
async function v1MigratesAgain(r: ReturnType<typeof v1Rig>): Promise<void> {
  const { sink } = await v1Save(r);
  const dst = v1Rig();
  await loadV1(dst.region, Readable.from([sink.bytes]), { windowAccess: 'mmap' });
  expect(dst.device.fingerprint()).toBe(r.device.fingerprint());
}

describe('v1 face: LegacyRegionOverV2 under the QEMU 7.2 client', () => {
  it('a failed arc: the state write fails with its errno, device_state is the real (non-error) state; the notifier brings it back', async () => {
    const r = v1Rig('expose', { failArc: { from: PC, to: SC, errno: 'EBUSY' } });
    const e = await failure(v1Save(r));
    expect(e.code).toBe('EBUSY');
    expect(isV1Fatal(e)).toBe(false);
    // saveV1's failure path: VM start (~MASK/RUNNING) then the notifier: 001, and the session is gone
    expect(await readDeviceState(r.region)).toBe(1);
    expect(r.driver.currentState).toBe(R);
    expectClean(r);
    await v1MigratesAgain(r);
  });

  it("ERROR with 'expose': 110b, which QEMU 7.2 treats as fatal; a reset recovers", async () => {
    const r = v1Rig('expose', { failArc: { from: PC, to: SC, errno: 'EIO', toError: true } });
    const e = await failure(v1Save(r));
    expect(isV1Fatal(e)).toBe(true);
    expect(e.code).toBe('EIO');
    expect(await readDeviceState(r.region)).toBe(6);
    expect(r.driver.currentState).toBe(MigState.ERROR);
    expectClean(r);
    await r.region.reset();
    expect(await readDeviceState(r.region)).toBe(1);
    expectClean(r);
    await v1MigratesAgain(r);
  });

  it("ERROR with 'reset': the write fails with the errno, device_state reads 001, the VM survives", async () => {
    const r = v1Rig('reset', { failArc: { from: PC, to: SC, errno: 'EFAULT', toError: true } });
    const e = await failure(v1Save(r));
    expect(isV1Fatal(e)).toBe(false);
    expect(e.code).toBe('EFAULT');
    expect(await readDeviceState(r.region)).toBe(1);
    expect(r.driver.currentState).toBe(R);
    expectClean(r);
    await v1MigratesAgain(r);
  });

  it.each([1, 2, 5])('a data-path read errno (read #%i) fails the migration with that errno, never a short stream', async (nth) => {
    const r = v1Rig('expose', { failIo: { op: 'read', nth, errno: 'ENXIO' } });
    const e = await failure(v1Save(r));
    expect(e.code).toBe('ENXIO');
    expect(await readDeviceState(r.region)).toBe(1);
    expectClean(r);
    await v1MigratesAgain(r);
  });

  it('a truncated source stream is refused by the destination at VM start (100 -> 001); the client resets it', async () => {
    const src = v1Rig('expose', { truncateStreamAt: 50_000 });
    const { sink } = await v1Save(src); // the source cannot know: its device said end of stream
    const dst = v1Rig();
    const before = dst.device.fingerprint();
    const e = await failure(loadV1(dst.region, Readable.from([sink.bytes]), { windowAccess: 'mmap' }));
    expect(e.code).toBe('EINVAL');
    expect(isV1Fatal(e)).toBe(false);
    expect(dst.device.fingerprint()).toBe(before);
    expect(await readDeviceState(dst.region)).toBe(1);
    expectClean(dst);
  });

  it('a corrupt source stream fails the data_size write that carries it (EINVAL); reset recovers', async () => {
    const src = v1Rig('expose', { corruptStreamAt: 70_000 });
    const { sink } = await v1Save(src);
    const dst = v1Rig();
    const before = dst.device.fingerprint();
    const e = await failure(loadV1(dst.region, Readable.from([sink.bytes]), { windowAccess: 'mmap' }));
    expect(e.code).toBe('EINVAL');
    expect(dst.device.fingerprint()).toBe(before);
    await dst.region.reset();
    expectClean(dst);
  });

  it('a resume write errno on the v2 device fails the data_size write with it', async () => {
    const { sink } = await v1Save(v1Rig());
    const dst = v1Rig('expose', { failIo: { op: 'write', nth: 3, errno: 'ENOSPC' } });
    const e = await failure(loadV1(dst.region, Readable.from([sink.bytes]), { windowAccess: 'mmap' }));
    expect(e.code).toBe('ENOSPC');
    await dst.region.reset();
    expectClean(dst);
  });

  it('reset in the middle of a save drops the staged chunk and the session', async () => {
    const r = v1Rig();
    const sink = new Sink();
    // stop right after a pre-copy chunk was staged
    await saveV1(r.region, sink, { precopyRounds: 1, windowAccess: 'mmap' }).catch(() => undefined);
    const w = new Uint8Array(4);
    new DataView(w.buffer).setUint32(0, 2, true);
    await r.region.writeAt(0, w);
    const p = new Uint8Array(8);
    await r.region.readAt(8, p);
    await r.region.readAt(16, p);
    expect(r.region.inspect().stagedBytes).toBeGreaterThan(0);
    await r.region.reset();
    expectClean(r);
    const window = new Uint8Array(64);
    await r.region.readAt(r.region.dataOffset, window);
    expect(window.every((b) => b === 0)).toBe(true);
  });
});

// ---- v2 face ---------------------------------------------------------------------

function v2Rig(faults: FaultPlan = {}) {
  const device = new SimDevice({ size: SIZE, seed: 31, pageSize: PAGE });
  const v1 = new SimV1Region(device, { windowSize: 16 * 1024, faults });
  const dev = new V2DeviceOverLegacy(v1);
  return { device, v1, dev };
}

function expectCleanV2(r: ReturnType<typeof v2Rig>): void {
  expect(r.dev.inspect()).toMatchObject({ session: null, bufferedBytes: 0 });
  expect(r.v1.inspect()).toMatchObject({ saving: false, resuming: false, stagedBytes: 0 });
}

async function v2Save(r: ReturnType<typeof v2Rig>) {
  const sink = new Sink();
  const result = await saveV2(r.dev, sink, { precopyRounds: 2, betweenRounds: () => void r.device.step(5) });
  return { sink, result };
}

async function v2MigratesAgain(r: ReturnType<typeof v2Rig>): Promise<void> {
  const { sink } = await v2Save(r);
  const dst = v2Rig();
  await loadV2(dst.dev, Readable.from([sink.bytes]));
  expect(dst.device.fingerprint()).toBe(r.device.fingerprint());
}

describe('v2 face: V2DeviceOverLegacy under the QEMU 8+ client', () => {
  it('a failed v1 arc: the SET fails with its errno; QEMU recovers the device; nothing survives', async () => {
    const r = v2Rig({ failArc: { from: 3, to: 2, errno: 'EBUSY' } });
    const e = await failure(v2Save(r));
    expect(e.code).toBe('EBUSY');
    expect(await r.dev.getState()).toBe(R);
    expectCleanV2(r);
    await v2MigratesAgain(r);
  });

  it('v1 110b is ERROR on the v2 face; QEMU resets; reset gives RUNNING (001)', async () => {
    const r = v2Rig({ failArc: { from: 3, to: 2, toError: true } });
    const e = await failure(v2Save(r));
    expect(e.code).toBe('EIO');
    expect(await r.dev.getState()).toBe(R);
    expect(await readDeviceState(r.v1)).toBe(1);
    expectCleanV2(r);
    await v2MigratesAgain(r);
  });

  it.each([1, 2, 7])('a v1 data-path read errno (read #%i) surfaces from read() (now or on the next call), never as EOF', async (nth) => {
    const r = v2Rig({ failIo: { op: 'read', nth, errno: 'ENXIO' } });
    const e = await failure(v2Save(r));
    expect(e.code).toBe('ENXIO');
    expect(await r.dev.getState()).toBe(R);
    expectCleanV2(r);
    await v2MigratesAgain(r);
  });

  it.each([
    ['a truncated stream fails the SET that leaves RESUMING (EINVAL); the client resets; nothing survives', { truncateStreamAt: 60_000 }],
    ['a corrupt stream is rejected (EINVAL from a batched window or from the exit); nothing applied', { corruptStreamAt: 90_000 }],
  ] as const)('%s', async (_what, fault) => {
    const { sink } = await v2Save(v2Rig(fault));
    const dst = v2Rig();
    const before = dst.device.fingerprint();
    const e = await failure(loadV2(dst.dev, Readable.from([sink.bytes])));
    expect(e.code).toBe('EINVAL');
    expect(dst.device.fingerprint()).toBe(before);
    expect(await dst.dev.getState()).toBe(R);
    expectCleanV2(dst);
  });

  it('a v1 resume write errno fails the load with it', async () => {
    const { sink } = await v2Save(v2Rig());
    const dst = v2Rig({ failIo: { op: 'write', nth: 4, errno: 'ENOSPC' } });
    const e = await failure(loadV2(dst.dev, Readable.from([sink.bytes])));
    expect(e.code).toBe('ENOSPC');
    expect(await dst.dev.getState()).toBe(R);
    expectCleanV2(dst);
  });

  it('reset ends the sessions of both directions and unflushed resume bytes are dropped', async () => {
    const r = v2Rig();
    const w = await r.dev.setState(RS);
    await w?.write(new Uint8Array(100));
    expect(r.dev.inspect().bufferedBytes).toBe(100);
    await r.dev.reset();
    expectCleanV2(r);
    expect((await failure(w!.write(new Uint8Array(1)))).code).toBe('ENODEV');
    const s = await r.dev.setState(SC);
    await s?.read(new Uint8Array(10));
    await r.dev.setState(S);
    expect((await failure(s!.read(new Uint8Array(1)))).code).toBe('ENODEV');
    expectCleanV2(r);
  });
});
