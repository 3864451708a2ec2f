// The polls of a trace: what a client repeats while a device is in
// pre-copy, as often as the rest of the migration takes (RAM, mostly), so
// that how often it happened says nothing about the device
// (docs/trace-format.md "Normalised traces"):
//  * v1: a pending_bytes read while device_state is 011 (QEMU 7.2 reads it
//    at the top of each migration iteration, vfio_save_pending);
//  * v2, while the device is in PRE_COPY or PRE_COPY_P2P: a data_fd read
//    that found nothing (QEMU 8+ reads once per iteration, vfio_save_iterate;
//    mtty answers 0 once its pre-copy data is read), and a MIG_DATA_SIZE
//    query with the PRECOPY_INFO that goes with it (vfio_state_pending_exact,
//    asked whenever the migration core thinks the switchover is near, and
//    again after each iteration that proved it was not).
// In stop-and-copy the same reads are no polls: each marks a chunk or the end.
//
// A trace is cut into units: on a bridged (v1) device, one register access
// with the v2/data calls made for it (they come just before it); on a v2
// device, one call, or a MIG_DATA_SIZE + PRECOPY_INFO pair. A run of poll
// units of one device is reduced to each distinct one once, in the order of
// its last appearance: "polled for this, and for that, until the switchover".
import { MigState, parseState } from '../../../src/v2/states.js';
import { V1_MASK, V1_RUNNING, V1_SAVING } from '../../v1-state.js';
import { isData, isV1, isV2, type TraceLine } from './trace-format.js';

export interface Unit {
  lines: TraceLine[];
  /** The device, for units of one. */
  dev?: number;
  poll: boolean;
}

const devOf = (l: TraceLine): number | undefined => {
  const d = (l as { dev?: unknown }).dev;
  return typeof d === 'number' && (l.ev === 'v1' || l.ev === 'v2' || l.ev === 'data') ? d : undefined;
};

export function unitsOf(lines: readonly TraceLine[]): Unit[] {
  const bridged = new Set(lines.filter(isV1).map((l) => l.dev));
  const v1State = new Map<number, number>();
  const v2State = new Map<number, MigState>();
  const pending = new Map<number, TraceLine[]>(); // a bridged device's calls waiting for their access
  const out: Unit[] = [];
  const v2Precopy = (dev: number) => [MigState.PRE_COPY, MigState.PRE_COPY_P2P].includes(v2State.get(dev) ?? MigState.RUNNING);

  /** A bridged device's calls that no access followed: units of their own, where they were. */
  const flush = () => {
    for (const rest of pending.values()) out.push({ lines: rest, dev: devOf(rest[0]), poll: false });
    pending.clear();
  };
  for (const [i, l] of lines.entries()) {
    const dev = devOf(l);
    if (dev === undefined) {
      flush();
      out.push({ lines: [l], poll: false });
      continue;
    }
    if (isV2(l) && l.result === 'ok') {
      if (l.call === 'setState' && l.arg) v2State.set(dev, parseState(l.arg) ?? MigState.ERROR);
      if (l.call === 'reset') v2State.set(dev, MigState.RUNNING);
    }
    if (bridged.has(dev)) {
      const mine = pending.get(dev) ?? [];
      mine.push(l);
      if (!isV1(l)) {
        pending.set(dev, mine);
        continue;
      }
      pending.delete(dev);
      if (l.op === 'reset' && l.result === 'ok') v1State.set(dev, V1_RUNNING);
      if (l.field === 'device_state' && l.result === 'ok' && l.value !== undefined) v1State.set(dev, Number(l.value));
      const precopy = ((v1State.get(dev) ?? V1_RUNNING) & V1_MASK) === (V1_RUNNING | V1_SAVING);
      out.push({ lines: mine, dev, poll: precopy && l.op === 'read' && l.field === 'pending_bytes' });
      continue;
    }
    const prev = out[out.length - 1];
    if (
      isV2(l) &&
      l.call === 'precopyInfo' &&
      prev?.dev === dev &&
      prev.lines.length === 1 &&
      isV2(prev.lines[0]) &&
      prev.lines[0].call === 'stopCopySize' &&
      lines[i - 1] === prev.lines[0]
    ) {
      prev.lines.push(l); // the pair vfio_state_pending_exact asks
      continue;
    }
    const emptyRead = isData(l) && l.op === 'read' && (l.ret === 0 || l.result === 'ENOMSG');
    const sizeQuery = isV2(l) && l.call === 'stopCopySize'; // (with its PRECOPY_INFO, paired above)
    out.push({ lines: [l], dev, poll: v2Precopy(dev) && (emptyRead || sizeQuery) });
  }
  flush();
  return out;
}

/** Each run of consecutive polls of one device: its distinct items (by `key`), once each, in the order of their last appearance. */
export function collapsePollRuns<T extends { poll: boolean; dev?: number }>(items: readonly T[], key: (item: T) => string): T[] {
  const out: T[] = [];
  let run: T[] = [];
  const flush = () => {
    const last = new Map<string, T>();
    for (const item of run) {
      const k = key(item);
      last.delete(k);
      last.set(k, item);
    }
    out.push(...last.values());
    run = [];
  };
  for (const item of items) {
    if (item.poll && (run.length === 0 || run[0].dev === item.dev)) {
      run.push(item);
      continue;
    }
    flush();
    if (item.poll) run.push(item);
    else out.push(item);
  }
  flush();
  return out;
}
