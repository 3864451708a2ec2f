// BridgeServer end to end without a kernel: a TS client that speaks the
// protocol as the interposer does (test/support/bridge-client.ts) drives a
// whole QEMU 7.2 save (legacy/qemu/v1-client.ts saveV1: device_state writes,
// pending_bytes / data_offset / data_size reads, window bytes from the
// client's own mapping of the window file) and a resume into a second
// device, over simulated v2 drivers, with the mmap path and with --no-mmap.
import { readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { loadV1, saveV1 } from '../legacy/qemu/v1-client.js';
import { readDeviceState, readU64Field, writeDeviceState } from '../legacy/v1-registers.js';
import { V1_RESUMING, V1_RUNNING, V1_SAVING } from '../legacy/v1-state.js';
import { NotBridgeable, type DeviceCandidate } from '../src/bridge/device-source.js';
import { TRACE_FORMAT_VERSION, TraceWriter } from '../src/bridge/trace.js';
import { encodeRequest, PROTOCOL_VERSION } from '../src/bridge/wire-protocol.js';
import {
  VFIO_REGION_INFO_FLAG_CAPS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from '../src/uapi/constants.js';
import { MigrationError } from '../src/uapi/errors.js';
import { MigFlags, MigState } from '../src/v2/states.js';
import { BridgeClient, BridgedRegion } from './support/bridge-client.js';
import { bridgeRig, simCandidate, simEntry, type BridgeRig } from './support/bridge-rig.js';
import { errnoOf } from './support/errno.js';
import { Sink } from './support/sim-helpers.js';

let rig: BridgeRig | undefined;
afterEach(async () => {
  await rig?.close();
  rig = undefined;
});

async function registered(
  r: BridgeRig,
  name: string,
  extra: Partial<Parameters<typeof BridgedRegion.register>[1]> = {},
): Promise<BridgedRegion> {
  const region = await BridgedRegion.register(r.server.socketPath, { name, ...extra });
  if (!(region instanceof BridgedRegion)) throw new Error(`${name} was not bridged`);
  return region;
}

const RW_CAPS = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_CAPS;

describe.each([
  { path: 'mmap', mmap: true },
  { path: 'trapped (--no-mmap)', mmap: false },
])('a QEMU 7.2-style migration through the bridge, $path', ({ mmap }) => {
  it('saves a running device and resumes it into another; the states match', async () => {
    rig = await bridgeRig({ mmap, windowSize: 1000 });
    const src = await registered(rig, 'src');
    const dst = await registered(rig, 'dst');
    // The synthesized region as GET_REGION_INFO will describe it.
    expect(src.info).toMatchObject({
      bridged: true,
      index: 9,
      offset: 9n << 40n,
      size: 4096n + 1000n,
      windowOffset: 4096n,
      windowSize: 1000n,
      flags: RW_CAPS | (mmap ? VFIO_REGION_INFO_FLAG_MMAP : 0),
    });
    expect(src.windowAccess).toBe(mmap ? 'mmap' : 'pieces');
    expect(rig.events.filter((e) => e.kind === 'bridged').map((e) => e.kind === 'bridged' && e.device.label)).toEqual(['src', 'dst']);

    const source = simEntry(rig.sims, 'src');
    const sink = new Sink();
    const saved = await saveV1(src, sink, {
      windowAccess: src.windowAccess,
      precopyRounds: 3,
      betweenRounds: () => {
        source.sim.step(20);
      },
    });
    expect(saved.usedPrecopy).toBe(true);
    expect(saved.precopyChunks + saved.stopCopyChunks).toBeGreaterThan(3);
    // Window bytes never crossed the socket: they came from the client's mapping of the shared file.
    expect(src.forwarded.windowRead).toBe(0);
    expect(source.driver.currentState).toBe(MigState.STOP);

    const target = simEntry(rig.sims, 'dst');
    expect(target.sim.fingerprint()).not.toBe(source.sim.fingerprint());
    const loaded = await loadV1(dst, Readable.from([sink.bytes]), { windowAccess: dst.windowAccess });
    expect(dst.forwarded.windowWrite).toBe(0);
    expect(loaded.deviceBytes).toBe(saved.precopyBytes + saved.stopCopyBytes);
    expect(target.sim.fingerprint()).toBe(source.sim.fingerprint());
    expect(target.driver.currentState).toBe(MigState.RUNNING);

    // The per-device numbers for the summary.
    const [s, d] = rig.server.devices;
    expect(s.stats).toMatchObject({
      chunksSaved: saved.precopyChunks + saved.stopCopyChunks,
      bytesSaved: saved.precopyBytes + saved.stopCopyBytes,
      chunksResumed: 0,
      failedAccesses: 0,
    });
    expect(s.stats.stopCopyMs()).toBeGreaterThan(0);
    expect(d.stats).toMatchObject({ chunksResumed: loaded.chunks, bytesResumed: loaded.deviceBytes, chunksSaved: 0, failedAccesses: 0 });
    await src.close();
    await dst.close();
  });
});

describe('BridgeServer', () => {
  it('lives in a 0700 directory; socket and window files are 0600; windows are unlinked at release', async () => {
    rig = await bridgeRig({ windowSize: 3000 });
    expect(statSync(rig.dir.path).mode & 0o777).toBe(0o700);
    expect(statSync(rig.server.socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(rig.server.socketPath).isSocket()).toBe(true);
    const r = await registered(rig, 'a');
    expect(r.info.windowPath.startsWith(`${rig.dir.path}/`)).toBe(true);
    expect(statSync(r.info.windowPath).mode & 0o777).toBe(0o600);
    expect(statSync(r.info.windowPath).size).toBe(3000);
    await r.close();
    await waitFor(() => !rig!.server.devices[0].live);
    expect(readdirSync(rig.dir.path)).toEqual(['bridge.sock']);
    expect(simEntry(rig.sims, 'a').closes).toBe(1);
  });

  it('places the region at the first 2^40 multiple at or past the real regions', async () => {
    rig = await bridgeRig();
    const at = async (name: string, regionsEnd: bigint, numRegions: number) => {
      const r = await registered(rig!, name, { regionsEnd, numRegions });
      await r.close();
      return [r.info.index, r.info.offset];
    };
    expect(await at('a', 0n, 0)).toEqual([0, 0n]);
    expect(await at('b', 1n << 40n, 1)).toEqual([1, 1n << 40n]);
    expect(await at('c', (1n << 40n) + 1n, 2)).toEqual([2, 2n << 40n]);
    expect(await at('d', 0x1234n, 3)).toEqual([3, 1n << 40n]);
    // No room below 2^63: not bridged.
    const none = await BridgedRegion.register(rig.server.socketPath, { name: 'e', regionsEnd: (1n << 63n) - 1n });
    expect(none).toMatchObject({ bridged: false });
  });

  it('normalises at REGISTER: a device left in RESUMING or STOP_COPY is reset, never SET', async () => {
    rig = await bridgeRig();
    for (const [name, left] of [
      ['resuming', MigState.RESUMING],
      ['stop-copy', MigState.STOP_COPY],
    ] as const) {
      const e = simEntry(rig.sims, name);
      await e.driver.setState(left);
      e.arcs.length = 0;
      const r = await registered(rig, name);
      expect(e.driver.currentState).toBe(MigState.RUNNING);
      expect(e.resets).toBe(1);
      expect(e.arcs).toEqual([]);
      expect(await readDeviceState(r)).toBe(V1_RUNNING);
      await r.close();
    }
    // A running device is left alone.
    const r = await registered(rig, 'running');
    expect(simEntry(rig.sims, 'running').resets).toBe(0);
    await r.close();
  });

  it('a connection that ends in RESUMING resets its device (never a SET out of RESUMING); saving states are left', async () => {
    rig = await bridgeRig();
    const r = await registered(rig, 'a');
    await writeDeviceState(r, V1_RESUMING);
    expect(r.windowWritable).toBe(true);
    const e = simEntry(rig.sims, 'a');
    e.arcs.length = 0;
    await r.close();
    await waitFor(() => !rig!.server.devices[0].live);
    expect(e.driver.currentState).toBe(MigState.RUNNING);
    expect(e.resets).toBe(1);
    expect(e.arcs.some((a) => a.startsWith('RESUMING>'))).toBe(false);

    const s = await registered(rig, 'b');
    await writeDeviceState(s, V1_SAVING);
    await s.close();
    await waitFor(() => !rig!.server.devices[1].live);
    expect(simEntry(rig.sims, 'b').driver.currentState).toBe(MigState.STOP_COPY);
    expect(simEntry(rig.sims, 'b').driver.openHandles).toBe(0); // the bridge closed its data_fd
  });

  it('says WINDOW_WRITABLE exactly while RESUMING, and forwards RESET', async () => {
    rig = await bridgeRig();
    const r = await registered(rig, 'a');
    expect(r.windowWritable).toBe(false);
    expect(await errnoOf(r.writeAt(4096, new Uint8Array(8)))).toBe('EINVAL');
    await writeDeviceState(r, V1_RESUMING);
    expect(r.windowWritable).toBe(true);
    await r.writeAt(4096, new Uint8Array([1, 2, 3]));
    await r.reset();
    expect(r.windowWritable).toBe(false);
    expect(await readDeviceState(r)).toBe(V1_RUNNING);
    expect(simEntry(rig.sims, 'a').resets).toBe(1);
    expect([...r.window.subarray(0, 3)]).toEqual([0, 0, 0]); // a reset drops the window's bytes
    await r.close();
  });

  it('answers bad register accesses with the errno a v1 driver gives, and keeps the connection', async () => {
    rig = await bridgeRig({ windowSize: 64 });
    const r = await registered(rig, 'a');
    const c = r.client;
    for (const [offset, count] of [
      [0, 8],
      [1, 4],
      [8, 4],
      [40, 4],
      [4096 + 60, 8],
      [0xffffffffffff, 4],
    ] as const) {
      expect((await c.request({ op: 'read', offset: BigInt(offset), count })).result, `${offset}/${count}`).toBe(-22);
    }
    expect((await c.request({ op: 'read', offset: (1n << 64n) - 1n, count: 1 })).result).toBe(-22);
    expect((await c.request({ op: 'write', offset: 8n, data: new Uint8Array(8) })).result).toBe(-22); // pending_bytes is read-only
    expect((await c.request({ op: 'write', offset: 0n, data: new Uint8Array([6, 0, 0, 0]) })).result).toBe(-22); // 110b is no state to write
    expect(await readDeviceState(r)).toBe(V1_RUNNING);
    expect(rig.server.devices[0].stats.failedAccesses).toBe(9);
    await r.close();
  });

  it('refuses a second registration of a device that is being served without touching it; the first keeps working', async () => {
    rig = await bridgeRig();
    const first = await registered(rig, 'a');
    await writeDeviceState(first, V1_SAVING); // mid stop-and-copy: a reset now would lose the device's state
    const entry = simEntry(rig.sims, 'a');
    const arcsBefore = entry.arcs.length;
    const second = await BridgedRegion.register(rig.server.socketPath, { name: 'a' });
    expect(second).toMatchObject({ bridged: false });
    expect(rig.events.find((e) => e.kind === 'not-bridged')).toMatchObject({
      name: 'a',
      expected: false,
      reason: expect.stringContaining('already bridged'),
    });
    expect(entry).toMatchObject({ opens: 1, discards: 1, resets: 0 });
    expect(entry.arcs.length).toBe(arcsBefore);
    expect(await entry.driver.getState()).toBe(MigState.STOP_COPY);
    expect(await readDeviceState(first)).toBe(V1_SAVING);
    await writeDeviceState(first, V1_RUNNING);
    await first.close();
    await waitFor(() => !rig!.server.devices[0].live);
    const again = await registered(rig, 'a'); // released: may be bridged again
    await again.close();
  });

  // Two moments when the first registration is not served yet: its candidate's open() has not
  // returned, or it has and BridgedDevice.open() is still bringing the device to a known state.
  it.each([
    { phase: 'opening' as const, moment: 'while the first is still opening' },
    { phase: 'normalising' as const, moment: 'after the first was opened, before it is served' },
  ])('tells one device by its open file too (kcmp), whatever name a registration gives, and $moment', async ({ phase }) => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const file = { id: 'the one fd' };
    let opened = 0;
    rig = await bridgeRig({
      devices: ({ name }) => {
        const entry = simEntry(rig!.sims, name);
        const candidate = simCandidate(name, entry);
        return Promise.resolve({
          ...candidate,
          file, // every registration here names the same open file under another name
          sameFileAs: (other: DeviceCandidate) => (other as DeviceCandidate & { file?: object }).file === file,
          open: async () => {
            if (name !== 'a' || opened++ > 0) return candidate.open();
            // the first is still being taken over when the others arrive
            if (phase === 'opening') await gate;
            const device = await candidate.open();
            if (phase === 'opening') return device;
            const getState = device.getState.bind(device);
            return { ...device, getState: async () => (await gate, getState()) };
          },
        });
      },
    });
    const firstRegistration = BridgedRegion.register(rig.server.socketPath, { name: 'a' });
    await waitFor(() => rig!.sims.has('a') && (phase === 'opening' || simEntry(rig!.sims, 'a').opens === 1));
    const sameName = await BridgedRegion.register(rig.server.socketPath, { name: 'a' });
    const otherName = await BridgedRegion.register(rig.server.socketPath, { name: 'b' });
    release();
    const first = await firstRegistration;
    expect(first).toBeInstanceOf(BridgedRegion);
    expect(sameName).toMatchObject({ bridged: false });
    expect(otherName).toMatchObject({ bridged: false });
    expect(simEntry(rig.sims, 'b')).toMatchObject({ opens: 0, discards: 1 });
    expect(rig.events.filter((e) => e.kind === 'not-bridged').map((e) => (e as { reason: string }).reason)).toEqual([
      expect.stringContaining('already bridged as a'),
      expect.stringContaining('b is already bridged as a'),
    ]);
    await (first as BridgedRegion).close();
  });

  it('answers "not bridged" when the source says so, or fails', async () => {
    let call = 0;
    rig = await bridgeRig({
      devices: async () => {
        call++;
        if (call === 1) throw new NotBridgeable('ENOTTY', 'no v2 migration support');
        throw new MigrationError('EPERM', 'pidfd_getfd');
      },
    });
    expect(await BridgedRegion.register(rig.server.socketPath, { name: 'x' })).toMatchObject({ bridged: false });
    expect(await BridgedRegion.register(rig.server.socketPath, { name: 'y' })).toMatchObject({ bridged: false });
    expect(rig.events.map((e) => e.kind === 'not-bridged' && [e.name, e.expected])).toEqual([
      ['x', true],
      ['y', false],
    ]);
    expect(rig.server.devices).toEqual([]);
  });

  it('resets a device that went to ERROR, fails the write, reads back 001, and reports it', async () => {
    rig = await bridgeRig({ flags: MigFlags.STOP_COPY | MigFlags.PRE_COPY });
    const r = await registered(rig, 'a');
    const e = simEntry(rig.sims, 'a');
    await writeDeviceState(r, V1_RUNNING | V1_SAVING);
    e.driver.armFaults({ failArc: { from: MigState.PRE_COPY, to: MigState.STOP_COPY, errno: 'EFAULT', toError: true } });
    expect(await errnoOf(writeDeviceState(r, V1_SAVING))).toBe('EFAULT');
    expect(await readDeviceState(r)).toBe(V1_RUNNING);
    expect(e.driver.currentState).toBe(MigState.RUNNING);
    const recovery = rig.events.find((ev) => ev.kind === 'error-recovery');
    expect(recovery).toMatchObject({ device: { label: 'a' }, recovery: { reset: 'ok', cause: expect.stringContaining('EFAULT') } });
    expect(rig.server.devices[0].stats.errorResets).toBe(1);
    await r.close();
  });

  it('refuses REGISTER for another pid than the socket peer, and frames before REGISTER', async () => {
    rig = await bridgeRig();
    const c = await BridgeClient.connect(rig.server.socketPath);
    const a = await c.request({
      op: 'register',
      version: PROTOCOL_VERSION,
      pid: process.pid + 1,
      fd: 3,
      numRegions: 9,
      regionsEnd: 0n,
      name: 'a',
    });
    expect(a.result).toBe(-71); // EPROTO
    await c.closed;
    const d = await BridgeClient.connect(rig.server.socketPath);
    d.send(encodeRequest({ op: 'read', offset: 0n, count: 4 }));
    expect((await d.next()).result).toBe(-71);
    await d.closed;
    expect(rig.events.filter((e) => e.kind === 'refused')).toHaveLength(2);
    expect(rig.sims.size).toBe(0);
  });

  it('traces every v1 access and v2 call as versioned JSON lines', async () => {
    const dir = (await import('node:fs')).mkdtempSync(join((await import('node:os')).tmpdir(), 'vfio-mig-trace-'));
    const path = join(dir, 'trace.jsonl');
    const trace = TraceWriter.open(path, { command: ['test'] });
    rig = await bridgeRig({ trace });
    const r = await registered(rig, 'a');
    await writeDeviceState(r, V1_SAVING);
    while ((await readU64Field(r, 'pending_bytes')) > 0n) {
      await readU64Field(r, 'data_offset');
      await readU64Field(r, 'data_size');
    }
    expect(await errnoOf(writeDeviceState(r, 6))).toBe('EINVAL');
    await r.close();
    await waitFor(() => !rig!.server.devices[0].live);
    trace.close({ status: 0 });
    const lines = readFileSync(path, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.every((l) => l.v === TRACE_FORMAT_VERSION && typeof l.t === 'number')).toBe(true);
    expect(lines.map((l) => l.t)).toEqual([...lines.map((l) => l.t)].sort((x, y) => x - y));
    const kinds = lines.map((l) => l.ev);
    expect(kinds[0]).toBe('start');
    expect(kinds.at(-1)).toBe('end');
    expect(lines.find((l) => l.ev === 'register')).toMatchObject({ dev: 1, name: 'a', index: 9, offset: '0x90000000000' });
    // Version 2: which device and which program (its executable; the version is the recorder's to add).
    expect(lines.find((l) => l.ev === 'device')).toEqual({ v: 2, t: expect.any(Number), ev: 'device', dev: 1, name: 'a', protocol: 'v1' });
    expect(lines.filter((l) => l.ev === 'client')).toEqual([
      { v: 2, t: expect.any(Number), ev: 'client', name: 'node', exe: realpathSync(process.execPath), pid: process.pid },
    ]);
    expect(lines.find((l) => l.ev === 'v1' && l.op === 'read' && l.off === '0x8')).toMatchObject({ field: 'pending_bytes', width: 8 });
    expect(lines.find((l) => l.ev === 'v1' && l.op === 'write' && l.value === '0x2')).toMatchObject({ off: '0x0', width: 4, result: 'ok' });
    expect(lines.find((l) => l.ev === 'v1' && l.op === 'write' && l.value === '0x6')).toMatchObject({ result: 'EINVAL' });
    expect(lines.find((l) => l.ev === 'v2' && l.call === 'setState')).toMatchObject({ arg: 'STOP_COPY', result: 'ok', ret: 'session' });
    expect(lines.find((l) => l.ev === 'v2' && l.call === 'stopCopySize')).toMatchObject({ result: 'ok' });
    expect(lines.filter((l) => l.ev === 'data' && l.op === 'read').at(-1)).toMatchObject({ size: expect.any(Number), ret: 0 });
    expect(lines.find((l) => l.ev === 'release')).toMatchObject({ dev: 1, stats: { failedAccesses: 1 } });
    (await import('node:fs')).rmSync(dir, { recursive: true });
  });
});

async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  expect(cond()).toBe(true);
}
