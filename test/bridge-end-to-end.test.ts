// The interposer and the bridge together, without a kernel: the C v1 client
// (test/native/v1-client.c) plays QEMU 7.2's register sequence through the REAL interposer
// (src/bridge/interposer.c, LD_PRELOADed with the fake VFIO device, test/native/fake-vfio.c)
// against the REAL BridgeServer running in this process, whose device source hands out a
// simulated v2 driver (SimV2Driver over a SimDevice) per registered device name. The peer
// check admits the client because it is the "started command" (commandPid is its pid).
//
// What moves: the C client writes the device's state to a migration file (the project's
// format, legacy/qemu/stream-format.ts) and reads it back into a second device; the test compares
// the two SimDevices' fingerprints. Window bytes never reach the bridge: they go through the
// shared window file (memcpy on the client's mapping, or the interposer's memcpy for 8-byte
// preads/pwrites), which the bridge's trace shows. Every test runs with the product build and
// with ASan + UBSan builds of the interposer, the fake device and the client (any report fails).
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TraceWriter } from '../src/bridge/trace.js';
import { loadV2 } from '../legacy/qemu/v2-client.js';
import { MigStreamDecoder } from '../legacy/qemu/stream-format.js';
import { transitionPath } from '../src/v2/fsm.js';
import { MigFlags, MigState } from '../src/v2/states.js';
import { bridgeRig, simEntry, type BridgeRig, type SimEntry } from './support/bridge-rig.js';
import {
  BUILD_VARIANTS,
  ClientSession,
  buildNative,
  expectCleanExit,
  failsWith,
  fakeDeviceDir,
  ok,
  until,
  type Answer,
  type NativeBuild,
} from './support/native-client.js';
import { stopCopyStream } from './support/sim-helpers.js';

const { EINVAL, EIO, EFAULT } = constants.errno;
const STATE = 256 * 1024; // device state: several windows' worth, still quick
const PAGE = 4096;
const WINDOW = 64 * 1024;
const REGION = 11n << 40n; // first multiple of 2^40 past the fake device's regions
const WINDOW_AT = REGION + 4096n;
const SLOW = 20_000; // bridge timeout where a test must not hit it
const FULL = MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY;
const LOAD_SETUP_MASK = ~7 >>> 0; // vfio_load_setup: ~MASK / RESUMING

const FLAG_SETS = [
  { flags: FULL, flagNames: 'STOP_COPY|P2P|PRE_COPY' },
  { flags: MigFlags.STOP_COPY, flagNames: 'STOP_COPY only' },
];

/** The data records of a migration file (the project's format), checked complete. */
function records(path: string): Uint8Array[] {
  const decoder = new MigStreamDecoder();
  // One push: every record's payload arrives as one piece.
  const out = [...decoder.push(readFileSync(path))].flatMap((e) => (e.kind === 'data' ? [e.bytes] : []));
  decoder.end();
  return out;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** pread/pwrite calls QEMU 7.2's vfio_mig_rw makes for n bytes at an 8-aligned offset: 8, then 4, 2, 1. */
const migRwCalls = (n: number) => Math.floor(n / 8) + ((n >> 2) & 1) + ((n >> 1) & 1) + (n & 1);

/** The state the v2 device walks through last on its way from `from` to `to` (the arc to fail). */
function lastArcFrom(from: MigState, to: MigState, flags: number): MigState {
  const path = transitionPath(from, to, flags);
  return path.length > 1 ? path[path.length - 2] : from;
}

interface World {
  rig: BridgeRig;
  /** The bridge offers the window for mmap (else: --no-mmap). */
  mmap: boolean;
  windowSize: number;
  dir: string;
  trace: TraceWriter;
  tracePath: string;
  clients: ClientSession[];
  current?: ClientSession;
  timeoutMs: number;
}

describe.each(BUILD_VARIANTS)('the C v1 client through the real interposer and the real bridge, $name', ({ sanitized }) => {
  let build: NativeBuild;
  const worlds: World[] = [];

  beforeAll(() => {
    build = buildNative(sanitized);
  }, 120_000);

  afterEach(async () => {
    for (const w of worlds.splice(0)) {
      const exits = [];
      for (const c of w.clients) exits.push(await c.close());
      await w.rig.close();
      w.trace.close();
      rmSync(w.dir, { recursive: true, force: true });
      for (const exit of exits) expectCleanExit(exit);
      expect(w.rig.events.filter((e) => e.kind === 'fault')).toEqual([]);
    }
  });

  /** A bridge (devices of STATE bytes, window WINDOW unless told) whose "started command" is the client started last. */
  async function world(o: {
    mmap: boolean;
    flags: number;
    windowSize?: number;
    timeoutMs?: number;
    commandPid?: () => number | undefined;
  }): Promise<World> {
    const windowSize = o.windowSize ?? WINDOW;
    const dir = fakeDeviceDir();
    const tracePath = join(dir, 'trace.jsonl');
    const trace = TraceWriter.open(tracePath, { command: ['v1-client'] });
    let made: World | undefined = undefined;
    const rig = await bridgeRig({
      mmap: o.mmap,
      windowSize,
      flags: o.flags,
      sim: { size: STATE, pageSize: PAGE },
      trace,
      commandPid: o.commandPid ?? (() => made?.current?.pid),
    });
    made = { rig, mmap: o.mmap, windowSize, dir, trace, tracePath, clients: [], timeoutMs: o.timeoutMs ?? SLOW };
    worlds.push(made);
    return made;
  }

  function start(w: World): ClientSession {
    const c = ClientSession.start(build, {
      FAKE_VFIO_DIR: w.dir,
      VFIO_MIG_BRIDGE_SOCKET: w.rig.server.socketPath,
      VFIO_MIG_BRIDGE_TIMEOUT_MS: String(w.timeoutMs),
    });
    w.current = c;
    w.clients.push(c);
    return c;
  }

  /**
   * QEMU 7.2's probe of a device (GET_INFO, the region scan with the 32-byte ask and the
   * argsz retry, the sparse areas mapped unless `nommap`); checks it found the bridge's region.
   */
  async function open(w: World, c: ClientSession, name: string, nommap = false): Promise<{ fd: number; dev: SimEntry }> {
    writeFileSync(join(w.dir, name), '', { flag: 'a' }); // the fake device's file
    const fd = ok(await c.cmd(`group ${name}`)).r;
    const s = ok(await c.cmd(`migsetup ${fd}${nommap ? ' nommap' : ''}`));
    expect(s).toMatchObject({ numRegions: 10, migration: 9, offset: String(REGION), size: String(4096 + w.windowSize) });
    const argsz = w.mmap ? 80 : 48; // the type capability, and the sparse-mmap one with mmap
    expect((s.regions as Answer[])[9]).toMatchObject({
      firstArgsz: argsz,
      argsz,
      type: 3,
      subtype: 1,
      flags: 1 | 2 | 8 | (w.mmap ? 4 : 0),
    });
    expect(s.areas).toEqual(w.mmap && !nommap ? [{ offset: 4096, size: w.windowSize }] : []);
    const dev = simEntry(w.rig.sims, name);
    expect(dev.sim.size).toBe(STATE);
    return { fd, dev };
  }

  /**
   * The register accesses the bridge served for device `dev` (1, 2, ... in registration order),
   * from its trace: "r8" reads offset 8, "w0=0x3" writes 3 to device_state.
   */
  function served(w: World, dev?: number): string[] {
    return readFileSync(w.tracePath, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, string | number>)
      .filter((l) => l.ev === 'v1' && (dev === undefined || l.dev === dev))
      .map((l) =>
        l.op === 'reset' ? 'reset' : `${String(l.op)[0]}${BigInt(l.off)}${l.op === 'write' && l.off === '0x0' ? `=${l.value}` : ''}`,
      );
  }

  describe.each([
    { path: 'mmap (sparse area mapped, memcpy)', mmap: true },
    { path: 'trapped (--no-mmap, 8-byte preads/pwrites)', mmap: false },
  ])('$path', ({ mmap }) => {
    it.each(FLAG_SETS)('saves a running device ($flagNames) and resumes it into a second one: the states match', async ({ flags }) => {
      const w = await world({ mmap, flags });
      const file = join(w.dir, 'dev-src.mig');

      // ---- the source "QEMU"
      const src = start(w);
      const { fd: srcFd, dev: source } = await open(w, src, 'dev-src');
      expect(ok(await src.cmd(`savesetup ${file}`))).toMatchObject({ state: 3, hwError: false });
      // 011 is PRE_COPY where the device has it, else emulated over a RUNNING device
      expect(source.driver.currentState).toBe(flags & MigFlags.PRE_COPY ? MigState.PRE_COPY : MigState.RUNNING);
      // the window takes no writes while saving (the bridge did not say WINDOW_WRITABLE)
      failsWith(await src.cmd(`pwrite ${srcFd} ${WINDOW_AT} 0102030405060708`), EINVAL);

      const rounds: Answer[] = [];
      for (let round = 0; round < 3; round++) {
        rounds.push(ok(await src.cmd('iterate 1')));
        expect(source.sim.step(40)).toBe(40); // the VM (and the device) keep running
      }
      if (flags & MigFlags.PRE_COPY) {
        // one chunk per iterate, a full window each time (the state is 4 windows and more)
        expect(rounds.map((r) => [r.chunks, r.bytes, r.done])).toEqual(Array(3).fill([1, WINDOW, false]));
      } else {
        // pending_bytes reads 0 over the emulated 011: an empty record, "done"
        expect(rounds.map((r) => [r.chunks, r.bytes, r.done])).toEqual(Array(3).fill([0, 0, true]));
      }

      expect(ok(await src.cmd('vmstop'))).toMatchObject({ state: 2, hwError: false });
      expect(source.driver.currentState).toBe(MigState.STOP_COPY);
      expect(source.sim.step(40)).toBe(0); // stopped: the state is final now
      const want = source.sim.fingerprint();
      const done = ok(await src.cmd('complete'));
      expect(done).toMatchObject({ state: 0, hwError: false, via: mmap ? 'mmap' : 'pread/pwrite' });
      expect(done.chunks as number).toBeGreaterThan(1); // stop-and-copy took several windows
      expect(source.driver.currentState).toBe(MigState.STOP);
      expect(source.sim.fingerprint()).toBe(want);

      const saved = records(file);
      const savedBytes = sum(saved.map((r) => r.length));
      expect(saved.every((r) => r.length <= WINDOW)).toBe(true);
      expect(saved.length).toBe(sum(rounds.map((r) => r.chunks as number)) + (done.chunks as number));
      expect(savedBytes).toBe(sum(rounds.map((r) => r.bytes as number)) + (done.bytes as number));
      expect(savedBytes).toBeGreaterThan(STATE); // every page at least once, plus the stream's framing
      // 8-byte preads of the window when trapped; plain memory when mapped
      expect(done.windowCalls).toBe(mmap ? 0 : sum(saved.slice(-(done.chunks as number)).map((r) => migRwCalls(r.length))));
      expect(w.rig.server.devices[0].stats).toMatchObject({ chunksSaved: saved.length, bytesSaved: savedBytes, failedAccesses: 0 });

      // QEMU exits; the bridge releases the device and leaves a saved source alone (no reset)
      await src.close();
      await until(() => !w.rig.server.devices[0].live, 'the source to be released');
      expect(source.driver.currentState).toBe(MigState.STOP);
      expect(source.resets).toBe(0);

      // ---- the destination "QEMU", another process
      const dst = start(w);
      const { fd: dstFd, dev: target } = await open(w, dst, 'dev-dst');
      expect(target.sim.fingerprint()).not.toBe(want);
      const loaded = ok(await dst.cmd(`resume ${file}`));
      // setup, three pre-copy sections, the stop-and-copy section, the config section
      expect(loaded).toMatchObject({ state: 4, hwError: false, chunks: saved.length, bytes: savedBytes, sections: 6 });
      expect(loaded.windowCalls).toBe(mmap ? 0 : sum(saved.map((r) => migRwCalls(r.length))));
      expect(target.driver.currentState).toBe(MigState.RESUMING);
      expect(target.sim.fingerprint()).not.toBe(want); // applied only when RESUMING ends
      expect(ok(await dst.cmd('vmstart'))).toMatchObject({ state: 1, hwError: false });
      expect(target.driver.currentState).toBe(MigState.RUNNING);
      expect(target.sim.fingerprint()).toBe(want);
      failsWith(await dst.cmd(`pwrite ${dstFd} ${WINDOW_AT} 0102030405060708`), EINVAL); // RESUMING is over
      expect(w.rig.server.devices[1].stats).toMatchObject({ chunksResumed: saved.length, bytesResumed: savedBytes, failedAccesses: 0 });

      // the file holds the device's own bytes: the project's v2 client, with no interposer and no
      // bridge in between, loads it into a third device with the same result
      const check = simEntry(w.rig.sims, 'check', flags, { size: STATE, pageSize: PAGE });
      await loadV2(check.driver, Readable.from([readFileSync(file)]));
      expect(check.sim.fingerprint()).toBe(want);

      // The bridge served exactly QEMU 7.2's header accesses (vfio_migration_set_state is a
      // read and a write of device_state), and no window access: those stayed in the shared file.
      const set = (v: number) => ['r0', `w0=0x${v}`];
      const iterate = flags & MigFlags.PRE_COPY ? ['r8', 'r16', 'r24'] : ['r8', 'r8']; // pending 0: re-read, done
      expect(served(w, 1)).toEqual([
        ...set(3),
        ...iterate,
        ...iterate,
        ...iterate,
        ...set(2),
        ...set(2),
        'r8',
        ...Array.from({ length: done.chunks as number }, () => ['r16', 'r24', 'r8']).flat(),
        ...set(0),
      ]);
      expect(served(w, 2)).toEqual([...set(4), ...saved.flatMap(() => ['r16', 'w24']), ...set(1)]);
    });
  });

  it.each([
    { path: 'mmap', mmap: true },
    { path: 'trapped', mmap: false },
  ])('a destination window smaller than the chunks ($path): each record is split as vfio_load_buffer does', async ({ mmap }) => {
    const from = await world({ mmap: true, flags: FULL });
    const file = join(from.dir, 'big-chunks.mig');
    const src = start(from);
    const { dev: source } = await open(from, src, 'dev-src');
    ok(await src.cmd(`savesetup ${file}`));
    ok(await src.cmd('iterate 2'));
    ok(await src.cmd('vmstop'));
    ok(await src.cmd('complete'));
    const saved = records(file);
    expect(Math.max(...saved.map((r) => r.length))).toBe(WINDOW);

    const small = WINDOW / 4 - 4096; // 12 KiB: no record fits whole
    const to = await world({ mmap, flags: FULL, windowSize: small });
    const dst = start(to);
    const { dev: target } = await open(to, dst, 'dev-dst');
    const parts = saved.map((r) => Math.ceil(r.length / small));
    expect(ok(await dst.cmd(`resume ${file}`))).toMatchObject({ chunks: sum(parts), bytes: sum(saved.map((r) => r.length)) });
    expect(served(to, 1).filter((a) => a === 'w24')).toHaveLength(sum(parts));
    ok(await dst.cmd('vmstart'));
    expect(target.sim.fingerprint()).toBe(source.sim.fingerprint());
  });

  it('two devices in one process are bridged independently: saved interleaved, resumed into two more', async () => {
    const w = await world({ mmap: true, flags: FULL });
    const c = start(w);
    const a = await open(w, c, 'dev-a');
    const b = await open(w, c, 'dev-b', true); // this one copies with 8-byte preads
    expect(a.dev.sim.fingerprint()).not.toBe(b.dev.sim.fingerprint());
    const fileA = join(w.dir, 'a.mig');
    const fileB = join(w.dir, 'b.mig');
    ok(await c.cmd(`use ${a.fd}`));
    expect(ok(await c.cmd(`savesetup ${fileA}`)).state).toBe(3);
    ok(await c.cmd(`use ${b.fd}`));
    expect(ok(await c.cmd(`savesetup ${fileB}`)).state).toBe(3);
    expect(ok(await c.cmd('iterate 1'))).toMatchObject({ chunks: 1, via: 'pread/pwrite' });
    ok(await c.cmd(`use ${a.fd}`));
    expect(ok(await c.cmd('iterate 2'))).toMatchObject({ chunks: 2, via: 'mmap' });
    expect([a.dev.sim.step(30), b.dev.sim.step(50)]).toEqual([30, 50]);
    expect(ok(await c.cmd('vmstop')).state).toBe(2);
    expect([a.dev.driver.currentState, b.dev.driver.currentState]).toEqual([MigState.STOP_COPY, MigState.PRE_COPY]);
    ok(await c.cmd(`use ${b.fd}`));
    expect(ok(await c.cmd('vmstop')).state).toBe(2);
    ok(await c.cmd(`use ${a.fd}`));
    expect(ok(await c.cmd('complete'))).toMatchObject({ state: 0, via: 'mmap' });
    ok(await c.cmd(`use ${b.fd}`));
    expect(ok(await c.cmd('complete'))).toMatchObject({ state: 0, via: 'pread/pwrite' });

    const ra = records(fileA);
    const rb = records(fileB);
    const [sa, sb] = w.rig.server.devices.map((d) => d.stats);
    expect([sa.chunksSaved, sa.bytesSaved]).toEqual([ra.length, sum(ra.map((r) => r.length))]);
    expect([sb.chunksSaved, sb.bytesSaved]).toEqual([rb.length, sum(rb.map((r) => r.length))]);

    // two more devices in the same process, each resumed from one file
    const cc = await open(w, c, 'dev-c');
    const d = await open(w, c, 'dev-d', true);
    expect(w.rig.server.connectionCount).toBe(4);
    ok(await c.cmd(`use ${cc.fd}`));
    expect(ok(await c.cmd(`resume ${fileA}`))).toMatchObject({ state: 4, chunks: ra.length, via: 'mmap' });
    ok(await c.cmd(`use ${d.fd}`));
    expect(ok(await c.cmd(`resume ${fileB}`))).toMatchObject({ state: 4, chunks: rb.length, via: 'pread/pwrite' });
    expect(ok(await c.cmd('vmstart')).state).toBe(1);
    expect(d.dev.sim.fingerprint()).toBe(b.dev.sim.fingerprint());
    expect(cc.dev.driver.currentState).toBe(MigState.RESUMING); // untouched by d's vmstart
    ok(await c.cmd(`use ${cc.fd}`));
    expect(ok(await c.cmd('vmstart')).state).toBe(1);
    expect(cc.dev.sim.fingerprint()).toBe(a.dev.sim.fingerprint());
    expect(w.rig.server.devices.map((r) => r.info.label)).toEqual(['dev-a', 'dev-b', 'dev-c', 'dev-d']);
    expect(w.rig.server.devices.map((r) => r.info.fd)).toEqual([a.fd, b.fd, cc.fd, d.fd]);
  });

  it('the bridge dies mid-save: the next header access fails with EIO at once, device_state reads the cached value, no hw_error', async () => {
    const w = await world({ mmap: true, flags: FULL });
    const c = start(w);
    writeFileSync(join(w.dir, 'dev-src'), 'BAR0'); // the fake device's BAR0 bytes
    const { fd } = await open(w, c, 'dev-src');
    ok(await c.cmd(`savesetup ${join(w.dir, 'lost.mig')}`));
    expect(ok(await c.cmd('iterate 1')).chunks).toBe(1);
    expect(ok(await c.cmd('vmstop')).state).toBe(2);
    await w.rig.server.close(); // every connection gone
    // vfio_save_complete_precopy: ~RUNNING/SAVING reads 010 (cached), the write fails, the re-read is 010
    const complete = await c.cmd('complete');
    expect(complete).toMatchObject({ r: -1, errno: EIO, hwError: false, state: 2 });
    expect(complete.ms).toBeLessThan(SLOW); // found by EOF, not by the timeout
    // then vm_start and the migration notifier: both fail the same way, neither aborts
    expect(await c.cmd('vmstart')).toMatchObject({ r: -1, errno: EIO, hwError: false, state: 2 });
    expect(await c.cmd('migfailed')).toMatchObject({ r: -1, errno: EIO, hwError: false, state: 2 });
    failsWith(await c.cmd('migread 8 8'), EIO);
    expect(ok(await c.cmd('migread 0 4')).value).toBe('2');
    expect(ok(await c.cmd(`pread ${fd} 0 4`)).hex).toBe(Buffer.from('BAR0').toString('hex')); // BARs still reach the device
  });

  it('the bridge hangs in a v2 call: the access fails with EIO after VFIO_MIG_BRIDGE_TIMEOUT_MS, later ones without asking, no hw_error', async () => {
    const timeoutMs = 400;
    const w = await world({ mmap: true, flags: FULL, timeoutMs });
    const c = start(w);
    const { dev: source } = await open(w, c, 'dev-src');
    ok(await c.cmd(`savesetup ${join(w.dir, 'hung.mig')}`));
    expect(ok(await c.cmd('iterate 1')).chunks).toBe(1);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const setState = source.driver.setState.bind(source.driver);
    source.driver.setState = async (s) => {
      await gate;
      return setState(s);
    };
    try {
      const stop = await c.cmd('vmstop');
      expect(stop).toMatchObject({ r: -1, errno: EIO, hwError: false, state: 3 });
      expect(stop.ms).toBeGreaterThanOrEqual(timeoutMs);
      const seen = served(w).length;
      failsWith(await c.cmd('migread 8 8'), EIO);
      expect(ok(await c.cmd('migread 0 4')).value).toBe('3');
      expect(served(w).length).toBe(seen); // nothing more reached the bridge
    } finally {
      release();
    }
    // once the call returns, the bridge sees the connection gone and releases the device
    await until(() => !w.rig.server.devices[0].live, 'the device to be released');
    expect(source.driver.openHandles).toBe(0);
  });

  it.each(FLAG_SETS)(
    'a v2 ERROR ($flagNames) is reset by the bridge: the state write fails with its errno, device_state reads 001, no hw_error; the next save works',
    async ({ flags }) => {
      const w = await world({ mmap: true, flags });
      const c = start(w);
      const { dev: source } = await open(w, c, 'dev-src');
      ok(await c.cmd(`savesetup ${join(w.dir, 'failed.mig')}`));
      const from = lastArcFrom(source.driver.currentState, MigState.STOP_COPY, flags);
      source.driver.armFaults({ failArc: { from, to: MigState.STOP_COPY, errno: 'EFAULT', toError: true } });
      expect(await c.cmd('vmstop')).toMatchObject({ r: -1, errno: EFAULT, hwError: false, state: 1 });
      expect(source.driver.currentState).toBe(MigState.RUNNING);
      expect(source.resets).toBe(1);
      expect(w.rig.events.find((e) => e.kind === 'error-recovery')).toMatchObject({
        device: { label: 'dev-src' },
        recovery: { reset: 'ok', cause: expect.stringContaining('EFAULT') },
      });
      expect(w.rig.server.devices[0].stats).toMatchObject({ errorResets: 1, failedAccesses: 1 });
      // QEMU's failure notifier: 001 over 001
      expect(ok(await c.cmd('migfailed')).state).toBe(1);

      const file = join(w.dir, 'again.mig');
      ok(await c.cmd(`savesetup ${file}`));
      expect(ok(await c.cmd('vmstop')).state).toBe(2);
      const want = source.sim.fingerprint();
      expect(ok(await c.cmd('complete')).state).toBe(0);
      const target = await open(w, c, 'dev-dst');
      ok(await c.cmd(`resume ${file}`));
      ok(await c.cmd('vmstart'));
      expect(target.dev.sim.fingerprint()).toBe(want);
    },
  );

  it('a client that exits with its device in RESUMING: the bridge resets it, never SETs it out of RESUMING', async () => {
    const w = await world({ mmap: false, flags: FULL });
    const c = start(w);
    const { fd, dev: target } = await open(w, c, 'dev-dst');
    const before = target.sim.fingerprint();
    expect(ok(await c.cmd(`setstate ${LOAD_SETUP_MASK} 4`)).state).toBe(4);
    // part of a real state (same geometry), as 8-byte pwrites and a data_size write
    const part = stopCopyStream({ size: STATE, seed: 99, pageSize: PAGE }).subarray(0, 5000);
    expect(ok(await c.cmd(`load ${part.toString('hex')}`))).toMatchObject({ via: 'pwrite', accesses: 625 });
    expect(ok(await c.cmd(`pread ${fd} ${REGION + 24n} 8`)).hex).toBe('8813000000000000'); // data_size 5000
    expect(target.driver.currentState).toBe(MigState.RESUMING);
    target.arcs.length = 0;
    const sets: MigState[] = [];
    const setState = target.driver.setState.bind(target.driver);
    target.driver.setState = (s) => {
      sets.push(s);
      return setState(s);
    };
    await c.close();
    await until(() => !w.rig.server.devices[0].live, 'the device to be released');
    expect(target.resets).toBe(1);
    expect([sets, target.arcs]).toEqual([[], []]); // no SET at all: RESUMING -> RUNNING by reset
    expect(target.driver.currentState).toBe(MigState.RUNNING);
    expect(target.sim.fingerprint()).toBe(before); // the partial state was never applied
  });

  it('a client that is not the started command (nor its descendant) is refused: its device stays as it is', async () => {
    const other = spawn('sleep', ['60']);
    try {
      const w = await world({ mmap: true, flags: FULL, commandPid: () => other.pid });
      const c = start(w);
      const fd = ok(await c.cmd('group dev-a')).r;
      expect(ok(await c.cmd(`migsetup ${fd}`))).toMatchObject({ numRegions: 9, migration: -1 });
      expect(w.rig.events).toEqual([
        { kind: 'refused', pid: c.pid, reason: expect.stringContaining(`neither the command (pid ${other.pid})`) },
      ]);
      expect(w.rig.server.devices).toEqual([]);
      expect(w.rig.sims.size).toBe(0);
      expect(ok(await c.cmd(`pread ${fd} ${REGION} 4`)).r).toBe(0); // just the fake device's file
    } finally {
      other.kill();
    }
  });
});
