// The data sessions of V2DeviceOverLegacy (saving-session-over-legacy.ts,
// resuming-session-over-legacy.ts) and the transient-errno retry under them
// (retry.ts), driven through the v2 face over a scripted v1 driver: every
// header field answers what the test says, every access is logged, and any
// access can be made to fail. This reaches what SimV1Region never does: a
// 0-byte chunk while pending_bytes > 0 (D44), a device_state that moved
// behind the translator's back at the end of the stream (D45), a chunk past
// the region's end (D43), pending_bytes lower than the open chunk, errors at
// each step of the resume loop (D47, D49), and synchronous throws.
import { describe, expect, it } from 'vitest';
import { fieldAt } from '../legacy/region-layout.js';
import type { LegacyRegion } from '../legacy/contracts.js';
import { MigrationError, type ErrnoName } from '../src/uapi/errors.js';
import type { DataSession } from '../src/v2/contracts.js';
import { MigState } from '../src/v2/states.js';
import { V2DeviceOverLegacy } from '../translate/v2-device-over-legacy.js';
import { errnoOf, failure } from './support/errno.js';

const SIZE = 4096;
const DATA_AT = 1024;

/** Serves the values in order; the last one is served again and again. */
class Script<T> {
  private readonly values: T[];
  constructor(...values: T[]) {
    this.values = values;
  }
  next(): T {
    return this.values.length > 1 ? (this.values.shift() as T) : this.values[0];
  }
}

/**
 * A v1 driver whose registers say what the test scripts. device_state takes
 * any write; the window holds byte (offset & 0xff) until written. `hook` runs
 * on every access after it is logged and may throw, synchronously with
 * `throwSync`, else as a rejected promise.
 */
class ScriptedV1 implements LegacyRegion {
  readonly size = SIZE;
  state = 1;
  pending = new Script(0n);
  dataOffset = new Script(BigInt(DATA_AT));
  dataSize = new Script(0n);
  readonly log: string[] = [];
  /** The bytes each data_size write handed over. */
  readonly handedOver: Buffer[] = [];
  hook: (access: string) => void = () => undefined;
  throwSync = false;
  /** The last data_offset served: where a data_size write hands bytes over from. */
  private windowAt = DATA_AT;
  private readonly memory = Buffer.from(Array.from({ length: SIZE }, (_, i) => i & 0xff));

  readAt(offset: number, buf: Uint8Array): Promise<void> {
    const field = fieldAt(offset, buf.length);
    return this.access(`read ${field ?? 'window'}`, () => {
      if (field === undefined) {
        buf.set(this.memory.subarray(offset, offset + buf.length));
        return;
      }
      const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      if (field === 'device_state') v.setUint32(0, this.state, true);
      else if (field === 'pending_bytes') v.setBigUint64(0, this.pending.next(), true);
      else if (field === 'data_offset') {
        const off = this.dataOffset.next();
        this.windowAt = Number(off);
        v.setBigUint64(0, off, true);
      } else if (field === 'data_size') v.setBigUint64(0, this.dataSize.next(), true);
    });
  }

  writeAt(offset: number, data: Uint8Array): Promise<void> {
    const field = fieldAt(offset, data.length);
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (field === 'device_state')
      return this.access(`write device_state=${v.getUint32(0, true)}`, () => void (this.state = v.getUint32(0, true)));
    if (field === 'data_size') {
      const n = Number(v.getBigUint64(0, true));
      return this.access(
        `write data_size=${n}`,
        () => void this.handedOver.push(Buffer.from(this.memory.subarray(this.windowAt, this.windowAt + n))),
      );
    }
    return this.access('write window', () => void this.memory.set(data, offset));
  }

  reset(): Promise<void> {
    return this.access('reset', () => void (this.state = 1));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private access(what: string, act: () => void): Promise<void> {
    this.log.push(what);
    // a translator looping on the driver fails the test instead of hanging it
    if (this.log.length > 10_000) throw new Error(`runaway: ${this.log.length} v1 accesses`);
    if (this.throwSync) {
      this.hook(what);
      act();
      return Promise.resolve();
    }
    return Promise.resolve().then(() => {
      this.hook(what);
      act();
    });
  }

  /** Make the `nth` (1-based) access named `what`, counted from now, fail with `errno`, `times` times in a row. */
  failAt(what: string, nth: number, errno: ErrnoName, times = 1): void {
    let seen = 0;
    this.hook = (a) => {
      if (a !== what) return;
      seen++;
      if (seen >= nth && seen < nth + times) throw new MigrationError(errno, `scripted ${what} failure`);
    };
  }
}

/** The window's bytes at region offsets [from, from + n): what the driver hands out there. */
const windowBytes = (from: number, n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (from + i) & 0xff));

async function opened(target: MigState, setup: (r: ScriptedV1) => void = () => undefined) {
  const region = new ScriptedV1();
  setup(region);
  const dev = new V2DeviceOverLegacy(region);
  const s = (await dev.setState(target)) as DataSession;
  expect(s).not.toBeNull();
  region.log.length = 0;
  return { region, dev, s };
}

describe('saving session: the v1 save loop', () => {
  it('pre-copy with pending_bytes 0 is ENOMSG after one pending_bytes read: "nothing now" is not an error, device_state is not even read', async () => {
    const { region, s, dev } = await opened(MigState.PRE_COPY);
    const e = await failure(s.read(Buffer.alloc(64)));
    expect(e.code).toBe('ENOMSG');
    expect(e.message).toMatch(/pre-copy/);
    expect(region.log).toEqual(['read pending_bytes']);
    expect(dev.inspect()).toMatchObject({ state: MigState.PRE_COPY, session: 'saving' });
  });

  it('pre-copy: a 0-byte chunk while pending_bytes > 0 is "nothing now" (ENOMSG), not the end; the next iteration still brings data (D44)', async () => {
    const { region, s } = await opened(MigState.PRE_COPY, (r) => {
      r.pending = new Script(100n);
      r.dataSize = new Script(0n, 100n);
    });
    expect(await errnoOf(s.read(Buffer.alloc(64)))).toBe('ENOMSG');
    expect(region.log).toEqual(['read pending_bytes', 'read data_offset', 'read data_size']);
    const b = Buffer.alloc(100);
    expect(await s.read(b)).toBe(100);
    expect(b.equals(windowBytes(DATA_AT, 100))).toBe(true);
  });

  it('stop-copy: a 0-byte chunk while pending_bytes > 0 ends the stream, as QEMU 7.2 vfio_save_complete_precopy breaks out on it; then EOF and MIG_DATA_SIZE 0 without touching the driver', async () => {
    const { region, s, dev } = await opened(MigState.STOP_COPY, (r) => {
      r.pending = new Script(300n, 200n);
      r.dataSize = new Script(100n, 0n);
    });
    const b = Buffer.alloc(1000);
    expect(await s.read(b)).toBe(100);
    expect(b.subarray(0, 100).equals(windowBytes(DATA_AT, 100))).toBe(true);
    // the stream's end is believed only while device_state still reads 010 (D45)
    expect(region.log.slice(-4)).toEqual(['read pending_bytes', 'read data_offset', 'read data_size', 'read device_state']);
    region.log.length = 0;
    expect(await s.read(b)).toBe(0);
    expect(await s.read(b)).toBe(0);
    expect(await dev.stopCopySize()).toBe(0n); // pending_bytes still reads 200: the end is the end
    expect(region.log).toEqual([]);
  });

  it('stop-copy: pending_bytes 0 ends the stream without reading data_offset or data_size, as QEMU 7.2 vfio_save_complete_precopy loops only while pending_bytes > 0', async () => {
    const { region, s } = await opened(MigState.STOP_COPY, (r) => {
      r.pending = new Script(100n, 0n);
      r.dataSize = new Script(100n);
    });
    const b = Buffer.alloc(1000);
    expect(await s.read(b)).toBe(100);
    expect(b.subarray(0, 100).equals(windowBytes(DATA_AT, 100))).toBe(true);
    expect(region.log).toEqual([
      'read pending_bytes',
      'read data_offset',
      'read data_size',
      'read window',
      'read pending_bytes',
      'read device_state',
    ]);
    expect(await s.read(b)).toBe(0);
  });

  it('stop-copy: pending_bytes 0 while device_state no longer reads 010 (reset behind our back) is EIO naming the state, not a silently short stream (D45)', async () => {
    const { region, s, dev } = await opened(MigState.STOP_COPY, (r) => {
      r.pending = new Script(0n);
    });
    region.state = 1;
    const e = await failure(s.read(Buffer.alloc(10)));
    expect(e.code).toBe('EIO');
    expect(e.message).toMatch(/device_state 001.*not stop-and-copy/);
    expect(dev.inspect()).toMatchObject({ state: MigState.RUNNING, session: null });
    expect(await errnoOf(s.read(Buffer.alloc(10)))).toBe('ENODEV');
  });

  it('a chunk running past the region end is EIO naming it; one ending exactly at the end is read (D43)', async () => {
    const fits = SIZE - DATA_AT;
    const over = await opened(MigState.STOP_COPY, (r) => {
      r.pending = new Script(BigInt(fits + 1));
      r.dataSize = new Script(BigInt(fits + 1));
    });
    const e = await failure(over.s.read(Buffer.alloc(10)));
    expect(e.code).toBe('EIO');
    expect(e.message).toBe(`EIO: v1 chunk [${DATA_AT}, +${fits + 1}) runs past the ${SIZE}-byte region`);
    expect(over.region.log).not.toContain('read window');

    const exact = await opened(MigState.STOP_COPY, (r) => {
      r.pending = new Script(BigInt(fits), 0n);
      r.dataSize = new Script(BigInt(fits));
    });
    const b = Buffer.alloc(SIZE);
    expect(await exact.s.read(b)).toBe(fits);
    expect(b.subarray(0, fits).equals(windowBytes(DATA_AT, fits))).toBe(true);
  });

  it('mid-chunk, PRECOPY_INFO and MIG_DATA_SIZE are the iteration pending_bytes minus what read() took, without re-reading pending_bytes (that would release the chunk)', async () => {
    const { region, s, dev } = await opened(MigState.PRE_COPY, (r) => {
      r.pending = new Script(1000n);
      r.dataSize = new Script(100n);
    });
    expect(await s.read(Buffer.alloc(30))).toBe(30);
    expect(await s.precopyInfo()).toEqual({ initialBytes: 970n, dirtyBytes: 0n });
    expect(await s.read(Buffer.alloc(50))).toBe(50);
    expect(await s.precopyInfo()).toEqual({ initialBytes: 920n, dirtyBytes: 0n });
    await dev.setState(MigState.STOP_COPY);
    expect(await dev.stopCopySize()).toBe(920n);
    expect(region.log.filter((a) => a === 'read pending_bytes')).toHaveLength(1);
  });

  it('when pending_bytes reads less than the open chunk (a low estimate), PRECOPY_INFO is what is left of the chunk, never 0 while bytes wait', async () => {
    const { s } = await opened(MigState.PRE_COPY, (r) => {
      r.pending = new Script(10n);
      r.dataSize = new Script(100n);
    });
    expect(await s.read(Buffer.alloc(30))).toBe(30);
    expect(await s.precopyInfo()).toEqual({ initialBytes: 70n, dirtyBytes: 0n });
  });

  it('any window errno after bytes moved, ENOMSG included, gives the short count now and the errno on the next read (D47)', async () => {
    const { region, s } = await opened(MigState.STOP_COPY, (r) => {
      r.pending = new Script(300n);
      r.dataSize = new Script(100n);
    });
    region.failAt('read window', 2, 'ENOMSG');
    const b = Buffer.alloc(250);
    expect(await s.read(b)).toBe(100);
    expect(b.subarray(0, 100).equals(windowBytes(DATA_AT, 100))).toBe(true);
    expect(await errnoOf(s.read(Buffer.alloc(10)))).toBe('ENOMSG');
  });

  it('a window errno that leaves the v1 driver in 110b: read() fails with it, the device is in ERROR at once and the session ended', async () => {
    const { region, s, dev } = await opened(MigState.PRE_COPY, (r) => {
      r.pending = new Script(300n);
      r.dataSize = new Script(100n);
    });
    region.hook = (a) => {
      if (a !== 'read window') return;
      region.state = 6;
      throw new MigrationError('EIO', 'scripted internal error');
    };
    expect(await errnoOf(s.read(Buffer.alloc(10)))).toBe('EIO');
    expect(dev.inspect()).toMatchObject({ state: MigState.ERROR, session: null });
    expect(await errnoOf(s.read(Buffer.alloc(10)))).toBe('ENODEV');
  });
});

describe('misuse of a session fails as on a kernel data_fd, with a message naming what was wrong (D48)', () => {
  it('saving session: write, PRECOPY_INFO outside PRE_COPY, on an ended and on a closed session', async () => {
    const { s, dev } = await opened(MigState.PRE_COPY);
    const w = await failure(s.write(Buffer.alloc(4)));
    expect(w.message).toBe('EBADF: write on the saving data session');
    await dev.setState(MigState.STOP_COPY);
    const sc = await failure(s.precopyInfo());
    expect(sc.message).toBe('EINVAL: PRECOPY_INFO is only valid in PRE_COPY (device is in STOP_COPY)');
    await dev.setState(MigState.RUNNING);
    await dev.setState(MigState.PRE_COPY); // a new session: the old one stays ended
    const ended = await failure(s.precopyInfo());
    expect(ended.message).toBe('ENODEV: data session ended: STOP_COPY -> STOP');
    await s.close();
    const closed = await failure(s.precopyInfo());
    expect(closed.message).toBe('EBADF: data session is closed');
  });

  it('resuming session: read, PRECOPY_INFO (ENOTTY, as mtty_precopy_ioctl on the resuming file), on a closed session', async () => {
    const { s } = await opened(MigState.RESUMING);
    const r = await failure(s.read(Buffer.alloc(4)));
    expect(r.message).toBe('EBADF: read on the resuming data session');
    const info = await failure(s.precopyInfo());
    expect(info.message).toBe('ENOTTY: the resuming data session has no PRECOPY_INFO');
    await s.close();
    const closed = await failure(s.precopyInfo());
    expect(closed.message).toBe('EBADF: data session is closed');
  });
});

describe('resuming session: errors in the v1 resume loop (D47, D49)', () => {
  const WINDOW = 100;
  const windowAt = BigInt(SIZE - WINDOW);
  const payload = (n: number, seed = 7) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

  it('a data_offset outside the data section fails write() with EIO before anything is written; once it is sane the same bytes go in', async () => {
    const { region, s } = await opened(MigState.RESUMING, (r) => {
      r.dataOffset = new Script(16n, windowAt);
    });
    expect(await errnoOf(s.write(payload(40)))).toBe('EIO');
    expect(region.log).not.toContain('write window');
    expect(await s.write(payload(WINDOW))).toBe(WINDOW);
    expect(region.handedOver).toEqual([payload(WINDOW)]);
  });

  it('a data_offset failure at a later window: write() returns the bytes of the windows before it, the errno comes next', async () => {
    const { region, s } = await opened(MigState.RESUMING, (r) => {
      r.dataOffset = new Script(windowAt);
    });
    region.failAt('read data_offset', 2, 'EIO');
    expect(await s.write(payload(150))).toBe(WINDOW);
    expect(region.handedOver).toEqual([payload(150).subarray(0, WINDOW)]);
    expect(await errnoOf(s.write(payload(50, 9)))).toBe('EIO');
  });

  it('a window write errno: write() fails with it and nothing is counted; writing the bytes again hands over exactly them', async () => {
    const { region, dev, s } = await opened(MigState.RESUMING, (r) => {
      r.dataOffset = new Script(windowAt);
    });
    region.failAt('write window', 1, 'EIO');
    expect(await errnoOf(s.write(payload(50)))).toBe('EIO');
    expect(dev.inspect().bufferedBytes).toBe(0);
    expect(await s.write(payload(WINDOW))).toBe(WINDOW);
    expect(region.handedOver).toEqual([payload(WINDOW)]);
  });

  it('a refused data_size write un-counts only the bytes of the failing call: the earlier ones stay batched and a retry hands over one whole window', async () => {
    const { region, dev, s } = await opened(MigState.RESUMING, (r) => {
      r.dataOffset = new Script(windowAt);
    });
    const data = payload(WINDOW);
    expect(await s.write(data.subarray(0, 60))).toBe(60);
    region.failAt(`write data_size=${WINDOW}`, 1, 'EINVAL');
    expect(await errnoOf(s.write(data.subarray(60)))).toBe('EINVAL');
    expect(dev.inspect()).toMatchObject({ state: MigState.RESUMING, session: 'resuming', bufferedBytes: 60 });
    expect(await s.write(data.subarray(60))).toBe(40);
    expect(region.handedOver).toEqual([data]);
    expect(dev.inspect().bufferedBytes).toBe(0);
  });
});

describe('EAGAIN / EINTR retry (D4)', () => {
  it('a v1 region whose access throws synchronously (not a rejected promise) is retried the same, and its other errnos surface as MigrationError', async () => {
    const { region, s, dev } = await opened(MigState.STOP_COPY, (r) => {
      r.pending = new Script(100n, 0n);
      r.dataSize = new Script(100n);
    });
    region.throwSync = true;
    region.failAt('read window', 1, 'EINTR', 2);
    const b = Buffer.alloc(200);
    expect(await s.read(b)).toBe(100);
    expect(b.subarray(0, 100).equals(windowBytes(DATA_AT, 100))).toBe(true);
    expect(region.log.filter((a) => a === 'read window')).toHaveLength(3);
    region.failAt('reset', 1, 'EIO');
    expect(await errnoOf(dev.reset())).toBe('EIO');
  });

  it('EAGAIN then another errno: the latest errno surfaces at once, not the first after the whole retry budget', async () => {
    const region = new ScriptedV1();
    let tries = 0;
    region.hook = (a) => {
      if (a !== 'read device_state') return;
      tries++;
      throw new MigrationError(tries === 1 ? 'EAGAIN' : 'EIO', 'scripted');
    };
    expect(await errnoOf(new V2DeviceOverLegacy(region).getState())).toBe('EIO');
    expect(tries).toBe(2);
  });
});
