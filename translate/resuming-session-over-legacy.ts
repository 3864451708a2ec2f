// The resuming data_fd of V2DeviceOverLegacy: write() bytes fill v1
// windows, each handed over with a data_size write when full (D49).
import { writeU64Field } from '../legacy/v1-registers.js';
import { MigrationError } from '../src/uapi/errors.js';
import type { PrecopyInfo } from '../src/v2/contracts.js';
import { retryTransient } from './retry.js';
import { SessionOverLegacy } from './v2-session-over-legacy.js';

export class ResumingSessionOverLegacy extends SessionOverLegacy {
  protected readonly direction = 'write';
  /** Region offset of the current window (from data_offset), its capacity, and the bytes in it. */
  private windowAt: number | null = null;
  private capacity = 0;
  fill = 0;

  write(buf: Uint8Array): Promise<number> {
    return this.owner.run(async () => {
      this.check('write');
      let done = 0;
      while (done < buf.length) {
        if (this.windowAt === null) {
          try {
            await this.openWindow();
          } catch (err) {
            return this.fail(err, done);
          }
        }
        const k = Math.min(this.capacity - this.fill, buf.length - done);
        try {
          await retryTransient(() => this.owner.region.writeAt((this.windowAt as number) + this.fill, buf.subarray(done, done + k)));
        } catch (err) {
          return this.fail(err, done);
        }
        this.fill += k;
        if (this.fill === this.capacity) {
          try {
            await this.flush();
          } catch (err) {
            // The bytes of this call in the failed window were not taken: un-count them.
            this.fill -= k;
            return this.fail(err, done);
          }
        }
        done += k;
      }
      return done;
    });
  }

  /** v1 resume step a: where this iteration's window is, read again for every window (D49). */
  private async openWindow(): Promise<void> {
    const off = await this.owner.readDataOffset();
    this.windowAt = off;
    this.capacity = this.owner.region.size - off;
    this.fill = 0;
  }

  /** v1 resume step c: hand the window's bytes over (data_size write). Runs inside the queue. */
  async flush(): Promise<void> {
    if (this.ended || this.fill === 0) return;
    const n = this.fill;
    await retryTransient(() => writeU64Field(this.owner.region, 'data_size', BigInt(n)));
    this.fill = 0;
    this.windowAt = null;
  }

  read(): Promise<number> {
    return this.owner.run(() => {
      this.check('read');
      return 0; // not reached: check() throws EBADF for a read on the resuming session
    });
  }

  /** D48: the resuming data_fd has no ioctls (ENOTTY), as in mtty. */
  precopyInfo(): Promise<PrecopyInfo> {
    return this.owner.run(() => {
      if (this.closedFd) throw new MigrationError('EBADF', 'data session is closed');
      throw new MigrationError('ENOTTY', 'the resuming data session has no PRECOPY_INFO');
    });
  }

  /** D50: close() does not flush: the batched bytes wait for the arc that leaves RESUMING. */
  override close(): Promise<void> {
    return super.close();
  }
}
