// V2DeviceOverLegacy: a v2 MigrationDevice (what QEMU 8+ drives) on top of
// a v1 migration region (an out-of-tree v1 vendor driver, libvfio-user's v1
// server). Its sessions are saving-session-over-legacy.ts and
// resuming-session-over-legacy.ts. Its rules (the numbers are
// docs/SEMANTICS.md's):
//  - flags STOP_COPY | PRE_COPY, no P2P (D33);
//  - a SET computes the kernel's path with nextState (EINVAL before anything
//    for a bad target), then writes it to the region: where the v1 uAPI
//    documents a direct transition to a later step of the path (001 -> 010,
//    001 -> 100, 100 -> 001, 001 -> 000) that one write replaces the walk
//    through 000, otherwise one v1 write per arc (D34); each write keeps the
//    reserved bits (D35); only the last write can open a session;
//  - the state is read from device_state at every SET and GET (D36); 110b is
//    ERROR, and so are 101b/111b (D37);
//  - the saving session pumps the v1 save loop into read() (D42-D46); the
//    resuming session batches write() bytes into full windows (D49, D50);
//  - the device rule (src/v2/takeover.ts): the first call takes the region
//    over, a SET out of a RESUMING this face did not enter is EBUSY, and
//    close() resets a region it leaves in 100 (D38, D41).
// Every call, the sessions' included, runs on one SerialQueue.
import type { LegacyRegion } from '../legacy/contracts.js';
import { HEADER_SIZE } from '../legacy/region-layout.js';
import { readDeviceState, readU64Field, writeDeviceState } from '../legacy/v1-registers.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, v1StateName } from '../legacy/v1-state.js';
import { v1TransitionAllowed } from '../legacy/v1-transitions.js';
import { asMigrationError, MigrationError } from '../src/uapi/errors.js';
import type { DataSession, MigrationDevice } from '../src/v2/contracts.js';
import { transitionPath } from '../src/v2/fsm.js';
import { SerialQueue } from '../src/v2/serial.js';
import { isSavingState, MigFlags, MigState, stateName } from '../src/v2/states.js';
import { refuseForeignResume, takeOver, type Takeover } from '../src/v2/takeover.js';
import { ResumingSessionOverLegacy } from './resuming-session-over-legacy.js';
import { retryTransient } from './retry.js';
import { SavingSessionOverLegacy } from './saving-session-over-legacy.js';
import { v1ToV2State, v2ToV1State } from './state-map.js';
import type { SessionHost } from './v2-session-over-legacy.js';

export interface V2DeviceOverLegacyOptions {
  /**
   * Advertise PRE_COPY (default true). v1 drivers must accept pre-copy (011)
   * even when they have nothing to send early, so it is always available;
   * false presents a STOP_COPY-only device that never writes 011 (D33: for
   * v1 drivers whose pre-copy is poor).
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
  private saving: SavingSessionOverLegacy | null = null;
  private resuming: ResumingSessionOverLegacy | null = null;
  /** The last data_offset seen, to size the window outside a saving iteration. */
  private lastDataOffset: number | null = null;

  constructor(
    private readonly region: LegacyRegion,
    options: V2DeviceOverLegacyOptions = {},
  ) {
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
   * MIG_DEVICE_STATE SET: the kernel's path (nextState: EINVAL for ERROR, P2P
   * states and unsupported targets before anything is done), written as the
   * v1 steps of D34. Only the last write can open a session, which is
   * returned. On a failed write the region's device_state is read back: the
   * device is where the v1 driver says (the original state, an intermediate
   * one, or ERROR for 110b).
   */
  setState(target: MigState): Promise<DataSession | null> {
    return this.queue.run(async () => {
      await this.ready();
      // D36: the current state is read at every SET; D35: its reserved bits are kept.
      const raw = await retryTransient(() => readDeviceState(this.region));
      let cur = this.adopt(raw);
      const reserved = (raw & ~V1_MASK) >>> 0;
      let opened: DataSession | null = null;
      // As mtty_set_state's loop: a SET to the current state does nothing; otherwise
      // the kernel's path is computed first (EINVAL for a bad target, nothing done).
      if (cur === target) return null;
      // D38: leaving a RESUMING this face did not enter would apply data it never wrote.
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
   * MIG_DATA_SIZE GET (D39): in STOP_COPY the stream's pending_bytes (0 after
   * the end of stream); anywhere else at least the window size, the most one
   * v1 iteration can carry, since 0 would leave QEMU 8+ without a buffer.
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

  /** VFIO_DEVICE_RESET on the region: every session ends; device_state must read 001 after it (D40). */
  reset(): Promise<void> {
    return this.queue.run(async () => {
      this.checkOpen();
      await this.resetRegion();
      this.taken = true; // a reset is what taking over would do
    });
  }

  /**
   * D41: the device owns its region; close() ends the sessions and closes the
   * region. A region this face leaves in 100 is reset first (D38); the region
   * is closed even if that fails, whose error is then thrown. A second close
   * is EBADF, as for a closed fd.
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
      s = MigState.ERROR; // D37: 101b/111b, a broken v1 driver: only a reset leaves
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
    this.resumeEntered = next === MigState.RESUMING; // D38: only this face's own arc makes a RESUMING its own
    if (isSavingState(cur) && !isSavingState(next)) this.endSaving(`${stateName(cur)} -> ${stateName(next)}`);
    if (cur === MigState.RESUMING) this.endResuming(`${stateName(cur)} -> ${stateName(next)}`);
    if (isSavingState(next) && !isSavingState(cur)) {
      this.saving = new SavingSessionOverLegacy(this.host);
      return this.saving;
    }
    if (next === MigState.RESUMING) {
      this.resuming = new ResumingSessionOverLegacy(this.host);
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
      // D43: only a broken driver points outside its data section.
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
 * D34: the v2 path is the kernel's, but a v1 driver is not a v2 driver.
 * Where the v1 uAPI documents a direct transition from `cur` to a later step
 * of the path, that one v1 write replaces the walk through 000 (strict v1
 * drivers refuse to leave 000 for 010 or 100). Returns the index of the step
 * to write next (the furthest documented one, else the next single arc).
 */
function directV1Step(cur: MigState, path: readonly MigState[], from: number): number {
  for (let k = path.length - 1; k > from; k--) {
    if (v1TransitionAllowed('uapi', v2ToV1State(cur), v2ToV1State(path[k]))) return k;
  }
  return from;
}
