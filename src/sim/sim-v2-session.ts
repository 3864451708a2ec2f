// One data_fd of SimV2Driver: a saving stream (read-only) or a resuming
// stream (write-only), with the error behaviour of a kernel migration file:
//  - closed by the user: every call is EBADF (the fd is gone);
//  - read on the resuming fd / write on the saving fd: EBADF, as vfs_read and
//    vfs_write return for a file opened without that mode;
//  - disabled by the driver (it left the data state, reset, closed): ENODEV,
//    as mtty_save_read / mtty_resume_write / mtty_precopy_ioctl return;
//  - PRE_COPY with nothing pending: ENOMSG (uAPI); STOP_COPY end of stream: 0.
import { MigrationError } from '../uapi/errors.js';
import type { DataSession, PrecopyInfo } from '../v2/contracts.js';
import { MigState } from '../v2/states.js';
import type { FaultInjector, StreamFaults } from './fault-injector.js';
import type { SimStateLoader } from './state-loader.js';
import type { SimStateSaver } from './state-saver.js';

/** What a session needs from its driver. */
export interface SessionHost {
  /** Run on the driver's serial queue (the kernel's state mutex). */
  serialize<T>(task: () => T): Promise<T>;
  currentState(): MigState;
  readonly faults: FaultInjector;
  /** Largest write accepted in one call (models short writes). */
  readonly writeLimit: number;
  handleClosed(session: SimV2Session): void;
}

type Stream = { kind: 'saving'; saver: SimStateSaver } | { kind: 'resuming'; loader: SimStateLoader };

const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);

export class SimV2Session implements DataSession {
  readonly fd = undefined;
  private userClosed = false;
  private disabledBecause: string | null = null;
  /** Stream bytes handed out so far (saving) — where the stream faults apply. */
  private position = 0;

  constructor(
    private readonly host: SessionHost,
    private readonly stream: Stream,
    private readonly streamFaults: StreamFaults = {},
  ) {}

  get kind(): 'saving' | 'resuming' {
    return this.stream.kind;
  }

  /** The driver still holds this migration file (it has not reached error). */
  get live(): boolean {
    return this.disabledBecause === null;
  }

  /** The user has not closed this data_fd. */
  get open(): boolean {
    return !this.userClosed;
  }

  /** Driver side: the file reaches error (mtty_disable_file). Later calls fail with ENODEV. */
  disable(reason: string): void {
    if (this.disabledBecause) return;
    this.disabledBecause = reason;
    if (this.stream.kind === 'saving') this.stream.saver.close(reason);
  }

  /** Fault plan armed while this saving session is open: its stream faults apply here. */
  bindStreamFaults(faults: StreamFaults): void {
    if (faults.truncateStreamAt !== undefined) this.streamFaults.truncateStreamAt = faults.truncateStreamAt;
    if (faults.corruptStreamAt !== undefined) this.streamFaults.corruptStreamAt = faults.corruptStreamAt;
  }

  /** The saving stream, for the driver's PRE_COPY -> STOP_COPY arc. */
  get saver(): SimStateSaver {
    if (this.stream.kind !== 'saving') throw new MigrationError('EINVAL', 'not a saving session');
    return this.stream.saver;
  }

  /** The resuming stream, for the driver's RESUMING -> STOP arc. */
  get loader(): SimStateLoader {
    if (this.stream.kind !== 'resuming') throw new MigrationError('EINVAL', 'not a resuming session');
    return this.stream.loader;
  }

  read(buf: Uint8Array): Promise<number> {
    return this.host.serialize(() => {
      this.checkFd('read');
      const saver = this.saver;
      this.host.faults.countIo('read');
      if (buf.length === 0) return 0;
      const cut = this.streamFaults.truncateStreamAt;
      const room = cut === undefined ? buf.length : Math.min(buf.length, Math.max(0, cut - this.position));
      const n = room > 0 ? saver.read(buf.subarray(0, room)) : 0;
      const flip = this.streamFaults.corruptStreamAt;
      if (flip !== undefined && flip >= this.position && flip < this.position + n) {
        buf[flip - this.position] ^= 0x01;
        delete this.streamFaults.corruptStreamAt;
      }
      this.position += n;
      if (n === 0 && saver.phase === 'precopy') throw new MigrationError('ENOMSG', 'no pre-copy data pending');
      return n;
    });
  }

  write(buf: Uint8Array): Promise<number> {
    return this.host.serialize(() => {
      this.checkFd('write');
      const loader = this.loader;
      this.host.faults.countIo('write');
      if (buf.length === 0) return 0;
      return loader.write(buf.length > this.host.writeLimit ? buf.subarray(0, this.host.writeLimit) : buf);
    });
  }

  /** VFIO_MIG_GET_PRECOPY_INFO, as mtty_precopy_ioctl checks it: state first, then the file. */
  precopyInfo(): Promise<PrecopyInfo> {
    return this.host.serialize(() => {
      if (this.userClosed) throw new MigrationError('EBADF', 'data_fd is closed');
      if (this.stream.kind !== 'saving') throw new MigrationError('ENOTTY', 'the resuming data_fd has no ioctls');
      const state = this.host.currentState();
      if (state !== MigState.PRE_COPY && state !== MigState.PRE_COPY_P2P) {
        throw new MigrationError('EINVAL', `PRECOPY_INFO in ${MigState[state]}`);
      }
      if (this.disabledBecause) throw new MigrationError('ENODEV', `session ended: ${this.disabledBecause}`);
      const info = this.stream.saver.precopyInfo();
      const cut = this.streamFaults.truncateStreamAt;
      if (cut === undefined) return info;
      const left = BigInt(Math.max(0, cut - this.position));
      const initialBytes = min(info.initialBytes, left);
      return { initialBytes, dirtyBytes: min(info.dirtyBytes, left - initialBytes) };
    });
  }

  /** Bytes still to come from this stream (MIG_DATA_SIZE while it is open). */
  remainingBytes(): bigint {
    const r = this.saver.remainingBytes();
    const cut = this.streamFaults.truncateStreamAt;
    return cut === undefined ? r : min(r, BigInt(Math.max(0, cut - this.position)));
  }

  close(): Promise<void> {
    return this.host.serialize(() => {
      if (this.userClosed) throw new MigrationError('EBADF', 'data_fd already closed');
      this.userClosed = true;
      this.host.handleClosed(this);
    });
  }

  private checkFd(op: 'read' | 'write'): void {
    if (this.userClosed) throw new MigrationError('EBADF', 'data_fd is closed');
    const wrongMode = op === 'read' ? this.stream.kind !== 'saving' : this.stream.kind !== 'resuming';
    if (wrongMode) throw new MigrationError('EBADF', `${op} on the ${this.stream.kind} data_fd (opened ${this.stream.kind === 'saving' ? 'O_RDONLY' : 'O_WRONLY'})`);
    if (this.disabledBecause) throw new MigrationError('ENODEV', `session ended: ${this.disabledBecause}`);
  }
}
