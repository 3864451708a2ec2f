// `vfio-mig bridge --trace FILE`: one JSON object per line, for every v1
// register access the bridge serves, every v2 call it makes, every data_fd
// read/write, and the bridge's own events. Each line carries the format
// version `v` and `t`, milliseconds since the trace started (µs resolution);
// the first line ("start") gives the wall clock of t = 0. The format is
// documented in docs/bridge.md; a reader must skip events it does not know.
import { closeSync, openSync, writeSync } from 'node:fs';

export const TRACE_FORMAT_VERSION = 1;

export class TraceWriter {
  private readonly origin = performance.now();
  private fd: number | null;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Create (or truncate) `path` and write the start line. */
  static open(path: string, start: Record<string, unknown>): TraceWriter {
    const trace = new TraceWriter(openSync(path, 'w', 0o600));
    trace.write('start', { clock: new Date().toISOString(), ...start });
    return trace;
  }

  /** Milliseconds since the start line. */
  now(): number {
    return performance.now() - this.origin;
  }

  /** One line, written at once (a crash loses nothing already traced). */
  write(ev: string, fields: Record<string, unknown>): void {
    if (this.fd === null) return;
    const line = JSON.stringify({ v: TRACE_FORMAT_VERSION, t: Math.round(this.now() * 1000) / 1000, ev, ...fields }, hexBigint);
    writeSync(this.fd, `${line}\n`);
  }

  /** The end line, then close. Idempotent. */
  close(end: Record<string, unknown> = {}): void {
    if (this.fd === null) return;
    this.write('end', end);
    closeSync(this.fd);
    this.fd = null;
  }
}

/** u64 values (offsets, sizes, register values) as "0x..." strings: JSON numbers lose bits past 2^53. */
function hexBigint(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `0x${value.toString(16)}` : value;
}
