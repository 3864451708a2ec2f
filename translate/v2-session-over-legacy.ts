// The data sessions of V2DeviceOverLegacy: a v2 data_fd whose bytes come
// from, or go to, a v1 region's save/resume loop. This file holds what both
// directions share — what a session needs from its device, and the checks
// and error rules of a kernel data_fd; saving-session-over-legacy.ts and
// resuming-session-over-legacy.ts hold the loops.
import type { LegacyRegion } from '../legacy/contracts.js';
import { asMigrationError, MigrationError } from '../src/uapi/errors.js';
import type { DataSession, PrecopyInfo } from '../src/v2/contracts.js';
import type { MigState } from '../src/v2/states.js';

/** What a data session needs from its device (kept off the public class). */
export interface SessionHost {
  readonly region: LegacyRegion;
  state(): MigState;
  /** Run on the device's serial queue. */
  run<T>(task: () => T | Promise<T>): Promise<T>;
  /** data_offset, checked (D43); only outside a saving iteration or as the save trigger. */
  readDataOffset(): Promise<number>;
  /** After a data-path error: adopt what device_state says (110b -> ERROR, sessions end). */
  noticeError(): Promise<void>;
}

/**
 * D47: an error that happens after a read()/write() already moved some bytes
 * is deferred: the call returns the short count (those bytes are really gone
 * from / into the v1 side) and the next call throws the errno.
 */
export abstract class SessionOverLegacy implements DataSession {
  protected ended: string | null = null;
  protected closedFd = false;
  protected deferred: MigrationError | null = null;

  constructor(protected readonly owner: SessionHost) {}

  /** The device left this session's states (or was reset): later calls fail with ENODEV, like mtty. */
  end(why: string): void {
    this.ended ??= why;
  }

  /**
   * D48: the checks of a kernel migration file, in SimV2Session's order: a
   * closed fd (EBADF), the wrong direction (EBADF: the saving fd is O_RDONLY,
   * the resuming one O_WRONLY), a file the driver ended (ENODEV), then an
   * error deferred from the previous call (D47).
   */
  protected check(op: 'read' | 'write'): void {
    if (this.closedFd) throw new MigrationError('EBADF', 'data session is closed');
    if (op !== this.direction)
      throw new MigrationError('EBADF', `${op} on the ${this.direction === 'read' ? 'saving' : 'resuming'} data session`);
    if (this.ended) throw new MigrationError('ENODEV', `data session ended: ${this.ended}`);
    const d = this.deferred;
    if (d) {
      this.deferred = null;
      throw d;
    }
  }

  protected abstract readonly direction: 'read' | 'write';

  /** An error after `moved` bytes: thrown now when nothing moved, else deferred (D47). */
  protected async fail(err: unknown, moved: number): Promise<number> {
    const e = asMigrationError(err);
    await this.owner.noticeError();
    if (moved > 0) {
      this.deferred = e;
      return moved;
    }
    throw e;
  }

  abstract read(buf: Uint8Array): Promise<number>;
  abstract write(buf: Uint8Array): Promise<number>;
  abstract precopyInfo(): Promise<PrecopyInfo>;

  /** The user's close of the data_fd; a second close is EBADF (D48). */
  close(): Promise<void> {
    return this.owner.run(() => {
      if (this.closedFd) throw new MigrationError('EBADF', 'data session already closed');
      this.closedFd = true;
    });
  }
}
