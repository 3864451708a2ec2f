// Writes the migration file format (stream-format.ts) to a Node Writable with
// backpressure: every call resolves only when the Writable has taken the
// bytes (its write callback ran), so a client never has more than one chunk
// in flight. Buffers handed over belong to the Writable from then on (a
// PassThrough, for one, passes the same memory on) unless it is known to be
// done with them when it calls back (`releasesBuffersOnCallback`).
import { WriteStream } from 'node:fs';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { MigrationError, asMigrationError } from '../../src/uapi/errors.js';
import {
  encodeDataHeader,
  encodeMarker,
  encodeStreamEnd,
  encodeStreamStart,
  MIG_STREAM_DATA_HEADER_BYTES,
  VfioMigFlag,
} from './stream-format.js';

export class MigStreamWriter {
  private failure: MigrationError | null = null;
  private written = 0;
  private readonly onError = (err: unknown): void => {
    this.failure ??= asMigrationError(err);
  };

  constructor(private readonly out: Writable) {
    out.on('error', this.onError);
  }

  /**
   * True for the core Writables that are done with a buffer when they call
   * back: net.Socket (pipes, TTYs, process.stdout; libuv has written it) and
   * fs.WriteStream (fs.write has returned). A client may then reuse its buffer.
   */
  get releasesBuffersOnCallback(): boolean {
    return this.out instanceof Socket || this.out instanceof WriteStream;
  }

  /** File bytes written so far (markers included). */
  get bytesWritten(): number {
    return this.written;
  }

  /** MAGIC + setup section (vfio_save_setup). */
  start(): Promise<void> {
    return this.put(encodeStreamStart());
  }

  /** Close a section (vfio_save_iterate / vfio_save_complete_precopy). */
  endOfState(): Promise<void> {
    return this.put(encodeMarker(VfioMigFlag.END_OF_STATE));
  }

  /**
   * One DEV_DATA_STATE record whose header goes into the first 16 bytes of
   * `record`, device bytes in record[16, 16 + n): one write, no copy.
   */
  dataRecord(record: Uint8Array, n: number): Promise<void> {
    encodeDataHeader(n, record.subarray(0, MIG_STREAM_DATA_HEADER_BYTES));
    return this.put(record.subarray(0, MIG_STREAM_DATA_HEADER_BYTES + n));
  }

  /** One DEV_DATA_STATE record for `bytes` (header and bytes as two writes). */
  async data(bytes: Uint8Array): Promise<void> {
    await this.put(encodeDataHeader(bytes.length));
    if (bytes.length > 0) await this.put(bytes);
  }

  /** The final section: the file is complete (the Writable is not ended). */
  finish(): Promise<void> {
    return this.put(encodeStreamEnd());
  }

  /** Stop listening for the Writable's errors. */
  release(): void {
    this.out.off('error', this.onError);
  }

  private put(bytes: Uint8Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.out.destroyed || this.out.writableEnded) return Promise.reject(new MigrationError('EPIPE', 'output stream is closed'));
    return new Promise((resolve, reject) => {
      this.out.write(bytes, (err) => {
        if (err) {
          this.failure ??= asMigrationError(err);
          reject(this.failure);
        } else {
          this.written += bytes.length;
          resolve();
        }
      });
    });
  }
}
