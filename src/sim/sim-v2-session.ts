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
import { FaultySaver } from './faulty-saver.js';
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

export class SimV2Session implements DataSession {
  readonly fd = undefined;
  private userClosed = false;
  private disabledBecause: string | null = null;
  /** The saving stream as the user reads it: through the stream faults (truncate, corrupt). */
  private readonly faulty: FaultySaver | null;

  constructor(
    private readonly host: SessionHost,
    private readonly stream: Stream,
    streamFaults: StreamFaults = {},
  ) {
    this.faulty = stream.kind === 'saving' ? new FaultySaver(stream.saver, streamFaults) : null;
  }

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
    this.faulty?.bind(faults);
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
      const saver = this.savingStream();
      this.host.faults.countIo('read');
      if (buf.length === 0) return 0;
      const n = saver.read(buf);
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
      return this.savingStream().precopyInfo();
    });
  }

  /** Bytes still to come from this stream (MIG_DATA_SIZE while it is open). */
  remainingBytes(): bigint {
    return this.savingStream().remainingBytes();
  }

  close(): Promise<void> {
    return this.host.serialize(() => {
      if (this.userClosed) throw new MigrationError('EBADF', 'data_fd already closed');
      this.userClosed = true;
      this.host.handleClosed(this);
    });
  }

  private savingStream(): FaultySaver {
    if (!this.faulty) throw new MigrationError('EINVAL', 'not a saving session');
    return this.faulty;
  }

  private checkFd(op: 'read' | 'write'): void {
    if (this.userClosed) throw new MigrationError('EBADF', 'data_fd is closed');
    const wrongMode = op === 'read' ? this.stream.kind !== 'saving' : this.stream.kind !== 'resuming';
    if (wrongMode)
      throw new MigrationError(
        'EBADF',
        `${op} on the ${this.stream.kind} data_fd (opened ${this.stream.kind === 'saving' ? 'O_RDONLY' : 'O_WRONLY'})`,
      );
    if (this.disabledBecause) throw new MigrationError('ENODEV', `session ended: ${this.disabledBecause}`);
  }
}
