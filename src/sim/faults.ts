// Fault plans for the simulated drivers: each fault fires once, then the
// driver behaves normally again (a reset clears nothing here: plans are
// about the *next* operations, tests arm a fresh plan per scenario).
import type { ErrnoName } from '../uapi/errors.js';

export interface ArcFault {
  /** Arc endpoints in the driver's own numbering: v2 MigState for SimV2Driver, v1 bits for SimV1Region. */
  from: number;
  to: number;
  errno?: ErrnoName; // default EIO
  /** After failing, the device is in ERROR (v2) / 110b (v1); otherwise it stays where it was. */
  toError?: boolean;
}

export interface IoFault {
  op: 'read' | 'write';
  /** 1-based: the Nth data-path call of that kind since the plan was armed. */
  nth: number;
  errno: ErrnoName;
}

export interface FaultPlan {
  failArc?: ArcFault;
  failIo?: IoFault;
  /** Saving stream ends after this many bytes (stop-copy then reports end of stream). */
  truncateStreamAt?: number;
  /** Flip one bit of the saving stream at this byte offset. */
  corruptStreamAt?: number;
}
