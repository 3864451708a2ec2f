// Scenarios on an mtty device (the real driver in the VM lab, or the fake's
// transcription of it in unit tests), written once against the public API so
// both suites run the very same checks.
import { expect } from 'vitest';
import {
  KernelMigrationDevice,
  MigState,
  MigrationError,
  stateName,
  transitionPath,
  type DataSession,
  type MigrationDevice,
} from '../../index.js';
import { MTTY_HEADER_SIZE, MTTY_MAGIC, UART_SCR } from '../../testing.js';

const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;

/** Read a saving session to end of stream (read() == 0), in `chunk`-sized reads. */
export async function readAll(session: DataSession, chunk = 4096): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(chunk);
  for (;;) {
    const n = await session.read(buf);
    if (n === 0) break;
    parts.push(buf.slice(0, n));
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Write everything, tolerating short writes, in `chunk`-sized pieces. */
export async function writeAll(session: DataSession, data: Uint8Array, chunk = 4096): Promise<void> {
  let at = 0;
  while (at < data.length) {
    const n = await session.write(data.subarray(at, Math.min(data.length, at + chunk)));
    if (n <= 0) throw new Error(`write made no progress at ${at}`);
    at += n;
  }
}

/** RUNNING -> STOP_COPY, read the whole stream, back to RUNNING (the state is untouched). */
export async function saveStream(dev: MigrationDevice, chunk?: number): Promise<Uint8Array> {
  const session = await dev.setState(SC);
  if (!session) throw new Error('STOP_COPY opened no data session');
  try {
    return await readAll(session, chunk);
  } finally {
    await session.close();
    await dev.setState(R);
  }
}

/** RESUMING, write `data`, then RUNNING (RESUMING -> STOP applies it). */
export async function resumeStream(dev: MigrationDevice, data: Uint8Array, chunk?: number): Promise<void> {
  const session = await dev.setState(RS);
  if (!session) throw new Error('RESUMING opened no data session');
  try {
    await writeAll(session, data, chunk);
  } finally {
    await session.close();
  }
  await dev.setState(R);
}

/** A STOP_COPY save of mtty-2 `a` (96 bytes, mtty's header) resumed into `b`, which runs afterwards. */
export async function migrateMtty2(a: MigrationDevice, b: MigrationDevice): Promise<void> {
  const stream = await saveStream(a);
  expect(stream.length).toBe(96);
  expectMttyHeader(stream, 2);
  await resumeStream(b, stream);
  expect(await b.getState()).toBe(MigState.RUNNING);
}

/** UART scratch register of port `port` (BAR `port`, offset 7) through pread/pwrite on the device fd. */
export function writeScratch(dev: KernelMigrationDevice, value: number, port = 0): void {
  dev.vfio.writeRegion(dev.vfio.regionInfo(port), UART_SCR, Uint8Array.of(value));
}

export function readScratch(dev: KernelMigrationDevice, port = 0): number {
  const b = new Uint8Array(1);
  dev.vfio.readRegion(dev.vfio.regionInfo(port), UART_SCR, b);
  return b[0];
}

/** The mtty stream header: magic, version 1.0, nr_ports, flags 0. */
export function expectMttyHeader(stream: Uint8Array, ports: number): void {
  const v = new DataView(stream.buffer, stream.byteOffset, stream.byteLength);
  expect(stream.length).toBeGreaterThanOrEqual(MTTY_HEADER_SIZE);
  expect(v.getBigUint64(0, true)).toBe(MTTY_MAGIC);
  expect([v.getUint32(8, true), v.getUint32(12, true), v.getUint32(16, true), v.getUint32(20, true)]).toEqual([1, 0, ports, 0]);
}

/** Arcs on which mtty (like any v2 driver) hands out a new data_fd: the last arc of the path. */
const OPENS_FD: [MigState, MigState][] = [
  [R, PC],
  [RP, PCP],
  [S, SC],
  [S, RS],
];

export interface DifferentialCase {
  from: MigState;
  target: number;
  expected: 'ok' | 'EINVAL';
  got: string;
  fd: boolean;
  expectedFd: boolean;
  after: MigState;
}

/**
 * Differential test of our FSM against a device: for every state reachable
 * from RUNNING and every target (ERROR, the seven states, one out of range),
 * reset, drive to the state, SET the target, and compare success/EINVAL, the
 * resulting state and whether a data_fd came back with nextState/transitionPath.
 * RESUMING is entered with a complete stream of the device itself written, so
 * that leaving it is an FSM question and not a data one; the device is never
 * SET out of a RESUMING left over from an earlier open (docs/PROTOCOL.md §7 H2).
 */
export async function fsmDifferential(dev: MigrationDevice): Promise<DifferentialCase[]> {
  const flags = await dev.migrationFlags();
  await dev.reset();
  const image = await saveStream(dev);
  const sources = [S, R, SC, RS, RP, PC, PCP].filter((s) => {
    try {
      transitionPath(R, s, flags);
      return true;
    } catch {
      return false;
    }
  });
  const cases: DifferentialCase[] = [];
  for (const from of sources) {
    for (let target = 0; target <= 8; target++) {
      await dev.reset();
      const held: DataSession[] = [];
      const s0 = await dev.setState(from);
      if (s0) held.push(s0);
      if (from === RS) await writeAll(s0!, image);
      let path: MigState[] | undefined;
      try {
        path = transitionPath(from, target, flags);
      } catch {
        path = undefined;
      }
      const prev = path && path.length ? (path.length > 1 ? path[path.length - 2] : from) : undefined;
      const expectedFd = !!path && path.length > 0 && OPENS_FD.some(([a, b]) => a === prev && b === target);
      let got = 'ok';
      let fd = false;
      try {
        const s = await dev.setState(target);
        if (s) {
          held.push(s);
          fd = true;
        }
      } catch (e) {
        if (!(e instanceof MigrationError)) throw e;
        got = e.code;
      }
      const after = await dev.getState();
      cases.push({ from, target, expected: path ? 'ok' : 'EINVAL', got, fd, expectedFd, after });
      for (const s of held) await s.close();
    }
  }
  await dev.reset();
  return cases;
}

/** Assert every differential case agrees; the message names the disagreeing ones. */
export function expectFsmAgreement(cases: DifferentialCase[]): void {
  const bad = cases.filter((c) => c.got !== c.expected || c.fd !== c.expectedFd || c.after !== (c.expected === 'ok' ? c.target : c.from));
  const fmt = (c: DifferentialCase) =>
    `${stateName(c.from)} -> ${stateName(c.target)}: expected ${c.expected}${c.expectedFd ? '+fd' : ''}, got ${c.got}${c.fd ? '+fd' : ''}, now ${stateName(c.after)}`;
  expect(bad.map(fmt)).toEqual([]);
}
