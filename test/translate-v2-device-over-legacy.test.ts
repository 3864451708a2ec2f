// V2DeviceOverLegacy against docs/SEMANTICS.md (D33-D50)
// (v2 face), over the reference v1 driver SimV1Region. The v1 writes each
// SET issues are recorded and compared with transitionPath() mapped to v1
// bits; stream bytes are checked against a twin SimDevice's saver.
import { describe, expect, it } from 'vitest';
import { errnoOf } from './support/errno.js';
import { stopCopyStream } from './support/sim-helpers.js';
import { SimV1Region } from '../legacy/sim-v1-region.js';
import type { V1Policy } from '../legacy/v1-transitions.js';
import { readDeviceState, writeDeviceState } from '../legacy/v1-registers.js';
import { SimDevice } from '../src/sim/sim-device.js';
import { MigrationError } from '../src/uapi/errors.js';
import type { DataSession } from '../src/v2/contracts.js';
import { transitionPath } from '../src/v2/fsm.js';
import { MigFlags, MigState } from '../src/v2/states.js';
import { V2DeviceOverLegacy } from '../translate/v2-device-over-legacy.js';
import { RecordingRegion } from './support/recording.js';

const { STOP_COPY: SC, PRE_COPY: PC } = MigFlags;
const SIZE = 6000;
const PAGE = 512;
const V1_BITS: Record<number, number> = {
  [MigState.STOP]: 0,
  [MigState.RUNNING]: 1,
  [MigState.STOP_COPY]: 2,
  [MigState.PRE_COPY]: 3,
  [MigState.RESUMING]: 4,
};

function rig(opts: { windowSize?: number; seed?: number; precopy?: boolean; policy?: V1Policy } = {}) {
  const device = new SimDevice({ size: SIZE, seed: opts.seed ?? 3, pageSize: PAGE });
  const v1 = new SimV1Region(device, { windowSize: opts.windowSize ?? 700, policy: opts.policy });
  const region = new RecordingRegion(v1);
  const dev = new V2DeviceOverLegacy(region, { precopy: opts.precopy });
  return { device, v1, region, dev };
}

function referenceStream(seed = 3, steps = 0): Buffer {
  return stopCopyStream({ size: SIZE, seed, pageSize: PAGE }, steps);
}

async function readAll(s: DataSession, chunk = 1000): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const b = Buffer.alloc(chunk);
    const n = await s.read(b);
    if (n === 0) return Buffer.concat(parts);
    parts.push(b.subarray(0, n));
  }
}

const stateWrites = (r: RecordingRegion) => r.log.starts().filter((c) => c.startsWith('write device_state'));

describe('flags and arcs', () => {
  it('advertises STOP_COPY|PRE_COPY (v1 has no P2P), or STOP_COPY alone with precopy off', async () => {
    expect(await rig().dev.migrationFlags()).toBe(SC | PC);
    expect(await rig({ precopy: false }).dev.migrationFlags()).toBe(SC);
  });

  // v1 uAPI (5.8-5.17) transitions 1-5 between distinct states, written out here
  // independently of legacy/v1-transitions.ts: 001->000, 001->010, 001->011,
  // 011->010, 010->000, 001->100, 100->001.
  const DOCUMENTED_V1 = new Set(['1>0', '1>2', '1>3', '3>2', '2>0', '1>4', '4>1']);
  /** The kernel's path, with every run that v1 documents as one transition written once. */
  function expectedV1Writes(from: MigState, path: MigState[]): number[] {
    const writes: number[] = [];
    let cur = from;
    for (let i = 0; i < path.length; i++) {
      for (let k = path.length - 1; k > i; k--) {
        if (DOCUMENTED_V1.has(`${V1_BITS[cur]}>${V1_BITS[path[k]]}`)) {
          i = k;
          break;
        }
      }
      writes.push(V1_BITS[path[i]]);
      cur = path[i];
    }
    return writes;
  }

  it('every combination target follows nextState, as one v1 write per arc or per documented v1 transition', async () => {
    const states = [MigState.STOP, MigState.RUNNING, MigState.STOP_COPY, MigState.RESUMING, MigState.PRE_COPY];
    for (const from of states) {
      for (const to of states) {
        const { dev, region, v1 } = rig();
        await writeDeviceState(v1, 0x40000001); // reserved bits, as an earlier user left them
        await dev.setState(from).catch(() => undefined);
        if ((await dev.getState()) !== from) continue;
        region.log.clear();
        const outcome = await errnoOf(dev.setState(to));
        let expected: MigState[];
        try {
          expected = transitionPath(from, to, SC | PC);
        } catch {
          expect(`${from}->${to} ${outcome}`).toBe(`${from}->${to} EINVAL`);
          expect(stateWrites(region)).toEqual([]);
          continue;
        }
        if (from === MigState.RESUMING && to !== MigState.RESUMING) {
          // nothing was written: the v1 driver rejects the empty resume at the first arc
          expect(outcome).toBe('EINVAL');
          expect(stateWrites(region)).toEqual([`write device_state=0x${(0x40000000 | expectedV1Writes(from, expected)[0]).toString(16)}`]);
          continue;
        }
        expect(`${from}->${to} ${outcome}`).toBe(`${from}->${to} ok`);
        expect(stateWrites(region), `${MigState[from]}->${MigState[to]}`).toEqual(
          expectedV1Writes(from, expected).map((b) => `write device_state=0x${(0x40000000 | b).toString(16)}`),
        );
        expect(await dev.getState()).toBe(to);
      }
    }
  });

  it('P2P states and ERROR are EINVAL with nothing written; STOP_COPY -> PRE_COPY too', async () => {
    const { dev, region } = rig();
    region.log.clear();
    for (const t of [MigState.ERROR, MigState.RUNNING_P2P, MigState.PRE_COPY_P2P, 8 as MigState]) {
      expect(await errnoOf(dev.setState(t))).toBe('EINVAL');
    }
    await dev.setState(MigState.STOP_COPY);
    region.log.clear();
    expect(await errnoOf(dev.setState(MigState.PRE_COPY))).toBe('EINVAL');
    expect(stateWrites(region)).toEqual([]);
    expect(await errnoOf(rig({ precopy: false }).dev.setState(MigState.PRE_COPY))).toBe('EINVAL');
  });
});

describe('saving session', () => {
  it('pre-copy then stop-copy: the v1 loop pumped into read(); ENOMSG when nothing is pending; 0 at the end', async () => {
    for (const window of [1, 64, 700, 100_000]) {
      for (const chunk of [1, 100, 5000]) {
        const { dev, device } = rig({ windowSize: window });
        const s = (await dev.setState(MigState.PRE_COPY)) as DataSession;
        expect(s).not.toBeNull();
        const parts: Buffer[] = [];
        for (;;) {
          const b = Buffer.alloc(chunk);
          const r = await s.read(b).catch((e: MigrationError) => e);
          if (r instanceof MigrationError) {
            expect(r.code).toBe('ENOMSG');
            break;
          }
          expect(r).toBeGreaterThan(0);
          parts.push(b.subarray(0, r));
        }
        expect((await s.precopyInfo()).initialBytes).toBe(0n);
        expect(await dev.setState(MigState.STOP_COPY)).toBeNull(); // same session
        expect(device.running).toBe(false);
        parts.push(await readAll(s, chunk));
        expect(await s.read(Buffer.alloc(10))).toBe(0); // EOF stays EOF
        expect(Buffer.concat(parts).equals(referenceStream()), `window ${window} chunk ${chunk}`).toBe(true);
        expect(await dev.stopCopySize()).toBe(0n);
        await dev.setState(MigState.STOP);
        expect(await errnoOf(s.read(Buffer.alloc(10)))).toBe('ENODEV');
        await s.close();
        expect(await errnoOf(s.close())).toBe('EBADF');
      }
    }
  });

  it('precopyInfo and stopCopySize come from pending_bytes; never 0 before stop-copy ends', async () => {
    const { dev } = rig({ windowSize: 100 });
    const window = BigInt(100);
    expect(await dev.stopCopySize()).toBe(window); // RUNNING: undefined on v1, the window as floor
    const s = (await dev.setState(MigState.PRE_COPY)) as DataSession;
    const twin = new SimDevice({ size: SIZE, seed: 3, pageSize: PAGE });
    twin.running = true;
    const info = twin.createSaver().precopyInfo();
    expect(await s.precopyInfo()).toEqual({ initialBytes: info.initialBytes + info.dirtyBytes, dirtyBytes: 0n });
    await s.read(Buffer.alloc(30)); // mid-chunk: pending is not re-read (it would release the chunk)
    const mid = await s.precopyInfo();
    expect(mid.initialBytes).toBeGreaterThan(0n);
    expect(await dev.stopCopySize()).toBeGreaterThanOrEqual(window);
    await dev.setState(MigState.STOP_COPY);
    expect(await errnoOf(s.precopyInfo())).toBe('EINVAL');
    expect(await dev.stopCopySize()).toBeGreaterThan(0n);
    await readAll(s);
    expect(await dev.stopCopySize()).toBe(0n);
  });

  it('precopy off: R -> SC opens the session at STOP_COPY and the stream is whole', async () => {
    const { dev } = rig({ precopy: false, windowSize: 333 });
    const s = (await dev.setState(MigState.STOP_COPY)) as DataSession;
    expect((await readAll(s, 777)).equals(referenceStream())).toBe(true);
  });

  it('a saving session is read-only (EBADF on write), as a kernel O_RDONLY data_fd', async () => {
    const { dev } = rig();
    const s = (await dev.setState(MigState.STOP_COPY)) as DataSession;
    expect(await errnoOf(s.write(Buffer.alloc(4)))).toBe('EBADF');
  });
});

describe('resuming session', () => {
  it('batches write() bytes into full windows; flushes before leaving RESUMING; fingerprints equal', async () => {
    const source = new SimDevice({ size: SIZE, seed: 5, pageSize: PAGE });
    source.running = true;
    source.step(11);
    const stream = referenceStream(5, 11);
    for (const window of [1, 100, 4096, 100_000]) {
      for (const piece of [1, 37, 4096]) {
        const { dev, device, region } = rig({ windowSize: window, seed: 99 });
        const s = (await dev.setState(MigState.RESUMING)) as DataSession;
        region.log.clear();
        for (let at = 0; at < stream.length; at += piece) {
          expect(await s.write(stream.subarray(at, at + piece))).toBe(Math.min(piece, stream.length - at));
        }
        await s.close(); // a client that closes before the arc (QEMU 10 closes after it): no flush here (D50)
        const sizes = region.log
          .starts()
          .filter((c) => c.startsWith('write data_size'))
          .map((c) => Number(c.split('=')[1]));
        const full = Math.floor(stream.length / window);
        expect(sizes).toEqual(Array(full).fill(window));
        await dev.setState(MigState.RUNNING);
        const after = region.log
          .starts()
          .filter((c) => c.startsWith('write data_size'))
          .map((c) => Number(c.split('=')[1]));
        expect(after.slice(full)).toEqual(stream.length % window ? [stream.length % window] : []);
        expect(device.fingerprint(), `window ${window} piece ${piece}`).toBe(source.fingerprint());
      }
    }
  });

  it('rejected data fails the SET that leaves RESUMING, which stays; reset recovers', async () => {
    const bad = Buffer.from(referenceStream(5));
    bad[bad.length - 1] ^= 1; // the trailer checksum
    const { dev, device } = rig({ windowSize: 4096, seed: 99 });
    const before = device.fingerprint();
    const s = (await dev.setState(MigState.RESUMING)) as DataSession;
    await s.write(bad);
    expect(await errnoOf(dev.setState(MigState.RUNNING))).toBe('EINVAL');
    expect(await dev.getState()).toBe(MigState.RESUMING);
    expect(device.fingerprint()).toBe(before);
    await dev.reset();
    expect(await dev.getState()).toBe(MigState.RUNNING);
    expect(await errnoOf(s.write(Buffer.alloc(1)))).toBe('ENODEV');
  });

  it('resuming session: read is EBADF, precopyInfo ENOTTY', async () => {
    const { dev } = rig();
    const s = (await dev.setState(MigState.RESUMING)) as DataSession;
    expect(await errnoOf(s.read(Buffer.alloc(4)))).toBe('EBADF');
    expect(await errnoOf(s.precopyInfo())).toBe('ENOTTY');
  });
});

describe('errors and reset', () => {
  it('v1 110b is ERROR; every SET from ERROR is EINVAL; reset -> 001 -> RUNNING, sessions end', async () => {
    const { dev, v1 } = rig();
    const s = (await dev.setState(MigState.PRE_COPY)) as DataSession;
    v1.armFaults({ failArc: { from: 3, to: 2, toError: true } });
    expect(await errnoOf(dev.setState(MigState.STOP_COPY))).toBe('EIO');
    expect(await dev.getState()).toBe(MigState.ERROR);
    expect(await errnoOf(s.read(Buffer.alloc(8)))).toBe('ENODEV');
    expect(await errnoOf(dev.setState(MigState.RUNNING))).toBe('EINVAL');
    await dev.reset();
    expect(await dev.getState()).toBe(MigState.RUNNING);
    expect(await readDeviceState(v1)).toBe(1);
  });

  it('RUNNING -> STOP_COPY and -> RESUMING are the single v1 writes QEMU 7.2 uses (001->010, 001->100), so strict v1 drivers accept them', async () => {
    for (const policy of ['uapi', 'libvfio-user'] as const) {
      const { dev, region } = rig({ policy });
      region.log.clear();
      const saving = (await dev.setState(MigState.STOP_COPY)) as DataSession;
      expect((await readAll(saving)).equals(referenceStream()), policy).toBe(true);
      expect(stateWrites(region)).toEqual(['write device_state=0x2']);
    }
  });

  it('a failed arc in a combination path leaves the intermediate state the v1 driver reports', async () => {
    const { dev, v1 } = rig();
    await dev.setState(MigState.STOP_COPY); // STOP_COPY -> RUNNING is 010 -> 000 -> 001: no direct v1 transition
    v1.armFaults({ failArc: { from: 0, to: 1, errno: 'EBUSY' } });
    expect(await errnoOf(dev.setState(MigState.RUNNING))).toBe('EBUSY');
    expect(await dev.getState()).toBe(MigState.STOP);
  });

  it('a window read error after some bytes: the short count now, the errno on the next read, no byte lost', async () => {
    const { dev, v1 } = rig({ windowSize: 100 });
    const s = (await dev.setState(MigState.STOP_COPY)) as DataSession;
    // SimV1Region counts data_offset triggers and window reads as data-path reads:
    // trigger #1, window #2, trigger #3, window #4 fails
    v1.armFaults({ failIo: { op: 'read', nth: 4, errno: 'EIO' } });
    const b = Buffer.alloc(250);
    const n = await s.read(b);
    expect(n).toBe(100);
    expect(await errnoOf(s.read(Buffer.alloc(10)))).toBe('EIO');
    const rest = await readAll(s);
    expect(Buffer.concat([b.subarray(0, n), rest]).equals(referenceStream())).toBe(true);
  });

  it('reset ends every session (ENODEV) and expects 001', async () => {
    const { dev } = rig();
    const s = (await dev.setState(MigState.STOP_COPY)) as DataSession;
    await dev.reset();
    expect(await errnoOf(s.read(Buffer.alloc(1)))).toBe('ENODEV');
    expect(dev.inspect()).toMatchObject({ state: MigState.RUNNING, session: null, bufferedBytes: 0 });
  });
});

describe('serialization', () => {
  it('two overlapping SETs do not interleave their v1 writes', async () => {
    const { dev, region } = rig();
    await dev.getState(); // the first call takes the region over (one device_state read)
    region.log.clear();
    region.stateWriteGate.close();
    const a = dev.setState(MigState.STOP_COPY); // 010 (001 -> 010 directly)
    const b = dev.setState(MigState.RUNNING); // 000, 001
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(region.log.entries).toEqual(['> read device_state', '< read device_state', '> write device_state=0x2']);
    region.stateWriteGate.open();
    await Promise.all([a, b]);
    expect(stateWrites(region)).toEqual(['write device_state=0x2', 'write device_state=0x0', 'write device_state=0x1']);
    expect(region.log.maxConcurrent).toBe(1);
    expect(await dev.getState()).toBe(MigState.RUNNING);
  });
});
