// How a driver (v2 SimV2Driver or v1 SimV1Region) moves a SimDevice's state.
// Both drivers emit and accept the same opaque byte stream, so a state saved
// over one protocol resumes over the other.
import type { PrecopyInfo } from '../v2/contracts.js';

/** The saving side of one migration session. */
export interface StateSaver {
  /**
   * Copy the next stream bytes into `buf`; returns the count.
   * Pre-copy phase: 0 means "nothing right now" (the driver maps it to ENOMSG).
   * Stop-copy phase: 0 means end of stream (the trailer has been read).
   */
  read(buf: Uint8Array): number;
  /** Pre-copy estimates: bytes of the first full pass not yet read, and of pages dirtied since. */
  precopyInfo(): PrecopyInfo;
  /** Device stopped: from now on the stream is the remaining dirty pages plus the trailer. */
  enterStopCopy(): void;
  /** Bytes still to come if stop-copy started now (MIG_DATA_SIZE). */
  remainingBytes(): bigint;
  readonly phase: 'precopy' | 'stopcopy';
}

/** The resuming side: any segmentation; `finish` validates and applies. */
export interface StateLoader {
  /** Consume `buf`; EINVAL on a stream that is already known to be bad, ENOSPC past the end. */
  write(buf: Uint8Array): number;
  /** Validate header, length and checksum, then apply to the device; EINVAL if incomplete or corrupt. */
  finish(): void;
  readonly bytesWritten: bigint;
}
