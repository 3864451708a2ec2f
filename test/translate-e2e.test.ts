// End to end through each translator, with the real clients:
//  - QEMU 7.2 (legacy/qemu/v1-client.ts) over LegacyRegionOverV2(SimV2Driver), every flag set;
//  - QEMU 8+ (legacy/qemu/v2-client.ts) over V2DeviceOverLegacy(SimV1Region);
//  - and across generations (saved over one protocol, loaded over the other);
// windows of 4 KiB, 1 MiB and smaller than one source chunk, pre-copy
// rounds while the device keeps working; the destination's fingerprint must
// equal the source's.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Sink } from './support/sim-helpers.js';
import { loadV1, saveV1 } from '../legacy/qemu/v1-client.js';
import { SimV1Region } from '../legacy/sim-v1-region.js';
import { readDeviceState } from '../legacy/v1-registers.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { SimV2Driver } from '../src/sim/sim-v2-driver.js';
import { loadV2, saveV2 } from '../legacy/qemu/v2-client.js';
import { FLAG_SETS, MigFlags, MigState } from '../src/v2/states.js';
import { LegacyRegionOverV2 } from '../translate/legacy-region-over-v2.js';
import { V2DeviceOverLegacy } from '../translate/v2-device-over-legacy.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 3 * MiB + 5 * 4096 + 300; // several 1 MiB chunks and a short last page

const newDevice = (seed: number) => new SimDevice({ size: SIZE, seed });

/** [source window, destination window]: 4 KiB, 1 MiB, and a destination smaller than one source chunk. */
const WINDOWS: [number, number][] = [
  [4 * KiB, 4 * KiB],
  [MiB, MiB],
  [MiB, 1000],
  [64 * KiB, 4 * KiB + 1],
];

describe('QEMU 7.2 client over LegacyRegionOverV2(SimV2Driver)', () => {
  for (const flags of FLAG_SETS) {
    it.each(WINDOWS)(`flags ${flags}: windows %i -> %i, pre-copy rounds while the device steps`, async (srcWindow, dstWindow) => {
      const srcDev = newDevice(1234);
      const dstDev = newDevice(99);
      const srcDriver = new SimV2Driver(srcDev, { flags });
      const dstDriver = new SimV2Driver(dstDev, { flags });
      const src = new LegacyRegionOverV2(srcDriver, { windowSize: srcWindow });
      const dst = new LegacyRegionOverV2(dstDriver, { windowSize: dstWindow });
      srcDev.step(50);
      const sink = new Sink();
      const access = srcWindow <= 4 * KiB ? 'pieces' : 'mmap';
      const saved = await saveV1(src, sink, {
        precopyRounds: 4,
        windowAccess: access,
        betweenRounds: () => {
          srcDev.step(25);
        },
      });
      expect(saved.usedPrecopy).toBe(true);
      if (flags & MigFlags.PRE_COPY) expect(saved.precopyBytes).toBeGreaterThan(0);
      else expect(saved.precopyBytes).toBe(0); // 011 emulated: nothing moves before stop-and-copy
      expect(await readDeviceState(src)).toBe(0);
      expect(srcDriver.currentState).toBe(MigState.STOP);
      expect(srcDriver.openHandles).toBe(0);

      const loaded = await loadV1(dst, Readable.from([sink.bytes]), { windowAccess: dstWindow <= 4 * KiB + 1 ? 'pieces' : 'mmap' });
      expect(loaded.deviceBytes).toBe(saved.precopyBytes + saved.stopCopyBytes);
      expect(await readDeviceState(dst)).toBe(1);
      expect(dstDriver.currentState).toBe(MigState.RUNNING);
      expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
      expect(dstDriver.openHandles).toBe(0);
    });
  }
});

describe('QEMU 8+ client over V2DeviceOverLegacy(SimV1Region)', () => {
  it.each(WINDOWS)('windows %i -> %i, pre-copy rounds while the device steps', async (srcWindow, dstWindow) => {
    const srcDev = newDevice(4321);
    const dstDev = newDevice(7);
    const src = new V2DeviceOverLegacy(new SimV1Region(srcDev, { windowSize: srcWindow }));
    const dst = new V2DeviceOverLegacy(new SimV1Region(dstDev, { windowSize: dstWindow }));
    srcDev.step(50);
    const sink = new Sink();
    const saved = await saveV2(src, sink, { precopyRounds: 4, betweenRounds: () => void srcDev.step(25) });
    expect(saved.usedPrecopy).toBe(true);
    expect(saved.precopyBytes).toBeGreaterThan(0);
    expect(await src.getState()).toBe(MigState.STOP);
    await loadV2(dst, Readable.from([sink.bytes]));
    expect(await dst.getState()).toBe(MigState.RUNNING);
    expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
  });

  it('precopy off: STOP_COPY only, the whole state in stop-copy', async () => {
    const srcDev = newDevice(5);
    const dstDev = newDevice(6);
    const src = new V2DeviceOverLegacy(new SimV1Region(srcDev, { windowSize: 64 * KiB }), { precopy: false });
    const dst = new V2DeviceOverLegacy(new SimV1Region(dstDev, { windowSize: 4 * KiB }), { precopy: false });
    const sink = new Sink();
    const saved = await saveV2(src, sink);
    expect(saved.usedPrecopy).toBe(false);
    await loadV2(dst, Readable.from([sink.bytes]));
    expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
  });
});

describe('across generations', () => {
  it('saved by QEMU 7.2 through LegacyRegionOverV2, loaded by QEMU 8+ through V2DeviceOverLegacy', async () => {
    const srcDev = newDevice(11);
    const dstDev = newDevice(12);
    const src = new LegacyRegionOverV2(new SimV2Driver(srcDev, { flags: MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY }), {
      windowSize: 256 * KiB,
    });
    const dst = new V2DeviceOverLegacy(new SimV1Region(dstDev, { windowSize: 8 * KiB }));
    const sink = new Sink();
    await saveV1(src, sink, { precopyRounds: 3, windowAccess: 'mmap', betweenRounds: () => void srcDev.step(10) });
    await loadV2(dst, Readable.from([sink.bytes]));
    expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
  });

  it('saved by QEMU 8+ through V2DeviceOverLegacy, loaded by QEMU 7.2 through LegacyRegionOverV2', async () => {
    const srcDev = newDevice(13);
    const dstDev = newDevice(14);
    const src = new V2DeviceOverLegacy(new SimV1Region(srcDev, { windowSize: 32 * KiB }));
    const dst = new LegacyRegionOverV2(new SimV2Driver(dstDev, { flags: MigFlags.STOP_COPY }), { windowSize: 3000 });
    const sink = new Sink();
    await saveV2(src, sink, { precopyRounds: 2, betweenRounds: () => void srcDev.step(10) });
    await loadV1(dst, Readable.from([sink.bytes]), { windowAccess: 'pieces' });
    expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
  });

  it('the round trip V2DeviceOverLegacy(LegacyRegionOverV2(SimV2Driver)) migrates like the driver it wraps', async () => {
    const srcDev = newDevice(15);
    const dstDev = newDevice(16);
    const wrap = (d: SimDevice, w: number) =>
      new V2DeviceOverLegacy(
        new LegacyRegionOverV2(new SimV2Driver(d, { flags: MigFlags.STOP_COPY | MigFlags.PRE_COPY }), { windowSize: w }),
      );
    const sink = new Sink();
    await saveV2(wrap(srcDev, MiB), sink, { precopyRounds: 3, betweenRounds: () => void srcDev.step(20) });
    await loadV2(wrap(dstDev, 4 * KiB), Readable.from([sink.bytes]));
    expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
  });
});
