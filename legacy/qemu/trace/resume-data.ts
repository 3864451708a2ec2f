// Device bytes for replaying a recorded resume (v1-replay.ts): the trace has
// only the chunk sizes a client resumed, not the bytes (QEMU copies them
// through its own mapping of the window). A replayed resume needs bytes the
// replay device accepts: its own state, saved through the same region just
// before (ownState), or the device bytes of a migration stream (deviceBytesOf).
import { Readable, Writable } from 'node:stream';
import { readMigStream } from '../stream-reader.js';
import { saveV1 } from '../v1-client.js';
import type { LegacyRegion } from '../../contracts.js';
import { isV1, type TraceLine } from './trace-format.js';

/** The device bytes (data records) of a migration stream, concatenated. */
export async function deviceBytesOf(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const event of readMigStream(stream)) if (event.kind === 'data') parts.push(event.bytes.slice());
  return Buffer.concat(parts);
}

/**
 * The device's own state: saved over v1 (stop-and-copy only, as
 * `vfio-mig save --via v1 --rounds 0` does), then the device is reset
 * (VFIO_DEVICE_RESET: back to 001, where a recorded client starts).
 */
export async function ownState(region: LegacyRegion, windowAccess: 'pieces' | 'mmap' = 'mmap'): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk);
      done();
    },
  });
  await saveV1(region, sink, { precopyRounds: 0, windowAccess });
  await region.reset();
  return deviceBytesOf(Readable.from(chunks));
}

/** Whether a trace resumes data into device `dev` (a non-zero data_size write). */
export function resumesData(lines: readonly TraceLine[], dev: number): boolean {
  return lines.some((l) => isV1(l) && l.dev === dev && l.op === 'write' && l.field === 'data_size' && (l.value ?? 0n) > 0n);
}
