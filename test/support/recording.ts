// Wrappers that record every call into a MigrationDevice or a LegacyRegion,
// in order, with the start and the end of each call, and can hold calls at a
// gate: what the translator asks of the layer below, and whether two calls
// ever overlap.
import type { LegacyRegion } from '../../legacy/contracts.js';
import { stateName } from '../../src/v2/states.js';
import type { DataSession, MigrationDevice, PrecopyInfo } from '../../src/v2/contracts.js';
import type { MigState } from '../../src/v2/states.js';

export class Gate {
  private release: (() => void) | null = null;
  private closed: Promise<void> | null = null;

  /** From now on gated calls wait until open() is called. */
  close(): void {
    this.closed = new Promise((resolve) => (this.release = resolve));
  }

  open(): void {
    this.release?.();
    this.release = null;
    this.closed = null;
  }

  async pass(): Promise<void> {
    if (this.closed) await this.closed;
  }
}

export class CallLog {
  readonly entries: string[] = [];
  private active = 0;
  /** Largest number of calls in flight at once. */
  maxConcurrent = 0;

  async record<T>(name: string, gate: Gate | null, f: () => Promise<T>): Promise<T> {
    this.entries.push(`> ${name}`);
    this.active++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.active);
    try {
      if (gate) await gate.pass();
      return await f();
    } finally {
      this.active--;
      this.entries.push(`< ${name}`);
    }
  }

  /** Just the call names, in start order. */
  starts(): string[] {
    return this.entries.filter((e) => e.startsWith('> ')).map((e) => e.slice(2));
  }

  clear(): void {
    this.entries.length = 0;
    this.maxConcurrent = 0;
  }
}

export class RecordingDevice implements MigrationDevice {
  readonly log = new CallLog();
  /** setState calls wait here when it is closed. */
  readonly setStateGate = new Gate();

  constructor(readonly inner: MigrationDevice) {}

  migrationFlags(): Promise<number> {
    return this.log.record('migrationFlags', null, () => this.inner.migrationFlags());
  }
  getState(): Promise<MigState> {
    return this.log.record('getState', null, () => this.inner.getState());
  }
  async setState(target: MigState): Promise<DataSession | null> {
    const s = await this.log.record(`setState(${stateName(target)})`, this.setStateGate, () => this.inner.setState(target));
    return s ? new RecordingSession(s, this.log) : null;
  }
  stopCopySize(): Promise<bigint> {
    return this.log.record('stopCopySize', null, () => this.inner.stopCopySize());
  }
  reset(): Promise<void> {
    return this.log.record('reset', null, () => this.inner.reset());
  }
  close(): Promise<void> {
    return this.log.record('close', null, () => this.inner.close());
  }
}

class RecordingSession implements DataSession {
  constructor(
    private readonly inner: DataSession,
    private readonly log: CallLog,
  ) {}
  read(buf: Uint8Array): Promise<number> {
    return this.log.record(`read(${buf.length})`, null, () => this.inner.read(buf));
  }
  write(buf: Uint8Array): Promise<number> {
    return this.log.record(`write(${buf.length})`, null, () => this.inner.write(buf));
  }
  precopyInfo(): Promise<PrecopyInfo> {
    return this.log.record('precopyInfo', null, () => this.inner.precopyInfo());
  }
  close(): Promise<void> {
    return this.log.record('session.close', null, () => this.inner.close());
  }
}

const FIELD_NAMES: Record<number, string> = { 0: 'device_state', 4: 'reserved', 8: 'pending_bytes', 16: 'data_offset', 24: 'data_size' };

function describeAccess(offset: number, bytes: Uint8Array, write: boolean): string {
  const field = FIELD_NAMES[offset];
  if (field === undefined || (bytes.length !== 4 && bytes.length !== 8)) return `${write ? 'write' : 'read'} ${offset}+${bytes.length}`;
  if (!write) return `read ${field}`;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const value = bytes.length === 4 ? view.getUint32(0, true) : view.getBigUint64(0, true);
  return `write ${field}=${bytes.length === 4 ? '0x' + (value as number).toString(16) : String(value)}`;
}

export class RecordingRegion implements LegacyRegion {
  readonly log = new CallLog();
  /** device_state writes wait here when it is closed. */
  readonly stateWriteGate = new Gate();

  constructor(readonly inner: LegacyRegion) {}

  get size(): number {
    return this.inner.size;
  }
  readAt(offset: number, buf: Uint8Array): Promise<void> {
    return this.log.record(describeAccess(offset, buf, false), null, () => this.inner.readAt(offset, buf));
  }
  writeAt(offset: number, data: Uint8Array): Promise<void> {
    const gate = offset === 0 ? this.stateWriteGate : null;
    return this.log.record(describeAccess(offset, data, true), gate, () => this.inner.writeAt(offset, data));
  }
  reset(): Promise<void> {
    return this.log.record('reset', null, () => this.inner.reset());
  }
  close(): Promise<void> {
    return this.log.record('close', null, () => this.inner.close());
  }
}
