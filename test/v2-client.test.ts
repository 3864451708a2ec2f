// The v2 client (what QEMU 8-10 does) over SimV2Driver: round trips for all
// four flag sets with a device that keeps working during pre-copy, the exact
// SETs QEMU issues, read sizes, backpressure, progress, and every fault of a
// plan surfacing as the documented error with the device recovered and no
// session left behind.
import { PassThrough, Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { Sink } from './support/sim-helpers.js';
import type { FaultPlan } from '../src/sim/faults.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { SimV2Driver } from '../src/sim/sim-v2-driver.js';
import { loadV2, type MigrationProgress, saveV2, type SaveV2Options } from '../legacy/qemu/v2-client.js';
import type { DataSession, MigrationDevice } from '../src/v2/contracts.js';
import { MigStreamDecoder } from '../legacy/qemu/stream-format.js';
import { FLAG_SETS, MigFlags, MigState } from '../src/v2/states.js';
import { errnoOf } from './support/errno.js';

const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;
const ALL = MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY;
const SIZE = 3 * 1024 * 1024 + 4096 * 5 + 100; // several 1 MiB reads, short last page

function pair(flags: number, size = SIZE) {
  const srcDev = new SimDevice({ size, seed: 1234 });
  const dstDev = new SimDevice({ size, seed: 99 });
  const srcArcs: string[] = [];
  const dstArcs: string[] = [];
  const src = new SimV2Driver(srcDev, { flags, onArc: (a, b) => srcArcs.push(`${MigState[a]}>${MigState[b]}`) });
  const dst = new SimV2Driver(dstDev, { flags, onArc: (a, b) => dstArcs.push(`${MigState[a]}>${MigState[b]}`) });
  return { srcDev, dstDev, src, dst, srcArcs, dstArcs };
}

/** Records the SETs and every data-session call a client makes. */
function recorder(device: MigrationDevice) {
  const sets: string[] = [];
  const reads: number[] = [];
  const log: string[] = [];
  const wrapSession = (s: DataSession): DataSession => ({
    read: async (buf) => {
      reads.push(buf.length);
      log.push('read');
      return s.read(buf);
    },
    write: (buf) => s.write(buf),
    precopyInfo: () => s.precopyInfo(),
    close: () => s.close(),
  });
  const wrapped: MigrationDevice = {
    migrationFlags: () => device.migrationFlags(),
    getState: () => device.getState(),
    setState: async (t) => {
      sets.push(MigState[t]);
      const s = await device.setState(t);
      return s && wrapSession(s);
    },
    stopCopySize: () => device.stopCopySize(),
    reset: async () => {
      sets.push('reset');
      return device.reset();
    },
    close: () => device.close(),
  };
  return { wrapped, sets, reads, log };
}

function expectClean(driver: SimV2Driver, state: MigState) {
  expect(driver.currentState).toBe(state);
  expect(driver.openSessions).toBe(0);
  expect(driver.openHandles).toBe(0);
}

/** Save with the device stepping between pre-copy rounds, then load from the file cut in odd pieces. */
async function roundTrip(flags: number, opts: SaveV2Options = {}) {
  const p = pair(flags);
  const sink = new Sink();
  const saved = await saveV2(p.src, sink, {
    precopyRounds: 3,
    betweenRounds: () => void p.srcDev.step(50),
    ...opts,
  });
  const file = sink.bytes;
  const pieces = [...Array(Math.ceil(file.length / 70_001)).keys()].map((i) => file.subarray(i * 70_001, (i + 1) * 70_001));
  const loaded = await loadV2(p.dst, Readable.from(pieces));
  return { ...p, saved, loaded, file };
}

describe('round trips (all four flag sets, device working during pre-copy)', () => {
  for (const flags of FLAG_SETS) {
    it(`flags ${flags}: destination fingerprint equals the source's`, async () => {
      const t = await roundTrip(flags);
      expect(t.dstDev.fingerprint()).toBe(t.srcDev.fingerprint());
      expect(t.dstDev.steps).toBe(t.srcDev.steps);
      expectClean(t.src, S); // QEMU leaves a migrated source stopped
      expectClean(t.dst, R);
      const precopy = (flags & MigFlags.PRE_COPY) !== 0;
      expect(t.saved.usedPrecopy).toBe(precopy);
      if (precopy) {
        expect(t.srcDev.steps).toBe(150);
        // the full first pass went in pre-copy; stop-copy carried the pages dirtied in the last round + trailer
        expect(t.saved.precopyBytes).toBeGreaterThanOrEqual(Number(t.srcDev.fullStreamBytes()) - 32);
        expect(t.saved.stopCopyBytes).toBeGreaterThan(32);
      } else {
        expect(t.srcDev.steps).toBe(0); // no pre-copy: the device never ran during the save
        expect(t.saved.precopyBytes).toBe(0);
        expect(t.saved.stopCopyBytes).toBe(Number(t.srcDev.fullStreamBytes()));
      }
      expect(t.loaded.deviceBytes).toBe(t.saved.precopyBytes + t.saved.stopCopyBytes);
      expect(t.saved.fileBytes).toBe(t.file.length);
    });
  }

  it('a source that is already stopped skips pre-copy (vfio_save_setup: STOP -> no PRE_COPY)', async () => {
    const p = pair(ALL);
    await p.src.setState(S);
    p.srcArcs.length = 0;
    const sink = new Sink();
    const saved = await saveV2(p.src, sink);
    expect(saved.usedPrecopy).toBe(false);
    expect(p.srcArcs).toEqual(['STOP>STOP_COPY', 'STOP_COPY>STOP']);
    await loadV2(p.dst, Readable.from([sink.bytes]));
    expect(p.dstDev.fingerprint()).toBe(p.srcDev.fingerprint());
  });

  it('saving from RESUMING is refused with EINVAL before anything is changed: never a SET out of RESUMING', async () => {
    const p = pair(ALL);
    await p.src.setState(S);
    const held = (await p.src.setState(RS))!;
    p.srcArcs.length = 0;
    expect(await errnoOf(saveV2(p.src, new Sink()))).toBe('EINVAL');
    expect(p.srcArcs).toEqual([]);
    expect(p.src.currentState).toBe(RS); // the holder's RESUMING, untouched
    await held.close();
    await p.src.reset();
    expectClean(p.src, R);
  });
});

describe('what QEMU issues', () => {
  const expectedSave: Record<number, string[]> = {
    [MigFlags.STOP_COPY]: ['STOP', 'STOP_COPY', 'STOP'],
    [MigFlags.STOP_COPY | MigFlags.P2P]: ['RUNNING_P2P', 'STOP', 'STOP_COPY', 'STOP'],
    [MigFlags.STOP_COPY | MigFlags.PRE_COPY]: ['PRE_COPY', 'STOP_COPY', 'STOP'],
    [ALL]: ['PRE_COPY', 'PRE_COPY_P2P', 'STOP_COPY', 'STOP'],
  };
  const expectedLoad: Record<number, string[]> = {
    [MigFlags.STOP_COPY]: ['RESUMING', 'RUNNING'],
    [MigFlags.STOP_COPY | MigFlags.P2P]: ['RESUMING', 'RUNNING_P2P', 'RUNNING'],
    [MigFlags.STOP_COPY | MigFlags.PRE_COPY]: ['RESUMING', 'RUNNING'],
    [ALL]: ['RESUMING', 'RUNNING_P2P', 'RUNNING'],
  };
  for (const flags of FLAG_SETS) {
    it(`flags ${flags}: the SETs of save and load, and reads of min(1 MiB, MIG_DATA_SIZE)`, async () => {
      const p = pair(flags);
      const rs = recorder(p.src);
      const sink = new Sink();
      await saveV2(rs.wrapped, sink, { precopyRounds: 2, betweenRounds: () => void p.srcDev.step(5) });
      expect(rs.sets).toEqual(expectedSave[flags]);
      expect(new Set(rs.reads)).toEqual(new Set([1 << 20]));
      const rl = recorder(p.dst);
      await loadV2(rl.wrapped, Readable.from([sink.bytes]));
      expect(rl.sets).toEqual(expectedLoad[flags]);
    });
  }

  it('pre-copy never hangs on a device that never runs dry: a round reads at most one buffer past its estimate (vfio_save_iterate)', async () => {
    const p = pair(ALL);
    const rs = recorder(p.src);
    let state = MigState.RUNNING;
    let precopyReads = 0;
    const estimates: number[] = [];
    const endless: MigrationDevice = {
      ...rs.wrapped,
      setState: async (t) => {
        const s = await rs.wrapped.setState(t);
        state = t;
        if (!s) return s;
        return {
          ...s,
          read: async (buf) => {
            if (state !== MigState.PRE_COPY) return s.read(buf);
            precopyReads++;
            return buf.length; // always more dirty data
          },
          precopyInfo: async () => {
            const info = await s.precopyInfo();
            estimates.push(Number(info.initialBytes + info.dirtyBytes));
            return info;
          },
          close: () => s.close(),
        };
      },
    };
    const saved = await saveV2(endless, new Sink(), { precopyRounds: 1, maxReadBytes: 4096 });
    // The round's estimate is the setup's PRECOPY_INFO: it reads past it by one buffer, then switches over.
    expect(estimates[0]).toBeGreaterThan(4096);
    expect(precopyReads).toBe(Math.floor(estimates[0] / 4096) + 1);
    expect(saved.precopyBytes).toBe(precopyReads * 4096);
    expect(rs.sets).toEqual(['PRE_COPY', 'PRE_COPY_P2P', 'STOP_COPY', 'STOP']);
  });

  it('a small device gets a buffer of MIG_DATA_SIZE bytes', async () => {
    const p = pair(ALL, 4096);
    const rs = recorder(p.src);
    await saveV2(rs.wrapped, new Sink());
    expect(new Set(rs.reads)).toEqual(new Set([32 + 8 + 4096 + 32]));
  });

  it('the file is framed as QEMU frames the vfio section: setup, iterate sections, complete, config', async () => {
    const t = await roundTrip(ALL);
    const d = new MigStreamDecoder();
    const kinds = [...d.push(t.file)].map((e) => e.kind);
    d.end();
    expect(kinds.slice(0, 2)).toEqual(['setup', 'end-of-state']);
    expect(kinds.at(-1)).toBe('complete');
    expect(kinds.filter((k) => k === 'end-of-state').length).toBeGreaterThan(4); // one per iterate call + setup + complete
  });

  it('QEMU RS -> RUNNING: the validation arc runs inside the first SET after load (P2P: RUNNING_P2P)', async () => {
    const t = await roundTrip(ALL);
    expect(t.dstArcs).toEqual([
      'RUNNING>RUNNING_P2P',
      'RUNNING_P2P>STOP',
      'STOP>RESUMING', // load_setup
      'RESUMING>STOP',
      'STOP>RUNNING_P2P', // VM start, prepare handler
      'RUNNING_P2P>RUNNING', // VM start, main handler
    ]);
  });
});

describe('streaming', () => {
  it('backpressure: one chunk at a time — no read while a write is pending, at most one write in flight', async () => {
    const p = pair(ALL);
    const rs = recorder(p.src);
    let inFlight = 0;
    let maxInFlight = 0;
    let readDuringWrite = false;
    const slow = new Writable({
      highWaterMark: 1,
      write(_chunk, _e, cb) {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        const before = rs.log.length;
        setTimeout(() => {
          if (rs.log.length !== before) readDuringWrite = true;
          inFlight--;
          cb();
        }, 1);
      },
    });
    await saveV2(rs.wrapped, slow);
    expect(maxInFlight).toBe(1);
    expect(readDuringWrite).toBe(false);
  });

  it('through a PassThrough into a concurrent load (the chunks handed over are never reused)', async () => {
    const p = pair(ALL);
    const pipe = new PassThrough({ highWaterMark: 64 * 1024 });
    const loading = loadV2(p.dst, pipe);
    await saveV2(p.src, pipe, { precopyRounds: 2, betweenRounds: () => void p.srcDev.step(20) });
    pipe.end();
    await loading;
    expect(p.dstDev.fingerprint()).toBe(p.srcDev.fingerprint());
  });

  it('short writes on the resuming fd are continued (writeLimit 333)', async () => {
    const p = pair(ALL);
    const dst = new SimV2Driver(p.dstDev, { flags: ALL, writeLimit: 333 });
    const sink = new Sink();
    await saveV2(p.src, sink);
    await loadV2(dst, Readable.from([sink.bytes]));
    expect(p.dstDev.fingerprint()).toBe(p.srcDev.fingerprint());
  });

  it('progress: phases in order, bytes rising to the total, estimate never below bytes', async () => {
    const p = pair(ALL);
    const events: MigrationProgress[] = [];
    const sink = new Sink();
    const saved = await saveV2(p.src, sink, {
      onProgress: (e) => events.push(e),
      precopyRounds: 2,
      betweenRounds: () => void p.srcDev.step(10),
    });
    const phases = [...new Set(events.map((e) => e.phase))];
    expect(phases).toEqual(['setup', 'precopy', 'stopcopy', 'done']);
    for (let i = 1; i < events.length; i++) expect(events[i].bytes).toBeGreaterThanOrEqual(events[i - 1].bytes);
    for (const e of events) expect(e.estimate!).toBeGreaterThanOrEqual(e.bytes);
    expect(events.at(-1)).toEqual({
      phase: 'done',
      bytes: saved.precopyBytes + saved.stopCopyBytes,
      estimate: saved.precopyBytes + saved.stopCopyBytes,
    });
    const loadEvents: MigrationProgress[] = [];
    await loadV2(p.dst, Readable.from([sink.bytes]), { onProgress: (e) => loadEvents.push(e) });
    expect(loadEvents.at(-1)).toEqual({ phase: 'done', bytes: saved.precopyBytes + saved.stopCopyBytes });
  });
});

describe('faults surface as the documented error; the device recovers; no session is left', () => {
  async function saveWith(flags: number, plan: FaultPlan) {
    const p = pair(flags);
    p.src.armFaults(plan);
    const before = p.srcDev.fingerprint();
    const code = await errnoOf(saveV2(p.src, new Sink(), { precopyRounds: 2, betweenRounds: () => void p.srcDev.step(5) }));
    return { ...p, code, before };
  }

  /** After any failure: a reset (or nothing) and a clean migration must work. */
  async function recovers(src: SimV2Driver, srcDev: SimDevice, dst: SimV2Driver, dstDev: SimDevice) {
    await src.reset();
    await dst.reset();
    const sink = new Sink();
    await saveV2(src, sink);
    await loadV2(dst, Readable.from([sink.bytes]));
    expect(dstDev.fingerprint()).toBe(srcDev.fingerprint());
  }

  const saveArcFaults: Array<[string, number, FaultPlan, string, MigState]> = [
    ['RUNNING -> PRE_COPY fails (recover RUNNING)', ALL, { failArc: { from: R, to: PC, errno: 'EBUSY' } }, 'EBUSY', R],
    ['PRE_COPY -> PRE_COPY_P2P fails into ERROR (set_or_reset: reset)', ALL, { failArc: { from: PC, to: PCP, toError: true } }, 'EIO', R],
    ['PRE_COPY_P2P -> STOP_COPY fails', ALL, { failArc: { from: PCP, to: SC, errno: 'ENOMEM' } }, 'ENOMEM', R],
    ['PRE_COPY -> STOP_COPY fails (no P2P)', MigFlags.STOP_COPY | MigFlags.PRE_COPY, { failArc: { from: PC, to: SC } }, 'EIO', R],
    ['RUNNING -> STOP fails (no pre-copy)', MigFlags.STOP_COPY, { failArc: { from: R, to: S, errno: 'ETIMEDOUT' } }, 'ETIMEDOUT', R],
    [
      'STOP -> STOP_COPY fails (recover STOP, then the failure notifier runs it)',
      MigFlags.STOP_COPY | MigFlags.P2P,
      { failArc: { from: S, to: SC, toError: true } },
      'EIO',
      R,
    ],
    ['the Nth read fails', ALL, { failIo: { op: 'read', nth: 3, errno: 'EIO' } }, 'EIO', R],
    ['the first read fails (no pre-copy)', MigFlags.STOP_COPY, { failIo: { op: 'read', nth: 1, errno: 'EFAULT' } }, 'EFAULT', R],
  ];
  for (const [name, flags, plan, code, state] of saveArcFaults) {
    it(`save: ${name} -> ${code}`, async () => {
      const t = await saveWith(flags, plan);
      expect(t.code).toBe(code);
      expectClean(t.src, state);
      expect(t.srcDev.running).toBe(true);
      await recovers(t.src, t.srcDev, t.dst, t.dstDev);
    });
  }

  it('save: a failing cleanup arc (STOP_COPY -> STOP) does not fail the save: QEMU resets and moves on', async () => {
    const t = await saveWith(ALL, { failArc: { from: SC, to: S, toError: true } });
    expect(t.code).toBe('ok');
    expectClean(t.src, R);
  });

  it('save: the output fails (EPIPE) -> EPIPE, device back to RUNNING', async () => {
    const p = pair(ALL);
    let writes = 0;
    const broken = new Writable({
      write(_c, _e, cb) {
        cb(++writes > 5 ? Object.assign(new Error('reader went away'), { code: 'EPIPE' }) : null);
      },
    });
    broken.on('error', () => undefined);
    expect(await errnoOf(saveV2(p.src, broken))).toBe('EPIPE');
    expectClean(p.src, R);
  });

  async function loadWith(flags: number, srcPlan: FaultPlan, dstPlan: FaultPlan, mangle = (f: Buffer) => f) {
    const p = pair(flags);
    const sink = new Sink();
    p.src.armFaults(srcPlan);
    await saveV2(p.src, sink);
    p.dst.armFaults(dstPlan);
    const before = p.dstDev.fingerprint();
    const code = await errnoOf(loadV2(p.dst, Readable.from([mangle(sink.bytes)])));
    return { ...p, code, before };
  }

  const loadFaults: Array<[string, number, FaultPlan, FaultPlan, string, ((f: Buffer) => Buffer)?]> = [
    ['source stream truncated: RESUMING -> STOP refuses it', ALL, { truncateStreamAt: 200_000 }, {}, 'EINVAL'],
    ['source stream truncated (no P2P: the RUNNING SET fails)', MigFlags.STOP_COPY, { truncateStreamAt: 33 }, {}, 'EINVAL'],
    ['source stream corrupted: a page does not match (write fails)', ALL, { corruptStreamAt: 1_000_000 }, {}, 'EINVAL'],
    [
      'source stream corrupted in the trailer checksum',
      MigFlags.STOP_COPY,
      { corruptStreamAt: Number(new SimDevice({ size: SIZE, seed: 1 }).fullStreamBytes()) - 1 },
      {},
      'EINVAL',
    ],
    ['the Nth write fails', ALL, {}, { failIo: { op: 'write', nth: 4, errno: 'EIO' } }, 'EIO'],
    ['STOP -> RESUMING fails', ALL, {}, { failArc: { from: S, to: RS, errno: 'EBUSY' } }, 'EBUSY'],
    ['RESUMING -> STOP fails into ERROR', MigFlags.STOP_COPY | MigFlags.P2P, {}, { failArc: { from: RS, to: S, toError: true } }, 'EIO'],
    ['STOP -> RUNNING_P2P fails after a good load', ALL, {}, { failArc: { from: S, to: RP, errno: 'EAGAIN' } }, 'EAGAIN'],
    ['the file is cut short', ALL, {}, {}, 'EIO', (f) => f.subarray(0, f.length - 100)],
    ['the file has a bad magic', ALL, {}, {}, 'EINVAL', (f) => Buffer.concat([Buffer.from('XXXXXXXX'), f.subarray(8)])],
  ];
  for (const [name, flags, srcPlan, dstPlan, code, mangle] of loadFaults) {
    it(`load: ${name} -> ${code}`, async () => {
      const t = await loadWith(flags, srcPlan, dstPlan, mangle);
      expect(t.code).toBe(code);
      expectClean(t.dst, R);
      if (!name.includes('after a good load')) expect(t.dstDev.fingerprint()).toBe(t.before);
      await recovers(t.src, t.srcDev, t.dst, t.dstDev);
    });
  }

  it('load: a stream saved from a device of another size -> EINVAL, destination unchanged', async () => {
    const small = new SimV2Driver(new SimDevice({ size: 8192, seed: 5 }), { flags: ALL });
    const sink = new Sink();
    await saveV2(small, sink);
    const p = pair(ALL);
    const before = p.dstDev.fingerprint();
    expect(await errnoOf(loadV2(p.dst, Readable.from([sink.bytes])))).toBe('EINVAL');
    expectClean(p.dst, R);
    expect(p.dstDev.fingerprint()).toBe(before);
  });
});
