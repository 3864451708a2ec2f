// The translators on the paths that hurt on a real device:
//  - the device rule (src/v2/takeover.ts): both faces take a device over by it,
//    never SET out of a RESUMING they did not enter, never close one they left in RESUMING;
//  - the v1 face reaches the v2 state a v1 value maps to, also when only the
//    hidden P2P bit differs (RUNNING_P2P reads 001, PRE_COPY_P2P reads 011);
//  - pending_bytes saturates at 2^64 - 1 instead of wrapping to 0;
//  - direct tests of failure paths: EAGAIN/EINTR from the v1 region under
//    V2DeviceOverLegacy, a failing VFIO_DEVICE_RESET while sessions are open,
//    and cancelling an emulated pre-copy (re-reads of data_offset/data_size:
//    translate-legacy-region-over-v2.test.ts).
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { LegacyRegion } from '../legacy/contracts.js';
import { SimV1Region } from '../legacy/sim-v1-region.js';
import { readDeviceState, readU64Field, writeDeviceState } from '../legacy/v1-registers.js';
import { FakeSyscalls } from '../testing.js';
import { KernelMigrationDevice } from '../src/kernel/kernel-migration-device.js';
import { VFIO_DEVICE_RESET } from '../src/uapi/ioctl.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { SimV2Driver } from '../src/sim/sim-v2-driver.js';
import { MigrationError, type ErrnoName } from '../src/uapi/errors.js';
import { loadV2, saveV2 } from '../legacy/qemu/v2-client.js';
import type { DataSession, MigrationDevice, PrecopyInfo } from '../src/v2/contracts.js';
import { MigFlags, MigState } from '../src/v2/states.js';
import { LegacyRegionOverV2 } from '../translate/legacy-region-over-v2.js';
import { TRANSIENT_RETRIES } from '../translate/retry.js';
import { V2DeviceOverLegacy } from '../translate/v2-device-over-legacy.js';
import { RecordingDevice, RecordingRegion } from './support/recording.js';
import { failure } from './support/errno.js';
import { Sink, drainStopCopy, stopCopyStream } from './support/sim-helpers.js';

const { STOP_COPY: SC_F, P2P, PRE_COPY: PC_F } = MigFlags;
const ALL = SC_F | P2P | PC_F;
const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;
const SIZE = 6000;
const PAGE = 512;
const U64_MAX = (1n << 64n) - 1n;

const simDevice = (seed = 3) => new SimDevice({ size: SIZE, seed, pageSize: PAGE });
const reference = (seed = 3) => stopCopyStream({ size: SIZE, seed, pageSize: PAGE });
const sets = (rec: RecordingDevice) => rec.log.starts().filter((c) => c.startsWith('setState'));

// ---- the device rule on both faces --------------------------------------------------

describe('LegacyRegionOverV2 and the device rule', () => {
  it('close() resets a device it leaves in RESUMING (a v2 driver keeps its state on close, like mtty)', async () => {
    const driver = new SimV2Driver(simDevice(), { flags: ALL });
    const region = new LegacyRegionOverV2(driver, { windowSize: 700 });
    await writeDeviceState(region, 4);
    expect(driver.currentState).toBe(RS);
    await region.close();
    expect(driver.currentState).toBe(R);
    expect(driver.openSessions).toBe(0);
  });

  it('a device whose reset fails at first use is refused: the access fails with its errno, nothing is SET', async () => {
    const driver = new SimV2Driver(simDevice(), { flags: ALL });
    await driver.setState(RS);
    const rec = new RecordingDevice(withFailingReset(driver, 'EIO'));
    const region = new LegacyRegionOverV2(rec);
    const e = await failure(readDeviceState(region));
    expect(e.code).toBe('EIO');
    expect(e.message).toMatch(/left in RESUMING by an earlier user and VFIO_DEVICE_RESET failed/);
    expect(sets(rec)).toEqual([]);
    expect(driver.currentState).toBe(RS);
  });
});

describe('V2DeviceOverLegacy and the device rule', () => {
  /** A SimV1Region an earlier user left at `bits` (110b through a failed arc). */
  async function leftAt(bits: number) {
    const v1 = new SimV1Region(simDevice(), { windowSize: 700 });
    if (bits === 6) {
      v1.armFaults({ failArc: { from: 1, to: 2, toError: true } });
      await writeDeviceState(v1, 2).catch(() => undefined);
    } else if (bits !== 1) {
      await writeDeviceState(v1, bits);
    }
    expect(await readDeviceState(v1)).toBe(bits);
    const region = new RecordingRegion(v1);
    return { v1, region, dev: new V2DeviceOverLegacy(region) };
  }

  it.each([
    [4, 'RESUMING', 'reset'],
    [2, 'STOP_COPY', 'reset'],
    [3, 'PRE_COPY', 'reset'],
    [6, 'ERROR', 'reset'],
    [0, 'STOP', 'kept'],
    [1, 'RUNNING', 'kept'],
  ] as const)('v1 %i (%s) at first use: %s', async (bits, name, action) => {
    const { region, dev } = await leftAt(bits);
    const state = await dev.getState();
    expect(MigState[state]).toBe(action === 'reset' ? 'RUNNING' : name);
    expect(region.log.starts().filter((c) => c === 'reset')).toHaveLength(action === 'reset' ? 1 : 0);
    expect(region.log.starts().filter((c) => c.startsWith('write device_state'))).toEqual([]);
  });

  it('a SET out of a RESUMING the face did not enter is refused (EBUSY) with nothing written', async () => {
    const { v1, region, dev } = await leftAt(1);
    expect(await dev.getState()).toBe(R);
    await writeDeviceState(v1, 4); // another user of the same region
    region.log.clear();
    const e = await failure(dev.setState(R));
    expect(e.code).toBe('EBUSY');
    expect(region.log.starts().filter((c) => c.startsWith('write'))).toEqual([]);
    expect(await readDeviceState(v1)).toBe(4);
  });

  it('its own RESUMING it leaves with a state write, and close() resets a region it leaves in 100', async () => {
    const { v1, region, dev } = await leftAt(1);
    const s = (await dev.setState(RS))!;
    await s.close();
    expect((await failure(dev.setState(R))).code).toBe('EINVAL'); // its own: the write reaches the driver, which refuses no data
    expect(await readDeviceState(v1)).toBe(4);
    region.log.clear();
    await dev.close();
    expect(region.log.starts()).toEqual(['read device_state', 'reset', 'close']);
    expect(v1.inspect()).toMatchObject({ deviceState: 1, resuming: false });
  });
});

// ---- item 3: RUNNING_P2P and PRE_COPY_P2P are not hidden from the next write ------------

describe('the v1 face reaches the v2 state a write maps to', () => {
  function rig(flags: number) {
    const driver = new SimV2Driver(simDevice(), { flags });
    const rec = new RecordingDevice(driver);
    return { driver, rec, region: new LegacyRegionOverV2(rec, { windowSize: 700 }) };
  }

  it.each([ALL, SC_F | P2P])(
    'flags %i: 001 -> 000 fails at RUNNING_P2P -> STOP; 001 is shown; the next 001 write SETs RUNNING',
    async (flags) => {
      const { driver, rec, region } = rig(flags);
      await readDeviceState(region);
      driver.armFaults({ failArc: { from: RP, to: S, errno: 'EBUSY' } });
      expect((await failure(writeDeviceState(region, 0))).code).toBe('EBUSY');
      expect(driver.currentState).toBe(RP);
      expect(await readDeviceState(region)).toBe(1);
      rec.log.clear();
      await writeDeviceState(region, 1); // QEMU 7.2's cont (or its failure notifier)
      expect(sets(rec)).toEqual(['setState(RUNNING)']);
      expect(driver.currentState).toBe(R);
      expect(region.inspect().v2State).toBe(R);
    },
  );

  it('011 -> 010 fails at PRE_COPY_P2P -> STOP_COPY; 011 is shown; the next 011 write SETs PRE_COPY and the stream goes on', async () => {
    const { driver, rec, region } = rig(ALL);
    await writeDeviceState(region, 3);
    driver.armFaults({ failArc: { from: PCP, to: SC, errno: 'EIO' } });
    expect((await failure(writeDeviceState(region, 2))).code).toBe('EIO');
    expect(driver.currentState).toBe(PCP);
    expect(await readDeviceState(region)).toBe(3);
    rec.log.clear();
    await writeDeviceState(region, 3);
    expect(sets(rec)).toEqual(['setState(PRE_COPY)']);
    expect(driver.currentState).toBe(PC);
    expect(region.inspect().session).toBe('saving'); // PRE_COPY_P2P -> PRE_COPY keeps the data file
    await writeDeviceState(region, 2);
    expect((await drainStopCopy(region)).length).toBeGreaterThan(0);
    await writeDeviceState(region, 1);
    expect(driver.openSessions).toBe(0);
  });

  it('a write of the value shown over exactly the state it maps to still reaches nothing (emulated 011 included)', async () => {
    for (const [flags, value] of [
      [ALL, 1],
      [ALL, 3],
      [SC_F, 3],
      [SC_F | P2P, 1],
    ] as const) {
      const { rec, region } = rig(flags);
      await writeDeviceState(region, value);
      rec.log.clear();
      await writeDeviceState(region, value);
      expect(sets(rec), `flags ${flags}, ${value}`).toEqual([]);
    }
  });
});

// ---- item 4: pending_bytes never wraps ----------------------------------------------

/** A device whose size estimates are huge (a driver may say anything up to 2^64 - 1). */
function hugeEstimates(inner: MigrationDevice, stopCopy: (staged: number) => bigint, precopy: PrecopyInfo): MigrationDevice {
  const wrap = (s: DataSession): DataSession => ({
    read: (b) => s.read(b),
    write: (b) => s.write(b),
    close: () => s.close(),
    precopyInfo: async () => precopy,
  });
  return {
    migrationFlags: () => inner.migrationFlags(),
    getState: () => inner.getState(),
    setState: async (t) => {
      const s = await inner.setState(t);
      return s && wrap(s);
    },
    stopCopySize: async () => stopCopy(700),
    reset: () => inner.reset(),
    close: () => inner.close(),
  };
}

describe('pending_bytes saturates at 2^64 - 1', () => {
  it('stop-copy: staged bytes + MIG_DATA_SIZE reaching 2^64 read 2^64 - 1, not 0', async () => {
    const driver = new SimV2Driver(simDevice(), { flags: ALL });
    const region = new LegacyRegionOverV2(
      hugeEstimates(driver, (staged) => (1n << 64n) - BigInt(staged), { initialBytes: 0n, dirtyBytes: 0n }),
      { windowSize: 700 },
    );
    await writeDeviceState(region, 2);
    expect(await readU64Field(region, 'pending_bytes')).toBe(U64_MAX);
    expect(region.inspect().stagedBytes).toBe(700);
  });

  it.each([
    [U64_MAX, 1n],
    [1n << 63n, 1n << 63n],
    [U64_MAX, U64_MAX],
  ])('pre-copy: initial %s + dirty %s reads 2^64 - 1', async (initialBytes, dirtyBytes) => {
    const driver = new SimV2Driver(simDevice(), { flags: ALL });
    const region = new LegacyRegionOverV2(
      hugeEstimates(driver, () => 0n, { initialBytes, dirtyBytes }),
      { windowSize: 700 },
    );
    await writeDeviceState(region, 3);
    expect(await readU64Field(region, 'pending_bytes')).toBe(U64_MAX);
  });
});

// ---- item 14: failure paths, each tested directly ---------------------------------------

/** A LegacyRegion that fails every `every`-th access once with EAGAIN or EINTR (alternating); `always` fails every access. */
class FlakyRegion implements LegacyRegion {
  accesses = 0;
  failures = 0;
  constructor(
    readonly inner: LegacyRegion,
    private readonly every: number,
    private readonly always = false,
  ) {}
  get size(): number {
    return this.inner.size;
  }
  readAt(offset: number, buf: Uint8Array): Promise<void> {
    return this.maybeFail(() => this.inner.readAt(offset, buf));
  }
  writeAt(offset: number, data: Uint8Array): Promise<void> {
    return this.maybeFail(() => this.inner.writeAt(offset, data));
  }
  reset(): Promise<void> {
    return this.maybeFail(() => this.inner.reset());
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  private async maybeFail(op: () => Promise<void>): Promise<void> {
    if (this.always || ++this.accesses % this.every === 0) {
      this.failures++;
      throw new MigrationError(this.failures % 2 ? 'EAGAIN' : 'EINTR', 'flaky v1 driver');
    }
    return op();
  }
}

describe('EAGAIN / EINTR from the v1 region under V2DeviceOverLegacy', () => {
  it('are retried on every access kind: a whole save and load (with a reset) move the same state', async () => {
    const srcDev = simDevice(5);
    const dstDev = simDevice(6);
    const src = new FlakyRegion(new SimV1Region(srcDev, { windowSize: 300 }), 3);
    const dst = new FlakyRegion(new SimV1Region(dstDev, { windowSize: 200 }), 4);
    const source = new V2DeviceOverLegacy(src);
    const destination = new V2DeviceOverLegacy(dst);
    await destination.reset();
    const sink = new Sink();
    await saveV2(source, sink, { precopyRounds: 2, betweenRounds: () => void srcDev.step(3) });
    await loadV2(destination, Readable.from([sink.bytes]));
    expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
    expect(src.failures).toBeGreaterThan(20);
    expect(dst.failures).toBeGreaterThan(20);
  });

  it('one that never stops surfaces with its errno after a bounded number of tries, never a hang', async () => {
    const flaky = new FlakyRegion(new SimV1Region(simDevice()), 1, true);
    const e = await failure(new V2DeviceOverLegacy(flaky).getState());
    expect(['EAGAIN', 'EINTR']).toContain(e.code);
    expect(flaky.failures).toBe(TRANSIENT_RETRIES + 1);
  });
});

describe('a VFIO_DEVICE_RESET that fails while sessions are open still releases them', () => {
  const UUID = 'cccccccc-0000-4000-8000-000000000003';
  async function kernelStack() {
    const sys = new FakeSyscalls({ devices: [{ name: UUID, group: 2 }] });
    const kmd = await KernelMigrationDevice.open({ group: 2, name: UUID }, sys);
    const dataFds = () => sys.openFds().filter((f) => f.kind === 'data');
    return { sys, kmd, dataFds, failReset: () => sys.inject({ op: 'ioctl', request: VFIO_DEVICE_RESET, errno: 'EIO' }) };
  }

  it('LegacyRegionOverV2 over the kernel: the session and its data fd are gone, nothing staged', async () => {
    const { kmd, dataFds, failReset } = await kernelStack();
    const region = new LegacyRegionOverV2(kmd, { windowSize: 64 });
    await writeDeviceState(region, 2);
    await readU64Field(region, 'pending_bytes');
    await readU64Field(region, 'data_offset');
    expect(region.inspect()).toMatchObject({ session: 'saving', stagedBytes: 64 });
    expect(dataFds()).toHaveLength(1);
    failReset();
    expect((await failure(region.reset())).code).toBe('EIO');
    expect(region.inspect()).toMatchObject({ session: null, stagedBytes: 0 });
    expect(dataFds()).toEqual([]);
    await region.reset();
    await region.close();
  });

  it('V2DeviceOverLegacy over a v1 region: both sessions end (ENODEV), nothing buffered', async () => {
    const inner = new SimV1Region(simDevice(), { windowSize: 300 });
    let failing = true;
    const region: LegacyRegion = {
      get size() {
        return inner.size;
      },
      readAt: (o, b) => inner.readAt(o, b),
      writeAt: (o, d) => inner.writeAt(o, d),
      close: () => inner.close(),
      reset: async () => {
        if (failing) throw new MigrationError('EIO', 'reset refused');
        return inner.reset();
      },
    };
    const dev = new V2DeviceOverLegacy(region);
    const saving = (await dev.setState(PC))!;
    expect(await saving.read(new Uint8Array(100))).toBe(100);
    expect((await failure(dev.reset())).code).toBe('EIO');
    expect(dev.inspect()).toMatchObject({ session: null, bufferedBytes: 0 });
    expect((await failure(saving.read(new Uint8Array(10)))).code).toBe('ENODEV');
    failing = false;
    await dev.reset();
    const resuming = (await dev.setState(RS))!;
    expect(await resuming.write(new Uint8Array(50))).toBe(50);
    failing = true;
    expect((await failure(dev.reset())).code).toBe('EIO');
    expect(dev.inspect()).toMatchObject({ session: null, bufferedBytes: 0 });
    expect((await failure(resuming.write(new Uint8Array(1)))).code).toBe('ENODEV');
  });

  it('both translators stacked over the kernel: no data fd survives the failed reset', async () => {
    const { kmd, dataFds, failReset } = await kernelStack();
    const dev = new V2DeviceOverLegacy(new LegacyRegionOverV2(kmd, { windowSize: 64 }));
    const s = (await dev.setState(SC))!;
    expect(await s.read(new Uint8Array(10))).toBe(10);
    expect(dataFds()).toHaveLength(1);
    failReset();
    expect((await failure(dev.reset())).code).toBe('EIO');
    expect(dataFds()).toEqual([]);
    expect(dev.inspect().session).toBeNull();
    await dev.reset();
    await dev.close();
  });
});

describe('cancelling an emulated pre-copy (a device without PRE_COPY)', () => {
  it.each([SC_F, SC_F | P2P])(
    'flags %i: 001 -> 011 -> 001 leaves nothing behind; a stop-and-copy then gives the whole stream',
    async (flags) => {
      const driver = new SimV2Driver(simDevice(), { flags });
      const rec = new RecordingDevice(driver);
      const region = new LegacyRegionOverV2(rec, { windowSize: 700 });
      await writeDeviceState(region, 3);
      expect(region.inspect()).toMatchObject({ emulatedPrecopy: true, v2State: R });
      // QEMU 7.2's pre-copy iterations: nothing to send early.
      for (let i = 0; i < 2; i++) {
        expect(await readU64Field(region, 'pending_bytes')).toBe(0n);
        expect(await readU64Field(region, 'data_offset')).toBe(BigInt(region.dataOffset));
        expect(await readU64Field(region, 'data_size')).toBe(0n);
      }
      await writeDeviceState(region, 1); // the migration is cancelled: the notifier's 001
      expect(region.inspect()).toMatchObject({ emulatedPrecopy: false, v2State: R, session: null, stagedBytes: 0, deviceState: 1 });
      expect(sets(rec)).toEqual([]); // RUNNING all along: no SET
      expect(await readU64Field(region, 'pending_bytes')).toBe(0n);
      expect(await readU64Field(region, 'data_size')).toBe(0n);
      await writeDeviceState(region, 2); // savevm later
      expect(sets(rec)).toEqual(['setState(STOP_COPY)']);
      expect(Buffer.from(await drainStopCopy(region)).equals(reference())).toBe(true);
      await writeDeviceState(region, 0);
      expect(driver.openSessions).toBe(0);
      expect(driver.openHandles).toBe(0);
    },
  );
});

/** `inner` with a reset that always fails with `code`. */
function withFailingReset(inner: MigrationDevice, code: ErrnoName): MigrationDevice {
  return {
    migrationFlags: () => inner.migrationFlags(),
    getState: () => inner.getState(),
    setState: (t) => inner.setState(t),
    stopCopySize: () => inner.stopCopySize(),
    reset: async () => {
      throw new MigrationError(code, 'reset refused');
    },
    close: () => inner.close(),
  };
}
