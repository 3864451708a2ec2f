// `vfio-mig bridge --trace FILE`: one JSON object per line, for every v1
// register access the bridge serves, every v2 call it makes, every data_fd
// read/write, and the bridge's own events. Each line carries the format
// version `v` and `t`, milliseconds since the trace started (µs resolution);
// the first line ("start") gives the wall clock of t = 0. The format is
// documented in docs/trace-format.md (legacy/qemu/trace/trace-format.ts reads it);
// a reader must skip events it does not know.
import { closeSync, openSync, writeSync } from 'node:fs';
import { TRACE_FORMAT_VERSION, traceJson } from '../../legacy/qemu/trace/trace-format.js';

export { TRACE_FORMAT_VERSION };

export class TraceWriter {
  private readonly origin = performance.now();
  private fd: number | null;

  private constructor(fd: number) {
    this.fd = fd;
  }

  /** Create (or truncate) `path` and write the start line. */
  static open(path: string, start: Record<string, unknown>): TraceWriter {
    const trace = new TraceWriter(openSync(path, 'w', 0o600));
    trace.write('start', { clock: new Date().toISOString(), source: 'vfio-mig bridge', ...start });
    return trace;
  }

  /** Milliseconds since the start line. */
  now(): number {
    return performance.now() - this.origin;
  }

  /** One line, written at once (a crash loses nothing already traced). */
  write(ev: string, fields: Record<string, unknown>): void {
    if (this.fd === null) return;
    writeSync(this.fd, `${traceJson({ v: TRACE_FORMAT_VERSION, t: Math.round(this.now() * 1000) / 1000, ev, ...fields })}\n`);
  }

  /** The end line, then close. Idempotent. */
  close(end: Record<string, unknown> = {}): void {
    if (this.fd === null) return;
    this.write('end', end);
    closeSync(this.fd);
    this.fd = null;
  }
}
