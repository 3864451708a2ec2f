// V2DeviceOverLegacy at its edges, over the reference v1 driver SimV1Region
// and v1 drivers that misbehave in one way each: what inspect() reports, a
// SET to the current state, the device rule after the face's own arcs and a
// reset (D38), close() (D41), a reset that does not give 001 (D40), a
// data_offset outside the data section (D43), state adopted after a failed
// write or a data-path error (D26 of the v2 face: the v1 driver says where it
// is), stopCopySize in pre-copy (D39), and the data_fd misuse errors with
// messages that name the session (D48).
import { describe, expect, it } from 'vitest';
import type { LegacyRegion } from '../legacy/contracts.js';
import { HEADER_SIZE } from '../legacy/region-layout.js';
import { SIM_V1_DATA_OFFSET, SimV1Region } from '../legacy/sim-v1-region.js';
import { readDeviceState, writeDeviceState } from '../legacy/v1-registers.js';
import { V1_MASK } from '../legacy/v1-state.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { MigrationError } from '../src/uapi/errors.js';
import type { DataSession } from '../src/v2/contracts.js';
import { MigState } from '../src/v2/states.js';
import { V2DeviceOverLegacy } from '../translate/v2-device-over-legacy.js';
import { errnoOf, failure } from './support/errno.js';
import { RecordingRegion } from './support/recording.js';
import { stopCopyStream } from './support/sim-helpers.js';

const { ERROR, STOP, RUNNING, STOP_COPY, RESUMING, PRE_COPY } = MigState;
const SIZE = 6000;
const PAGE = 512;

const simDevice = (seed = 3) => new SimDevice({ size: SIZE, seed, pageSize: PAGE });
const reference = (seed = 3) => stopCopyStream({ size: SIZE, seed, pageSize: PAGE });

function rig(opts: { windowSize?: number; precopy?: boolean; seed?: number } = {}) {
  const v1 = new SimV1Region(simDevice(opts.seed), { windowSize: opts.windowSize ?? 700 });
  const region = new RecordingRegion(v1);
  return { v1, region, dev: new V2DeviceOverLegacy(region, { precopy: opts.precopy }) };
}

async function readAll(s: DataSession): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const b = Buffer.alloc(1000);
    const n = await s.read(b);
    if (n === 0) return Buffer.concat(parts);
    parts.push(b.subarray(0, n));
  }
}

/** `inner` with some of its calls replaced: a v1 driver broken in one way. */
function patched(inner: LegacyRegion, patch: Partial<Pick<LegacyRegion, 'readAt' | 'reset'>>): LegacyRegion {
  return {
    get size() {
      return inner.size;
    },
    readAt: patch.readAt ?? ((o, b) => inner.readAt(o, b)),
    writeAt: (o, d) => inner.writeAt(o, d),
    reset: patch.reset ?? (() => inner.reset()),
    close: () => inner.close(),
  };
}

/** A driver whose data_offset reads `value`, wherever that points. */
function withDataOffset(inner: LegacyRegion, value: bigint): LegacyRegion {
  return patched(inner, {
    readAt: async (offset, buf) => {
      await inner.readAt(offset, buf);
      if (offset === 16 && buf.length === 8) new DataView(buf.buffer, buf.byteOffset, 8).setBigUint64(0, value, true);
    },
  });
}

/** SimV1Region with its data section moved down to start right after the 32-byte header (data_offset 32). */
class HeaderAdjacentWindow implements LegacyRegion {
  private static readonly SHIFT = SIM_V1_DATA_OFFSET - HEADER_SIZE;
  constructor(private readonly inner: SimV1Region) {}
  get size(): number {
    return this.inner.size - HeaderAdjacentWindow.SHIFT;
  }
  async readAt(offset: number, buf: Uint8Array): Promise<void> {
    if (offset >= HEADER_SIZE) return this.inner.readAt(offset + HeaderAdjacentWindow.SHIFT, buf);
    await this.inner.readAt(offset, buf);
    if (offset === 16 && buf.length === 8) {
      const view = new DataView(buf.buffer, buf.byteOffset, 8);
      view.setBigUint64(0, view.getBigUint64(0, true) - BigInt(HeaderAdjacentWindow.SHIFT), true);
    }
  }
  writeAt(offset: number, data: Uint8Array): Promise<void> {
    return this.inner.writeAt(offset >= HEADER_SIZE ? offset + HeaderAdjacentWindow.SHIFT : offset, data);
  }
  reset(): Promise<void> {
    return this.inner.reset();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe('inspect() reports the open session and the takeover', () => {
  it("names 'saving' or 'resuming' and what the first call found (a v1 region left in 100, reset)", async () => {
    const v1 = new SimV1Region(simDevice(), { windowSize: 700 });
    await writeDeviceState(v1, 4); // an earlier user left it resuming
    const dev = new V2DeviceOverLegacy(v1);
    expect(dev.inspect().takeover).toBeUndefined();
    expect(await dev.getState()).toBe(RUNNING);
    expect(dev.inspect()).toEqual({
      state: RUNNING,
      session: null,
      bufferedBytes: 0,
      closed: false,
      takeover: { found: RESUMING, action: 'reset' },
    });
    await dev.setState(PRE_COPY);
    expect(dev.inspect().session).toBe('saving');
    await dev.setState(RUNNING);
    await dev.setState(RESUMING);
    expect(dev.inspect().session).toBe('resuming');
  });
});

describe('a SET to the state the v1 device is in', () => {
  it('does nothing, ERROR included, as mtty_set_state loops only while state != new_state', async () => {
    const { v1, region, dev } = rig();
    await dev.setState(PRE_COPY);
    v1.armFaults({ failArc: { from: 3, to: 2, toError: true } });
    expect(await errnoOf(dev.setState(STOP_COPY))).toBe('EIO');
    region.log.clear();
    expect(await dev.setState(ERROR)).toBeNull();
    expect(region.log.starts()).toEqual(['read device_state']);
  });

  it('does nothing for a pre-copy another user entered on a face that hides PRE_COPY', async () => {
    const { v1, region, dev } = rig({ precopy: false });
    await dev.getState();
    await writeDeviceState(v1, 3); // another user of the region
    region.log.clear();
    expect(await dev.setState(PRE_COPY)).toBeNull();
    expect(region.log.starts()).toEqual(['read device_state']);
  });
});

describe('the device rule after the face used the region (D38)', () => {
  /** Another user of the same v1 region puts it in 100; the face's SET out of it must be EBUSY with nothing written. */
  async function foreignResumeRefused(v1: SimV1Region, region: RecordingRegion, dev: V2DeviceOverLegacy) {
    if (((await readDeviceState(v1)) & V1_MASK) !== 1) await v1.reset();
    await writeDeviceState(v1, 4);
    region.log.clear();
    const e = await failure(dev.setState(RUNNING));
    expect(e.code).toBe('EBUSY');
    expect(e.message).toMatch(/^EBUSY: the v1 device is in a RESUMING this handle did not enter/);
    expect(region.log.starts().filter((c) => c.startsWith('write') || c === 'reset')).toEqual([]);
    expect(v1.inspect()).toMatchObject({ deviceState: 4, resuming: true });
  }

  it('after an ordinary arc of its own (001 -> 000)', async () => {
    const { v1, region, dev } = rig();
    await dev.setState(STOP);
    await foreignResumeRefused(v1, region, dev);
  });

  it('after it left its own RESUMING with the data applied; its session ends there (ENODEV naming the arc)', async () => {
    const { v1, region, dev } = rig({ seed: 99, windowSize: 4096 });
    const s = (await dev.setState(RESUMING))!;
    const stream = reference(5);
    expect(await s.write(stream)).toBe(stream.length);
    expect(await dev.setState(RUNNING)).toBeNull();
    expect(v1.device.fingerprint()).toBe(simDevice(5).fingerprint());
    expect(dev.inspect().session).toBeNull();
    const e = await failure(s.write(Buffer.alloc(1)));
    expect(e.code).toBe('ENODEV');
    expect(e.message).toBe('ENODEV: data session ended: RESUMING -> RUNNING');
    await foreignResumeRefused(v1, region, dev);
  });

  it('after another user moved its RESUMING away (the face saw 001): the session ended, a new 100 is foreign', async () => {
    const { v1, region, dev } = rig();
    const s = (await dev.setState(RESUMING))!;
    await v1.reset(); // behind the face's back
    expect(await dev.getState()).toBe(RUNNING);
    expect(dev.inspect().session).toBeNull();
    const e = await failure(s.write(Buffer.alloc(1)));
    expect(e.code).toBe('ENODEV');
    expect(e.message).toBe('ENODEV: data session ended: device left RESUMING');
    await foreignResumeRefused(v1, region, dev);
  });

  it('after reset(): the face owns the region without a second takeover', async () => {
    const { v1, region, dev } = rig();
    await dev.setState(RESUMING);
    await dev.reset();
    region.log.clear();
    expect(await dev.getState()).toBe(RUNNING);
    expect(region.log.starts()).toEqual(['read device_state']); // no takeover GET before it
    expect(dev.inspect().takeover).toEqual({ found: RUNNING, action: 'kept' }); // still the first call's
    await foreignResumeRefused(v1, region, dev);
  });

  it('reset() as the first call also takes the region over', async () => {
    const { v1, region, dev } = rig();
    await dev.reset();
    await foreignResumeRefused(v1, region, dev);
  });

  it('a takeover whose reset fails names the v1 device and what it was left in', async () => {
    const v1 = new SimV1Region(simDevice());
    await writeDeviceState(v1, 4);
    const dev = new V2DeviceOverLegacy(
      patched(v1, {
        reset: async () => {
          throw new MigrationError('EIO', 'reset refused');
        },
      }),
    );
    const e = await failure(dev.getState());
    expect(e.code).toBe('EIO');
    expect(e.message).toMatch(/^EIO: the v1 device was left in RESUMING by an earlier user and VFIO_DEVICE_RESET failed/);
  });
});

describe('close() (D41)', () => {
  it('ends the sessions (ENODEV: device closed); then every call, a second close included, is EBADF', async () => {
    const { dev } = rig();
    const s = (await dev.setState(STOP_COPY))!;
    await dev.close();
    const ended = await failure(s.read(Buffer.alloc(8)));
    expect(ended.message).toBe('ENODEV: data session ended: device closed');
    const calls: Array<() => Promise<unknown>> = [
      () => dev.close(),
      () => dev.getState(),
      () => dev.setState(STOP),
      () => dev.migrationFlags(),
      () => dev.stopCopySize(),
      () => dev.reset(),
    ];
    for (const call of calls) {
      const e = await failure(call());
      expect(e.message).toBe('EBADF: device is closed');
    }
    expect(dev.inspect().closed).toBe(true);
  });

  it('resets only a region left in 100: after a save the region stays at 000', async () => {
    const { v1, region, dev } = rig();
    const s = (await dev.setState(STOP_COPY))!;
    expect((await readAll(s)).equals(reference())).toBe(true);
    await dev.setState(STOP);
    region.log.clear();
    await dev.close();
    expect(region.log.starts()).toEqual(['read device_state', 'close']);
    expect(v1.inspect()).toMatchObject({ deviceState: 0, closed: true });
  });

  it("before any call touches nothing but close: a region never taken over is not this face's to reset", async () => {
    const v1 = new SimV1Region(simDevice());
    await writeDeviceState(v1, 4); // an earlier user's
    const region = new RecordingRegion(v1);
    await new V2DeviceOverLegacy(region).close();
    expect(region.log.starts()).toEqual(['close']);
    expect(v1.inspect()).toMatchObject({ deviceState: 4, closed: true });
  });

  it("a reset of a region it left in 100 that fails: the region is closed anyway and the reset's errno thrown", async () => {
    const v1 = new SimV1Region(simDevice());
    let failReset = false;
    const dev = new V2DeviceOverLegacy(
      patched(v1, {
        reset: async () => {
          if (failReset) throw new MigrationError('EIO', 'reset refused');
          return v1.reset();
        },
      }),
    );
    await dev.setState(RESUMING);
    failReset = true;
    expect(await errnoOf(dev.close())).toBe('EIO');
    expect(v1.inspect().closed).toBe(true);
    expect(await errnoOf(dev.close())).toBe('EBADF');
  });
});

describe('reset() must give 001 (D40)', () => {
  it('a v1 driver whose reset leaves 000 fails it with EIO, and the face shows where the driver is', async () => {
    const v1 = new SimV1Region(simDevice());
    let resetWorks = true;
    const dev = new V2DeviceOverLegacy(patched(v1, { reset: async () => (resetWorks ? v1.reset() : undefined) }));
    await dev.setState(STOP);
    resetWorks = false;
    const e = await failure(dev.reset());
    expect(e.message).toBe('EIO: v1 device_state reads 000b STOP after reset, expected 001');
    expect(dev.inspect().state).toBe(STOP);
  });
});

describe('data_offset must point into the data section (D43)', () => {
  it.each([
    ['8', 'inside the header'],
    ['0', 'at the header'],
    ['size', 'at the end of the region'],
    ['size+1', 'past the end'],
  ])('data_offset %s (%s) is EIO', async (at) => {
    const v1 = new SimV1Region(simDevice(), { windowSize: 700 });
    const value = at === 'size' ? BigInt(v1.size) : at === 'size+1' ? BigInt(v1.size + 1) : BigInt(at);
    const dev = new V2DeviceOverLegacy(withDataOffset(v1, value));
    const e = await failure(dev.stopCopySize()); // RUNNING: the window size comes from data_offset
    expect(e.code).toBe('EIO');
    expect(e.message).toBe(`EIO: v1 data_offset ${value} is outside the region's data section (size ${v1.size})`);
  });

  it('a data section right after the 32-byte header (data_offset 32) is served: window size and whole stream', async () => {
    const region = new HeaderAdjacentWindow(new SimV1Region(simDevice(), { windowSize: 700 }));
    const dev = new V2DeviceOverLegacy(region);
    expect(await dev.stopCopySize()).toBe(700n);
    const s = (await dev.setState(STOP_COPY))!;
    expect((await readAll(s)).equals(reference())).toBe(true);
  });
});

describe('the face adopts what the v1 driver says after a failure', () => {
  it('a failed SET whose driver went to 110b: ERROR and the session gone at once, before any GET', async () => {
    const { v1, dev } = rig();
    const s = (await dev.setState(PRE_COPY))!;
    v1.armFaults({ failArc: { from: 3, to: 2, toError: true } });
    expect(await errnoOf(dev.setState(STOP_COPY))).toBe('EIO');
    expect(dev.inspect()).toMatchObject({ state: ERROR, session: null });
    expect(await errnoOf(s.read(Buffer.alloc(8)))).toBe('ENODEV');
  });

  it('a window read the driver fails internally (110b): ERROR and the session gone at once, before any GET', async () => {
    const v1 = new SimV1Region(simDevice(), { windowSize: 700 });
    let breakNextWindowRead = false;
    const region = patched(v1, {
      readAt: async (offset, buf) => {
        if (breakNextWindowRead && offset >= SIM_V1_DATA_OFFSET) {
          breakNextWindowRead = false;
          // The driver's internal failure: it sets 110b (a faulted 010 -> 010 write gets SimV1Region there).
          v1.armFaults({ failArc: { from: 2, to: 2, toError: true } });
          await writeDeviceState(v1, 2).catch(() => undefined);
          throw new MigrationError('EIO', 'window read failed inside the driver');
        }
        return v1.readAt(offset, buf);
      },
    });
    const dev = new V2DeviceOverLegacy(region);
    const s = (await dev.setState(STOP_COPY))!;
    breakNextWindowRead = true;
    expect(await errnoOf(s.read(Buffer.alloc(100)))).toBe('EIO');
    expect(await readDeviceState(v1)).toBe(6);
    expect(dev.inspect()).toMatchObject({ state: ERROR, session: null });
    expect(await errnoOf(s.read(Buffer.alloc(100)))).toBe('ENODEV');
  });
});

describe('a device_state v2 has no state for (D37)', () => {
  it.each([5, 7])('%i (101b/111b) from a broken v1 driver is ERROR: SETs are EINVAL, a reset leaves it', async (bits) => {
    const v1 = new SimV1Region(simDevice());
    let broken = false;
    const region = patched(v1, {
      readAt: async (offset, buf) => {
        await v1.readAt(offset, buf);
        if (broken && offset === 0) new DataView(buf.buffer, buf.byteOffset, 4).setUint32(0, bits, true);
      },
      reset: async () => {
        broken = false;
        return v1.reset();
      },
    });
    const dev = new V2DeviceOverLegacy(region);
    expect(await dev.getState()).toBe(RUNNING);
    broken = true;
    expect(await dev.getState()).toBe(ERROR);
    expect(await errnoOf(dev.setState(RUNNING))).toBe('EINVAL');
    await dev.reset();
    expect(await dev.getState()).toBe(RUNNING);
  });
});

describe('stopCopySize in pre-copy (D39)', () => {
  it("is pending_bytes when that exceeds the window, and the window when pre-copy isn't this face's", async () => {
    const { v1, dev } = rig({ windowSize: 100 });
    expect(await dev.stopCopySize()).toBe(100n); // RUNNING: the window, read from data_offset
    const s = (await dev.setState(PRE_COPY))!;
    const twin = simDevice();
    twin.running = true;
    const info = twin.createSaver().precopyInfo();
    const pending = info.initialBytes + info.dirtyBytes;
    expect(pending).toBeGreaterThan(100n);
    expect(await dev.stopCopySize()).toBe(pending);
    expect((await s.precopyInfo()).initialBytes).toBe(pending);

    await dev.setState(RUNNING);
    await writeDeviceState(v1, 3); // another user's pre-copy: no saving session of this face
    expect(await dev.getState()).toBe(PRE_COPY);
    expect(await dev.stopCopySize()).toBe(100n);
  });
});

describe('data_fd misuse names the session (D48)', () => {
  it('the wrong direction is EBADF naming the saving or the resuming session', async () => {
    const saving = (await rig().dev.setState(STOP_COPY))!;
    const w = await failure(saving.write(Buffer.alloc(4)));
    expect(w.message).toBe('EBADF: write on the saving data session');
    const resuming = (await rig().dev.setState(RESUMING))!;
    const r = await failure(resuming.read(Buffer.alloc(4)));
    expect(r.message).toBe('EBADF: read on the resuming data session');
  });

  it('a closed session is EBADF, and so is its second close', async () => {
    const s = (await rig().dev.setState(STOP_COPY))!;
    await s.close();
    const r = await failure(s.read(Buffer.alloc(4)));
    expect(r.message).toBe('EBADF: data session is closed');
    const c = await failure(s.close());
    expect(c.message).toBe('EBADF: data session already closed');
  });
});
