// LegacyRegionOverV2's `window` option: the caller supplies the data
// window's memory (the bridge passes the shared mapping of its window file).
// The data_fd reads must land straight in that memory — no staging copy —
// and the region's window reads/writes see the same bytes.
import { describe, expect, it } from 'vitest';
import { readU64Field, writeDeviceState } from '../legacy/v1-registers.js';
import { V1_RESUMING, V1_RUNNING, V1_SAVING } from '../legacy/v1-state.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { SimV2Driver } from '../src/sim/sim-v2-driver.js';
import type { DataSession, MigrationDevice } from '../src/v2/contracts.js';
import { MigFlags, type MigState } from '../src/v2/states.js';
import { LEGACY_OVER_V2_DATA_OFFSET, LegacyRegionOverV2 } from '../translate/legacy-region-over-v2.js';
import { errnoOf } from './support/errno.js';
import { readRegion, stopCopyStream } from './support/sim-helpers.js';

/** Passes calls through and remembers every buffer a data session was asked to read into or write from. */
class BufferSpy implements MigrationDevice {
  readonly buffers: Uint8Array[] = [];
  constructor(private readonly inner: MigrationDevice) {}
  migrationFlags() {
    return this.inner.migrationFlags();
  }
  getState() {
    return this.inner.getState();
  }
  stopCopySize() {
    return this.inner.stopCopySize();
  }
  reset() {
    return this.inner.reset();
  }
  close() {
    return this.inner.close();
  }
  async setState(target: MigState): Promise<DataSession | null> {
    const s = await this.inner.setState(target);
    if (!s) return s;
    const spy = this.buffers;
    return {
      read(buf) {
        spy.push(buf);
        return s.read(buf);
      },
      write(buf) {
        spy.push(buf);
        return s.write(buf);
      },
      precopyInfo: () => s.precopyInfo(),
      close: () => s.close(),
    };
  }
}

const SIZE = 3000;

describe('LegacyRegionOverV2 window option', () => {
  it('reads the data_fd straight into the given memory and serves the window from it', async () => {
    const backing = new ArrayBuffer(8192); // stands in for a mapping: the window is a view at an offset
    const window = new Uint8Array(backing, 1024, 512);
    const spy = new BufferSpy(new SimV2Driver(new SimDevice({ size: SIZE, seed: 9 }), { flags: MigFlags.STOP_COPY }));
    const region = new LegacyRegionOverV2(spy, { window, errorRecovery: 'reset' });
    expect(region.windowSize).toBe(512);
    await writeDeviceState(region, V1_SAVING);
    const got: Uint8Array[] = [];
    while ((await readU64Field(region, 'pending_bytes')) > 0n) {
      expect(Number(await readU64Field(region, 'data_offset'))).toBe(LEGACY_OVER_V2_DATA_OFFSET);
      const n = Number(await readU64Field(region, 'data_size'));
      // What the user would memcpy from the mapping is what the window read returns.
      expect(Buffer.from(window.subarray(0, n))).toEqual(Buffer.from(await readRegion(region, LEGACY_OVER_V2_DATA_OFFSET, n)));
      got.push(window.slice(0, n));
    }
    expect(Buffer.concat(got)).toEqual(stopCopyStream({ size: SIZE, seed: 9 }));
    expect(spy.buffers.length).toBeGreaterThan(0);
    for (const b of spy.buffers) {
      expect(b.buffer).toBe(backing);
      expect(b.byteOffset).toBeGreaterThanOrEqual(window.byteOffset);
      expect(b.byteOffset + b.length).toBeLessThanOrEqual(window.byteOffset + window.length);
    }
  });

  it('forwards resume bytes from the given memory', async () => {
    const window = new Uint8Array(256);
    const spy = new BufferSpy(new SimV2Driver(new SimDevice({ size: SIZE, seed: 1 }), { flags: MigFlags.STOP_COPY }));
    const region = new LegacyRegionOverV2(spy, { window });
    await writeDeviceState(region, V1_RESUMING);
    window.set(stopCopyStream({ size: SIZE, seed: 4 }).subarray(0, 256)); // the user's memcpy into the mapping
    const dv = new Uint8Array(8);
    new DataView(dv.buffer).setBigUint64(0, 256n, true);
    await region.writeAt(24, dv);
    expect(spy.buffers.at(-1)!.buffer).toBe(window.buffer);
    expect(await errnoOf(writeDeviceState(region, V1_RUNNING))).not.toBe('ok'); // 256 bytes are not a whole stream
  });

  it('refuses a window whose length is not windowSize', () => {
    const dev = new SimV2Driver(new SimDevice({ size: SIZE, seed: 1 }), { flags: MigFlags.STOP_COPY });
    expect(() => new LegacyRegionOverV2(dev, { windowSize: 100, window: new Uint8Array(99) })).toThrow(/EINVAL/);
    expect(new LegacyRegionOverV2(dev, { windowSize: 100, window: new Uint8Array(100) }).size).toBe(LEGACY_OVER_V2_DATA_OFFSET + 100);
  });
});
