// The saving data_fd of V2DeviceOverLegacy, shared by PRE_COPY and
// STOP_COPY: read() pumps the v1 save loop (pending_bytes, data_offset,
// data_size, then the window) into the caller's buffer.
import { readDeviceState, readU64Field } from '../legacy/v1-registers.js';
import { V1_MASK, v1StateName } from '../legacy/v1-state.js';
import { isErrno, MigrationError } from '../src/uapi/errors.js';
import type { PrecopyInfo } from '../src/v2/contracts.js';
import { MigState, stateName } from '../src/v2/states.js';
import { retryTransient } from './retry.js';
import { v2ToV1State } from './state-map.js';
import { SessionOverLegacy } from './v2-session-over-legacy.js';

export class SavingSessionOverLegacy extends SessionOverLegacy {
  protected readonly direction = 'read';
  /** Region offset of the next unread byte of the open v1 chunk, and how many are left. */
  private chunkAt = 0;
  chunkLeft = 0;
  private endOfStream = false;
  /** pending_bytes at the start of the current iteration, minus what read() took since. */
  private pendingLeft = 0n;

  /** D42: one read() fills `buf` across as many v1 chunks as it takes. */
  read(buf: Uint8Array): Promise<number> {
    return this.owner.run(async () => {
      this.check('read');
      let n = 0;
      try {
        while (n < buf.length) {
          if (this.chunkLeft === 0) {
            if (this.endOfStream) break;
            if (!(await this.nextChunk())) {
              if (this.endOfStream || n > 0) break;
              throw new MigrationError('ENOMSG', 'no pre-copy data right now');
            }
          }
          const k = Math.min(this.chunkLeft, buf.length - n);
          await retryTransient(() => this.owner.region.readAt(this.chunkAt, buf.subarray(n, n + k)));
          this.chunkAt += k;
          this.chunkLeft -= k;
          this.pendingLeft = this.pendingLeft > BigInt(k) ? this.pendingLeft - BigInt(k) : 0n;
          n += k;
        }
      } catch (err) {
        if (isErrno(err, 'ENOMSG') && n === 0) throw err;
        return this.fail(err, n);
      }
      return n;
    });
  }

  /**
   * One v1 iteration (docs/PROTOCOL.md §1.5): pending_bytes (releases the
   * previous chunk), data_offset (the trigger), data_size. False when there
   * is no chunk: pre-copy has nothing now (ENOMSG for the caller), or
   * stop-copy reached its end (pending_bytes 0), checked against device_state.
   */
  private async nextChunk(): Promise<boolean> {
    const region = this.owner.region;
    const pending = await retryTransient(() => readU64Field(region, 'pending_bytes'));
    this.pendingLeft = pending;
    const stopCopy = this.owner.state() === MigState.STOP_COPY;
    if (pending === 0n) {
      if (stopCopy) await this.confirmEnd();
      return false;
    }
    const off = await this.owner.readDataOffset();
    const size = await retryTransient(() => readU64Field(region, 'data_size'));
    if (size > BigInt(region.size - off)) {
      throw new MigrationError('EIO', `v1 chunk [${off}, +${size}) runs past the ${region.size}-byte region`); // D43
    }
    if (size === 0n) {
      // D44: an empty chunk ends stop-and-copy (QEMU 7.2 breaks out there); in pre-copy, nothing now.
      if (stopCopy) await this.confirmEnd();
      return false;
    }
    this.chunkAt = off;
    this.chunkLeft = Number(size);
    return true;
  }

  /** D45: the end of the stream is believed only while the v1 driver still says 010. */
  private async confirmEnd(): Promise<void> {
    const raw = await retryTransient(() => readDeviceState(this.owner.region));
    if ((raw & V1_MASK) !== v2ToV1State(MigState.STOP_COPY)) {
      throw new MigrationError('EIO', `v1 stream ended with device_state ${v1StateName(raw)}, not stop-and-copy`);
    }
    this.endOfStream = true;
  }

  /** Remaining bytes: the iteration's pending_bytes when mid-chunk (a re-read would release the chunk). */
  async estimate(): Promise<bigint> {
    if (this.endOfStream) return 0n; // no chunk opens after the end
    if (this.chunkLeft > 0) {
      const left = BigInt(this.chunkLeft);
      return this.pendingLeft > left ? this.pendingLeft : left;
    }
    const pending = await retryTransient(() => readU64Field(this.owner.region, 'pending_bytes'));
    this.pendingLeft = pending;
    return pending;
  }

  /** D46: v1 has one number: all of it is initial_bytes, dirty_bytes is 0. */
  precopyInfo(): Promise<PrecopyInfo> {
    return this.owner.run(async () => {
      // D48, in mtty_precopy_ioctl's order: the fd, the state, then the file.
      if (this.closedFd) throw new MigrationError('EBADF', 'data session is closed');
      // PRE_COPY_P2P is never reached: the device advertises no P2P (D33).
      const s = this.owner.state();
      if (s !== MigState.PRE_COPY) {
        throw new MigrationError('EINVAL', `PRECOPY_INFO is only valid in PRE_COPY (device is in ${stateName(s)})`);
      }
      if (this.ended) throw new MigrationError('ENODEV', `data session ended: ${this.ended}`);
      return { initialBytes: await this.estimate(), dirtyBytes: 0n };
    });
  }

  write(): Promise<number> {
    return this.owner.run(() => {
      this.check('write');
      return 0; // not reached: check() throws EBADF for a write on the saving session
    });
  }
}
