// KernelMigrationDevice over the fake kernel (mtty.c transcribed): the same
// scenarios the VM lab runs on the real driver, plus what only a fake can
// check — exact argsz of every ioctl, no positioned I/O on data fds, fds after
// every error path, serialization, and a fault at every single syscall.
import { describe, expect, it } from 'vitest';
import {
  KernelMigrationDevice,
  MigFlags,
  MigState,
  MigrationError,
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_RESET,
  VFIO_MIG_GET_PRECOPY_INFO,
} from '../index.js';
import { FakeSyscalls, type FakeDeviceOptions } from '../testing.js';
import {
  expectFsmAgreement,
  expectMttyHeader,
  fsmDifferential,
  migrateMtty2,
  readAll,
  readScratch,
  resumeStream,
  saveStream,
  writeAll,
  writeScratch,
} from './support/mtty-scenarios.js';
import { checkRawFeatureAbi } from './support/raw-uapi-checks.js';
import { errnoOf, failure } from './support/errno.js';

const A = 'aaaaaaaa-0000-4000-8000-000000000001';
const B = 'bbbbbbbb-0000-4000-8000-000000000002';
const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, PRE_COPY: PC } = MigState;

async function pair(extra: Partial<FakeDeviceOptions> = {}) {
  const sys = new FakeSyscalls({
    devices: [
      { name: A, group: 0, ...extra },
      { name: B, group: 1, ...extra },
    ],
  });
  const a = await KernelMigrationDevice.open({ sysfs: `/sys/bus/mdev/devices/${A}` }, sys);
  const b = await KernelMigrationDevice.open({ group: 1, name: B }, sys);
  return { sys, a, b };
}

describe('KernelMigrationDevice on the fake mtty', () => {
  it('reports flags 0x7, RUNNING, 96 bytes of stop-copy data; argsz is 8 + payload', async () => {
    const { sys, a, b } = await pair();
    expect(await a.migrationFlags()).toBe(0x7);
    expect(await a.getState()).toBe(R);
    expect(await a.stopCopySize()).toBe(96n);
    const feats = sys.callsOf('ioctl', VFIO_DEVICE_FEATURE);
    expect(feats.length).toBeGreaterThan(0);
    expect(feats.every((c) => c.argsz === 16)).toBe(true);
    const f = (c: (typeof feats)[number]) => c.featureFlags;
    expect(feats.map(f)).toContain(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION);
    expect(feats.map(f)).toContain(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE);
    expect(feats.map(f)).toContain(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE);
    await a.close();
    await b.close();
    expect(sys.openFds()).toEqual([]);
  });

  it('probes features with argsz 8', async () => {
    const { sys, a, b } = await pair();
    expect(await a.probeFeature(VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, VFIO_DEVICE_FEATURE_SET)).toBe(true);
    expect(await a.probeFeature(VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_SET)).toBe(false); // GET only
    expect(await a.probeFeature(VFIO_DEVICE_FEATURE_DMA_LOGGING_START, VFIO_DEVICE_FEATURE_SET)).toBe(true);
    expect(await a.probeFeature(10, VFIO_DEVICE_FEATURE_SET)).toBe(false); // BUS_MASTER: mtty has no device_feature
    const probes = sys.callsOf('ioctl', VFIO_DEVICE_FEATURE).filter((c) => (c.featureFlags ?? 0) & VFIO_DEVICE_FEATURE_PROBE);
    expect(probes.map((c) => c.argsz)).toEqual([8, 8, 8, 8]);
    await a.close();
    await b.close();
  });

  it('answers hand-built VFIO_DEVICE_FEATURE / region-info ioctls like the 6.12 core and mtty', async () => {
    const { sys, a, b } = await pair();
    checkRawFeatureAbi(sys, a.vfio.fd);
    expect(sys.openFds().filter((f) => f.kind === 'data')).toEqual([]);
    await a.close();
    await b.close();
  });

  it('agrees with nextState for every reachable state and every target', async () => {
    const { sys, a, b } = await pair();
    const cases = await fsmDifferential(a);
    expect(cases).toHaveLength(7 * 9);
    expectFsmAgreement(cases);
    expect(a.liveSessions).toBe(0);
    await a.close();
    await b.close();
    expect(sys.openFds()).toEqual([]);
    expect(sys.devices.every((d) => d.model.oops === null)).toBe(true);
  });

  it('agrees with nextState for flag sets mtty does not advertise', async () => {
    for (const flags of [MigFlags.STOP_COPY, MigFlags.STOP_COPY | MigFlags.P2P, MigFlags.STOP_COPY | MigFlags.PRE_COPY]) {
      const { a, b } = await pair({ migrationFlags: flags });
      expect(await a.migrationFlags()).toBe(flags);
      expectFsmAgreement(await fsmDifferential(a));
      await a.close();
      await b.close();
    }
  });

  it('carries the UART scratch register from A to B through a STOP_COPY save', async () => {
    const { sys, a, b } = await pair();
    writeScratch(a, 0x5a);
    writeScratch(a, 0xc3, 1);
    expect(readScratch(b)).toBe(0);
    await migrateMtty2(a, b);
    expect(readScratch(b)).toBe(0x5a);
    expect(readScratch(b, 1)).toBe(0xc3);
    // data fds were only ever read/written as streams
    const dataCalls = sys.calls.filter((c) => c.target === 'data');
    expect(dataCalls.some((c) => c.op === 'read')).toBe(true);
    expect(dataCalls.some((c) => c.op === 'write')).toBe(true);
    expect(dataCalls.filter((c) => c.op === 'pread' || c.op === 'pwrite')).toEqual([]);
    await a.close();
    await b.close();
    expect(sys.openFds()).toEqual([]);
  });

  it('PRE_COPY: PRECOPY_INFO 24/0, header, then read returns 0 (not ENOMSG); PRE_COPY -> STOP_COPY keeps the fd', async () => {
    const { sys, a, b } = await pair();
    const s = (await a.setState(PC))!;
    expect(s.fd).toBeGreaterThan(0);
    expect(await s.precopyInfo()).toEqual({ initialBytes: 24n, dirtyBytes: 0n });
    const buf = new Uint8Array(4096);
    expect(await s.read(buf)).toBe(24);
    expectMttyHeader(buf.subarray(0, 24), 2);
    expect(await s.read(buf)).toBe(0);
    expect(await s.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n });
    expect(sys.callsOf('ioctl', VFIO_MIG_GET_PRECOPY_INFO).every((c) => c.argsz === 24 && c.target === 'data')).toBe(true);
    expect(await a.stopCopySize()).toBe(96n);
    expect(await a.setState(SC)).toBeNull(); // PCP -> SC reuses the file: data_fd -1
    expect(await errnoOf(s.precopyInfo())).toBe('EINVAL'); // only in PRE_COPY(_P2P)
    expect((await readAll(s)).length).toBe(72);
    await s.close();
    await a.setState(S);
    await a.close();
    await b.close();
    expect(sys.openFds()).toEqual([]);
  });

  it('fails the SET that leaves RESUMING on truncated data, and reset recovers', async () => {
    const { sys, a, b } = await pair();
    const stream = await saveStream(a);
    const s = (await b.setState(RS))!;
    await writeAll(s, stream.subarray(0, 95));
    const e = await b.setState(R).catch((x: unknown) => x as MigrationError);
    expect(e).toBeInstanceOf(MigrationError);
    expect((e as MigrationError).code).toBe('EINVAL');
    expect((e as MigrationError).message).toMatch(/SET device_state RUNNING/);
    expect(await b.getState()).toBe(RS); // mtty fails the first arc: still RESUMING
    await b.reset(); // never SET out of it again: reset (docs/PROTOCOL.md §7 H2)
    expect(s.fd).toBe(-1);
    expect(b.liveSessions).toBe(0);
    expect(await b.getState()).toBe(R);
    await a.close();
    await b.close();
    expect(sys.openFds()).toEqual([]);
  });

  it('reports mtty write errors: bad header EFAULT, too much data ENOMEM, wrong direction EBADF', async () => {
    const { a, b } = await pair();
    const stream = await saveStream(a);
    const bad = stream.slice();
    bad[0] ^= 1;
    let s = (await b.setState(RS))!;
    expect(await errnoOf(s.write(bad))).toBe('EFAULT');
    await b.reset();
    s = (await b.setState(RS))!;
    const long = new Uint8Array(97);
    long.set(stream);
    expect(await errnoOf(s.write(long))).toBe('ENOMEM');
    expect(await errnoOf(s.read(new Uint8Array(8)))).toBe('EBADF');
    await b.reset();
    const out = (await a.setState(SC))!;
    expect(await errnoOf(out.write(new Uint8Array(8)))).toBe('EBADF');
    await a.close();
    await b.close();
  });

  it('reset ends live sessions: the device file is disabled and our fds are closed', async () => {
    const { sys, a, b } = await pair();
    const s = (await a.setState(PC))!;
    expect(a.liveSessions).toBe(1);
    await a.reset();
    expect(sys.callsOf('ioctl', VFIO_DEVICE_RESET)).toHaveLength(1);
    expect(await a.getState()).toBe(R);
    expect(await errnoOf(s.read(new Uint8Array(8)))).toBe('EBADF'); // never the recycled fd number
    await s.close(); // closing again is harmless
    expect(sys.openFds().filter((f) => f.kind === 'data')).toEqual([]);
    await a.close();
    await b.close();
  });

  it('close closes live sessions and the device; afterwards every call is EBADF', async () => {
    const { sys, a, b } = await pair();
    const s = (await a.setState(SC))!;
    await a.close();
    await a.close();
    expect(s.fd).toBe(-1);
    expect(await errnoOf(a.getState())).toBe('EBADF');
    expect(await errnoOf(a.setState(R))).toBe('EBADF');
    expect(await errnoOf(a.reset())).toBe('EBADF');
    expect(await errnoOf(s.read(new Uint8Array(1)))).toBe('EBADF');
    await b.close();
    expect(sys.openFds()).toEqual([]);
  });

  it('a session the driver abandoned answers ENODEV, not EOF', async () => {
    const { a, b } = await pair();
    const s = (await a.setState(PC))!;
    await a.setState(R); // PRE_COPY -> RUNNING disables the file
    expect(await errnoOf(s.read(new Uint8Array(8)))).toBe('ENODEV');
    await s.close();
    await a.close();
    await b.close();
  });

  it('opening a device without migration support says so (ENOTTY) and closes everything', async () => {
    const sys = new FakeSyscalls({ devices: [{ name: A, group: 0, migrationFlags: null }] });
    const e = await failure(KernelMigrationDevice.open({ group: 0, name: A }, sys));
    expect(e).toBeInstanceOf(MigrationError);
    expect(e.code).toBe('ENOTTY');
    expect(e.message).toMatch(/no v2 migration support/);
    expect(sys.openFds()).toEqual([]);
  });

  it('serializes calls: a SET queued behind a read sees the read done', async () => {
    const { sys, a, b } = await pair();
    const s = (await a.setState(SC))!;
    const buf = new Uint8Array(96);
    const order: string[] = [];
    const p1 = s.read(buf).then((n) => order.push(`read ${n}`));
    const p2 = a.setState(S).then(() => order.push('stop'));
    const p3 = s.read(buf).then(
      (n) => order.push(`read ${n}`),
      (e: MigrationError) => order.push(e.code),
    );
    await Promise.all([p1, p2, p3]);
    expect(order).toEqual(['read 96', 'stop', 'ENODEV']);
    await s.close();
    await a.close();
    await b.close();
    expect(sys.openFds()).toEqual([]);
  });

  it('retries EINTR on the data path', async () => {
    const { sys, a, b } = await pair();
    const s = (await a.setState(SC))!;
    sys.inject({ op: 'read', target: 'data', errno: 'EINTR' });
    expect((await readAll(s)).length).toBe(96);
    expect(sys.callsOf('read').filter((c) => c.errno === 'EINTR')).toHaveLength(1);
    await a.close();
    await b.close();
  });

  it('a failing syscall at any point of a whole migration leaves no fd behind once closed', async () => {
    // Count the calls of a clean run, then fail each one in turn.
    const scenario = async (sys: FakeSyscalls) => {
      const a = await KernelMigrationDevice.open({ group: 0, name: A }, sys);
      try {
        const b = await KernelMigrationDevice.open({ group: 1, name: B }, sys);
        try {
          writeScratch(a, 0x11);
          const s = (await a.setState(PC))!;
          await s.precopyInfo();
          await readAll(s);
          await a.setState(SC);
          await readAll(s);
          await s.close();
          await a.setState(S);
          await resumeStream(b, await saveStream(a));
          await b.reset();
        } finally {
          await b.close();
        }
      } finally {
        await a.close();
      }
    };
    const clean = new FakeSyscalls({
      devices: [
        { name: A, group: 0 },
        { name: B, group: 1 },
      ],
    });
    await scenario(clean);
    expect(clean.openFds()).toEqual([]);
    const total = clean.calls.length;
    expect(total).toBeGreaterThan(40);
    for (let nth = 1; nth <= total; nth++) {
      const sys = new FakeSyscalls({
        devices: [
          { name: A, group: 0 },
          { name: B, group: 1 },
        ],
      });
      sys.inject({ errno: 'EIO', nth });
      const result = await errnoOf(scenario(sys));
      expect(result, `fault at call ${nth} (${clean.calls[nth - 1].op})`).not.toBe('ok');
      expect(sys.openFds(), `fault at call ${nth} (${clean.calls[nth - 1].op})`).toEqual([]);
      expect(sys.devices.every((d) => d.model.oops === null)).toBe(true);
    }
  });
});
