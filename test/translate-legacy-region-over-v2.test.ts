// LegacyRegionOverV2 against docs/SEMANTICS.md (D6-D32)
// (v1 face), rule by rule, over the kernel-faithful SimV2Driver. Expected
// stream bytes come from a twin SimDevice's own saver, not from the
// translator; what the translator asks of the v2 device is recorded.
import { describe, expect, it } from 'vitest';
import { errnoOf } from './support/errno.js';
import { drainStopCopy, stopCopyStream, readRegion as bytesAt } from './support/sim-helpers.js';
import type { LegacyRegion } from '../legacy/contracts.js';
import { readDeviceState, readU64Field, writeDeviceState, writeU64Field } from '../legacy/v1-registers.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { SimV2Driver } from '../src/sim/sim-v2-driver.js';
import { MigFlags, MigState } from '../src/v2/states.js';
import { LegacyRegionOverV2 } from '../translate/legacy-region-over-v2.js';
import { RecordingDevice } from './support/recording.js';

const { STOP_COPY: SC, P2P, PRE_COPY: PC } = MigFlags;
const FLAG_SETS = [SC, SC | P2P, SC | PC, SC | P2P | PC];
const SIZE = 6000;
const PAGE = 512;

function rig(flags: number, opts: { windowSize?: number; errorRecovery?: 'expose' | 'reset'; seed?: number } = {}) {
  const device = new SimDevice({ size: SIZE, seed: opts.seed ?? 3, pageSize: PAGE });
  const driver = new SimV2Driver(device, { flags });
  const rec = new RecordingDevice(driver);
  const region = new LegacyRegionOverV2(rec, { windowSize: opts.windowSize ?? 700, errorRecovery: opts.errorRecovery });
  return { device, driver, rec, region };
}

/** The stop-copy stream a fresh saver of an identical device produces. */
function referenceStream(seed = 3, steps = 0): Uint8Array {
  return stopCopyStream({ size: SIZE, seed, pageSize: PAGE }, steps);
}

/**
 * One v1 save iteration (pending_bytes, data_offset, data_size, the window),
 * then three more rounds of re-reads (with `between` run before each): the
 * same values and bytes each time, and no call reaches the device.
 */
async function expectStableIteration(
  region: LegacyRegion,
  rec: RecordingDevice,
  between = () => {},
): Promise<{ off: bigint; size: bigint; bytes: Uint8Array }> {
  await readU64Field(region, 'pending_bytes');
  const off = await readU64Field(region, 'data_offset');
  const size = await readU64Field(region, 'data_size');
  const bytes = await bytesAt(region, Number(off), Number(size));
  rec.log.clear();
  for (let i = 0; i < 3; i++) {
    between();
    expect(await readU64Field(region, 'data_offset')).toBe(off);
    expect(await readU64Field(region, 'data_size')).toBe(size);
    expect(await bytesAt(region, Number(off), Number(size))).toEqual(bytes);
  }
  expect(rec.log.starts()).toEqual([]);
  return { off, size, bytes };
}

describe('header access', () => {
  it('natural width and alignment only; reserved reads 0 and ignores writes; gap and past-end are EINVAL', async () => {
    const { region } = rig(SC | PC);
    const ok = new Set(['0:4', '4:4', '8:8', '16:8', '24:8']);
    for (let off = 0; off < 36; off++) {
      for (const w of [1, 2, 4, 8, 16]) {
        const expected = ok.has(`${off}:${w}`) ? 'ok' : 'EINVAL';
        expect(`${off}:${w} ${await errnoOf(bytesAt(region, off, w))}`).toBe(`${off}:${w} ${expected}`);
      }
    }
    expect(await errnoOf(bytesAt(region, 100, 4))).toBe('EINVAL'); // gap [32, dataOffset)
    expect(await errnoOf(bytesAt(region, region.size - 4, 8))).toBe('EINVAL'); // past the end
    expect(await errnoOf(bytesAt(region, region.size, 0))).toBe('ok'); // empty read at the end
    await region.writeAt(4, Uint8Array.of(1, 2, 3, 4));
    expect([...(await bytesAt(region, 4, 4))]).toEqual([0, 0, 0, 0]);
  });

  it('pending_bytes and data_offset are read-only (EINVAL), in every state', async () => {
    const { region } = rig(SC | PC);
    for (const state of [1, 3, 2, 0]) {
      await writeDeviceState(region, state);
      expect(await errnoOf(writeU64Field(region, 'pending_bytes', 5n))).toBe('EINVAL');
      expect(await errnoOf(writeU64Field(region, 'data_offset', 4096n))).toBe('EINVAL');
    }
  });

  it('the window is [dataOffset, size): data_offset reads it, writes outside RESUMING are EINVAL', async () => {
    const { region } = rig(SC, { windowSize: 256 });
    expect(Number(await readU64Field(region, 'data_offset'))).toBe(region.dataOffset);
    expect(region.size).toBe(region.dataOffset + 256);
    expect(await errnoOf(region.writeAt(region.dataOffset, new Uint8Array(8)))).toBe('EINVAL');
    await writeDeviceState(region, 4);
    expect(await errnoOf(region.writeAt(region.dataOffset + 248, new Uint8Array(8)))).toBe('ok');
    expect(await errnoOf(region.writeAt(region.dataOffset + 249, new Uint8Array(8)))).toBe('EINVAL');
  });
});

describe('device_state writes', () => {
  it.each(FLAG_SETS)('flags %i: 101, 110, 111 are EINVAL and nothing changes, on the v1 face or the device', async (flags) => {
    const { region, driver, rec } = rig(flags);
    await writeDeviceState(region, 3);
    const before = driver.currentState;
    rec.log.clear();
    for (const bad of [5, 6, 7, 0x80000005, 0x10000007]) {
      expect(await errnoOf(writeDeviceState(region, bad))).toBe('EINVAL');
      expect(await readDeviceState(region)).toBe(3);
    }
    expect(driver.currentState).toBe(before);
    expect(rec.log.starts().filter((c) => c.startsWith('setState'))).toEqual([]);
  });

  it('maps v1 targets to v2 states and lets the device walk the path in one SET', async () => {
    const { region, driver, rec } = rig(SC | P2P | PC);
    rec.log.clear();
    await writeDeviceState(region, 3);
    expect(driver.currentState).toBe(MigState.PRE_COPY);
    await writeDeviceState(region, 2);
    expect(driver.currentState).toBe(MigState.STOP_COPY);
    await writeDeviceState(region, 0);
    expect(driver.currentState).toBe(MigState.STOP);
    await writeDeviceState(region, 1);
    expect(driver.currentState).toBe(MigState.RUNNING);
    await writeDeviceState(region, 4);
    expect(driver.currentState).toBe(MigState.RESUMING);
    expect(rec.log.starts().filter((c) => c.startsWith('setState'))).toEqual([
      'setState(PRE_COPY)',
      'setState(STOP_COPY)',
      'setState(STOP)',
      'setState(RUNNING)',
      'setState(RESUMING)',
    ]);
  });

  it('keeps reserved bits 3..31 as written; same-low-bits writes do not reach the device', async () => {
    const { region, rec } = rig(SC | PC);
    await writeDeviceState(region, 0xabc00003);
    expect(await readDeviceState(region)).toBe(0xabc00003);
    rec.log.clear();
    await writeDeviceState(region, 0x00000003);
    expect(await readDeviceState(region)).toBe(3);
    expect(rec.log.starts().filter((c) => c.startsWith('setState'))).toEqual([]);
  });

  it.each([SC | PC, SC | P2P | PC, SC, SC | P2P])('flags %i: 010 -> 011 is EINVAL (v2 forbids STOP_COPY -> PRE_COPY)', async (flags) => {
    const { region, driver } = rig(flags);
    await writeDeviceState(region, 2);
    expect(await errnoOf(writeDeviceState(region, 3))).toBe('EINVAL');
    expect(await readDeviceState(region)).toBe(2);
    expect(driver.currentState).toBe(MigState.STOP_COPY);
  });

  it.each([SC, SC | P2P])('flags %i (no PRE_COPY): 011 stays RUNNING with pending 0; 011 -> 010 opens the session', async (flags) => {
    const { region, driver, device } = rig(flags);
    await writeDeviceState(region, 3);
    expect(await readDeviceState(region)).toBe(3);
    expect(driver.currentState).toBe(MigState.RUNNING);
    expect(driver.openSessions).toBe(0);
    expect(device.running).toBe(true);
    expect(await readU64Field(region, 'pending_bytes')).toBe(0n);
    expect(Number(await readU64Field(region, 'data_offset'))).toBe(region.dataOffset);
    expect(await readU64Field(region, 'data_size')).toBe(0n);
    await writeDeviceState(region, 2);
    expect(driver.currentState).toBe(MigState.STOP_COPY);
    expect(driver.openSessions).toBe(1);
    expect(Buffer.from(await drainStopCopy(region)).equals(Buffer.from(referenceStream()))).toBe(true);
  });

  it("follows the policy table: 'uapi' refuses 000 -> 001, 'qemu' accepts it", async () => {
    const device = new SimDevice({ size: SIZE, seed: 1, pageSize: PAGE });
    const strict = new LegacyRegionOverV2(new SimV2Driver(device, { flags: SC }), { policy: 'uapi' });
    await writeDeviceState(strict, 0);
    expect(await errnoOf(writeDeviceState(strict, 1))).toBe('EINVAL');
    const { region } = rig(SC);
    await writeDeviceState(region, 0);
    expect(await errnoOf(writeDeviceState(region, 1))).toBe('ok');
  });
});

describe('save', () => {
  it.each(FLAG_SETS)('flags %i: savevm (001 -> 010) stream equals the device stream; pending never 0 before the end', async (flags) => {
    for (const window of [1, 7, 700, 100_000]) {
      const { region, driver } = rig(flags, { windowSize: window });
      await writeDeviceState(region, 2);
      const got = await drainStopCopy(region);
      expect(Buffer.from(got).equals(Buffer.from(referenceStream())), `window ${window}`).toBe(true);
      // stays 0 once the end was seen
      expect(await readU64Field(region, 'pending_bytes')).toBe(0n);
      await writeDeviceState(region, 0);
      expect(driver.openSessions).toBe(0);
      expect(driver.openHandles).toBe(0);
    }
  });

  it('re-reads of data_offset and data_size in one iteration return the same chunk; the next pending read releases it', async () => {
    const { region, rec } = rig(SC | PC, { windowSize: 100 });
    await writeDeviceState(region, 2);
    const first = await expectStableIteration(region, rec);
    await readU64Field(region, 'pending_bytes');
    await readU64Field(region, 'data_offset');
    const second = await bytesAt(region, Number(first.off), Number(await readU64Field(region, 'data_size')));
    expect(
      Buffer.from(Buffer.concat([first.bytes, second])).equals(
        Buffer.from(referenceStream()).subarray(0, first.bytes.length + second.length),
      ),
    ).toBe(true);
  });

  it('pending_bytes reads before data_offset have no visible side effect', async () => {
    const { region } = rig(SC, { windowSize: 300 });
    await writeDeviceState(region, 2);
    const p = await readU64Field(region, 'pending_bytes');
    for (let i = 0; i < 5; i++) expect(await readU64Field(region, 'pending_bytes')).toBe(p);
    expect(Buffer.from(await drainStopCopy(region)).equals(Buffer.from(referenceStream()))).toBe(true);
  });

  it('pre-copy pending_bytes is PRECOPY_INFO initial + dirty (not just the staged chunk), ENOMSG -> 0', async () => {
    const { region, device } = rig(SC | PC, { windowSize: 64 });
    const twin = new SimDevice({ size: SIZE, seed: 3, pageSize: PAGE });
    twin.running = true;
    const saver = twin.createSaver();
    await writeDeviceState(region, 3);
    const info = saver.precopyInfo();
    expect(await readU64Field(region, 'pending_bytes')).toBe(info.initialBytes + info.dirtyBytes);
    // take the whole first pass in 64-byte chunks
    let pending = await readU64Field(region, 'pending_bytes');
    let taken = 0;
    while (pending > 0n) {
      await readU64Field(region, 'data_offset');
      taken += Number(await readU64Field(region, 'data_size'));
      pending = await readU64Field(region, 'pending_bytes');
    }
    expect(BigInt(taken)).toBe(info.initialBytes);
    // nothing right now: the v2 read is ENOMSG, the v1 chunk is empty
    await readU64Field(region, 'data_offset');
    expect(await readU64Field(region, 'data_size')).toBe(0n);
    expect(await readU64Field(region, 'pending_bytes')).toBe(0n);
    // device work dirties pages: pending comes back
    device.step(3);
    expect(await readU64Field(region, 'pending_bytes')).toBeGreaterThan(0n);
  });

  it('re-entering SAVING starts a new stream (old staged bytes dropped)', async () => {
    const { region, driver } = rig(SC | PC, { windowSize: 50 });
    await writeDeviceState(region, 3);
    await readU64Field(region, 'pending_bytes');
    await readU64Field(region, 'data_offset');
    await writeDeviceState(region, 1); // migration failed: notifier 011 -> 001
    expect(region.inspect().stagedBytes).toBe(0);
    expect(driver.openSessions).toBe(0);
    await writeDeviceState(region, 2);
    expect(Buffer.from(await drainStopCopy(region)).equals(Buffer.from(referenceStream()))).toBe(true);
  });

  it('a window read is a memcpy from the staged chunk: no device call, fast for 1 MiB', async () => {
    const device = new SimDevice({ size: 4 << 20, seed: 9, pageSize: 4096 });
    const rec = new RecordingDevice(new SimV2Driver(device, { flags: SC }));
    const region = new LegacyRegionOverV2(rec, { windowSize: 1 << 20 });
    await writeDeviceState(region, 2);
    await readU64Field(region, 'pending_bytes');
    const off = Number(await readU64Field(region, 'data_offset'));
    expect(await readU64Field(region, 'data_size')).toBe(BigInt(1 << 20));
    rec.log.clear();
    const buf = new Uint8Array(1 << 20);
    const t0 = performance.now();
    for (let i = 0; i < 50; i++) await region.readAt(off, buf);
    const perRead = (performance.now() - t0) / 50;
    expect(rec.log.entries).toEqual([]);
    expect(perRead).toBeLessThan(20); // a per-byte loop over 1 MiB of async calls would take seconds
  });
});

describe('re-reads of data_offset and data_size within one iteration: same values, no device call', () => {
  it('in pre-copy (a PRE_COPY device): no read, no PRECOPY_INFO, no MIG_DATA_SIZE', async () => {
    const rec = new RecordingDevice(new SimV2Driver(new SimDevice({ size: SIZE, seed: 3, pageSize: PAGE }), { flags: SC | P2P | PC }));
    const region = new LegacyRegionOverV2(rec, { windowSize: 500 });
    await writeDeviceState(region, 3);
    expect((await expectStableIteration(region, rec)).size).toBe(500n);
  });

  it('in pre-copy on a chunk shorter than the window, while the running device dirties more pages', async () => {
    const device = new SimDevice({ size: SIZE, seed: 3, pageSize: PAGE });
    const rec = new RecordingDevice(new SimV2Driver(device, { flags: SC | P2P | PC }));
    const region = new LegacyRegionOverV2(rec, { windowSize: 100_000 });
    await writeDeviceState(region, 3);
    const { size } = await expectStableIteration(region, rec, () => void device.step(4));
    expect(size).toBeGreaterThan(0n);
    expect(size).toBeLessThan(100_000n); // all there was when data_offset was read; new dirt waits for the next iteration
    expect(await readU64Field(region, 'pending_bytes')).toBeGreaterThan(0n);
  });

  it('in an emulated pre-copy: the empty chunk stays empty, also across 011 -> 010', async () => {
    const rec = new RecordingDevice(new SimV2Driver(new SimDevice({ size: SIZE, seed: 3, pageSize: PAGE }), { flags: SC }));
    const region = new LegacyRegionOverV2(rec, { windowSize: 500 });
    await writeDeviceState(region, 3);
    expect((await expectStableIteration(region, rec)).size).toBe(0n);
    await writeDeviceState(region, 2);
    expect(await readU64Field(region, 'data_size')).toBe(0n);
    expect(await readU64Field(region, 'data_offset')).toBe(BigInt(region.dataOffset));
    expect(await readU64Field(region, 'data_size')).toBe(0n);
  });

  it('in stop-and-copy on the last, short chunk', async () => {
    const rec = new RecordingDevice(new SimV2Driver(new SimDevice({ size: SIZE, seed: 3, pageSize: PAGE }), { flags: SC | P2P | PC }));
    const region = new LegacyRegionOverV2(rec, { windowSize: 4000 });
    await writeDeviceState(region, 2);
    const first = (await expectStableIteration(region, rec)).size;
    expect(first).toBe(4000n);
    const last = (await expectStableIteration(region, rec)).size;
    expect(Number(first + last)).toBe(referenceStream().length);
    expect(await readU64Field(region, 'pending_bytes')).toBe(0n);
  });
});

describe('resume', () => {
  it('window bytes are forwarded on the data_size write; leaving RESUMING applies them', async () => {
    const stream = referenceStream(5, 7);
    const source = new SimDevice({ size: SIZE, seed: 5, pageSize: PAGE });
    source.running = true;
    source.step(7);
    const { region, device, rec } = rig(SC | PC, { windowSize: 333, seed: 77 });
    await writeDeviceState(region, 4);
    for (let at = 0; at < stream.length;) {
      const off = Number(await readU64Field(region, 'data_offset'));
      const n = Math.min(region.size - off, stream.length - at);
      rec.log.clear();
      await region.writeAt(off, stream.subarray(at, at + n));
      expect(rec.log.entries, 'window writes only fill the window').toEqual([]);
      await writeU64Field(region, 'data_size', BigInt(n));
      expect(rec.log.starts()).toEqual([`write(${n})`]);
      expect(await readU64Field(region, 'data_size')).toBe(BigInt(n));
      at += n;
    }
    await writeDeviceState(region, 1);
    expect(device.fingerprint()).toBe(source.fingerprint());
  });

  it('a rejected resume fails the state write that leaves RESUMING; it stays rejected until reset', async () => {
    const stream = referenceStream(5, 0);
    const { region, driver, device } = rig(SC, { windowSize: 4096, seed: 77 });
    const before = device.fingerprint();
    await writeDeviceState(region, 4);
    await region.writeAt(region.dataOffset, stream.subarray(0, 1000));
    await writeU64Field(region, 'data_size', 1000n); // incomplete
    expect(await errnoOf(writeDeviceState(region, 1))).toBe('EINVAL');
    expect(await readDeviceState(region)).toBe(4);
    expect(driver.currentState).toBe(MigState.RESUMING);
    // more data and another exit: still refused (as the reference v1 driver does)
    await region.writeAt(region.dataOffset, stream.subarray(1000, 2000));
    expect(await errnoOf(writeU64Field(region, 'data_size', 1000n))).toBe('EINVAL');
    expect(await errnoOf(writeDeviceState(region, 0))).toBe('EINVAL');
    expect(device.fingerprint()).toBe(before);
    await region.reset();
    expect(await readDeviceState(region)).toBe(1);
    expect(driver.openSessions).toBe(0);
    expect(driver.openHandles).toBe(0);
  });

  it('corrupt data fails the data_size write that forwards it (EINVAL)', async () => {
    const stream = Buffer.from(referenceStream(5, 0));
    stream[3] ^= 0xff; // the header magic
    const { region } = rig(SC | PC, { windowSize: 4096 });
    await writeDeviceState(region, 4);
    await region.writeAt(region.dataOffset, stream.subarray(0, 100));
    expect(await errnoOf(writeU64Field(region, 'data_size', 100n))).toBe('EINVAL');
    expect(await errnoOf(writeDeviceState(region, 1))).toBe('EINVAL');
  });

  it('data_size is EINVAL outside RESUMING and beyond the window', async () => {
    const { region } = rig(SC, { windowSize: 64 });
    expect(await errnoOf(writeU64Field(region, 'data_size', 1n))).toBe('EINVAL');
    await writeDeviceState(region, 4);
    expect(await errnoOf(writeU64Field(region, 'data_size', 65n))).toBe('EINVAL');
    expect(await errnoOf(writeU64Field(region, 'data_size', 0n))).toBe('ok');
  });
});

describe('opening over a device left in another state', () => {
  it.each([MigState.STOP, MigState.RESUMING, MigState.STOP_COPY, MigState.PRE_COPY])(
    'left in %s: normalised with a reset (checked to give RUNNING), never a SET (docs/PROTOCOL.md §7 H2)',
    async (left) => {
      const device = new SimDevice({ size: SIZE, seed: 1, pageSize: PAGE });
      const driver = new SimV2Driver(device, { flags: SC | PC });
      const earlier = await driver.setState(left); // an earlier user's session, never closed
      expect(earlier === null).toBe(left === MigState.STOP);
      const rec = new RecordingDevice(driver);
      const region = new LegacyRegionOverV2(rec);
      expect(await readDeviceState(region)).toBe(1);
      expect(rec.log.starts()).toEqual(['migrationFlags', 'getState', 'reset', 'getState']);
      expect(driver.currentState).toBe(MigState.RUNNING);
      expect(driver.openSessions).toBe(0);
    },
  );

  it('a RUNNING device is used as is', async () => {
    const { region, rec } = rig(SC);
    expect(await readDeviceState(region)).toBe(1);
    expect(rec.log.starts()).toEqual(['migrationFlags', 'getState']);
  });
});

describe('errors', () => {
  it("110b only when the v2 device really is in ERROR ('expose')", async () => {
    const { region, driver } = rig(SC | PC);
    // a failed arc that leaves the device where it was: previous state, errno of the arc
    driver.armFaults({ failArc: { from: MigState.RUNNING, to: MigState.PRE_COPY, errno: 'EBUSY' } });
    expect(await errnoOf(writeDeviceState(region, 3))).toBe('EBUSY');
    expect(await readDeviceState(region)).toBe(1);
    // a failed arc in the middle of a path: the intermediate state
    driver.armFaults({ failArc: { from: MigState.STOP, to: MigState.STOP_COPY } });
    expect(await errnoOf(writeDeviceState(region, 2))).toBe('EIO');
    expect(await readDeviceState(region)).toBe(0);
    expect(driver.currentState).toBe(MigState.STOP);
    // into ERROR: 110b with reserved bits kept, and every later write is EINVAL
    await writeDeviceState(region, 0x100);
    driver.armFaults({ failArc: { from: MigState.STOP, to: MigState.RUNNING, toError: true } });
    expect(await errnoOf(writeDeviceState(region, 0x101))).toBe('EIO');
    expect(await readDeviceState(region)).toBe(0x106);
    expect(await errnoOf(writeDeviceState(region, 1))).toBe('EINVAL');
    await region.reset();
    expect(await readDeviceState(region)).toBe(1);
    expect(driver.currentState).toBe(MigState.RUNNING);
  });

  it("errorRecovery 'reset': the device is reset, the write fails with the errno, device_state reads 001", async () => {
    const { region, driver, rec } = rig(SC | PC, { errorRecovery: 'reset' });
    await writeDeviceState(region, 3);
    await readU64Field(region, 'pending_bytes');
    await readU64Field(region, 'data_offset');
    driver.armFaults({ failArc: { from: MigState.PRE_COPY, to: MigState.STOP_COPY, errno: 'EFAULT', toError: true } });
    rec.log.clear();
    expect(await errnoOf(writeDeviceState(region, 2))).toBe('EFAULT');
    expect(rec.log.starts()).toContain('reset');
    expect(await readDeviceState(region)).toBe(1);
    expect(driver.currentState).toBe(MigState.RUNNING);
    expect(driver.openSessions).toBe(0);
    expect(driver.openHandles).toBe(0);
    expect(region.inspect()).toMatchObject({ session: null, stagedBytes: 0 });
    // and the VM survives: a fresh migration works
    await writeDeviceState(region, 2);
    expect((await drainStopCopy(region)).length).toBeGreaterThan(0);
  });

  it('a data-path error fails the register access with its errno, never pending 0; the stream continues intact', async () => {
    const { region, driver } = rig(SC, { windowSize: 500 });
    await writeDeviceState(region, 2);
    driver.armFaults({ failIo: { op: 'read', nth: 1, errno: 'EIO' } });
    expect(await errnoOf(readU64Field(region, 'pending_bytes'))).toBe('EIO');
    expect(await readU64Field(region, 'pending_bytes')).toBeGreaterThan(0n);
    const rest = await drainStopCopy(region);
    expect(Buffer.from(rest).equals(Buffer.from(referenceStream()))).toBe(true);
  });

  it('a data-path error in the pre-copy trigger fails the data_offset read; a retry gets the chunk', async () => {
    const { region, driver } = rig(SC | PC, { windowSize: 500 });
    await writeDeviceState(region, 3);
    expect(await readU64Field(region, 'pending_bytes')).toBeGreaterThan(0n);
    driver.armFaults({ failIo: { op: 'read', nth: 1, errno: 'ENOSPC' } });
    expect(await errnoOf(readU64Field(region, 'data_offset'))).toBe('ENOSPC');
    const off = Number(await readU64Field(region, 'data_offset'));
    const first = await bytesAt(region, off, Number(await readU64Field(region, 'data_size')));
    expect(first.length).toBe(500);
    await writeDeviceState(region, 2);
    const rest = await drainStopCopy(region);
    expect(Buffer.from(Buffer.concat([first, rest])).equals(Buffer.from(referenceStream()))).toBe(true);
  });

  it('EAGAIN and EINTR are retried', async () => {
    const { region, driver } = rig(SC, { windowSize: 500 });
    await writeDeviceState(region, 2);
    driver.armFaults({ failIo: { op: 'read', nth: 1, errno: 'EAGAIN' } });
    expect(await readU64Field(region, 'pending_bytes')).toBeGreaterThan(0n);
    driver.armFaults({ failIo: { op: 'read', nth: 1, errno: 'EINTR' } });
    const rest = await drainStopCopy(region);
    expect(rest.length).toBeGreaterThan(0);
  });
});

describe('serialization', () => {
  it('two overlapping state writes do not interleave: the second SET starts after the first ends', async () => {
    const { region, rec } = rig(SC | P2P | PC);
    await readDeviceState(region); // first use
    rec.log.clear();
    rec.setStateGate.close();
    const w1 = writeDeviceState(region, 3);
    const w2 = writeDeviceState(region, 2);
    const r = readDeviceState(region);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // the first SET is held at the gate; nothing else may have reached the device
    expect(rec.log.entries).toEqual(['> setState(PRE_COPY)']);
    rec.setStateGate.open();
    await Promise.all([w1, w2]);
    expect(await r).toBe(2);
    expect(rec.log.entries.slice(0, 4)).toEqual([
      '> setState(PRE_COPY)',
      '< setState(PRE_COPY)',
      '> setState(STOP_COPY)',
      '< setState(STOP_COPY)',
    ]);
    expect(rec.log.maxConcurrent).toBe(1);
  });
});
