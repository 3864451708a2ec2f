// The bridge's TypeScript half on the real mtty (lab), without QEMU and
// without the C interposer: this test process plays QEMU — it opens both
// instances through the group API and keeps the device fds — and speaks the
// bridge protocol with the TS client (test/support/bridge-client.ts). The
// bridge, with the real DeviceSource, adopts those fds with pidfd_getfd,
// checks them by readlink, and serves the v1 region; QEMU 7.2's client
// migrates A into B through it, on the mmap and on the trapped path.
import { Readable, Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KernelMigrationDevice, loadV1, openVfioDevice, saveV1, type VfioDevice } from '../../index.js';
import { BridgeServer, type BridgeEvent } from '../../dist/src/bridge/bridge-server.js';
import { kernelDeviceSource } from '../../dist/src/bridge/device-source.js';
import { makePrivateDir } from '../../dist/src/bridge/private-dir.js';
import { BridgedRegion } from '../support/bridge-client.js';
import { readScratch, saveStream, writeScratch } from '../support/mtty-scenarios.js';
import { DEV_A, DEV_B, fdCount, sysfs } from './lab-env.js';

const open = (uuid: string) => KernelMigrationDevice.open({ sysfs: sysfs(uuid) });
let fdsBefore: number;
let mark: number;

beforeEach(async () => {
  fdsBefore = fdCount();
  mark = 0x20 | (Date.now() & 0x1f);
  for (const [uuid, value] of [
    [DEV_A, mark],
    [DEV_B, 0],
  ] as const) {
    const d = await open(uuid);
    await d.reset();
    writeScratch(d, value, 0);
    await d.close();
  }
});

afterEach(() => {
  expect(fdCount()).toBe(fdsBefore);
});

/** REGISTER as the interposer would for a device fd this process holds. */
async function register(socket: string, vfio: VfioDevice, name: string): Promise<BridgedRegion> {
  const regionsEnd = vfio.regions().reduce((end, r) => (r.offset + r.size > end ? r.offset + r.size : end), 0n);
  const r = await BridgedRegion.register(socket, { fd: vfio.fd, name, numRegions: vfio.info.numRegions, regionsEnd });
  if (!(r instanceof BridgedRegion)) throw new Error(`${name} was not bridged`);
  return r;
}

/** A BridgeServer with the real DeviceSource, this process as its command, 4 KiB windows. */
async function realBridge(mmap: boolean) {
  const dir = makePrivateDir(['/tmp']);
  const events: BridgeEvent[] = [];
  const server = await BridgeServer.listen({
    dir: dir.path,
    windowSize: 4096,
    mmap,
    devices: kernelDeviceSource(),
    commandPid: () => process.pid,
    onEvent: (e) => events.push(e),
  });
  return { dir, events, server };
}

describe('the bridge on the real mtty (lab)', () => {
  for (const mmap of [true, false]) {
    it(`adopts QEMU's fds with pidfd_getfd and migrates A into B (${mmap ? 'mmap' : 'trapped'})`, async () => {
      const { dir, events, server } = await realBridge(mmap);
      const qemuA = openVfioDevice({ sysfs: sysfs(DEV_A) });
      const qemuB = openVfioDevice({ sysfs: sysfs(DEV_B) });
      try {
        const a = await register(server.socketPath, qemuA, DEV_A);
        const b = await register(server.socketPath, qemuB, DEV_B);
        expect(a.info).toMatchObject({ index: qemuA.info.numRegions, windowOffset: 4096n, windowSize: 4096n });
        const parts: Buffer[] = [];
        const out = new Writable({
          write(c: Buffer, _e, cb) {
            parts.push(Buffer.from(c));
            cb();
          },
        });
        const saved = await saveV1(a, out, { precopyRounds: 2, windowAccess: a.windowAccess });
        expect([saved.usedPrecopy, saved.precopyBytes + saved.stopCopyBytes]).toEqual([true, 96]);
        const loaded = await loadV1(b, Readable.from([Buffer.concat(parts)]), { windowAccess: b.windowAccess });
        expect(loaded.deviceBytes).toBe(96);
        await a.close();
        await b.close();
        await server.drained();
        expect(events.map((e) => e.kind)).toEqual(['bridged', 'bridged', 'released', 'released']);
        expect(server.devices.map((d) => d.stats.toJSON())).toMatchObject([
          { bytesSaved: 96, failedAccesses: 0 },
          { bytesResumed: 96, failedAccesses: 0 },
        ]);
        // An fd that is no VFIO device (stdin) is not bridged.
        expect(await BridgedRegion.register(server.socketPath, { fd: 0, name: 'stdin', numRegions: 0, regionsEnd: 0n })).toMatchObject({
          bridged: false,
        });
      } finally {
        qemuA.close();
        qemuB.close();
        await server.close();
        dir.remove();
      }
      // B carries A's mark and equals A byte for byte.
      const da = await open(DEV_A);
      const db = await open(DEV_B);
      try {
        await da.reset();
        await db.reset();
        expect(readScratch(db, 0)).toBe(mark);
        expect(await saveStream(db)).toEqual(await saveStream(da));
      } finally {
        await da.close();
        await db.close();
      }
    });
  }

  it('a second registration of the fd being saved (another name, the same open file: kcmp) is refused without touching the device; the save goes on', async () => {
    const { dir, events, server } = await realBridge(true);
    const qemuA = openVfioDevice({ sysfs: sysfs(DEV_A) });
    const qemuB = openVfioDevice({ sysfs: sysfs(DEV_B) });
    try {
      const a = await register(server.socketPath, qemuA, DEV_A);
      const parts: Buffer[] = [];
      const out = new Writable({
        write(c: Buffer, _e, cb) {
          parts.push(Buffer.from(c));
          cb();
        },
      });
      const duplicates: unknown[] = [];
      // Mid pre-copy (the device in PRE_COPY with its data_fd open): a reset now would end the save.
      const betweenRounds = async () => {
        duplicates.push(
          await BridgedRegion.register(server.socketPath, { fd: qemuA.fd, name: 'not-the-sysfs-name', numRegions: 9, regionsEnd: 0n }),
        );
      };
      const saved = await saveV1(a, out, { precopyRounds: 2, windowAccess: a.windowAccess, betweenRounds });
      expect(duplicates.length).toBeGreaterThan(0);
      for (const d of duplicates) expect(d).toMatchObject({ bridged: false });
      expect(events.filter((e) => e.kind === 'not-bridged').map((e) => (e as { reason: string }).reason)).toEqual(
        duplicates.map(() => expect.stringContaining(`already bridged as ${DEV_A}`)),
      );
      expect([saved.usedPrecopy, saved.precopyBytes + saved.stopCopyBytes]).toEqual([true, 96]);
      const b = await register(server.socketPath, qemuB, DEV_B);
      expect((await loadV1(b, Readable.from([Buffer.concat(parts)]), { windowAccess: b.windowAccess })).deviceBytes).toBe(96);
      await a.close();
      await b.close();
      await server.drained();
    } finally {
      qemuA.close();
      qemuB.close();
      await server.close();
      dir.remove();
    }
    const db = await open(DEV_B);
    try {
      await db.reset();
      expect(readScratch(db, 0)).toBe(mark);
    } finally {
      await db.close();
    }
  });
});
