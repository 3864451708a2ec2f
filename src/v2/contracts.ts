// What the kernel's v2 uAPI offers, as async interfaces. Implemented by the
// simulated driver, the kernel backend and the v2-over-v1 translator.
import type { MigState } from './states.js';

export interface PrecopyInfo {
  initialBytes: bigint;
  dirtyBytes: bigint;
}

/** A data_fd: a saving stream (read) or a resuming stream (write). */
export interface DataSession {
  /** Bytes read into `buf`; 0 = end of stream. ENOMSG = no pre-copy data right now. */
  read(buf: Uint8Array): Promise<number>;
  /** Bytes consumed from `buf` (may be short). */
  write(buf: Uint8Array): Promise<number>;
  /** VFIO_MIG_GET_PRECOPY_INFO: only in PRE_COPY(_P2P), else EINVAL. */
  precopyInfo(): Promise<PrecopyInfo>;
  close(): Promise<void>;
  /** Set when a kernel fd backs the session. */
  readonly fd?: number;
}

export interface MigrationDevice {
  /** VFIO_DEVICE_FEATURE_MIGRATION GET. */
  migrationFlags(): Promise<number>;
  /** VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE GET. */
  getState(): Promise<MigState>;
  /** MIG_DEVICE_STATE SET; a session only when the arc opens one (data_fd >= 0). */
  setState(target: MigState): Promise<DataSession | null>;
  /** VFIO_DEVICE_FEATURE_MIG_DATA_SIZE GET. */
  stopCopySize(): Promise<bigint>;
  /** VFIO_DEVICE_RESET: back to RUNNING, every session ends. */
  reset(): Promise<void>;
  close(): Promise<void>;
}
