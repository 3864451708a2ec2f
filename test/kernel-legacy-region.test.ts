// KernelLegacyRegion over the fake kernel's v1 migration region (what an
// out-of-tree 5.8-5.17 vendor driver exposes): the v1 register dance of
// docs/PROTOCOL.md §1.5/1.6 through pread/pwrite at the region offset of the device fd.
import { describe, expect, it } from 'vitest';
import {
  KernelLegacyRegion,
  MigrationError,
  V1_RESUMING,
  V1_RUNNING,
  V1_SAVING,
  V1_STOP,
  VFIO_DEVICE_RESET,
  type LegacyRegion,
} from '../index.js';
import { FakeSyscalls } from '../testing.js';
import { failure } from './support/errno.js';
import { abandonV1At } from './support/left-over.js';
import { expectMttyHeader } from './support/mtty-scenarios.js';

const A = 'v1-a';
const B = 'v1-b';

const u32 = (v: number) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return b;
};
const u64 = (v: bigint) => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};

async function read64(r: LegacyRegion, off: number): Promise<bigint> {
  const b = new Uint8Array(8);
  await r.readAt(off, b);
  return new DataView(b.buffer).getBigUint64(0, true);
}
async function readState(r: LegacyRegion): Promise<number> {
  const b = new Uint8Array(4);
  await r.readAt(0, b);
  return new DataView(b.buffer).getUint32(0, true);
}

/** docs/PROTOCOL.md §1.5: stop-and-copy, chunk by chunk, until pending_bytes reads 0. */
async function v1Save(r: LegacyRegion): Promise<{ stream: Uint8Array; chunks: number[] }> {
  await r.writeAt(0, u32(V1_SAVING));
  const parts: Uint8Array[] = [];
  while ((await read64(r, 8)) > 0n) {
    const off = Number(await read64(r, 16));
    const size = Number(await read64(r, 24));
    expect(await read64(r, 16)).toBe(BigInt(off)); // re-reads within an iteration are stable
    const chunk = new Uint8Array(size);
    await r.readAt(off, chunk);
    parts.push(chunk);
  }
  await r.writeAt(0, u32(V1_STOP));
  const stream = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    stream.set(p, at);
    at += p.length;
  }
  return { stream, chunks: parts.map((p) => p.length) };
}

/** docs/PROTOCOL.md §1.6: RESUMING, then data_offset / window / data_size per chunk, then RUNNING. */
async function v1Resume(r: LegacyRegion, stream: Uint8Array, chunk: number): Promise<void> {
  await r.writeAt(0, u32(V1_RESUMING));
  for (let at = 0; at < stream.length; at += chunk) {
    const off = Number(await read64(r, 16));
    const piece = stream.subarray(at, Math.min(stream.length, at + chunk));
    await r.writeAt(off, piece);
    await r.writeAt(24, u64(BigInt(piece.length)));
  }
  await r.writeAt(0, u32(V1_RUNNING));
}

function fake(windowSize = 40) {
  return new FakeSyscalls({
    devices: [
      { name: A, group: 0, migrationFlags: null, v1Region: { windowSize } },
      { name: B, group: 1, migrationFlags: null, v1Region: { windowSize } },
      { name: 'v2only', group: 2 },
    ],
  });
}

describe('KernelLegacyRegion on a fake v1 driver', () => {
  it('finds the type 3 / subtype 1 region and migrates A into B chunk by chunk', async () => {
    const sys = fake();
    const a = await KernelLegacyRegion.open({ group: 0, name: A }, sys);
    const b = await KernelLegacyRegion.open({ sysfs: `/sys/bus/mdev/devices/${B}` }, sys);
    expect(a.region.index).toBe(9);
    expect(a.size).toBe(0x1000 + 40);
    // mark A through BAR0's scratch register (pwrite on the device fd)
    a.vfio.writeRegion(a.vfio.regionInfo(0), 7, Uint8Array.of(0x77));
    expect(await readState(a)).toBe(V1_RUNNING);
    const { stream, chunks } = await v1Save(a);
    expect(chunks).toEqual([40, 40, 16]);
    expectMttyHeader(stream, 2);
    await v1Resume(b, stream, 40);
    expect(await readState(b)).toBe(V1_RUNNING);
    const mark = new Uint8Array(1);
    b.vfio.readRegion(b.vfio.regionInfo(0), 7, mark);
    expect(mark[0]).toBe(0x77);
    // every region access was positioned I/O at the region's fd offset
    const offs = sys.calls.filter((c) => c.op === 'pread' || c.op === 'pwrite').map((c) => c.offset! >> 40n);
    expect(new Set(offs)).toEqual(new Set([0n, 9n]));
    await a.close();
    await b.close();
    expect(sys.openFds()).toEqual([]);
  });

  it('passes the driver errors through with their errno: bad width, invalid state, rejected data', async () => {
    const sys = fake();
    const a = await KernelLegacyRegion.open({ group: 0, name: A }, sys);
    await expect(a.readAt(8, new Uint8Array(4))).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(a.writeAt(0, u32(0b101))).rejects.toMatchObject({ code: 'EINVAL' });
    await a.writeAt(0, u32(V1_RESUMING));
    await expect(a.writeAt(0, u32(V1_RUNNING))).rejects.toMatchObject({ code: 'EINVAL' }); // no data
    expect(await readState(a)).toBe(V1_RESUMING); // the driver keeps the previous state
    await a.reset();
    expect(sys.callsOf('ioctl', VFIO_DEVICE_RESET)).toHaveLength(1);
    expect(await readState(a)).toBe(V1_RUNNING);
    await a.close();
  });

  it('bounds every access to the region and refuses use after close', async () => {
    const sys = fake();
    const a = await KernelLegacyRegion.open({ group: 0, name: A }, sys);
    await readState(a);
    const accesses = () => sys.calls.filter((c) => c.op === 'pread' || c.op === 'pwrite').length;
    const before = accesses();
    await expect(a.readAt(a.size - 4, new Uint8Array(8))).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(a.writeAt(-1, new Uint8Array(1))).rejects.toMatchObject({ code: 'EINVAL' });
    expect(accesses()).toBe(before);
    await a.close();
    await a.close();
    await expect(a.readAt(0, new Uint8Array(4))).rejects.toMatchObject({ code: 'EBADF' });
    await expect(a.reset()).rejects.toMatchObject({ code: 'EBADF' });
    expect(sys.openFds()).toEqual([]);
  });

  it('says a v2-only device has no v1 region (ENODEV) and closes what it opened', async () => {
    const sys = fake();
    const e = await failure(KernelLegacyRegion.open({ group: 2, name: 'v2only' }, sys));
    expect(e).toBeInstanceOf(MigrationError);
    expect(e.code).toBe('ENODEV');
    expect(e.message).toMatch(/no v1 migration region.*KernelMigrationDevice/);
    expect(sys.openFds()).toEqual([]);
  });

  it('leaves no fd open when any syscall of open + save fails', async () => {
    const scenario = async (sys: FakeSyscalls) => {
      const a = await KernelLegacyRegion.open({ group: 0, name: A }, sys);
      try {
        await v1Save(a);
        await a.reset();
      } finally {
        await a.close();
      }
    };
    const clean = fake();
    await scenario(clean);
    for (let nth = 1; nth <= clean.calls.length; nth++) {
      const sys = fake();
      sys.inject({ errno: 'EIO', nth });
      await expect(scenario(sys)).rejects.toBeInstanceOf(MigrationError);
      expect(sys.openFds(), `fault at call ${nth}`).toEqual([]);
    }
  });
});

describe('KernelLegacyRegion and the device rule (src/v2/takeover.ts)', () => {
  const stateWrites = (sys: FakeSyscalls) => sys.callsOf('pwrite').filter((c) => (c.offset! & 0xffffffffffn) === 0n && c.length === 4);

  it.each([
    [V1_RESUMING, 'reset'],
    [V1_SAVING, 'reset'],
    [V1_RUNNING | V1_SAVING, 'reset'],
    [V1_STOP, 'kept'],
    [V1_RUNNING, 'kept'],
  ] as const)('a device left at %i by an earlier user: %s at first use, never a device_state write', async (bits, action) => {
    const sys = fake();
    abandonV1At({ group: 0, name: A }, sys, bits);
    const writesBefore = stateWrites(sys).length;
    const a = await KernelLegacyRegion.open({ group: 0, name: A }, sys);
    expect(await readState(a)).toBe(action === 'reset' ? V1_RUNNING : bits);
    expect(sys.callsOf('ioctl', VFIO_DEVICE_RESET)).toHaveLength(action === 'reset' ? 1 : 0);
    expect(stateWrites(sys)).toHaveLength(writesBefore);
    await a.close();
    expect(sys.openFds()).toEqual([]);
  });

  it('a device_state write out of a 100 this handle did not write is refused (EBUSY); its own 100 it may leave', async () => {
    const sys = fake();
    const a = await KernelLegacyRegion.open({ group: 0, name: A }, sys);
    expect(await readState(a)).toBe(V1_RUNNING);
    a.vfio.writeRegion(a.region, 0, u32(V1_RESUMING)); // another user of the same device fd
    const e = await a.writeAt(0, u32(V1_RUNNING)).catch((x: unknown) => x as MigrationError);
    expect(e).toMatchObject({ code: 'EBUSY' });
    expect(await readState(a)).toBe(V1_RESUMING);
    await a.reset();
    await a.writeAt(0, u32(V1_RESUMING));
    await expect(a.writeAt(0, u32(V1_RUNNING))).rejects.toMatchObject({ code: 'EINVAL' }); // its own: the driver refuses no data
    await a.close();
  });

  it('close resets a region its holder leaves at 100', async () => {
    const sys = fake();
    const a = await KernelLegacyRegion.open({ group: 0, name: A }, sys);
    await a.writeAt(0, u32(V1_RESUMING));
    await a.close();
    expect(sys.callsOf('ioctl', VFIO_DEVICE_RESET)).toHaveLength(1);
    const again = await KernelLegacyRegion.open({ group: 0, name: A }, sys);
    expect(await readState(again)).toBe(V1_RUNNING);
    expect(sys.callsOf('ioctl', VFIO_DEVICE_RESET)).toHaveLength(1); // nothing left over this time
    await again.close();
  });
});
