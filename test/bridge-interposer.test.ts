// The LD_PRELOAD interposer (src/bridge/interposer.c) without a kernel: a v1 client
// (test/native/v1-client.c) does what QEMU 7.2 does to a device fd, a fake VFIO device
// (test/native/fake-vfio.c) answers the device's own ioctls, and a fake bridge peer
// (test/support/fake-bridge.ts) answers the frames. Every test runs twice: built as the
// product builds it, and built with AddressSanitizer + UndefinedBehaviorSanitizer, where any
// report fails the test.
import { constants } from 'node:os';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { requireFile } from './support/kernel-tree.js';
import { FakeBridge, OP, answer, windowPattern, type Connection, type FakeBridgeOptions } from './support/fake-bridge.js';
import {
  BUILD_VARIANTS,
  ClientSession,
  INTERPOSER_C,
  PRODUCT_FLAGS,
  buildNative,
  expectCleanExit,
  failsWith,
  fakeDeviceDir,
  gcc,
  ok,
  until,
  type Answer,
  type NativeBuild,
} from './support/native-client.js';

const { EINVAL, EIO, ENOTTY, EBADF } = constants.errno;
const TIB = 1n << 40n;
const REGION = 11n * TIB; // first multiple of 2^40 past the fake's BAR5 end
const WINDOW = REGION + 4096n;
const WINDOW_SIZE = 64 * 1024;
const REGION_SIZE = 4096n + BigInt(WINDOW_SIZE);
const BAR0_MARK = Buffer.from('BAR0 bytes of the fake device');
const CONFIG = 7n * TIB;
const CONFIG_MARK = Buffer.from('config space');
const SLOW = 20_000; // bridge timeout where a test must not hit it

// QEMU 7.2's VFIO_DEVICE_FEATURE flags
const GET = 1 << 16,
  SET = 1 << 17,
  PROBE = 1 << 18;

interface World {
  bridge: FakeBridge;
  client: ClientSession;
  dir: string;
}

const hex = (b: Buffer) => b.toString('hex');

/** A few bytes of a (sparse, terabytes long) fake device file. */
function readAt(path: string, offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  const fd = openSync(path, 'r');
  readSync(fd, b, 0, length, offset);
  closeSync(fd);
  return b;
}

interface FdInfo {
  fd: number;
  target: string;
  cloexec: boolean;
}

/** Sockets other than stdio (Node gives the client socketpairs for 0-2). */
function bridgeSockets(fds: Answer): FdInfo[] {
  return (fds.fds as FdInfo[]).filter((f) => f.fd > 2 && f.target.startsWith('socket:'));
}
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return hex(b);
};

describe.each(BUILD_VARIANTS)('interposer, $name', ({ sanitized }) => {
  let build: NativeBuild;
  const worlds: World[] = [];

  beforeAll(() => {
    build = buildNative(sanitized);
  }, 120_000);

  afterEach(async () => {
    for (const w of worlds.splice(0)) {
      const exit = await w.client.close();
      await w.bridge.stop();
      rmSync(w.dir, { recursive: true, force: true });
      expectCleanExit(exit);
      expect(w.bridge.errors).toEqual([]);
    }
  });

  async function world(opts: { bridge?: FakeBridgeOptions; timeoutMs?: number; socket?: string | null } = {}): Promise<World> {
    const bridge = await FakeBridge.start({ window: WINDOW_SIZE, ...opts.bridge });
    const dir = fakeDeviceDir();
    const fd = openSync(join(dir, 'dev-a'), 'r+');
    writeSync(fd, BAR0_MARK, 0, BAR0_MARK.length, 0);
    writeSync(fd, CONFIG_MARK, 0, CONFIG_MARK.length, Number(CONFIG));
    closeSync(fd);
    const socket = opts.socket === undefined ? bridge.socketPath : (opts.socket ?? undefined);
    const client = ClientSession.start(build, {
      FAKE_VFIO_DIR: dir,
      VFIO_MIG_BRIDGE_SOCKET: socket,
      VFIO_MIG_BRIDGE_TIMEOUT_MS: String(opts.timeoutMs ?? SLOW),
    });
    const w = { bridge, client, dir };
    worlds.push(w);
    return w;
  }

  /** A device opened through the group and offered to the bridge, as QEMU does. */
  async function openDevice(
    w: World,
    name = 'dev-a',
    how: 'migsetup' | 'nommap' | 'info' = 'migsetup',
  ): Promise<{ fd: number; conn: Connection; setup: Answer }> {
    const fd = ok(await w.client.cmd(`group ${name}`)).r;
    const before = w.bridge.connections.length;
    const s = await w.client.cmd(how === 'info' ? `info ${fd}` : `migsetup ${fd}${how === 'nommap' ? ' nommap' : ''}`);
    ok(s);
    await until(() => w.bridge.connections.length > before && !!w.bridge.connections[before].register, 'REGISTER');
    return { fd, conn: w.bridge.connections[before], setup: s };
  }

  describe('what QEMU 7.2 sees at probe time', () => {
    it('GET_INFO says 10 regions; the scan (32-byte ask, argsz retry) finds type 3/1 at index 9, past the real regions', async () => {
      const w = await world();
      const { fd, conn, setup } = await openDevice(w);
      expect(setup).toMatchObject({ numRegions: 10, migration: 9, offset: String(REGION), size: String(REGION_SIZE) });
      expect(setup.areas).toEqual([{ offset: 4096, size: WINDOW_SIZE }]);
      const regions = setup.regions as Record<string, unknown>[];
      expect(regions[9]).toEqual({
        index: 9,
        firstArgsz: 80,
        argsz: 80,
        flags: 1 | 2 | 4 | 8,
        size: String(REGION_SIZE),
        offset: String(REGION),
        type: 3,
        subtype: 1,
      });
      expect(regions[8]).toEqual({ index: 8, errno: EINVAL }); // the fake has no VGA, like vfio-pci
      expect(regions[5]).toMatchObject({ offset: String(10n * TIB + 0x3000n), size: String(0x2000), type: -1 });
      // the interposer measured the real regions and named the device as GET_DEVICE_FD was told
      const pid = (await w.client.cmd('getpid')).r;
      expect(conn.register).toEqual({ version: 1, pid, fd, numRegions: 9, regionsEnd: 10n * TIB + 0x5000n, name: 'dev-a' });
      // region info is answered locally: REGISTER is the only frame so far
      expect(w.bridge.framesOf(conn).map((f) => f.op)).toEqual([OP.REGISTER]);
    });

    it('GET_REGION_INFO for the added index answers like vfio_pci_ioctl_get_region_info', async () => {
      const w = await world();
      const { fd } = await openDevice(w);
      failsWith(await w.client.cmd(`rinfo ${fd} 9 31`), EINVAL);
      for (const argsz of [32, 79]) {
        expect(ok(await w.client.cmd(`rinfo ${fd} 9 ${argsz}`))).toMatchObject({
          argsz: 80,
          capOffset: 0,
          flags: 15,
          index: 9,
          size: String(REGION_SIZE),
          offset: String(REGION),
          wroteBeyondArgsz: false,
        });
      }
      const full = ok(await w.client.cmd(`rinfo ${fd} 9 200`));
      expect(full).toMatchObject({ argsz: 200, capOffset: 32, flags: 15, wroteBeyondArgsz: false });
      const chain = Buffer.alloc(48);
      chain.writeUInt16LE(2, 0);
      chain.writeUInt16LE(1, 2);
      chain.writeUInt32LE(48, 4); // type cap, next at 48
      chain.writeUInt32LE(3, 8);
      chain.writeUInt32LE(1, 12); // type 3, subtype 1
      chain.writeUInt16LE(1, 16);
      chain.writeUInt16LE(1, 18);
      chain.writeUInt32LE(0, 20); // sparse mmap cap, last
      chain.writeUInt32LE(1, 24);
      chain.writeUInt32LE(0, 28); // one area
      chain.writeBigUInt64LE(4096n, 32);
      chain.writeBigUInt64LE(BigInt(WINDOW_SIZE), 40);
      // the chain, then the caller's bytes untouched up to its argsz
      expect(full.caps).toBe(hex(chain) + 'aa'.repeat(200 - 80));
      failsWith(await w.client.cmd(`rinfo ${fd} 10 80`), EINVAL);
      expect(ok(await w.client.cmd(`rinfo ${fd} 5 32`))).toMatchObject({ offset: String(10n * TIB + 0x3000n), argsz: 32 });
    });

    it('MMAP off: no sparse capability (argsz 48, no MMAP flag) and mmap of the window is EINVAL', async () => {
      const w = await world({ bridge: { mmap: false } });
      const { fd, setup } = await openDevice(w);
      expect((setup.regions as Record<string, unknown>[])[9]).toMatchObject({
        firstArgsz: 48,
        argsz: 48,
        flags: 1 | 2 | 8,
        type: 3,
        subtype: 1,
      });
      expect(setup.areas).toEqual([]);
      const info = ok(await w.client.cmd(`rinfo ${fd} 9 48`));
      expect(info.caps).toBe('0200010000000000' + '03000000' + '01000000');
      failsWith(await w.client.cmd(`mmap ${fd} ${WINDOW} 4096`), EINVAL);
    });
  });

  describe('region accesses', () => {
    it('header accesses at native width are forwarded; the window is read from memory, 8 bytes at a time, without frames', async () => {
      const w = await world();
      const { conn } = await openDevice(w, 'dev-a', 'nommap');
      expect(ok(await w.client.cmd('migread 0 4')).value).toBe('1');
      const data = Buffer.from(Array.from({ length: 96 }, (_, i) => (i * 31 + 5) & 0xff));
      w.bridge.stageChunk(conn, data);
      expect(ok(await w.client.cmd('migread 8 8')).value).toBe('96');
      const before = w.bridge.framesOf(conn).length;
      const saved = ok(await w.client.cmd('save'));
      expect(saved).toMatchObject({ via: 'pread', accesses: 12, dataOffset: 4096, data: hex(data) });
      // data_offset and data_size are the only frames: 12 window preads never left the process
      expect(
        w.bridge
          .framesOf(conn)
          .slice(before)
          .map((f) => [f.op, Number(f.offset), f.count]),
      ).toEqual([
        [OP.READ, 16, 8],
        [OP.READ, 24, 8],
      ]);
    });

    it('the window through the sparse mapping (QEMU maps it once and memcpys)', async () => {
      const w = await world();
      const { conn } = await openDevice(w);
      const data = Buffer.from('state of the device, served by memcpy from the shared window file');
      w.bridge.stageChunk(conn, data);
      expect(ok(await w.client.cmd('save'))).toMatchObject({ via: 'mmap', data: hex(data) });
    });

    for (const path of ['trapped', 'mmap'] as const) {
      it(`load (${path}): window writes are EINVAL until the bridge reports WINDOW_WRITABLE, then reach the window file`, async () => {
        const w = await world();
        const { fd, conn } = await openDevice(w, 'dev-a', path === 'mmap' ? 'migsetup' : 'nommap');
        failsWith(await w.client.cmd(`pwrite ${fd} ${WINDOW} 0102030405060708`), EINVAL);
        expect(ok(await w.client.cmd('setstate 0 4'))).toMatchObject({ state: 4, hwError: false });
        expect(w.bridge.state(conn)).toBe(4);
        const data = Buffer.from('resume data for the device, split in 8-byte writes when trapped!!');
        const loaded = ok(await w.client.cmd(`load ${hex(data)}`));
        expect(loaded.via).toBe(path === 'mmap' ? 'mmap' : 'pwrite');
        expect(readFileSync(conn.windowPath).subarray(0, data.length)).toEqual(data);
        const last = w.bridge.framesOf(conn, OP.WRITE).at(-1)!;
        expect([Number(last.offset), last.payload.readBigUInt64LE(0)]).toEqual([24, BigInt(data.length)]);
      });
    }

    it('accesses running past the region are EINVAL; header accesses over 4096 bytes are EINVAL; nothing is sent', async () => {
      const w = await world();
      const { fd, conn } = await openDevice(w);
      const before = w.bridge.framesOf(conn).length;
      const end = REGION + REGION_SIZE;
      failsWith(await w.client.cmd(`pread ${fd} ${end - 4n} 8`), EINVAL);
      failsWith(await w.client.cmd(`pwrite ${fd} ${end - 2n} 01020304`), EINVAL);
      failsWith(await w.client.cmd(`pread ${fd} ${REGION} 8192`), EINVAL);
      expect(w.bridge.framesOf(conn).length).toBe(before);
      // zero bytes inside the region: 0, as vfio_pci_core_read answers
      expect(ok(await w.client.cmd(`pread ${fd} ${REGION + 8n} 0`)).r).toBe(0);
      // header into window: forwarded whole, the bridge judges it
      ok(await w.client.cmd(`pread ${fd} ${WINDOW - 6n} 16`));
      expect(
        w.bridge
          .framesOf(conn)
          .slice(before)
          .map((f) => [f.op, Number(f.offset), f.count]),
      ).toEqual([[OP.READ, 4090, 16]]);
      // starting past the region: not the interposer's business (the fake's file ends there)
      expect(ok(await w.client.cmd(`pread ${fd} ${end} 4`)).r).toBe(0);
      expect(w.bridge.framesOf(conn).length).toBe(before + 1);
    });

    it('mmap: only inside the window, MAP_SHARED, within its length; BAR mmaps pass through', async () => {
      const w = await world();
      const { fd } = await openDevice(w);
      failsWith(await w.client.cmd(`mmap ${fd} ${REGION} 4096`), EINVAL);
      failsWith(await w.client.cmd(`mmap ${fd} ${WINDOW + 4096n} ${WINDOW_SIZE}`), EINVAL);
      failsWith(await w.client.cmd(`mmap ${fd} ${WINDOW} 4096 private`), EINVAL);
      const slot = ok(await w.client.cmd(`mmap ${fd} ${WINDOW + 4096n} 8192 shared mmap`)).r;
      expect((await w.client.cmd(`mread ${slot} 0 16`)).hex).toBe(hex(windowPattern(WINDOW_SIZE, 0).subarray(4096, 4112)));
      const bar = ok(await w.client.cmd(`mmap ${fd} 0 4096`)).r;
      expect((await w.client.cmd(`mread ${bar} 0 ${BAR0_MARK.length}`)).hex).toBe(hex(BAR0_MARK));
    });

    it('every pread/pwrite symbol QEMU may import is interposed; BAR and config accesses reach the device untouched', async () => {
      const w = await world();
      const { fd, conn } = await openDevice(w);
      for (const via of ['pread', 'pread64', 'chk', 'chk64']) {
        expect(ok(await w.client.cmd(`pread ${fd} ${REGION} 4 ${via}`)).hex).toBe(u32(1));
      }
      ok(await w.client.cmd(`pwrite ${fd} ${REGION + 8n} 0100000000000000 pwrite`));
      ok(await w.client.cmd(`pwrite ${fd} ${REGION + 8n} 0200000000000000 pwrite64`));
      expect(
        w.bridge
          .framesOf(conn)
          .slice(1)
          .map((f) => f.op),
      ).toEqual([OP.READ, OP.READ, OP.READ, OP.READ, OP.WRITE, OP.WRITE]);
      expect(ok(await w.client.cmd(`pread ${fd} 0 ${BAR0_MARK.length}`)).hex).toBe(hex(BAR0_MARK));
      expect(ok(await w.client.cmd(`pread ${fd} ${CONFIG} ${CONFIG_MARK.length} pread`)).hex).toBe(hex(CONFIG_MARK));
      ok(await w.client.cmd(`pwrite ${fd} 16 0badc0de`));
      expect(hex(readAt(join(w.dir, 'dev-a'), 16, 4))).toBe('0badc0de');
      expect(w.bridge.framesOf(conn).length).toBe(7);
      // an ioctl the interposer does not know passes through (the fake counts GET_INFOs)
      expect(ok(await w.client.cmd(`counters ${fd}`)).infos).toBe(1);
    });

    it('two devices in one process are bridged independently', async () => {
      const w = await world();
      const a = await openDevice(w, 'dev-a');
      const b = await openDevice(w, 'dev-b', 'info');
      expect(a.conn.id).not.toBe(b.conn.id);
      expect(b.conn.register).toMatchObject({ name: 'dev-b', fd: b.fd });
      w.bridge.stageChunk(b.conn, Buffer.from('bbbbbbbb'));
      expect(ok(await w.client.cmd(`pread ${a.fd} ${REGION + 24n} 8`)).hex).toBe('0000000000000000');
      expect(ok(await w.client.cmd(`pread ${b.fd} ${REGION + 24n} 8`)).hex).toBe('0800000000000000');
      expect(ok(await w.client.cmd(`pread ${b.fd} ${WINDOW} 4`)).hex).toBe('62626262');
      expect(ok(await w.client.cmd(`pread ${a.fd} ${WINDOW} 4`)).hex).toBe(hex(windowPattern(4, 0)));
    });
  });

  describe('ioctls on a bridged fd', () => {
    it('VFIO_DEVICE_RESET goes to the bridge, not to the device', async () => {
      const w = await world({ bridge: { refuse: (r) => r.name === 'dev-b' } });
      const { fd, conn } = await openDevice(w);
      ok(await w.client.cmd('setstate 0 2'));
      expect(ok(await w.client.cmd(`reset ${fd}`)).r).toBe(0);
      expect(w.bridge.framesOf(conn, OP.RESET)).toHaveLength(1);
      expect(w.bridge.state(conn)).toBe(1);
      expect(ok(await w.client.cmd(`counters ${fd}`)).resets).toBe(0);
      const other = ok(await w.client.cmd('group dev-b')).r;
      ok(await w.client.cmd(`info ${other}`));
      ok(await w.client.cmd(`reset ${other}`));
      expect(ok(await w.client.cmd(`counters ${fd}`)).resets).toBe(1);
    });

    it("VFIO_DEVICE_FEATURE MIGRATION/MIG_DEVICE_STATE/MIG_DATA_SIZE: ENOTTY after vfio_ioctl_device_feature's checks; others and other fds untouched", async () => {
      const w = await world({ bridge: { refuse: (r) => r.name === 'dev-b' } });
      const { fd } = await openDevice(w);
      for (const feature of [1, 2, 9]) failsWith(await w.client.cmd(`feature ${fd} ${GET | feature} 24`), ENOTTY);
      failsWith(await w.client.cmd(`feature ${fd} ${PROBE | GET | SET | 1}`), ENOTTY);
      failsWith(await w.client.cmd(`feature ${fd} ${GET | 1} 4`), EINVAL);
      failsWith(await w.client.cmd(`feature ${fd} ${GET | SET | 2}`), EINVAL);
      failsWith(await w.client.cmd(`feature ${fd} ${(1 << 20) | GET | 1}`), EINVAL);
      expect(ok(await w.client.cmd(`counters ${fd}`)).features).toBe(0);
      failsWith(await w.client.cmd(`feature ${fd} ${GET | 3}`), ENOTTY); // passed to the device
      expect(ok(await w.client.cmd(`counters ${fd}`)).features).toBe(1);
      const other = ok(await w.client.cmd('group dev-b')).r;
      ok(await w.client.cmd(`info ${other}`));
      expect(ok(await w.client.cmd(`feature ${other} ${GET | 1}`)).data).toBe('0300000000000000'); // STOP_COPY | P2P
    });
  });

  describe('fd tracking', () => {
    it('dup, dup2, dup3, F_DUPFD and F_DUPFD_CLOEXEC name the same device; close drops names; the last close ends the connection', async () => {
      const w = await world();
      const { fd, conn } = await openDevice(w);
      const names = [
        ok(await w.client.cmd(`dup ${fd}`)).r,
        ok(await w.client.cmd(`dup2 ${fd} 50`)).r,
        ok(await w.client.cmd(`dup3 ${fd} 51`)).r,
        ok(await w.client.cmd(`fcntl ${fd} dupfd 60 fcntl`)).r,
        ok(await w.client.cmd(`fcntl ${fd} dupfd_cloexec 70 fcntl64`)).r,
      ];
      expect(names.slice(1)).toEqual([50, 51, 60, 70]);
      ok(await w.client.cmd(`close ${fd}`));
      for (const n of names) expect(ok(await w.client.cmd(`pread ${n} ${REGION} 4`)).hex).toBe(u32(1));
      expect(w.bridge.framesOf(conn, OP.READ)).toHaveLength(names.length);
      for (const n of names.slice(0, -1)) ok(await w.client.cmd(`close ${n}`));
      expect(conn.closed).toBe(false);
      ok(await w.client.cmd(`close ${names.at(-1)}`));
      await until(() => conn.closed, 'the connection to close');
    });

    it('dup2/dup3 of another file onto a device name, and close_range, drop that name; CLOSE_RANGE_CLOEXEC does not', async () => {
      const w = await world();
      const { fd, conn } = await openDevice(w);
      const plain = ok(await w.client.cmd(`open ${join(w.dir, 'plain')}`)).r;
      ok(await w.client.cmd(`dup2 ${fd} 40`));
      ok(await w.client.cmd(`dup2 ${fd} 41`));
      ok(await w.client.cmd(`dup2 ${plain} 40`));
      ok(await w.client.cmd(`dup3 ${plain} 41`));
      for (const n of [40, 41]) expect(ok(await w.client.cmd(`pread ${n} ${REGION} 4`)).r).toBe(0); // the plain file's EOF
      ok(await w.client.cmd(`dup2 ${fd} 45`));
      ok(await w.client.cmd(`close_range 44 46 4`)); // CLOSE_RANGE_CLOEXEC closes nothing
      expect(ok(await w.client.cmd(`pread 45 ${REGION} 4`)).hex).toBe(u32(1));
      ok(await w.client.cmd(`close_range 44 46 0`));
      failsWith(await w.client.cmd(`pread 45 ${REGION} 4`), EBADF);
      expect(w.bridge.framesOf(conn, OP.READ)).toHaveLength(1);
      ok(await w.client.cmd(`close_range ${fd} ${fd} 0`));
      await until(() => conn.closed, 'the connection to close');
    });

    it('a number reused after close is not the device; opening the device again registers it again', async () => {
      const w = await world();
      const { fd, conn } = await openDevice(w);
      ok(await w.client.cmd(`close ${fd}`));
      await until(() => conn.closed, 'the connection to close');
      let reused = -1;
      for (let i = 0; i < 4 && reused !== fd; i++) reused = ok(await w.client.cmd(`open ${join(w.dir, 'plain')}`)).r;
      expect(reused).toBe(fd);
      failsWith(await w.client.cmd(`info ${reused}`), ENOTTY); // a plain file, asked by the real ioctl
      expect(ok(await w.client.cmd(`pread ${reused} ${REGION} 4`)).r).toBe(0);
      expect(w.bridge.connections).toHaveLength(1);
      const again = await openDevice(w);
      expect(again.conn.id).toBe(1);
      expect(ok(await w.client.cmd(`pread ${again.fd} ${REGION} 4`)).hex).toBe(u32(1));
    });

    it('a forked child tracks nothing and never talks to the bridge; the parent keeps its connection', async () => {
      const w = await world();
      const { fd, conn } = await openDevice(w);
      const frames = w.bridge.frames.length;
      const forked = await w.client.cmd(`fork pread ${fd} ${REGION} 4; pread ${fd} ${WINDOW} 4; close ${fd}; fds`);
      expect(forked.r).toBe(0);
      const [header, window, , fds] = forked.child as Answer[];
      expect([header.r, window.r]).toEqual([0, 0]); // the device file itself: EOF
      expect(bridgeSockets(fds)).toEqual([]);
      expect(w.bridge.frames.length).toBe(frames);
      expect(w.bridge.connections).toHaveLength(1);
      expect(conn.closed).toBe(false);
      expect(ok(await w.client.cmd(`pread ${fd} ${REGION} 4`)).hex).toBe(u32(1));
    });

    it("a program that reuses the bridge socket's number (dup2 onto it, close + socket) loses that device; no frame lands in its socket", async () => {
      const w = await world();
      const a = await openDevice(w);
      const sockA = bridgeSockets(ok(await w.client.cmd('fds')))[0].fd;
      const pairA = ok(await w.client.cmd('socketpair'));
      ok(await w.client.cmd(`dup2 ${String(pairA.r)} ${sockA}`));
      failsWith(await w.client.cmd(`pread ${a.fd} ${REGION} 4`), EIO);
      expect(ok(await w.client.cmd(`unread ${String(pairA.peer)}`)).r).toBe(0);
      const b = await openDevice(w, 'dev-b');
      const known = new Set([pairA.r, pairA.peer]);
      const sockB = bridgeSockets(ok(await w.client.cmd('fds'))).find((f) => !known.has(f.fd) && f.fd !== sockA)!.fd;
      ok(await w.client.cmd(`close ${sockB}`));
      let pairB = ok(await w.client.cmd('socketpair'));
      for (let i = 0; i < 4 && pairB.r !== sockB && pairB.peer !== sockB; i++) pairB = ok(await w.client.cmd('socketpair'));
      expect([pairB.r, pairB.peer]).toContain(sockB);
      failsWith(await w.client.cmd(`pread ${b.fd} ${REGION} 4`), EIO);
      expect(ok(await w.client.cmd(`unread ${String(pairB.peer)}`)).r).toBe(0);
      expect(ok(await w.client.cmd(`unread ${String(pairB.r)}`)).r).toBe(0);
      await until(() => a.conn.closed && b.conn.closed, 'both connections to close');
    });

    it('the bridge socket is O_CLOEXEC and no window fd stays open', async () => {
      const w = await world();
      await openDevice(w);
      await openDevice(w, 'dev-b');
      const fds = ok(await w.client.cmd('fds'));
      const sockets = bridgeSockets(fds);
      expect(sockets).toHaveLength(2);
      expect(sockets.every((s) => s.cloexec)).toBe(true);
      expect((fds.fds as FdInfo[]).filter((f) => f.target.includes('window-'))).toEqual([]);
    });
  });

  describe('when the bridge is gone', () => {
    it('dies: accesses fail with EIO at once (no SIGPIPE), device_state reads return the last reported value, the window still works', async () => {
      const w = await world();
      const b = await openDevice(w, 'dev-b');
      const a = await openDevice(w, 'dev-a', 'nommap');
      ok(await w.client.cmd('setstate 0xffffffff 2')); // 001 -> 011: the bridge reported 3
      await w.bridge.die();
      // vfio_migration_set_state: the write fails, the re-read succeeds: no hw_error()
      const set = await w.client.cmd('setstate 0xfffffffe 0');
      expect(set).toMatchObject({ r: -1, errno: EIO, hwError: false, state: 3 });
      expect(set.ms).toBeLessThan(SLOW); // found by EOF, not by the timeout
      failsWith(await w.client.cmd('migread 8 8'), EIO);
      failsWith(await w.client.cmd(`reset ${a.fd}`), EIO);
      failsWith(await w.client.cmd(`pwrite ${a.fd} ${REGION + 24n} 0800000000000000`), EIO);
      expect(ok(await w.client.cmd('migread 0 4')).value).toBe('3');
      expect(ok(await w.client.cmd(`pread ${a.fd} ${WINDOW} 4`)).hex).toBe(hex(windowPattern(4, a.conn.id)));
      // b never had device_state reported: nothing to serve
      failsWith(await w.client.cmd(`pread ${b.fd} ${REGION} 4`), EIO);
      expect(ok(await w.client.cmd(`pread ${a.fd} 0 4`)).hex).toBe(hex(BAR0_MARK.subarray(0, 4)));
    });

    it('hangs: the access fails with EIO after VFIO_MIG_BRIDGE_TIMEOUT_MS, later ones at once; the connection is closed', async () => {
      const timeoutMs = 400;
      const w = await world({ timeoutMs });
      const { fd, conn } = await openDevice(w);
      expect(ok(await w.client.cmd('migread 0 4')).value).toBe('1');
      w.bridge.hang();
      const first = await w.client.cmd(`pread ${fd} ${REGION + 8n} 8`);
      failsWith(first, EIO);
      expect(first.ms).toBeGreaterThanOrEqual(timeoutMs);
      await until(() => conn.closed, 'the interposer to close the connection');
      const later = await w.client.cmd(`pread ${fd} ${REGION + 8n} 8`);
      failsWith(later, EIO);
      expect(later.ms).toBeLessThan(timeoutMs);
      expect(ok(await w.client.cmd('migread 0 4')).value).toBe('1');
    });

    it('while one thread waits for a hung bridge, BAR reads on the same fd from another thread complete', async () => {
      const w = await world({ timeoutMs: 3000 });
      const { fd } = await openDevice(w);
      w.bridge.hang();
      const r = await w.client.cmd(`stall ${fd} ${REGION + 8n} 0 1000`);
      expect(r).toMatchObject({ r: -1, errno: EIO, barReads: 1000, headerStillBlocked: true });
    });

    it('an answer that breaks the protocol counts as gone: EIO, connection closed', async () => {
      const w = await world({
        bridge: {
          answer: (f) =>
            f.op === OP.READ && f.offset === 8n
              ? answer(8, Buffer.alloc(4), 0) // payload shorter than result
              : f.op === OP.READ && f.offset === 16n
                ? answer(8, Buffer.alloc(8), 0, 0x12345678)
                : undefined,
        },
      });
      const a = await openDevice(w);
      const b = await openDevice(w, 'dev-b');
      failsWith(await w.client.cmd(`pread ${a.fd} ${REGION + 8n} 8`), EIO);
      failsWith(await w.client.cmd(`pread ${b.fd} ${REGION + 16n} 8`), EIO);
      await until(() => a.conn.closed && b.conn.closed, 'both connections to close');
      failsWith(await w.client.cmd(`pread ${a.fd} ${REGION + 24n} 8`), EIO);
    });
  });

  describe('when there is nothing to bridge', () => {
    it('inert without VFIO_MIG_BRIDGE_SOCKET: the device keeps its 9 regions and the region offset is just file space', async () => {
      const w = await world({ socket: null });
      const fd = ok(await w.client.cmd('group dev-a')).r;
      expect(ok(await w.client.cmd(`migsetup ${fd}`))).toMatchObject({ numRegions: 9, migration: -1 });
      expect(ok(await w.client.cmd(`pread ${fd} ${REGION} 4`)).r).toBe(0);
      expect(w.bridge.connections).toHaveLength(0);
    });

    it('a device the bridge refuses stays untouched and its connection is closed', async () => {
      const w = await world({ bridge: { refuse: () => true } });
      const fd = ok(await w.client.cmd('group dev-a')).r;
      expect(ok(await w.client.cmd(`migsetup ${fd}`))).toMatchObject({ numRegions: 9, migration: -1 });
      await until(() => w.bridge.connections[0]?.closed === true, 'the connection to close');
      expect(ok(await w.client.cmd(`pread ${fd} ${REGION} 4`)).r).toBe(0);
    });

    const spoilers: [string, (p: Buffer, c: Connection) => void][] = [
      ['a region over the real ones', (p) => p.writeBigUInt64LE(9n * TIB, 16)],
      ['an index that is not the next one', (p) => p.writeUInt32LE(12, 4)],
      [
        'a window that is not page aligned',
        (p) => {
          p.writeBigUInt64LE(100n, 32);
          p.writeBigUInt64LE(REGION_SIZE - 100n, 40);
        },
      ],
      ['a window file shorter than the window', (_p, c) => truncateSync(c.windowPath, 100)],
    ];
    for (const [what, spoil] of spoilers) {
      it(`a REGISTER answer with ${what}: the device stays untouched, one line on stderr says why`, async () => {
        const w = await world({ bridge: { editRegister: spoil } });
        const fd = ok(await w.client.cmd('group dev-a')).r;
        expect(ok(await w.client.cmd(`info ${fd}`)).numRegions).toBe(9);
        await until(() => w.bridge.connections[0]?.closed === true, 'the connection to close');
        expect((await w.client.close()).stderr).toMatch(/unusable region layout or window file/);
      });
    }

    it('an unreachable bridge: the device stays untouched, one line on stderr says why', async () => {
      const w = await world({ socket: '/nonexistent/bridge.sock' });
      const fd = ok(await w.client.cmd('group dev-a')).r;
      expect(ok(await w.client.cmd(`info ${fd}`)).numRegions).toBe(9);
      const exit = await w.client.close();
      expect(exit.stderr).toMatch(/cannot reach the bridge at \/nonexistent\/bridge\.sock/);
    });
  });
});

describe('the real QEMU 7.2 binary with the interposer loaded and no VFIO device', () => {
  it('starts, migrates to exec: (its sh -c cat child loads the interposer too) and quits, untouched', async () => {
    const qemu = requireFile('/usr/bin/qemu-system-x86_64', 'qemu-system-x86');
    const out = join(mkdtempSync(join(tmpdir(), 'vfio-mig-qemu-')), 'migration');
    const child = spawn(qemu, ['-M', 'pc', '-m', '64', '-display', 'none', '-nodefaults', '-S', '-qmp', 'stdio'], {
      env: { ...process.env, LD_PRELOAD: buildNative(false).interposer, VFIO_MIG_BRIDGE_SOCKET: '/nonexistent/bridge.sock' },
    });
    const replies: Record<string, unknown>[] = [];
    createInterface({ input: child.stdout }).on('line', (l) => replies.push(JSON.parse(l) as Record<string, unknown>));
    const qmp = async (command: string, args?: object): Promise<Record<string, unknown>> => {
      const seen = replies.length;
      child.stdin.write(`${JSON.stringify({ execute: command, arguments: args })}\n`);
      await until(() => replies.slice(seen).some((r) => 'return' in r || 'error' in r), `QMP ${command}`);
      return replies.slice(seen).find((r) => 'return' in r || 'error' in r)!;
    };
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((r) => child.on('close', r));
    try {
      await until(() => replies.length > 0, 'the QMP greeting');
      await qmp('qmp_capabilities');
      expect(await qmp('migrate', { uri: `exec:cat > ${out}` })).toEqual({ return: {} });
      let status = '';
      for (let i = 0; i < 100 && !['completed', 'failed'].includes(status); i++) {
        status = ((await qmp('query-migrate')).return as { status: string }).status;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(status).toBe('completed');
      await qmp('quit');
      expect(await exited).toBe(0);
      expect(stderr).toBe('');
      expect(statSync(out).size).toBeGreaterThan(0);
    } finally {
      child.kill('SIGKILL');
      rmSync(dirname(out), { recursive: true, force: true });
    }
  }, 60_000);
});

describe('interposer build', () => {
  it('compiles without a warning with the product flags, and with -std=gnu11 -Wpedantic', () => {
    const out = join(buildNative(false).interposer + '.pedantic.so');
    expect(() => gcc(['-std=gnu11', '-Wpedantic', ...PRODUCT_FLAGS, '-o', out, INTERPOSER_C, '-ldl', '-lpthread'])).not.toThrow();
    rmSync(out, { force: true });
  });
});
