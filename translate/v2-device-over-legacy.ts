// V2DeviceOverLegacy: a v2 MigrationDevice (what QEMU 8+ drives) on top of
// a v1 migration region (an out-of-tree v1 vendor driver, libvfio-user's v1
// server). Semantics: DESIGN.md "Semantics of the two translators"; hazards:
// SPEC.md §6. Every decision DESIGN.md leaves open is marked "Decision:".
//
// Each single v2 arc is one v1 device_state write (read-modify-write, so the
// reserved bits 3..31 are kept); combination targets are walked arc by arc
// with nextState(), exactly as the kernel core has a driver do. The saving
// session pumps the v1 save loop (pending_bytes, data_offset, data_size,
// window) into read(); the resuming session batches write() bytes into full
// windows. Every call, sessions' included, runs on one SerialQueue.
// The device rule (src/v2/takeover.ts) holds on this face as on a kernel v2
// device: the first call takes the region over (a left-over 100, 010, 011 or
// 110b is reset, never written), a SET out of a RESUMING this face did not
// enter is refused, and close() resets a region it leaves in 100.
import type { LegacyRegion } from '../legacy/contracts.js';
import { HEADER_SIZE } from '../legacy/region-layout.js';
import { readDeviceState, readU64Field, writeDeviceState, writeU64Field } from '../legacy/v1-registers.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, v1StateName } from '../legacy/v1-state.js';
import { asMigrationError, MigrationError } from '../src/uapi/errors.js';
import type { DataSession, MigrationDevice, PrecopyInfo } from '../src/v2/contracts.js';
import { transitionPath } from '../src/v2/fsm.js';
import { v1TransitionAllowed } from '../legacy/v1-transitions.js';
import { SerialQueue } from '../src/v2/serial.js';
import { isSavingState, MigFlags, MigState, stateName } from '../src/v2/states.js';
import { refuseForeignResume, takeOver, type Takeover } from '../src/v2/takeover.js';
import { retryTransient } from './retry.js';
import { v1ToV2State, v2ToV1State } from './state-map.js';

export interface V2DeviceOverLegacyOptions {
  /**
   * Advertise PRE_COPY (default true). v1 drivers must accept pre-copy (011)
   * even when they have nothing to send early, so it is always available;
   * false presents a STOP_COPY-only device that never writes 011 (DESIGN.md's
   * "precopy emulation on/off" policy, for v1 drivers whose pre-copy is poor).
   */
  precopy?: boolean;
}

/** What a test may look at without going through the face. */
export interface V2DeviceOverLegacySnapshot {
  state: MigState;
  session: 'saving' | 'resuming' | null;
  /** Save: bytes of the open v1 chunk not yet handed to read(). Resume: bytes batched, not yet flushed. */
  bufferedBytes: number;
  closed: boolean;
  /** What the first call found and did (the device rule). */
  takeover?: Takeover;
}

/** What a data session needs from its device (kept off the public class). */
interface SessionHost {
  readonly region: LegacyRegion;
  state(): MigState;
  /** Run on the device's serial queue. */
  run<T>(task: () => Promise<T>): Promise<T>;
  /** data_offset, checked; only outside a saving iteration or as the save trigger. */
  readDataOffset(): Promise<number>;
  /** After a data-path error: adopt what device_state says (110b -> ERROR, sessions end). */
  noticeError(): Promise<void>;
}

export class V2DeviceOverLegacy implements MigrationDevice {
  private readonly queue = new SerialQueue();
  private readonly host: SessionHost;
  private readonly flags: number;
  private state: MigState = MigState.RUNNING;
  private closed = false;
  /** The region was taken over by the device rule (first call, or a reset). */
  private taken = false;
  private takeoverReport: Takeover | undefined;
  /** This face's own arc entered the RESUMING the region is in. */
  private resumeEntered = false;
  private saving: SavingSession | null = null;
  private resuming: ResumingSession | null = null;
  /** The last data_offset seen, to size the window outside a saving iteration. */
  private lastDataOffset: number | null = null;

  constructor(private readonly region: LegacyRegion, options: V2DeviceOverLegacyOptions = {}) {
    this.flags = MigFlags.STOP_COPY | (options.precopy === false ? 0 : MigFlags.PRE_COPY);
    this.host = {
      region,
      state: () => this.state,
      run: (task) => this.queue.run(task),
      readDataOffset: () => this.readDataOffset(),
      noticeError: () => this.noticeError(),
    };
  }

  inspect(): V2DeviceOverLegacySnapshot {
    return {
      state: this.state,
      session: this.saving ? 'saving' : this.resuming ? 'resuming' : null,
      bufferedBytes: this.saving ? this.saving.chunkLeft : this.resuming ? this.resuming.fill : 0,
      closed: this.closed,
      ...(this.takeoverReport ? { takeover: this.takeoverReport } : {}),
    };
  }

  migrationFlags(): Promise<number> {
    return this.queue.run(async () => {
      await this.ready();
      return this.flags;
    });
  }

  /** MIG_DEVICE_STATE GET: device_state read from the region, mapped (110b -> ERROR). */
  getState(): Promise<MigState> {
    return this.queue.run(async () => {
      await this.ready();
      return this.refreshState();
    });
  }

  /**
   * MIG_DEVICE_STATE SET. Each arc of the kernel's path (nextState: EINVAL
   * for ERROR, P2P states and unsupported targets before anything is done)
   * is one v1 write. Only the last arc can open a session, which is
   * returned. On a failed arc the region's device_state is read back: the
   * device is where the v1 driver says (the original state, an intermediate
   * one, or ERROR for 110b).
   * Decision: the current state is read from device_state at every SET (and
   * GET), not cached: it is the read half of the read-modify-write that keeps
   * the reserved bits, and a v1 driver may have gone to 110b on its own after
   * a data-path error. A SET out of a RESUMING this face did not enter is
   * refused (EBUSY) with nothing written: leaving 100 makes a v1 driver apply
   * resume data this face never wrote.
   */
  setState(target: MigState): Promise<DataSession | null> {
    return this.queue.run(async () => {
      await this.ready();
      const raw = await retryTransient(() => readDeviceState(this.region));
      let cur = this.adopt(raw);
      const reserved = (raw & ~V1_MASK) >>> 0;
      let opened: DataSession | null = null;
      // As mtty_set_state's loop: a SET to the current state does nothing; otherwise
      // the kernel's path is computed first (EINVAL for a bad target, nothing done).
      if (cur === target) return null;
      refuseForeignResume('the v1 device', cur, target, this.resumeEntered);
      const path = transitionPath(cur, target, this.flags);
      for (let i = 0; i < path.length; i++) {
        i = directV1Step(cur, path, i);
        opened = await this.arc(cur, path[i], reserved);
        cur = path[i];
      }
      return opened;
    });
  }

  /**
   * MIG_DATA_SIZE GET, from pending_bytes (SPEC §6.15): in STOP_COPY the
   * read-ahead backed pending_bytes (0 after the end of stream).
   * Decision: elsewhere v1's pending_bytes is undefined (0 outside saving,
   * pre-copy bytes only in pre-copy), and 0 would make QEMU 8 size its
   * buffer to nothing (g_try_malloc0(0) fails): the answer is at least the
   * window size — the most one v1 iteration can carry.
   */
  stopCopySize(): Promise<bigint> {
    return this.queue.run(async () => {
      await this.ready();
      if (this.saving && this.state === MigState.STOP_COPY) return this.saving.estimate();
      const window = BigInt(await this.windowBytes());
      if (this.saving && isSavingState(this.state)) {
        // Pre-copy pending_bytes counts what can go early, not what stop-copy will
        // still need; the window is the floor so the answer is never 0 here.
        const pending = await this.saving.estimate();
        return pending > window ? pending : window;
      }
      return window;
    });
  }

  /**
   * VFIO_DEVICE_RESET on the region: every session ends; device_state must
   * read 001 after it. Decision: a v1 driver that reads anything else after a
   * reset fails the reset with EIO (the v2 uAPI promises RUNNING after reset).
   */
  reset(): Promise<void> {
    return this.queue.run(async () => {
      this.checkOpen();
      await this.resetRegion();
      this.taken = true; // a reset is what taking over would do
    });
  }

  /**
   * Decision: the device owns its region; close() ends the sessions and closes
   * the region. A region this face leaves in 100 is reset first (the device
   * rule); the region is closed even if that fails, whose error is then
   * thrown. A second close is EBADF, as for SimV2Driver (a closed fd).
   */
  close(): Promise<void> {
    return this.queue.run(async () => {
      this.checkOpen();
      this.closed = true;
      this.endSessions('device closed');
      let resetErr: unknown;
      if (this.taken) {
        try {
          const raw = await retryTransient(() => readDeviceState(this.region));
          if ((raw & V1_MASK) === V1_RESUMING) await retryTransient(() => this.region.reset());
        } catch (e) {
          resetErr = e;
        }
      }
      await this.region.close();
      if (resetErr) throw asMigrationError(resetErr);
    });
  }

  // ---- internals (run inside the queue) ----------------------------------

  /** The first call takes the region over by the device rule (src/v2/takeover.ts). */
  private async ready(): Promise<void> {
    this.checkOpen();
    if (this.taken) return;
    this.takeoverReport = await takeOver('the v1 device', { getState: () => this.refreshState(), reset: () => this.resetRegion() });
    this.taken = true;
  }

  /** VFIO_DEVICE_RESET on the region; every session ends first; 001 must read back. */
  private async resetRegion(): Promise<void> {
    this.endSessions('device reset');
    this.resumeEntered = false;
    await retryTransient(() => this.region.reset());
    const raw = await retryTransient(() => readDeviceState(this.region));
    if ((raw & V1_MASK) !== V1_RUNNING) {
      this.adopt(raw);
      throw new MigrationError('EIO', `v1 device_state reads ${v1StateName(raw)} after reset, expected 001`);
    }
    this.state = MigState.RUNNING;
  }

  /** Map a raw v1 device_state to v2 and remember it. Sessions end if the state left their group. */
  private adopt(raw: number): MigState {
    let s: MigState;
    try {
      s = v1ToV2State(raw);
    } catch {
      // Decision: 101b/111b can only come from a broken v1 driver; the device is
      // in no state the v2 FSM knows, which v2 calls ERROR (only reset leaves).
      s = MigState.ERROR;
    }
    this.state = s;
    if (s !== MigState.RESUMING) this.resumeEntered = false;
    if (this.saving && !isSavingState(s)) this.endSaving('device left the saving states');
    if (this.resuming && s !== MigState.RESUMING) this.endResuming('device left RESUMING');
    return s;
  }

  private async refreshState(): Promise<MigState> {
    return this.adopt(await retryTransient(() => readDeviceState(this.region)));
  }

  /** One single arc cur -> next as one v1 write; returns the session it opens, if any. */
  private async arc(cur: MigState, next: MigState, reserved: number): Promise<DataSession | null> {
    if (cur === MigState.RESUMING && this.resuming) {
      // Bytes batched but not yet handed over go in before validation; if the
      // v1 driver rejects them the SET fails here, still in RESUMING.
      await this.resuming.flush();
    }
    try {
      await retryTransient(() => writeDeviceState(this.region, reserved | v2ToV1State(next)));
    } catch (err) {
      const e = asMigrationError(err);
      try {
        await this.refreshState();
      } catch {
        /* keep what we knew: the write's errno is what matters */
      }
      throw e;
    }
    this.state = next;
    if (next !== MigState.RESUMING) this.resumeEntered = false;
    if (isSavingState(cur) && !isSavingState(next)) this.endSaving(`${stateName(cur)} -> ${stateName(next)}`);
    if (cur === MigState.RESUMING) this.endResuming(`${stateName(cur)} -> ${stateName(next)}`);
    if (isSavingState(next) && !isSavingState(cur)) {
      this.saving = new SavingSession(this.host);
      return this.saving;
    }
    if (next === MigState.RESUMING) {
      this.resumeEntered = true;
      this.resuming = new ResumingSession(this.host);
      return this.resuming;
    }
    return null;
  }

  private endSaving(why: string): void {
    this.saving?.end(why);
    this.saving = null;
  }

  private endResuming(why: string): void {
    this.resuming?.end(why);
    this.resuming = null;
  }

  private endSessions(why: string): void {
    this.endSaving(why);
    this.endResuming(why);
  }

  /** After a data-path error: if the v1 driver went to 110b, the face is in ERROR and sessions end. */
  private async noticeError(): Promise<void> {
    try {
      await this.refreshState();
    } catch {
      /* the original error is what the caller reports */
    }
  }

  /**
   * Bytes in the data window. Outside the saving states data_offset is read
   * (it has no side effect there); inside, reading it would trigger a chunk,
   * so the last value seen is used (the header size if none was seen yet).
   */
  private async windowBytes(): Promise<number> {
    if (!isSavingState(this.state)) await this.readDataOffset();
    return Math.max(1, this.region.size - (this.lastDataOffset ?? HEADER_SIZE));
  }

  private async readDataOffset(): Promise<number> {
    const off = await retryTransient(() => readU64Field(this.region, 'data_offset'));
    if (off < BigInt(HEADER_SIZE) || off >= BigInt(this.region.size)) {
      throw new MigrationError('EIO', `v1 data_offset ${off} is outside the region's data section (size ${this.region.size})`);
    }
    this.lastDataOffset = Number(off);
    return this.lastDataOffset;
  }

  private checkOpen(): void {
    if (this.closed) throw new MigrationError('EBADF', 'device is closed');
  }
}

/**
 * Decision: an error that happens after a read()/write() already moved some
 * bytes is deferred: the call returns the short count (those bytes are
 * really gone from / into the v1 side) and the next call throws the errno,
 * as a kernel stream reports an error after a partial transfer. The error
 * is never dropped, and no byte is lost or repeated.
 */
abstract class SessionBase implements DataSession {
  protected ended: string | null = null;
  protected closedFd = false;
  protected deferred: MigrationError | null = null;

  constructor(protected readonly owner: SessionHost) {}

  /** The device left this session's states (or was reset): later calls fail with ENODEV, like mtty. */
  end(why: string): void {
    this.ended ??= why;
    this.onEnd();
  }

  protected onEnd(): void {}

  /**
   * The checks of a kernel migration file, in SimV2Session's order: a closed
   * fd (EBADF), the wrong direction (EBADF: the saving fd is O_RDONLY, the
   * resuming one O_WRONLY), a file the driver ended (ENODEV), then an error
   * deferred from the previous call. Decision: these errnos (and ENOTTY for
   * PRECOPY_INFO on the resuming fd, EBADF for a second close) copy the
   * kernel/mtty behaviour SimV2Session models, so the face is
   * indistinguishable from a v2 driver on misuse as well.
   */
  protected check(op: 'read' | 'write'): void {
    if (this.closedFd) throw new MigrationError('EBADF', 'data session is closed');
    if (op !== this.direction) throw new MigrationError('EBADF', `${op} on the ${this.direction === 'read' ? 'saving' : 'resuming'} data session`);
    if (this.ended) throw new MigrationError('ENODEV', `data session ended: ${this.ended}`);
    const d = this.deferred;
    if (d) {
      this.deferred = null;
      throw d;
    }
  }

  protected abstract readonly direction: 'read' | 'write';

  /** An error after `moved` bytes: thrown now when nothing moved, else deferred. */
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

  /** The user's close of the data_fd; a second close is EBADF. */
  close(): Promise<void> {
    return this.owner.run(async () => {
      if (this.closedFd) throw new MigrationError('EBADF', 'data session already closed');
      this.closedFd = true;
    });
  }
}

/** The saving data_fd: the v1 save loop behind read(). Shared by PRE_COPY and STOP_COPY. */
class SavingSession extends SessionBase {
  protected readonly direction = 'read';
  /** Region offset of the next unread byte of the open v1 chunk, and how many are left. */
  private chunkAt = 0;
  chunkLeft = 0;
  private endOfStream = false;
  /** pending_bytes at the start of the current iteration, minus what read() took since. */
  private pendingLeft = 0n;

  /**
   * Decision: one read() fills `buf` across as many v1 chunks as it takes
   * (stopping early only when pre-copy has nothing more now, or at the end of
   * stream), so a QEMU-sized 1 MiB read is not cut to one small window.
   */
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
        if (err instanceof MigrationError && err.code === 'ENOMSG' && n === 0) throw err;
        return this.fail(err, n);
      }
      return n;
    });
  }

  /**
   * One v1 iteration (SPEC §1.5): pending_bytes (releases the previous
   * chunk), data_offset (the trigger), data_size. False when there is no
   * chunk: pre-copy has nothing now (ENOMSG for the caller), or stop-copy
   * reached its end (pending_bytes 0), which is checked against device_state.
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
      throw new MigrationError('EIO', `v1 chunk [${off}, +${size}) runs past the ${region.size}-byte region`);
    }
    if (size === 0n) {
      // Decision: a chunk of 0 bytes while pending_bytes > 0 is what QEMU 7.2 treats
      // as "done" in stop-and-copy (it breaks out of its loop); pre-copy: nothing now.
      if (stopCopy) await this.confirmEnd();
      return false;
    }
    this.chunkAt = off;
    this.chunkLeft = Number(size);
    return true;
  }

  /**
   * Decision: end of stream is only believed while the v1 driver still says
   * 010: a driver that dropped its stream (110b after an internal error, or
   * a reset behind our back) also reads pending_bytes 0, and reporting that
   * as EOF would silently truncate the stream (BRIDGE.md pitfall 4).
   */
  private async confirmEnd(): Promise<void> {
    const raw = await retryTransient(() => readDeviceState(this.owner.region));
    if ((raw & V1_MASK) !== v2ToV1State(MigState.STOP_COPY)) {
      throw new MigrationError('EIO', `v1 stream ended with device_state ${v1StateName(raw)}, not stop-and-copy`);
    }
    this.endOfStream = true;
  }

  /** Remaining bytes: the iteration's pending_bytes when mid-chunk (a re-read would release the chunk). */
  async estimate(): Promise<bigint> {
    if (this.endOfStream && this.chunkLeft === 0) return 0n;
    if (this.chunkLeft > 0) {
      const left = BigInt(this.chunkLeft);
      return this.pendingLeft > left ? this.pendingLeft : left;
    }
    const pending = await retryTransient(() => readU64Field(this.owner.region, 'pending_bytes'));
    this.pendingLeft = pending;
    return pending;
  }

  /**
   * Decision: v1 reports one number, so all of it is initial_bytes and
   * dirty_bytes is 0 (PRECOPY_INFO only needs init + dirty to reach 0 when
   * there is nothing left, which is what QEMU acts on).
   */
  precopyInfo(): Promise<PrecopyInfo> {
    return this.owner.run(async () => {
      // mtty_precopy_ioctl's order: the fd, the state, then the file.
      if (this.closedFd) throw new MigrationError('EBADF', 'data session is closed');
      const s = this.owner.state();
      if (s !== MigState.PRE_COPY && s !== MigState.PRE_COPY_P2P) {
        throw new MigrationError('EINVAL', `PRECOPY_INFO is only valid in PRE_COPY (device is in ${stateName(s)})`);
      }
      if (this.ended) throw new MigrationError('ENODEV', `data session ended: ${this.ended}`);
      return { initialBytes: await this.estimate(), dirtyBytes: 0n };
    });
  }

  write(): Promise<number> {
    return this.owner.run(async () => {
      this.check('write');
      return 0; // not reached: check() throws EBADF for a write on the saving session
    });
  }

  protected override onEnd(): void {
    this.chunkLeft = 0;
  }
}

/** The resuming data_fd: write() bytes fill v1 windows, handed over (data_size) when full. */
class ResumingSession extends SessionBase {
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

  /**
   * v1 resume step a: where this iteration's window is. Decision: data_offset
   * is read again for every window (as QEMU 7.2 does per chunk): a v1 driver
   * may move its window between iterations (SPEC §1.4, partitioned sections).
   */
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
    return this.owner.run(async () => {
      this.check('read');
      return 0; // not reached: check() throws EBADF for a read on the resuming session
    });
  }

  /** The resuming data_fd has no ioctls (ENOTTY), as in mtty. */
  precopyInfo(): Promise<PrecopyInfo> {
    return this.owner.run(async () => {
      if (this.closedFd) throw new MigrationError('EBADF', 'data session is closed');
      throw new MigrationError('ENOTTY', 'the resuming data session has no PRECOPY_INFO');
    });
  }

  /**
   * Decision: close() does not flush. QEMU 8+ closes the resuming data_fd in
   * load_cleanup before the VM start that leaves RESUMING (SPEC §4.4), so the
   * batched bytes wait for that arc, where a rejection fails the SET — the
   * place the v2 uAPI reports invalid data.
   */
  override close(): Promise<void> {
    return super.close();
  }

  protected override onEnd(): void {
    this.fill = 0;
    this.windowAt = null;
  }
}

/**
 * Decision: the v2 path is the kernel's, but a v1 driver is not a v2 driver.
 * Where the v1 uAPI documents a direct transition from `cur` to a later step
 * of the path (001->010 save, 001->100 resume, 100->001 resume done,
 * 001->000 stop), that one v1 write replaces the walk through 000: it is what
 * QEMU 7.2 writes, and strict v1 drivers (libvfio-user's v1 server, the 'uapi'
 * policy) refuse to leave 000 for 010 or 100. Returns the index of the step
 * to write next (the furthest documented one, else the next single arc).
 */
function directV1Step(cur: MigState, path: readonly MigState[], from: number): number {
  for (let k = path.length - 1; k > from; k--) {
    if (v1TransitionAllowed('uapi', v2ToV1State(cur), v2ToV1State(path[k]))) return k;
  }
  return from;
}
