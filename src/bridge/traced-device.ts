// The v2 device as the bridge's LegacyRegionOverV2 sees it: every call is
// passed through, traced (--trace) and timed, and watched for two things the
// summary needs: how long the device stays in STOP_COPY, and the moment
// errorRecovery 'reset' takes a device out of ERROR (a failed SET, a GET
// that says ERROR, then a reset — LegacyRegionOverV2.afterFailedSet), which
// the bridge reports loudly: QEMU 7.2 sees only the failed write.
import { MigrationError } from '../uapi/errors.js';
import type { DataSession, MigrationDevice, PrecopyInfo } from '../v2/contracts.js';
import { MigState, stateName } from '../v2/states.js';
import type { DeviceStats } from './device-stats.js';
import type { TraceWriter } from './trace.js';

export interface ErrorRecovery {
  /** The SET that left the device in ERROR, as its error says it. */
  cause: string;
  /** 'ok', or the errno name the reset failed with (the device stays in ERROR). */
  reset: string;
}

const resultOf = (e: unknown): string => (e instanceof MigrationError ? e.code : 'EIO');

export class TracedDevice implements MigrationDevice {
  /** The last SET failed and no call has succeeded since. */
  private failedSet: string | undefined;
  /** ... and a GET then said ERROR: the next reset is a recovery. */
  private inError: string | undefined;

  constructor(
    private readonly inner: MigrationDevice,
    private readonly dev: number,
    private readonly stats: DeviceStats,
    private readonly trace: TraceWriter | undefined,
    private readonly onErrorRecovery: (r: ErrorRecovery) => void,
  ) {}

  migrationFlags(): Promise<number> {
    return this.call(
      'migrationFlags',
      undefined,
      () => this.inner.migrationFlags(),
      (f) => f,
    );
  }

  async getState(): Promise<MigState> {
    const state = await this.call('getState', undefined, () => this.inner.getState(), stateName);
    if (state !== MigState.STOP_COPY) this.stats.leaveStopCopy();
    if (state === MigState.ERROR && this.failedSet !== undefined) this.inError = this.failedSet;
    return state;
  }

  async setState(target: MigState): Promise<DataSession | null> {
    let session: DataSession | null;
    try {
      session = await this.call(
        'setState',
        stateName(target),
        () => this.inner.setState(target),
        (s) => (s ? 'session' : null),
      );
    } catch (e) {
      this.failedSet = e instanceof Error ? e.message : String(e);
      throw e;
    }
    this.failedSet = undefined;
    if (target === MigState.STOP_COPY) this.stats.enterStopCopy();
    else this.stats.leaveStopCopy();
    return session && new TracedSession(session, this.dev, this.trace);
  }

  stopCopySize(): Promise<bigint> {
    return this.call(
      'stopCopySize',
      undefined,
      () => this.inner.stopCopySize(),
      (n) => n,
    );
  }

  async reset(): Promise<void> {
    const recovering = this.inError;
    this.failedSet = undefined;
    this.inError = undefined;
    this.stats.leaveStopCopy();
    try {
      await this.call(
        'reset',
        undefined,
        () => this.inner.reset(),
        () => null,
      );
    } catch (e) {
      if (recovering !== undefined) this.onErrorRecovery({ cause: recovering, reset: resultOf(e) });
      throw e;
    }
    if (recovering !== undefined) {
      this.stats.errorResets++;
      this.onErrorRecovery({ cause: recovering, reset: 'ok' });
    }
  }

  close(): Promise<void> {
    this.stats.leaveStopCopy();
    return this.call(
      'close',
      undefined,
      () => this.inner.close(),
      () => null,
    );
  }

  private call<T>(call: string, arg: string | undefined, f: () => Promise<T>, show: (r: T) => unknown): Promise<T> {
    return traced(this.trace, 'v2', { dev: this.dev, call, ...(arg === undefined ? {} : { arg }) }, f, show);
  }
}

class TracedSession implements DataSession {
  constructor(
    private readonly inner: DataSession,
    private readonly dev: number,
    private readonly trace: TraceWriter | undefined,
  ) {}

  get fd(): number | undefined {
    return this.inner.fd;
  }

  read(buf: Uint8Array): Promise<number> {
    return traced(
      this.trace,
      'data',
      { dev: this.dev, op: 'read', size: buf.length },
      () => this.inner.read(buf),
      (n) => n,
    );
  }

  write(buf: Uint8Array): Promise<number> {
    return traced(
      this.trace,
      'data',
      { dev: this.dev, op: 'write', size: buf.length },
      () => this.inner.write(buf),
      (n) => n,
    );
  }

  precopyInfo(): Promise<PrecopyInfo> {
    return traced(
      this.trace,
      'v2',
      { dev: this.dev, call: 'precopyInfo' },
      () => this.inner.precopyInfo(),
      (i) => ({ initial: i.initialBytes, dirty: i.dirtyBytes }),
    );
  }

  close(): Promise<void> {
    return traced(
      this.trace,
      'data',
      { dev: this.dev, op: 'close' },
      () => this.inner.close(),
      () => null,
    );
  }
}

/** Run `f`; trace one line with its result ('ok' + ret, or the errno name) and its duration in µs. */
async function traced<T>(
  trace: TraceWriter | undefined,
  ev: string,
  fields: Record<string, unknown>,
  f: () => Promise<T>,
  show: (r: T) => unknown,
): Promise<T> {
  if (!trace) return f();
  const start = performance.now();
  const us = () => Math.round((performance.now() - start) * 1000);
  try {
    const r = await f();
    const ret = show(r);
    trace.write(ev, { ...fields, result: 'ok', ...(ret === null ? {} : { ret }), us: us() });
    return r;
  } catch (e) {
    trace.write(ev, { ...fields, result: resultOf(e), us: us() });
    throw e;
  }
}
