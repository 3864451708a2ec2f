// SimV2Driver against the v2 uAPI rules (docs/PROTOCOL.md §3.2-3.6) and mtty's behaviour
// (docs/PROTOCOL.md §5): arcs walked one at a time (checked against an independent BFS
// oracle), sessions only from the final arc, data_fd lifetime and errors,
// validation on RESUMING -> STOP, reset, faults, serialization.
import { describe, expect, it } from 'vitest';
import { SimDevice } from '../src/sim/sim-device.js';
import { SimV2Driver } from '../src/sim/sim-v2-driver.js';
import type { SimV2Session } from '../src/sim/sim-v2-session.js';
import { MigrationError } from '../src/uapi/errors.js';
import { FLAG_SETS, MigFlags, MigState } from '../src/v2/states.js';
import { oraclePath } from './support/path-oracle.js';
import { errnoOf } from './support/errno.js';

const { ERROR: E, STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;
const ALL = MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY;
const NO_P2P = MigFlags.STOP_COPY | MigFlags.PRE_COPY;
const SIZE = 16 * 4096;

function make(flags = ALL, extra: Partial<ConstructorParameters<typeof SimV2Driver>[1]> = {}) {
  const device = new SimDevice({ size: SIZE, seed: 17 });
  const arcs: string[] = [];
  const driver = new SimV2Driver(device, { flags, onArc: (a, b) => arcs.push(`${MigState[a]}>${MigState[b]}`), ...extra });
  return { device, driver, arcs };
}

async function readAll(s: SimV2Session, size = 4096): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    const buf = Buffer.alloc(size);
    let n: number;
    try {
      n = await s.read(buf);
    } catch (e) {
      if (e instanceof MigrationError && e.code === 'ENOMSG') return Buffer.concat(parts);
      throw e;
    }
    if (n === 0) return Buffer.concat(parts);
    parts.push(buf.subarray(0, n));
  }
}

/** A complete valid stream for a device like make()'s. */
function validStream(): Buffer {
  const d = new SimDevice({ size: SIZE, seed: 3 });
  const s = d.createSaver();
  s.enterStopCopy();
  const buf = Buffer.alloc(Number(d.fullStreamBytes()));
  s.read(buf);
  return buf;
}

/** Put a fresh driver into `state` (RESUMING gets a complete stream written, so it can be left). */
async function driverIn(state: MigState, flags: number) {
  const t = make(flags);
  if (state === E) {
    t.driver.armFaults({ failArc: { from: R, to: flags & MigFlags.P2P ? RP : S, toError: true } });
    await t.driver.setState(S).catch(() => undefined);
  } else {
    const s = await t.driver.setState(state);
    if (state === RS) await s!.write(validStream());
  }
  t.arcs.length = 0;
  return t;
}

const exists = (s: MigState, flags: number) =>
  s === S ||
  s === R ||
  s === SC ||
  s === RS ||
  (s === RP && !!(flags & MigFlags.P2P)) ||
  (s === PC && !!(flags & MigFlags.PRE_COPY)) ||
  (s === PCP && (flags & ALL) === ALL);

describe('construction', () => {
  it('refuses flags without STOP_COPY or with unknown bits', () => {
    const d = new SimDevice({ size: 4096, seed: 1 });
    for (const flags of [0, MigFlags.P2P, 1 | 8, 1.5]) {
      expect(() => new SimV2Driver(d, { flags }), `flags ${flags}`).toThrow(MigrationError);
    }
  });

  it('starts RUNNING with the device running, reports its flags', async () => {
    const { driver, device } = make(NO_P2P);
    expect(await driver.getState()).toBe(R);
    expect(await driver.migrationFlags()).toBe(NO_P2P);
    expect(device.running).toBe(true);
  });
});

describe('setState walks the kernel path one required arc at a time', () => {
  for (const flags of FLAG_SETS) {
    it(`flags ${flags}: every (cur, target) agrees with the BFS oracle over required arcs`, async () => {
      for (const cur of [S, R, SC, RS, RP, PC, PCP].filter((s) => exists(s, flags))) {
        for (const target of [E, S, R, SC, RS, RP, PC, PCP, 8]) {
          let expected: string;
          try {
            expected = oraclePath(cur, target, flags)
              .map((s) => MigState[s])
              .join(',');
          } catch {
            expected = 'EINVAL';
          }
          const { driver, arcs } = await driverIn(cur, flags);
          let got: string;
          let session: SimV2Session | null = null;
          try {
            session = await driver.setState(target);
            got = arcs.map((a) => a.split('>')[1]).join(',');
          } catch (e) {
            if (!(e instanceof MigrationError)) throw e;
            got = e.code;
            expect(arcs, `${MigState[cur]}->${target}: no arc on EINVAL`).toEqual([]);
          }
          const where = `${MigState[cur]} -> ${MigState[target] ?? target} (flags ${flags})`;
          if (cur === target) expected = '';
          expect(got, where).toBe(expected);
          expect(driver.currentState, where).toBe(got === 'EINVAL' ? cur : target);
          // a new session exactly when the final arc is one that opens one
          const last = arcs.at(-1);
          const opens = ['RUNNING>PRE_COPY', 'RUNNING_P2P>PRE_COPY_P2P', 'STOP>STOP_COPY', 'STOP>RESUMING'].includes(last ?? '');
          expect(session !== null, `${where}: session`).toBe(opens);
        }
      }
    });
  }

  it('a session from an intermediate arc never happens: S -> PRE_COPY opens it on the last arc', async () => {
    const { driver, arcs } = await driverIn(S, ALL);
    const s = await driver.setState(PC);
    expect(arcs).toEqual(['STOP>RUNNING_P2P', 'RUNNING_P2P>RUNNING', 'RUNNING>PRE_COPY']);
    expect(s?.kind).toBe('saving');
  });

  it('the device runs exactly in RUNNING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P', async () => {
    const { driver, device } = make(ALL);
    for (const [state, runs] of [
      [RP, true],
      [PCP, true],
      [PC, true],
      [R, true],
      [S, false],
      [SC, false],
      [S, false],
      [RS, false],
    ] as const) {
      const sess = await driver.setState(state);
      if (sess && state === PCP) await readAll(sess);
      expect(device.running, MigState[state]).toBe(runs);
      expect(device.step(1), MigState[state]).toBe(runs ? 1 : 0);
    }
  });
});

describe('saving session (data_fd) semantics', () => {
  it('PRE_COPY: data, then ENOMSG; new dirty data after the device works; PRECOPY_INFO follows', async () => {
    const { driver, device } = make(NO_P2P);
    const s = (await driver.setState(PC))!;
    const info0 = await s.precopyInfo();
    expect(info0.initialBytes).toBe(BigInt(32 + 16 * (8 + 4096)));
    const first = await readAll(s);
    expect(first.length).toBe(Number(info0.initialBytes));
    expect(await errnoOf(s.read(Buffer.alloc(100)))).toBe('ENOMSG');
    expect(await s.precopyInfo()).toEqual({ initialBytes: 0n, dirtyBytes: 0n });
    device.step(3);
    const { dirtyBytes } = await s.precopyInfo();
    expect(dirtyBytes).toBeGreaterThan(0n);
    expect((await readAll(s)).length).toBe(Number(dirtyBytes));
  });

  it('PRE_COPY -> STOP_COPY keeps the session (SET returns none); STOP_COPY ends with 0, for good', async () => {
    for (const flags of [NO_P2P, ALL]) {
      const { driver } = make(flags);
      const s = (await driver.setState(PC))!;
      await readAll(s);
      expect(await driver.setState(SC)).toBeNull();
      expect(driver.openSessions).toBe(1);
      const rest = await readAll(s);
      expect(rest.length).toBe(32); // nothing dirty: just the trailer
      expect(await s.read(Buffer.alloc(10))).toBe(0);
      expect(await s.read(Buffer.alloc(10))).toBe(0);
      expect(await errnoOf(s.precopyInfo())).toBe('EINVAL'); // not in PRE_COPY(_P2P)
    }
  });

  it('leaving the saving group ends the session: reads ENODEV, PRECOPY_INFO EINVAL (state checked first), close still works once', async () => {
    for (const [via, after] of [
      [PC, R],
      [PCP, RP],
      [SC, S],
    ] as const) {
      const { driver } = make(ALL);
      const s = via === SC ? (await driver.setState(S), (await driver.setState(SC))!) : (await driver.setState(via))!;
      await driver.setState(after);
      expect(driver.openSessions, `${MigState[via]}->${MigState[after]}`).toBe(0);
      expect(await errnoOf(s.read(Buffer.alloc(8)))).toBe('ENODEV');
      expect(await errnoOf(s.precopyInfo())).toBe('EINVAL');
      expect(driver.openHandles).toBe(1);
      await s.close();
      expect(driver.openHandles).toBe(0);
      expect(await errnoOf(s.close())).toBe('EBADF');
      expect(await errnoOf(s.read(Buffer.alloc(8)))).toBe('EBADF');
    }
  });

  it('PRECOPY_INFO on a session that ended while the device is in PRE_COPY again: ENODEV', async () => {
    const { driver } = make(NO_P2P);
    const old = (await driver.setState(PC))!;
    await driver.setState(R);
    const fresh = (await driver.setState(PC))!;
    expect(fresh).not.toBe(old);
    expect(await errnoOf(old.precopyInfo())).toBe('ENODEV');
    expect(await errnoOf(fresh.precopyInfo())).toBe('ok');
  });

  it('wrong direction: write on the saving fd and read on the resuming fd are EBADF (vfs_write/vfs_read); no PRECOPY_INFO ioctl on the resuming fd', async () => {
    const { driver } = make(ALL);
    const save = (await driver.setState(PC))!;
    expect(await errnoOf(save.write(Buffer.alloc(8)))).toBe('EBADF');
    await driver.setState(S);
    const resume = (await driver.setState(RS))!;
    expect(await errnoOf(resume.read(Buffer.alloc(8)))).toBe('EBADF');
    expect(await errnoOf(resume.precopyInfo())).toBe('ENOTTY');
  });

  it('MIG_DATA_SIZE: a full stream without a session, what is left of it with one', async () => {
    const { driver, device } = make(NO_P2P);
    const full = device.fullStreamBytes();
    expect(await driver.stopCopySize()).toBe(full);
    const s = (await driver.setState(PC))!;
    await s.read(Buffer.alloc(1000));
    expect(await driver.stopCopySize()).toBe(full - 1000n);
    await driver.setState(SC);
    expect((await readAll(s)).length).toBe(Number(full - 1000n));
    expect(await driver.stopCopySize()).toBe(0n);
  });
});

describe('resuming session and the RESUMING -> STOP validation', () => {
  it('any segmentation loads; leaving RESUMING applies the state', async () => {
    const { driver, device } = make(ALL);
    await driver.setState(S);
    const s = (await driver.setState(RS))!;
    const stream = validStream();
    for (let at = 0; at < stream.length; at += 1000)
      expect(await s.write(stream.subarray(at, at + 1000))).toBe(Math.min(1000, stream.length - at));
    expect(await driver.setState(R)).toBeNull();
    expect(driver.openSessions).toBe(0);
    expect(await errnoOf(s.write(Buffer.alloc(1)))).toBe('ENODEV');
    const ref = new SimDevice({ size: SIZE, seed: 3 });
    expect(device.fingerprint()).toBe(ref.fingerprint());
  });

  it('short data: the SET fails with EINVAL, the device stays RESUMING with the session; the rest can follow', async () => {
    const { driver, device } = make(ALL);
    const before = device.fingerprint();
    await driver.setState(S);
    const s = (await driver.setState(RS))!;
    const stream = validStream();
    await s.write(stream.subarray(0, 5000));
    expect(await errnoOf(driver.setState(R))).toBe('EINVAL');
    expect(driver.currentState).toBe(RS);
    expect(device.fingerprint()).toBe(before);
    await s.write(stream.subarray(5000));
    await driver.setState(R);
    expect(device.fingerprint()).toBe(new SimDevice({ size: SIZE, seed: 3 }).fingerprint());
  });

  it('corrupt data: the write fails EINVAL, so does leaving RESUMING; reset recovers, device unchanged', async () => {
    const { driver, device } = make(NO_P2P);
    const before = device.fingerprint();
    await driver.setState(S);
    const s = (await driver.setState(RS))!;
    const bad = validStream();
    bad[200] ^= 4;
    expect(await errnoOf(s.write(bad))).toBe('EINVAL');
    expect(await errnoOf(driver.setState(S))).toBe('EINVAL');
    await driver.reset();
    expect(driver.currentState).toBe(R);
    expect(driver.openSessions).toBe(0);
    expect(device.fingerprint()).toBe(before);
  });

  it('a stream for a device of another size: EINVAL', async () => {
    const { driver } = make(ALL);
    await driver.setState(S);
    const s = (await driver.setState(RS))!;
    const other = new SimDevice({ size: SIZE * 2, seed: 3 }).createSaver();
    other.enterStopCopy();
    const buf = Buffer.alloc(64);
    other.read(buf);
    expect(await errnoOf(s.write(buf))).toBe('EINVAL');
  });

  it('writeLimit models short writes', async () => {
    const { driver } = make(ALL, { writeLimit: 100 });
    await driver.setState(S);
    const s = (await driver.setState(RS))!;
    const stream = validStream();
    expect(await s.write(stream)).toBe(100);
    expect(await s.write(stream.subarray(100, 150))).toBe(50);
  });
});

describe('reset, ERROR, close', () => {
  it('reset from every state: RUNNING, device running, every session ended', async () => {
    for (const state of [S, SC, RS, RP, PC, PCP, E]) {
      const { driver, device } = await driverIn(state, ALL);
      await driver.reset();
      expect(driver.currentState).toBe(R);
      expect(device.running).toBe(true);
      expect(driver.openSessions).toBe(0);
    }
  });

  it('from ERROR every target but ERROR itself is EINVAL (mtty_set_state returns at once when cur == new)', async () => {
    const { driver } = await driverIn(E, ALL);
    for (const t of [S, R, SC, RS, RP, PC, PCP]) expect(await errnoOf(driver.setState(t))).toBe('EINVAL');
    expect(await errnoOf(driver.setState(E))).toBe('ok');
  });

  it('close: every later device call is EBADF; a data_fd still held reads ENODEV (its file was disabled)', async () => {
    const { driver } = make(ALL);
    const s = (await driver.setState(PC))!;
    await driver.close();
    expect(driver.openSessions).toBe(0);
    expect(await errnoOf(driver.getState())).toBe('EBADF');
    expect(await errnoOf(driver.setState(S))).toBe('EBADF');
    expect(await errnoOf(s.read(Buffer.alloc(8)))).toBe('ENODEV');
  });

  it('calls are serialized: a GET queued behind a SET sees its result', async () => {
    const { driver } = make(ALL);
    const [, state, size] = await Promise.all([driver.setState(SC), driver.getState(), driver.stopCopySize()]);
    expect(state).toBe(SC);
    expect(size).toBe(BigInt(32 + 16 * (8 + 4096) + 32));
  });
});

describe('fault plans', () => {
  it('a failing arc stops the walk at the step reached; with toError the device is in ERROR; each fault fires once', async () => {
    const { driver, arcs } = make(ALL, { faults: { failArc: { from: RP, to: S, errno: 'EBUSY' } } });
    expect(await errnoOf(driver.setState(SC))).toBe('EBUSY');
    expect(driver.currentState).toBe(RP);
    expect(arcs).toEqual(['RUNNING>RUNNING_P2P']);
    expect(await errnoOf(driver.setState(SC))).toBe('ok');

    driver.armFaults({ failArc: { from: S, to: RS, toError: true } });
    await driver.setState(S);
    expect(await errnoOf(driver.setState(RS))).toBe('EIO');
    expect(driver.currentState).toBe(E);
    await driver.reset();
    expect(driver.currentState).toBe(R);
  });

  it('the Nth read fails with the planned errno, once; reads are counted from arming', async () => {
    const { driver } = make(ALL);
    const s = (await driver.setState(PC))!;
    await s.read(Buffer.alloc(10));
    driver.armFaults({ failIo: { op: 'read', nth: 2, errno: 'EIO' } });
    expect(await s.read(Buffer.alloc(10))).toBe(10);
    expect(await errnoOf(s.read(Buffer.alloc(10)))).toBe('EIO');
    expect(await s.read(Buffer.alloc(10))).toBe(10);
  });

  it('the Nth write fails with the planned errno', async () => {
    const { driver } = make(ALL, { faults: { failIo: { op: 'write', nth: 1, errno: 'ENOSPC' } } });
    await driver.setState(S);
    const s = (await driver.setState(RS))!;
    expect(await errnoOf(s.write(Buffer.alloc(8)))).toBe('ENOSPC');
  });

  it('truncate: the stream ends early (PRE_COPY ENOMSG, STOP_COPY 0); corrupt: exactly one bit differs', async () => {
    const clean = await savedBytes(make(ALL).driver);
    const cut = make(ALL, { faults: { truncateStreamAt: 5000 } });
    const s = (await cut.driver.setState(PC))!;
    expect((await readAll(s)).length).toBe(5000);
    expect((await s.precopyInfo()).initialBytes).toBe(0n);
    await cut.driver.setState(SC);
    expect(await s.read(Buffer.alloc(10))).toBe(0);
    expect(await cut.driver.stopCopySize()).toBe(0n);

    const flipped = make(ALL);
    flipped.driver.armFaults({ corruptStreamAt: 12345 });
    const bytes = await savedBytes(flipped.driver);
    expect(bytes.length).toBe(clean.length);
    const diff = [...bytes.keys()].filter((i) => bytes[i] !== clean[i]);
    expect(diff).toEqual([12345]);
    expect(bytes[12345] ^ clean[12345]).toBe(1);
  });

  async function savedBytes(driver: SimV2Driver): Promise<Buffer> {
    const s = (await driver.setState(PC))!;
    const a = await readAll(s, 3000);
    await driver.setState(SC);
    return Buffer.concat([a, await readAll(s, 3000)]);
  }
});
