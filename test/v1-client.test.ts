// The v1 client (what QEMU 7.2 does, docs/PROTOCOL.md §2.3-2.6) over SimV1Region: the
// exact register order and file bytes, round trips with the device working
// during pre-copy, chunk splitting on smaller destination windows, every fault
// of a plan surfacing as the documented error (and a reset recovering), and
// round trips across protocols with the v2 client over SimV2Driver.
import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { failure } from './support/errno.js';
import { Sink } from './support/sim-helpers.js';
import {
  FLAG_SETS,
  MigFlags,
  MigrationError,
  QEMU72_SET_STATE,
  SimDevice,
  SimV1Region,
  SimV2Driver,
  V1FatalError,
  V1_MASK,
  V1_RESUMING,
  V1_RUNNING,
  V1_SAVING,
  VfioMigFlag,
  MIG_STREAM_MAGIC,
  isV1Fatal,
  loadV1,
  loadV2,
  readDeviceState,
  saveV1,
  saveV2,
  recoveryOf,
  v1MigrationFailed,
  v1SetState,
  writeDeviceState,
  type FaultPlan,
  type LegacyRegion,
  type MigrationProgress,
  type V1WindowAccess,
} from '../index.js';

const DATA_OFFSET = 4096;
const KiB = 1024;
const MiB = 1024 * 1024;
const FIELD_NAMES: Record<number, string> = { 0: 'device_state', 4: 'reserved', 8: 'pending_bytes', 16: 'data_offset', 24: 'data_size' };

/** Logs every access the client makes, as `r|w <field>=<value>` or `r|w win+<start>:<length>`, and `!CODE` on failure. */
class Recorder implements LegacyRegion {
  readonly log: string[] = [];
  constructor(readonly inner: SimV1Region) {}
  get size(): number {
    return this.inner.size;
  }
  readAt(offset: number, buf: Uint8Array): Promise<void> {
    return this.track('r', offset, buf, () => this.inner.readAt(offset, buf));
  }
  writeAt(offset: number, data: Uint8Array): Promise<void> {
    return this.track('w', offset, data, () => this.inner.writeAt(offset, data));
  }
  reset(): Promise<void> {
    this.log.push('reset');
    return this.inner.reset();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  /** Only the header accesses. */
  registers(): string[] {
    return this.log.filter((l) => !l.includes('win+'));
  }
  private async track(op: string, offset: number, bytes: Uint8Array, f: () => Promise<void>): Promise<void> {
    const what = () => {
      if (offset >= DATA_OFFSET) return `win+${offset - DATA_OFFSET}:${bytes.length}`;
      const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return `${FIELD_NAMES[offset]}=${bytes.length === 4 ? v.getUint32(0, true) : v.getBigUint64(0, true)}`;
    };
    try {
      await f();
      this.log.push(`${op} ${what()}`);
    } catch (e) {
      this.log.push(`${op} ${offset >= DATA_OFFSET ? what() : FIELD_NAMES[offset]} !${(e as MigrationError).code}`);
      throw e;
    }
  }
}

function be64(...words: bigint[]): Buffer {
  const b = Buffer.alloc(words.length * 8);
  words.forEach((w, i) => b.writeBigUInt64BE(w, i * 8));
  return b;
}

/** The input as many small chunks, so records straddle chunk boundaries. */
function dribble(bytes: Uint8Array, piece = 7): Readable {
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += piece) parts.push(Buffer.from(bytes.subarray(at, at + piece)));
  return Readable.from(parts);
}

function workingDevice(seed: number, size: number, steps: number, pageSize = 4096): SimDevice {
  const d = new SimDevice({ size, seed, pageSize });
  d.running = true;
  d.step(steps);
  return d;
}

describe('v1SetState (vfio_migration_set_state)', () => {
  it('read-modify-write: new = (cur & mask) | value, one read and one write each', async () => {
    const r = new Recorder(new SimV1Region(new SimDevice({ size: 1000, seed: 1 })));
    await writeDeviceState(r.inner, 0x100 | V1_RUNNING);
    await writeDeviceState(r.inner, 0x100 | V1_RUNNING | V1_SAVING);
    // ~RUNNING keeps the reserved bits ...
    expect(await v1SetState(r, QEMU72_SET_STATE.vmStop.mask, QEMU72_SET_STATE.vmStop.value)).toBe(0x102);
    // ... while save_setup's mask is VFIO_DEVICE_STATE_MASK itself: QEMU 7.2 clears bits 3..31 there.
    expect(await v1SetState(r, QEMU72_SET_STATE.saveSetup.mask, QEMU72_SET_STATE.saveSetup.value)).toBe(0x002);
    expect(r.log).toEqual(['r device_state=259', 'w device_state=258', 'r device_state=258', 'w device_state=2']);
  });

  it('!VALID result: EINVAL and nothing written', async () => {
    const r = new Recorder(new SimV1Region(new SimDevice({ size: 1000, seed: 1 })));
    await writeDeviceState(r.inner, V1_RESUMING);
    const e = await failure(v1SetState(r, V1_MASK, V1_SAVING)); // 100 | 010 = 110
    expect([e.code, isV1Fatal(e)]).toEqual(['EINVAL', false]);
    expect(r.log).toEqual(['r device_state=4']);
  });

  it('failed write, re-read valid: the write error is thrown, not fatal', async () => {
    const r = new Recorder(
      new SimV1Region(new SimDevice({ size: 1000, seed: 1 }), { faults: { failArc: { from: 1, to: 3, errno: 'EBUSY' } } }),
    );
    const e = await failure(v1SetState(r, V1_MASK, V1_SAVING));
    expect([e.code, isV1Fatal(e), e instanceof V1FatalError]).toEqual(['EBUSY', false, false]);
    expect(r.log).toEqual(['r device_state=1', 'w device_state !EBUSY', 'r device_state=1']);
  });

  it('failed write, re-read 110b: fatal (QEMU hw_error), the write errno kept', async () => {
    const r = new Recorder(
      new SimV1Region(new SimDevice({ size: 1000, seed: 1 }), { faults: { failArc: { from: 1, to: 3, errno: 'ENODEV', toError: true } } }),
    );
    const e = await failure(v1SetState(r, V1_MASK, V1_SAVING));
    expect(e).toBeInstanceOf(V1FatalError);
    expect([e.code, e.errno, (e as V1FatalError).fatal, (e as V1FatalError).deviceState]).toEqual(['ENODEV', 19, true, 6]);
  });

  it('failed write, re-read fails too: fatal', async () => {
    const inner = new SimV1Region(new SimDevice({ size: 1000, seed: 1 }), { faults: { failArc: { from: 1, to: 0, errno: 'EIO' } } });
    let broken = false;
    const region: LegacyRegion = {
      size: inner.size,
      readAt: (o, b) => (broken ? Promise.reject(new MigrationError('ENXIO')) : inner.readAt(o, b)),
      writeAt: async (o, d) => {
        try {
          await inner.writeAt(o, d);
        } finally {
          broken = true;
        }
      },
      reset: () => inner.reset(),
      close: () => inner.close(),
    };
    const e = await failure(v1SetState(region, ~V1_RUNNING, 0));
    expect([e instanceof V1FatalError, e.code, (e as V1FatalError).deviceState]).toEqual([true, 'EIO', undefined]);
  });

  it('the notifier pair: ~(SAVING|RESUMING)/RUNNING takes 011, 010 and 000 to 001', async () => {
    for (const from of [3, 2, 0]) {
      const r = new SimV1Region(new SimDevice({ size: 1000, seed: 1 }));
      if (from === 2) await writeDeviceState(r, 3);
      await writeDeviceState(r, from);
      expect(await v1MigrationFailed(r)).toBe(1);
      expect(r.inspect().saving).toBe(false);
    }
  });
});

/** Log lines with runs of adjacent window writes (`w win+A:N`, `w win+A+N:M`, ...) joined into one. */
function joinWindowWrites(log: string[]): string[] {
  const out: string[] = [];
  for (const line of log) {
    const m = /^w win\+(\d+):(\d+)$/.exec(line);
    const last = /^w win\+(\d+):(\d+)$/.exec(out.at(-1) ?? '');
    if (m && last && Number(last[1]) + Number(last[2]) === Number(m[1]))
      out[out.length - 1] = `w win+${last[1]}:${Number(last[2]) + Number(m[2])}`;
    else out.push(line);
  }
  return out;
}

describe('saveV1 / loadV1: exact QEMU 7.2 order', () => {
  // 1000-byte device in 512-byte pages: stream = 32 header + 2 x 8 record prefixes + 1000 + 32 trailer.
  const device = () => new SimDevice({ size: 1000, seed: 3, pageSize: 512 });

  it('save: registers, window reads and file bytes', async () => {
    const src = new Recorder(new SimV1Region(device(), { windowSize: 4096 }));
    const sink = new Sink();
    const result = await saveV1(src, sink, { precopyRounds: 2, windowAccess: 'mmap' });
    expect(src.log).toEqual([
      // vfio_save_setup
      'r device_state=1',
      'w device_state=3',
      // round 0: save_pending, then iterate takes one chunk
      'r pending_bytes=1048',
      'r data_offset=4096',
      'r data_size=1048',
      'r win+0:1048',
      // round 1: save_pending reads 0; iterate re-reads, still 0: empty record
      'r pending_bytes=0',
      'r pending_bytes=0',
      // the iteration that switches over: save_pending first (migration_iteration_run)
      'r pending_bytes=0',
      // VM stop
      'r device_state=3',
      'w device_state=2',
      // vfio_save_complete_precopy
      'r device_state=2',
      'w device_state=2',
      'r pending_bytes=32',
      'r data_offset=4096',
      'r data_size=32',
      'r win+0:32',
      'r pending_bytes=0',
      'r device_state=2',
      'w device_state=0',
    ]);
    const { MAGIC, END, SETUP, DATA, CONFIG } = {
      MAGIC: MIG_STREAM_MAGIC,
      END: VfioMigFlag.END_OF_STATE,
      SETUP: VfioMigFlag.DEV_SETUP_STATE,
      DATA: VfioMigFlag.DEV_DATA_STATE,
      CONFIG: VfioMigFlag.DEV_CONFIG_STATE,
    };
    const file = sink.bytes;
    const payload = Buffer.from(file.subarray(24 + 16, 24 + 16 + 1048));
    const trailer = Buffer.from(file.subarray(file.length - 24 - 32, file.length - 24));
    expect(file).toEqual(
      Buffer.concat([
        be64(MAGIC, SETUP, END),
        be64(DATA, 1048n),
        payload,
        be64(END),
        be64(DATA, 0n, END),
        be64(DATA, 32n),
        trailer,
        be64(END),
        be64(CONFIG, END),
      ]),
    );
    expect(result).toEqual({
      precopyBytes: 1048,
      stopCopyBytes: 32,
      precopyChunks: 1,
      stopCopyChunks: 1,
      fileBytes: file.length,
      usedPrecopy: true,
    });
    expect(src.inner.inspect()).toMatchObject({ deviceState: 0, saving: false, stagedBytes: 0 });
  });

  it('load: each source record is split to the destination window (QEMU vfio_load_buffer), boundaries kept', async () => {
    const sink = new Sink();
    await saveV1(new SimV1Region(device(), { windowSize: 4096 }), sink, { precopyRounds: 2, windowAccess: 'mmap' });
    for (const input of [() => Readable.from([sink.bytes]), () => dribble(sink.bytes, 7), () => dribble(sink.bytes, 1)]) {
      const dstDevice = new SimDevice({ size: 1000, seed: 99, pageSize: 512 });
      const dst = new Recorder(new SimV1Region(dstDevice, { windowSize: 300 }));
      const result = await loadV1(dst, input(), { windowAccess: 'mmap' });
      const chunk = (n: number) => ['r data_offset=4096', `w win+0:${n}`, `w data_size=${n}`];
      // The stream goes straight into the mapped window, in the pieces the input comes in
      // (qemu_get_buffer into the mapping): adjacent window writes are one fill of the window.
      expect(joinWindowWrites(dst.log)).toEqual([
        'r device_state=1',
        'w device_state=4',
        ...chunk(300),
        ...chunk(300),
        ...chunk(300),
        ...chunk(148), // record of 1048
        ...chunk(32), // record of 32 (the empty record makes no access)
        'r device_state=4',
        'w device_state=1',
      ]);
      expect(result).toEqual({ deviceBytes: 1080, chunks: 5 });
      expect(dstDevice.fingerprint()).toBe(device().fingerprint());
    }
  });

  it('load: consecutive records of one section are split one by one, never packed together', async () => {
    // No pre-copy rounds: vfio_save_complete_precopy writes records of 400, 400 and 280 bytes in one section.
    const sink = new Sink();
    const saved = await saveV1(new SimV1Region(device(), { windowSize: 400 }), sink, { precopyRounds: 0, windowAccess: 'mmap' });
    expect([saved.stopCopyChunks, saved.stopCopyBytes]).toEqual([3, 1080]);
    for (const piece of [sink.bytes.length, 7, 1]) {
      const dst = new Recorder(new SimV1Region(new SimDevice({ size: 1000, seed: 99, pageSize: 512 }), { windowSize: 300 }));
      await loadV1(dst, dribble(sink.bytes, piece), { windowAccess: 'mmap' });
      const sizes = dst.log.filter((l) => l.startsWith('w data_size')).map((l) => Number(l.split('=')[1]));
      expect(`${piece}: ${sizes.join(',')}`).toBe(`${piece}: 300,100,300,100,280`);
      expect(dst.inner.device.fingerprint()).toBe(device().fingerprint());
    }
  });

  it("'pieces' moves the window in naturally aligned <= 8-byte accesses (vfio_mig_rw)", async () => {
    const src = new Recorder(new SimV1Region(device(), { windowSize: 4096 }));
    const sink = new Sink();
    await saveV1(src, sink, { precopyRounds: 1 });
    const pieces = src.log.filter((l) => l.includes('win+')).map((l) => l.slice(6).split(':').map(Number));
    expect(pieces.length).toBe(1048 / 8 + 32 / 8);
    expect(pieces.every(([start, len]) => len === 8 && start % 8 === 0)).toBe(true);

    const dst = new Recorder(new SimV1Region(new SimDevice({ size: 1000, seed: 5, pageSize: 512 }), { windowSize: 13 }));
    await loadV1(dst, Readable.from([sink.bytes]));
    const firstChunk = dst.log.slice(2, 2 + 1 + 3 + 1);
    expect(firstChunk).toEqual(['r data_offset=4096', 'w win+0:8', 'w win+8:4', 'w win+12:1', 'w data_size=13']);
    expect(dst.inner.device.fingerprint()).toBe(device().fingerprint());
  });
});

describe('round trips (fingerprints equal, the device working during pre-copy)', () => {
  const cases: [number, number, V1WindowAccess][] = [
    [4 * KiB, 4 * KiB, 'pieces'],
    [MiB, MiB, 'mmap'],
    [4 * KiB, MiB, 'mmap'],
    [MiB, 4 * KiB, 'pieces'],
    [64 * KiB, 100, 'mmap'],
    [MiB, 4 * KiB + 5, 'mmap'],
  ];
  for (const [srcWindow, dstWindow, access] of cases) {
    it(`source window ${srcWindow}, destination window ${dstWindow}, ${access}`, async () => {
      const srcDev = workingDevice(11, 300_000, 20);
      const src = new SimV1Region(srcDev, { windowSize: srcWindow });
      const sink = new Sink();
      const progress: MigrationProgress[] = [];
      const saved = await saveV1(src, sink, {
        precopyRounds: 6,
        windowAccess: access,
        betweenRounds: () => void srcDev.step(15),
        onProgress: (p) => progress.push(p),
      });
      expect(saved.usedPrecopy).toBe(true);
      expect(saved.precopyChunks).toBe(6);
      expect(srcDev.steps).toBe(20 + 6 * 15);
      // Every write to the output holds at most one chunk (plus its 16-byte header).
      expect(Math.max(...sink.writeSizes)).toBeLessThanOrEqual(srcWindow + 16);
      const dstDev = new SimDevice({ size: 300_000, seed: 12, pageSize: 4096 });
      const dst = new SimV1Region(dstDev, { windowSize: dstWindow });
      const loaded = await loadV1(dst, Readable.from([sink.bytes]), { windowAccess: access });
      expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
      expect(dstDev.steps).toBe(srcDev.steps);
      expect(loaded.deviceBytes).toBe(saved.precopyBytes + saved.stopCopyBytes);
      expect([await readDeviceState(src), await readDeviceState(dst), srcDev.running, dstDev.running]).toEqual([0, 1, false, true]);
      expect([src.inspect().saving, dst.inspect().resuming]).toEqual([false, false]);
      // progress: phases in order, bytes never go back, the last report is the total
      const phases = [...new Set(progress.map((p) => p.phase))];
      expect(phases).toEqual(['setup', 'precopy', 'stopcopy', 'done']);
      expect(progress.every((p, i) => i === 0 || p.bytes >= progress[i - 1].bytes)).toBe(true);
      expect(progress.at(-1)).toMatchObject({ phase: 'done', bytes: loaded.deviceBytes });
      expect(progress.every((p) => (p.estimate ?? 0) >= p.bytes)).toBe(true);
    });
  }

  it('dirty pages are re-sent: pre-copy + stop-copy bytes exceed one full pass', async () => {
    const srcDev = workingDevice(2, 100_000, 0);
    const sink = new Sink();
    const saved = await saveV1(new SimV1Region(srcDev, { windowSize: 8 * KiB }), sink, {
      precopyRounds: 20,
      windowAccess: 'mmap',
      betweenRounds: () => void srcDev.step(5),
    });
    expect(saved.precopyBytes + saved.stopCopyBytes).toBeGreaterThan(Number(srcDev.fullStreamBytes()));
    const dstDev = new SimDevice({ size: 100_000, seed: 3 });
    await loadV1(new SimV1Region(dstDev, { windowSize: 8 * KiB }), Readable.from([sink.bytes]), { windowAccess: 'mmap' });
    expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
  });

  it('a stopped VM (device 000): save_setup gives 010, no pre-copy, no VM stop', async () => {
    const srcDev = workingDevice(4, 50_000, 9);
    const src = new Recorder(new SimV1Region(srcDev, { windowSize: 16 * KiB }));
    await writeDeviceState(src.inner, 0);
    const sink = new Sink();
    const saved = await saveV1(src, sink, { precopyRounds: 2, windowAccess: 'mmap' });
    expect(saved.usedPrecopy).toBe(false);
    expect(src.registers().filter((l) => l.startsWith('w'))).toEqual(['w device_state=2', 'w device_state=2', 'w device_state=0']);
    const dstDev = new SimDevice({ size: 50_000, seed: 1 });
    await loadV1(new SimV1Region(dstDev), Readable.from([sink.bytes]), { windowAccess: 'mmap' });
    expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
  });

  it("'libvfio-user' refuses STOP -> SAVING, so saving a stopped VM fails there (EINVAL), not fatal; its failure notifier's 000 -> 001 is accepted", async () => {
    const src = new SimV1Region(workingDevice(4, 5000, 0), { policy: 'libvfio-user' });
    await writeDeviceState(src, 0);
    const e = await failure(saveV1(src, new Sink()));
    expect([e.code, isV1Fatal(e), await readDeviceState(src)]).toEqual(['EINVAL', false, 1]);
  });

  it('startVm: false leaves the device in RESUMING with the data not yet applied', async () => {
    const sink = new Sink();
    const srcDev = workingDevice(8, 20_000, 3);
    await saveV1(new SimV1Region(srcDev), sink, { windowAccess: 'mmap' });
    const dstDev = new SimDevice({ size: 20_000, seed: 1 });
    const dst = new SimV1Region(dstDev);
    await loadV1(dst, Readable.from([sink.bytes]), { windowAccess: 'mmap', startVm: false });
    expect(await readDeviceState(dst)).toBe(4);
    expect(dstDev.fingerprint()).not.toBe(srcDev.fingerprint());
    await writeDeviceState(dst, 1);
    expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
  });
});

describe('faults through the client: the documented error, then reset recovers', () => {
  const SIZE = 40_000;
  async function saveWith(plan: FaultPlan, rounds = 2): Promise<{ region: Recorder; error: MigrationError; sink: Sink }> {
    const region = new Recorder(new SimV1Region(workingDevice(21, SIZE, 5), { windowSize: 8 * KiB, faults: plan }));
    const sink = new Sink();
    const error = await failure(saveV1(region, sink, { precopyRounds: rounds, windowAccess: 'mmap' }));
    return { region, error, sink };
  }
  async function recovers(region: Recorder): Promise<void> {
    await region.reset();
    expect(region.inner.inspect()).toMatchObject({ deviceState: 1, saving: false, resuming: false, stagedBytes: 0 });
    const sink = new Sink();
    await saveV1(region, sink, { windowAccess: 'mmap' });
    const dst = new SimDevice({ size: SIZE, seed: 1 });
    await loadV1(new SimV1Region(dst), Readable.from([sink.bytes]), { windowAccess: 'mmap' });
    expect(dst.fingerprint()).toBe(region.inner.device.fingerprint());
  }

  it('save_setup arc fails (EBUSY): not fatal, the notifier leaves the device at 001', async () => {
    const { region, error } = await saveWith({ failArc: { from: 1, to: 3, errno: 'EBUSY' } });
    expect([error.code, isV1Fatal(error), await readDeviceState(region)]).toEqual(['EBUSY', false, 1]);
    expect(region.registers().slice(-3)).toEqual(['r device_state=1', 'w device_state=1', 'r device_state=1']); // the notifier, then our read
    await recovers(region);
  });

  it('VM stop arc fails into 110b: fatal (QEMU aborts), nothing more is written; reset recovers', async () => {
    const { region, error } = await saveWith({ failArc: { from: 3, to: 2, errno: 'EIO', toError: true } });
    expect([error.code, isV1Fatal(error), await readDeviceState(region)]).toEqual(['EIO', true, 6]);
    expect(region.registers().slice(-3)).toEqual(['w device_state !EIO', 'r device_state=6', 'r device_state=6']);
    await recovers(region);
  });

  it('complete-end arc fails (EIO): VM start then notifier, device at 001', async () => {
    const { region, error } = await saveWith({ failArc: { from: 2, to: 0 } });
    expect([error.code, isV1Fatal(error), await readDeviceState(region)]).toEqual(['EIO', false, 1]);
    expect(
      region
        .registers()
        .filter((l) => l.startsWith('w'))
        .slice(-3),
    ).toEqual(['w device_state !EIO', 'w device_state=1', 'w device_state=1']);
    await recovers(region);
  });

  it('a data-path read fails in pre-copy (the 1st trigger, EFAULT): the migration fails with EFAULT', async () => {
    const { region, error } = await saveWith({ failIo: { op: 'read', nth: 1, errno: 'EFAULT' } });
    expect([error.code, isV1Fatal(error), await readDeviceState(region)]).toEqual(['EFAULT', false, 1]);
    expect(region.log).toContain('r data_offset !EFAULT');
    await recovers(region);
  });

  it('a data-path read fails in stop-and-copy (a window read, ENOMEM)', async () => {
    // mmap access, rounds 2: reads 1-4 are pre-copy trigger/window pairs; 6 is the first stop-copy window read.
    const { region, error } = await saveWith({ failIo: { op: 'read', nth: 6, errno: 'ENOMEM' } });
    expect([error.code, await readDeviceState(region)]).toEqual(['ENOMEM', 1]);
    expect(region.log.some((l) => l.startsWith('r win+') && l.endsWith('!ENOMEM'))).toBe(true);
    await recovers(region);
  });

  it('a truncated source stream: the save completes, the destination fails at VM start with EINVAL (not fatal) and is reset to 001', async () => {
    const src = new SimV1Region(workingDevice(21, SIZE, 5), { windowSize: 8 * KiB, faults: { truncateStreamAt: 30_000 } });
    const sink = new Sink();
    const saved = await saveV1(src, sink, { windowAccess: 'mmap' });
    expect(saved.precopyBytes + saved.stopCopyBytes).toBe(30_000);
    const dstDev = new SimDevice({ size: SIZE, seed: 1 });
    const dst = new Recorder(new SimV1Region(dstDev, { windowSize: 8 * KiB }));
    const e = await failure(loadV1(dst, Readable.from([sink.bytes]), { windowAccess: 'mmap' }));
    expect([e.code, isV1Fatal(e), recoveryOf(e)]).toEqual(['EINVAL', false, { reset: true }]);
    // QEMU 7.2's failed VM start, then (where QEMU would exit and leave 100) the client's reset.
    expect(dst.registers().slice(-4)).toEqual(['r device_state=4', 'w device_state !EINVAL', 'r device_state=4', 'reset']);
    expect(await readDeviceState(dst)).toBe(1);
    expect(dstDev.fingerprint()).toBe(new SimDevice({ size: SIZE, seed: 1 }).fingerprint());
    await recovers(dst);
  });

  it('a corrupted source stream: the destination rejects it at a data_size write (EINVAL), then is reset to 001', async () => {
    const src = new SimV1Region(workingDevice(21, SIZE, 5), { windowSize: 8 * KiB, faults: { corruptStreamAt: 20_000 } });
    const sink = new Sink();
    await saveV1(src, sink, { windowAccess: 'mmap' });
    const dst = new Recorder(new SimV1Region(new SimDevice({ size: SIZE, seed: 1 }), { windowSize: 8 * KiB }));
    const e = await failure(loadV1(dst, Readable.from([sink.bytes]), { windowAccess: 'mmap' }));
    expect(dst.log.slice(-2)).toEqual(['w data_size !EINVAL', 'reset']);
    expect([e.code, isV1Fatal(e), await readDeviceState(dst)]).toEqual(['EINVAL', false, 1]);
    await recovers(dst);
  });

  it('a data-path write fails on the destination (EIO): the load fails with EIO and resets the device; a retry succeeds', async () => {
    const srcDev = workingDevice(21, SIZE, 5);
    const sink = new Sink();
    await saveV1(new SimV1Region(srcDev), sink, { windowAccess: 'mmap' });
    const dst = new SimV1Region(new SimDevice({ size: SIZE, seed: 1 }), {
      windowSize: 4 * KiB,
      faults: { failIo: { op: 'write', nth: 3, errno: 'EIO' } },
    });
    const e = await failure(loadV1(dst, Readable.from([sink.bytes]), { windowAccess: 'mmap' }));
    expect([e.code, await readDeviceState(dst)]).toEqual(['EIO', 1]);
    await loadV1(dst, Readable.from([sink.bytes]), { windowAccess: 'mmap' });
    expect(dst.device.fingerprint()).toBe(srcDev.fingerprint());
  });

  it('load_setup fails (EBUSY): nothing to undo / VM start fails into 110b (fatal): reset to 001', async () => {
    const sink = new Sink();
    const srcDev = workingDevice(21, SIZE, 5);
    await saveV1(new SimV1Region(srcDev), sink, { windowAccess: 'mmap' });
    const a = new SimV1Region(new SimDevice({ size: SIZE, seed: 1 }), { faults: { failArc: { from: 1, to: 4, errno: 'EBUSY' } } });
    const e1 = await failure(loadV1(a, Readable.from([sink.bytes])));
    expect([e1.code, isV1Fatal(e1), await readDeviceState(a), recoveryOf(e1)]).toEqual(['EBUSY', false, 1, undefined]);
    const b = new SimV1Region(new SimDevice({ size: SIZE, seed: 1 }), {
      faults: { failArc: { from: 4, to: 1, errno: 'EIO', toError: true } },
    });
    const e2 = await failure(loadV1(b, Readable.from([sink.bytes]), { windowAccess: 'mmap' }));
    // QEMU 7.2 aborts here (hw_error) and leaves 110b; the client resets instead.
    expect([e2.code, isV1Fatal(e2), (e2 as V1FatalError).deviceState, await readDeviceState(b)]).toEqual(['EIO', true, 6, 1]);
    await loadV1(b, Readable.from([sink.bytes]), { windowAccess: 'mmap' });
    expect(b.device.fingerprint()).toBe(srcDev.fingerprint());
  });

  it('bad input: not a migration file (EINVAL), cut short (EIO), a v2 switchover-ack marker (EINVAL)', async () => {
    const sink = new Sink();
    await saveV1(new SimV1Region(workingDevice(21, 5000, 0)), sink, { windowAccess: 'mmap' });
    const good = sink.bytes;
    const ack = Buffer.concat([good.subarray(0, 24), be64(VfioMigFlag.DEV_INIT_DATA_SENT), good.subarray(24)]);
    const cases: [Buffer, string][] = [
      [Buffer.from('definitely not a stream'), 'EINVAL'],
      [good.subarray(0, good.length - 9), 'EIO'],
      [ack, 'EINVAL'],
    ];
    for (const [bytes, want] of cases) {
      const dst = new SimV1Region(new SimDevice({ size: 5000, seed: 1 }));
      const e = await failure(loadV1(dst, Readable.from([bytes])));
      expect(e.code).toBe(want);
      expect(await readDeviceState(dst)).toBe(1); // reset, not left in 100
    }
  });

  it('the output fails (EPIPE): the save fails, the device goes back to 001', async () => {
    const out = new Writable({ write: (_c, _e, cb) => cb(Object.assign(new Error('pipe closed'), { code: 'EPIPE' })) });
    out.on('error', () => undefined);
    const region = new SimV1Region(workingDevice(21, 5000, 0));
    const e = await failure(saveV1(region, out));
    expect([e.code, await readDeviceState(region), region.inspect().saving]).toEqual(['EPIPE', 1, false]);
  });
});

describe('across protocols (the same file format, the same opaque device bytes)', () => {
  for (const flags of FLAG_SETS) {
    it(`saved over v1, resumed over v2 (SimV2Driver flags ${flags})`, async () => {
      const srcDev = workingDevice(31, 200_000, 10);
      const sink = new Sink();
      await saveV1(new SimV1Region(srcDev, { windowSize: 16 * KiB }), sink, {
        precopyRounds: 4,
        windowAccess: 'mmap',
        betweenRounds: () => void srcDev.step(12),
      });
      const dstDev = new SimDevice({ size: 200_000, seed: 32 });
      const driver = new SimV2Driver(dstDev, { flags });
      await loadV2(driver, Readable.from([sink.bytes]));
      expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
      expect(driver.openSessions).toBe(0);
    });

    it(`saved over v2 (SimV2Driver flags ${flags}), resumed over v1`, async () => {
      const srcDev = new SimDevice({ size: 200_000, seed: 41 });
      const driver = new SimV2Driver(srcDev, { flags });
      srcDev.step(10);
      const pipe = new PassThrough();
      const chunks: Buffer[] = [];
      pipe.on('data', (c: Buffer) => chunks.push(c));
      await saveV2(driver, pipe, { precopyRounds: 3, betweenRounds: () => void srcDev.step(12) });
      pipe.end();
      const dstDev = new SimDevice({ size: 200_000, seed: 42 });
      const dst = new SimV1Region(dstDev, { windowSize: 5000 });
      await loadV1(dst, Readable.from(chunks), { windowAccess: 'mmap' });
      expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
      expect(srcDev.steps).toBe(10 + (flags & MigFlags.PRE_COPY ? 36 : 0)); // rounds run only with PRE_COPY
    });
  }

  it('v1 -> v2 -> v1 chain through files streamed with a pipe', async () => {
    const a = workingDevice(51, 120_000, 7);
    const file1 = new PassThrough();
    await Promise.all([
      saveV1(new SimV1Region(a, { windowSize: 4 * KiB }), file1, { precopyRounds: 2, betweenRounds: () => void a.step(3) }).then(() =>
        file1.end(),
      ),
      (async () => {
        const b = new SimDevice({ size: 120_000, seed: 52 });
        const bDriver = new SimV2Driver(b, { flags: MigFlags.STOP_COPY | MigFlags.PRE_COPY });
        await loadV2(bDriver, file1);
        expect(b.fingerprint()).toBe(a.fingerprint());
        const file2 = new PassThrough();
        const c = new SimDevice({ size: 120_000, seed: 53 });
        await Promise.all([saveV2(bDriver, file2).then(() => file2.end()), loadV1(new SimV1Region(c, { windowSize: 3 * KiB }), file2)]);
        expect(c.fingerprint()).toBe(a.fingerprint());
      })(),
    ]);
  });
});

describe('saveV1 reuseBuffer (as saveV2): one record buffer for every chunk, the same file', () => {
  /** A Writable done with each buffer when it calls back: it copies the bytes and notes the memory of each data record. */
  class CopyingSink extends Writable {
    readonly copies: Buffer[] = [];
    readonly memory = new Set<ArrayBufferLike>();
    override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
      this.copies.push(Buffer.from(chunk));
      if (chunk.length > 1024) this.memory.add(chunk.buffer); // data records: the markers and the stream start are smaller
      cb();
    }
  }

  for (const reuseBuffer of [true, false]) {
    it(`reuseBuffer ${reuseBuffer}: the file equals the default one; ${reuseBuffer ? 'one' : 'a fresh'} buffer per record`, async () => {
      const save = async (options: { reuseBuffer?: boolean }) => {
        const sink = new CopyingSink();
        const r = await saveV1(new SimV1Region(workingDevice(21, 300_000, 5), { windowSize: 64 * KiB }), sink, {
          precopyRounds: 2,
          windowAccess: 'mmap',
          ...options,
        });
        return { r, sink };
      };
      const plain = await save({});
      const reused = await save({ reuseBuffer });
      expect(Buffer.concat(reused.sink.copies)).toEqual(Buffer.concat(plain.sink.copies));
      expect(reused.r).toEqual(plain.r);
      const records = reused.r.precopyChunks + reused.r.stopCopyChunks;
      expect(records).toBeGreaterThan(2);
      expect(reused.sink.memory.size).toBe(reuseBuffer ? 1 : records);
    });
  }
});
