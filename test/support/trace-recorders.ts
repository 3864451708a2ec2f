// In-memory recorders that write what a client model does in the trace
// format (docs/trace-format.md), line for line as `vfio-mig bridge --trace`
// writes it: a LegacyRegion's accesses as `v1` lines, a MigrationDevice's
// calls as `v2`/`data` lines. The model comparisons (trace-models.test.ts)
// put the model's trace next to real QEMU's.
import type { LegacyRegion } from '../../legacy/contracts.js';
import { fieldAt } from '../../legacy/region-layout.js';
import { TRACE_FORMAT_VERSION, type TraceLine } from '../../legacy/qemu/trace/trace-format.js';
import { MigrationError } from '../../src/uapi/errors.js';
import type { DataSession, MigrationDevice, PrecopyInfo } from '../../src/v2/contracts.js';
import { stateName, type MigState } from '../../src/v2/states.js';

export class TraceRecorder {
  readonly lines: TraceLine[] = [];

  add(ev: string, fields: Record<string, unknown>): void {
    this.lines.push({ v: TRACE_FORMAT_VERSION, t: 0, line: this.lines.length + 1, ev, ...fields });
  }

  /** Run `f`, then record one line with its result ('ok' and what `show` makes of it, or the errno name). */
  async call<T>(
    ev: string,
    fields: Record<string, unknown>,
    f: () => Promise<T>,
    show: (r: T) => Record<string, unknown> = () => ({}),
  ): Promise<T> {
    try {
      const r = await f();
      this.add(ev, { ...fields, result: 'ok', ...show(r) });
      return r;
    } catch (e) {
      this.add(ev, { ...fields, result: e instanceof MigrationError ? e.code : 'EIO' });
      throw e;
    }
  }
}

function littleEndian(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

/** v1 lines: a header access carries its field and value, a window access only its size. */
export class TracingRegion implements LegacyRegion {
  constructor(
    readonly inner: LegacyRegion,
    private readonly rec: TraceRecorder,
    private readonly dev = 1,
  ) {}

  get size(): number {
    return this.inner.size;
  }

  readAt(offset: number, buf: Uint8Array): Promise<void> {
    return this.rec.call(
      'v1',
      this.fields('read', offset, buf.length),
      () => this.inner.readAt(offset, buf),
      () => this.value(offset, buf),
    );
  }

  writeAt(offset: number, data: Uint8Array): Promise<void> {
    return this.rec.call('v1', { ...this.fields('write', offset, data.length), ...this.value(offset, data) }, () =>
      this.inner.writeAt(offset, data),
    );
  }

  reset(): Promise<void> {
    return this.rec.call('v1', { dev: this.dev, op: 'reset' }, () => this.inner.reset());
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private fields(op: 'read' | 'write', offset: number, width: number): Record<string, unknown> {
    const field = fieldAt(offset, width);
    return { dev: this.dev, op, off: BigInt(offset), width, ...(field ? { field } : {}) };
  }

  private value(offset: number, bytes: Uint8Array): Record<string, unknown> {
    return fieldAt(offset, bytes.length) ? { value: littleEndian(bytes) } : {};
  }
}

/** v2 lines for the device's calls, data lines for its session's. */
export class TracingDevice implements MigrationDevice {
  constructor(
    readonly inner: MigrationDevice,
    private readonly rec: TraceRecorder,
    private readonly dev = 1,
  ) {}

  migrationFlags(): Promise<number> {
    return this.rec.call(
      'v2',
      { dev: this.dev, call: 'migrationFlags' },
      () => this.inner.migrationFlags(),
      (ret) => ({ ret }),
    );
  }

  getState(): Promise<MigState> {
    return this.rec.call(
      'v2',
      { dev: this.dev, call: 'getState' },
      () => this.inner.getState(),
      (s) => ({ ret: stateName(s) }),
    );
  }

  async setState(target: MigState): Promise<DataSession | null> {
    const s = await this.rec.call(
      'v2',
      { dev: this.dev, call: 'setState', arg: stateName(target) },
      () => this.inner.setState(target),
      (r) => (r ? { ret: 'session' } : {}),
    );
    return s && new TracingSession(s, this.rec, this.dev);
  }

  stopCopySize(): Promise<bigint> {
    return this.rec.call(
      'v2',
      { dev: this.dev, call: 'stopCopySize' },
      () => this.inner.stopCopySize(),
      (ret) => ({ ret }),
    );
  }

  reset(): Promise<void> {
    return this.rec.call('v2', { dev: this.dev, call: 'reset' }, () => this.inner.reset());
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

class TracingSession implements DataSession {
  constructor(
    private readonly inner: DataSession,
    private readonly rec: TraceRecorder,
    private readonly dev: number,
  ) {}

  get fd(): number | undefined {
    return this.inner.fd;
  }

  read(buf: Uint8Array): Promise<number> {
    return this.rec.call(
      'data',
      { dev: this.dev, op: 'read', size: buf.length },
      () => this.inner.read(buf),
      (ret) => ({ ret }),
    );
  }

  write(buf: Uint8Array): Promise<number> {
    return this.rec.call(
      'data',
      { dev: this.dev, op: 'write', size: buf.length },
      () => this.inner.write(buf),
      (ret) => ({ ret }),
    );
  }

  precopyInfo(): Promise<PrecopyInfo> {
    return this.rec.call(
      'v2',
      { dev: this.dev, call: 'precopyInfo' },
      () => this.inner.precopyInfo(),
      (i) => ({ ret: { initial: i.initialBytes, dirty: i.dirtyBytes } }),
    );
  }

  close(): Promise<void> {
    return this.rec.call('data', { dev: this.dev, op: 'close' }, () => this.inner.close());
  }
}
