// (a) KernelMigrationDevice on the real mtty driver (Linux 6.12, in the VM lab):
// the same scenarios the fake runs in test/kernel-migration-device.test.ts,
// now against the kernel. Where the two disagree, the kernel wins.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  KernelLegacyRegion,
  KernelMigrationDevice,
  MigState,
  MigrationError,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_FLAGS_RESET,
  koffiSyscalls,
  openVfioDevice,
  type DataSession,
} from '../../index.js';
import {
  expectFsmAgreement,
  expectMttyHeader,
  fsmDifferential,
  migrateMtty2,
  readAll,
  readScratch,
  saveStream,
  writeAll,
  writeScratch,
} from '../support/mtty-scenarios.js';
import { checkRawFeatureAbi } from '../support/raw-uapi-checks.js';
import { DEV_A, DEV_B, fdCount, sysfs } from './lab-env.js';
import { errnoOf, failure } from '../support/errno.js';

const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, PRE_COPY: PC } = MigState;

let a: KernelMigrationDevice;
let b: KernelMigrationDevice;
let fdsBefore: number;

beforeAll(async () => {
  fdsBefore = fdCount();
  a = await KernelMigrationDevice.open({ sysfs: sysfs(DEV_A) });
  b = await KernelMigrationDevice.open({ sysfs: sysfs(DEV_B) });
  // Devices keep their v2 state between users: normalise with a reset, never a SET (docs/PROTOCOL.md §7 H2, H3).
  await a.reset();
  await b.reset();
});

afterAll(async () => {
  await a?.reset().catch(() => undefined);
  await b?.reset().catch(() => undefined);
  await a?.close();
  await b?.close();
  expect(fdCount()).toBe(fdsBefore);
});

describe('KernelMigrationDevice on the real mtty (lab)', () => {
  it('opens through the group/container API: device info and regions as mtty reports them', () => {
    const v = a.vfio;
    expect(v.api).toBe('group');
    expect(v.info.flags & VFIO_DEVICE_FLAGS_PCI).toBeTruthy();
    expect(v.info.numRegions).toBe(9);
    expect(v.info.numIrqs).toBe(5);
    // mtty implements VFIO_DEVICE_RESET without advertising it (docs/PROTOCOL.md §7 H3)
    expect(v.info.flags & VFIO_DEVICE_FLAGS_RESET).toBe(0);
    const regions = v.regions();
    expect(regions.map((r) => r.size)).toEqual([8n, 8n, 0n, 0n, 0n, 0n, 0n, 0xffn, 0n]);
    expect(regions.every((r) => !r.type && !r.sparseAreas)).toBe(true);
    expect(v.migrationRegion()).toBeUndefined();
  });

  it('flags 0x7, RUNNING after reset, MIG_DATA_SIZE 96', async () => {
    expect(await a.migrationFlags()).toBe(0x7);
    expect(await a.getState()).toBe(R);
    expect(await a.stopCopySize()).toBe(96n);
  });

  it('answers hand-built VFIO_DEVICE_FEATURE / region-info ioctls as docs/PROTOCOL.md §3.1 says', () => {
    const before = fdCount();
    checkRawFeatureAbi(a.vfio.sys, a.vfio.fd);
    expect(fdCount()).toBe(before);
  });

  it('hands out data fds with O_CLOEXEC (docs/PROTOCOL.md §3.1)', async () => {
    const s = (await a.setState(PC))!;
    try {
      const flags = /flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${s.fd}`, 'utf8'))![1];
      expect(parseInt(flags, 8) & 0o2000000).toBe(0o2000000);
    } finally {
      await s.close();
    }
    await a.setState(R);
  });

  it('every SET from every state reachable from RUNNING agrees with nextState (differential)', async () => {
    const cases = await fsmDifferential(a);
    expect(cases).toHaveLength(7 * 9);
    expectFsmAgreement(cases);
    expect(a.liveSessions).toBe(0);
  });

  it('a STOP_COPY save of A resumed into B carries the UART scratch register', async () => {
    const mark = 0x40 + (Date.now() & 0x3f);
    writeScratch(a, mark);
    writeScratch(b, 0);
    expect(readScratch(b)).toBe(0);
    await migrateMtty2(a, b);
    expect(readScratch(b)).toBe(mark);
    // B's state now equals A's: a v2 save of both gives the same bytes
    expect(await saveStream(b)).toEqual(await saveStream(a));
  });

  it('PRE_COPY: PRECOPY_INFO 24/0, the 24-byte header, then read() returns 0 (not ENOMSG)', async () => {
    await a.reset();
    const s = (await a.setState(PC))!;
    expect(s).not.toBeNull();
    try {
      expect(await s.precopyInfo()).toEqual({ initialBytes: 24n, dirtyBytes: 0n });
      const buf = new Uint8Array(4096);
      expect(await s.read(buf)).toBe(24);
      expectMttyHeader(buf.subarray(0, 24), 2);
      expect(await s.read(buf)).toBe(0); // docs/PROTOCOL.md §7: mtty deviates from the uAPI's ENOMSG here
      expect(await s.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n });
      expect(await a.stopCopySize()).toBe(96n);
      expect(await a.setState(SC)).toBeNull(); // PRE_COPY -> STOP_COPY keeps the fd (data_fd -1)
      expect(await errnoOf(s.precopyInfo())).toBe('EINVAL');
      expect((await readAll(s)).length).toBe(72);
    } finally {
      await s.close();
    }
    await a.setState(S);
    await a.setState(R);
  });

  it('truncated resume data fails the SET that leaves RESUMING; reset recovers', async () => {
    const stream = await saveStream(a);
    const s = (await b.setState(RS))!;
    await writeAll(s, stream.subarray(0, 95));
    const e = await failure(b.setState(R));
    expect(e).toBeInstanceOf(MigrationError);
    expect(e.code).toBe('EINVAL');
    expect(await b.getState()).toBe(RS);
    await b.reset(); // never SET out of this RESUMING (docs/PROTOCOL.md §7 H2)
    expect(s.fd).toBe(-1);
    expect(await b.getState()).toBe(R);
  });

  it('the data fd is a stream: pread on it is ESPIPE; write errors keep their errno', async () => {
    const stream = await saveStream(a);
    const out = (await a.setState(SC))!;
    try {
      expect(() => koffiSyscalls().pread(out.fd!, new Uint8Array(8), 0n)).toThrow(expect.objectContaining({ code: 'ESPIPE' }));
      expect(await errnoOf(out.write(new Uint8Array(8)))).toBe('EBADF'); // the saving file is O_RDONLY
    } finally {
      await out.close();
    }
    await a.reset();
    const bad = stream.slice();
    bad[0] ^= 1;
    let s: DataSession = (await b.setState(RS))!;
    expect(await errnoOf(s.write(bad))).toBe('EFAULT'); // header validation in mtty_resume_write
    await b.reset();
    s = (await b.setState(RS))!;
    const long = new Uint8Array(97);
    long.set(stream);
    expect(await errnoOf(s.write(long))).toBe('ENOMEM');
    await b.reset();
  });

  it('reset ends a live session: the driver disables the file and our fd is closed', async () => {
    const before = fdCount();
    const s = (await a.setState(PC))!;
    expect(fdCount()).toBe(before + 1);
    await a.reset();
    expect(fdCount()).toBe(before);
    expect(await a.getState()).toBe(R);
    expect(await errnoOf(s.read(new Uint8Array(8)))).toBe('EBADF');
  });

  it('a session the driver abandoned answers ENODEV', async () => {
    const s = (await a.setState(PC))!;
    await a.setState(R);
    expect(await errnoOf(s.read(new Uint8Array(8)))).toBe('ENODEV');
    await s.close();
  });

  it('explains a group that is already open (EBUSY), and closes what it opened', () => {
    const before = fdCount();
    expect(() => openVfioDevice({ sysfs: sysfs(DEV_A) })).toThrow(
      expect.objectContaining({ code: 'EBUSY', message: expect.stringMatching(/already open/) }),
    );
    expect(fdCount()).toBe(before);
  });

  it('KernelLegacyRegion refuses mtty: a v2-only driver has no v1 region (ENODEV)', async () => {
    await a.close();
    const before = fdCount();
    const e = await failure(KernelLegacyRegion.open({ sysfs: sysfs(DEV_A) }));
    expect(e).toBeInstanceOf(MigrationError);
    expect(e.code).toBe('ENODEV');
    expect(fdCount()).toBe(before);
    a = await KernelMigrationDevice.open({ sysfs: sysfs(DEV_A) });
    expect(await a.getState()).toBe(R);
  });
});
