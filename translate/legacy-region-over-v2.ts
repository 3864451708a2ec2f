// LegacyRegionOverV2: a v1 migration region (what QEMU 5.2-7.2 drives with
// pread/pwrite) on top of a v2 MigrationDevice (what every in-tree driver
// offers). The region's registers, checks and save/resume loops are
// V1RegionCore's; this file maps them onto the v2 device. Its rules (the
// numbers are docs/SEMANTICS.md's):
//  - device_state is the translator's own (D11); a write maps to one SET of
//    the mapped v2 state, the device walks the path (D3, D12); a same-value
//    write only changes reserved bits (D13); 011 without PRE_COPY is
//    emulated over RUNNING (D14); 010 -> 011 is refused by every
//    V1Policy table before a device is asked (D15);
//  - saving: pending_bytes is read-ahead backed in STOP_COPY (D17, D18),
//    PRECOPY_INFO-backed in pre-copy (D19); data_offset fills the window
//    (D20); a data-path error fails the access, never reads as 0 (D23);
//  - resuming: data_size forwards the window (D24); a rejection is final
//    until reset (D25);
//  - a failed SET shows where the device really is (D26, D27); ERROR is
//    110b or, with errorRecovery 'reset', a reset (D28);
//  - the first access takes the device over, resetting anything but
//    RUNNING (D31); close() resets a RESUMING and closes the device (D32).
import { V1_DATA_OFFSET, V1_DEFAULT_WINDOW, RESUME_REJECTED, V1RegionCore, type SavePhase } from '../legacy/v1-region-core.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, v1SetError } from '../legacy/v1-state.js';
import type { V1Policy } from '../legacy/v1-transitions.js';
import { asMigrationError, FirstFailure, isErrno, MigrationError } from '../src/uapi/errors.js';
import type { DataSession, MigrationDevice, PrecopyInfo } from '../src/v2/contracts.js';
import { isSavingState, MigFlags, MigState, stateName } from '../src/v2/states.js';
import { takeOver, type Takeover } from '../src/v2/takeover.js';
import { retryTransient } from './retry.js';
import { v1ToV2State, v2ToV1State } from './state-map.js';

/** The window starts on the first page after the header (D1). */
export const LEGACY_OVER_V2_DATA_OFFSET = V1_DATA_OFFSET;
/** 1 MiB default window (D2). */
export const LEGACY_OVER_V2_DEFAULT_WINDOW = V1_DEFAULT_WINDOW;

export type ErrorRecovery = 'expose' | 'reset';

export interface LegacyRegionOverV2Options {
  /** Bytes in the data window, i.e. the largest chunk (default 1 MiB). */
  windowSize?: number;
  /** Which v1 device_state arcs are accepted before the v2 FSM is asked (default 'qemu'). */
  policy?: V1Policy;
  /**
   * What a state write that leaves the v2 device in ERROR does (default 'expose'):
   * 'expose' reads back 110b (the v1 error state; QEMU 7.2 aborts on it),
   * 'reset' resets the device, fails the write with the errno and reads back 001.
   */
  errorRecovery?: ErrorRecovery;
  /**
   * The data window's memory, exactly windowSize bytes (windowSize defaults
   * to its length); default a fresh buffer. The bridge passes the shared
   * mapping of its window file: the data_fd is read straight into it and the
   * v1 user memcpys from the same pages, with no copy in between.
   */
  window?: Uint8Array;
}

/** What a test may look at without going through the registers. */
export interface LegacyRegionOverV2Snapshot {
  /** The v1 device_state a read would return. */
  deviceState: number;
  /** The v2 state the translator believes the device is in (undefined before first use). */
  v2State: MigState | undefined;
  /** v1 011 shown over a v2 device without PRE_COPY that stays RUNNING. */
  emulatedPrecopy: boolean;
  /** A data session (saving or resuming) is held. */
  session: 'saving' | 'resuming' | null;
  /** Stream bytes read from the device and not yet released (committed chunk or read-ahead). */
  stagedBytes: number;
  closed: boolean;
  /** What the first use found and did (the device rule; only RUNNING is kept here). */
  takeover?: Takeover;
}

export class LegacyRegionOverV2 extends V1RegionCore {
  readonly errorRecovery: ErrorRecovery;

  private ready = false;
  private taken: Takeover | undefined;
  private flags = 0;
  private v2: MigState = MigState.RUNNING;
  private emulatedPrecopy = false;
  private session: DataSession | null = null;

  constructor(
    private readonly device: MigrationDevice,
    options: LegacyRegionOverV2Options = {},
  ) {
    super(options);
    const recovery = options.errorRecovery ?? 'expose';
    if (recovery !== 'expose' && recovery !== 'reset') {
      throw new MigrationError('EINVAL', `errorRecovery must be 'expose' or 'reset', got '${String(recovery)}'`);
    }
    this.errorRecovery = recovery;
  }

  inspect(): LegacyRegionOverV2Snapshot {
    return {
      deviceState: this.deviceState,
      v2State: this.ready ? this.v2 : undefined,
      emulatedPrecopy: this.emulatedPrecopy,
      session: this.session === null ? null : this.v2 === MigState.RESUMING ? 'resuming' : 'saving',
      stagedBytes: this.staged,
      closed: this.closed,
      ...(this.taken ? { takeover: this.taken } : {}),
    };
  }

  /** VFIO_DEVICE_RESET on the v2 device: reads back 001; every session and staged byte is dropped. */
  reset(): Promise<void> {
    return this.serialize(async () => {
      this.checkOpen();
      await this.resetDevice();
    });
  }

  /**
   * The region owns the device it was given (D32): close() ends the session
   * (the user's data_fd) and closes the device. A device left in RESUMING is
   * reset first (the device rule); the device is closed even if that reset
   * fails, whose error is then thrown. Idempotent.
   */
  close(): Promise<void> {
    return this.serialize(async () => {
      if (this.closed) return;
      this.closed = true;
      await this.dropSession();
      const failure = new FirstFailure();
      if (this.ready && this.v2 === MigState.RESUMING) await failure.runAsync(() => retryTransient(() => this.device.reset()));
      await this.device.close();
      failure.rethrow();
    });
  }

  // ---- first use ---------------------------------------------------------

  /**
   * D31: take the device over by the device rule (src/v2/takeover.ts),
   * keeping only RUNNING: QEMU 7.2 assumes 001 at start, so a device left in
   * any other state (STOP too) is reset, never SET. Runs inside the first
   * queued access; if it fails, that access fails and the next one retries.
   * Once ready, nothing to await (undefined): see V1RegionCore.prepare.
   */
  protected override prepare(): Promise<void> | undefined {
    return this.ready ? undefined : this.takeOverDevice();
  }

  private async takeOverDevice(): Promise<void> {
    const flags = await retryTransient(() => this.device.migrationFlags());
    this.taken = await takeOver(
      'the v2 device',
      {
        getState: () => retryTransient(() => this.device.getState()),
        reset: () => retryTransient(() => this.device.reset()),
      },
      [MigState.RUNNING],
    );
    this.flags = flags;
    this.enterRunningAfterReset();
    this.ready = true;
  }

  private enterRunningAfterReset(): void {
    this.v2 = MigState.RUNNING;
    // The window memory is zeroed on reset, and only then (D8).
    this.window.fill(0);
    // After a reset device_state reads exactly 001, reserved bits cleared too (D9).
    this.deviceState = V1_RUNNING;
    this.emulatedPrecopy = false;
    this.resetStaging();
  }

  // ---- the v2 stream behind the region (V1RegionCore's hooks) -------------

  /** Saving: PRE_COPY(_P2P) or STOP_COPY with the session they opened (EIO if the device gave none). */
  protected savePhase(): SavePhase | null {
    if (!isSavingState(this.v2)) return null;
    this.requireSession();
    return this.v2 === MigState.STOP_COPY ? 'stopcopy' : 'precopy';
  }

  protected resuming(): boolean {
    return this.v2 === MigState.RESUMING;
  }

  /**
   * One read from the saving session. Pre-copy ENOMSG (or 0: mtty returns 0
   * at the end of its pre-copy data) is "nothing right now"; ENOMSG in
   * STOP_COPY is a device error, never an end of stream (D22).
   */
  protected readStream(into: Uint8Array, phase: SavePhase): Promise<number> {
    const session = this.requireSession();
    // Why no async wrapper: this is the data path's one device call per chunk; only pre-copy needs a handler.
    const read = retryTransient(() => session.read(into));
    if (phase !== 'precopy') return read;
    return read.catch((err: unknown) => {
      if (isErrno(err, 'ENOMSG')) return 0;
      throw err;
    });
  }

  /** MIG_DATA_SIZE, only an estimate here: if it fails, the staged bytes alone are reported (D18). */
  protected stopCopyRemaining(): Promise<bigint> {
    try {
      return this.device.stopCopySize().catch(() => 0n);
    } catch {
      return Promise.resolve(0n);
    }
  }

  /** PRECOPY_INFO: initial + dirty bytes the device could send now. */
  protected precopyPending(): Promise<PrecopyInfo> {
    const session = this.requireSession();
    return retryTransient(() => session.precopyInfo());
  }

  protected resumeWriter(): (from: Uint8Array) => Promise<number> {
    const session = this.requireSession();
    return (from) => retryTransient(() => session.write(from));
  }

  /** 011 emulated over a RUNNING device (D14): pending_bytes reads 0 and closes the empty iteration. */
  protected override readPendingBytes(): bigint | Promise<bigint> {
    if (!this.emulatedPrecopy) return super.readPendingBytes();
    this.chunkOpen = false;
    return 0n;
  }

  /** 011 emulated: data_offset opens an empty chunk; data_size reads 0 until the next pending_bytes read. */
  protected override readDataOffset(): bigint | Promise<bigint> {
    if (!this.emulatedPrecopy) return super.readDataOffset();
    this.chunkOpen = true;
    return BigInt(this.dataOffset);
  }

  // ---- device_state ------------------------------------------------------

  /**
   * After the core's checks: the v1 target is mapped to v2 and the device
   * walks the combination path itself in one SET, as the kernel core has a
   * driver do (D12). Reserved bits 3..31 are kept as written.
   */
  protected changeState(from: number, to: number): void | Promise<void> {
    const f = from & V1_MASK;
    const t = to & V1_MASK;
    // 011 on a device without PRE_COPY stays RUNNING; the session opens at 011 -> 010 (D14).
    const emulate = t === (V1_RUNNING | V1_SAVING) && !(this.flags & MigFlags.PRE_COPY);
    const target = emulate ? MigState.RUNNING : v1ToV2State(t);
    if (f === t && this.v2 === target && this.emulatedPrecopy === emulate) {
      // The value shown over exactly the v2 state it maps to: only the reserved bits change (D13).
      this.deviceState = to;
      return;
    }
    if (this.resumeRejected && f === V1_RESUMING) throw new MigrationError('EINVAL', RESUME_REJECTED);
    if (target === this.v2) {
      // No SET needed (only the emulated 011 flag or the reserved bits change): done without an await.
      this.deviceState = to;
      this.emulatedPrecopy = emulate;
      return;
    }
    return this.setV2(target, to, emulate);
  }

  /** The SET behind a device_state write to `to` (target: its v2 state), then the bookkeeping. */
  private async setV2(target: MigState, to: number, emulate: boolean): Promise<void> {
    const prev = this.v2;
    // An empty emulated chunk whose data_offset was read stays the open chunk across 011 -> 010 (D16).
    const keepEmptyChunk = this.emulatedPrecopy && this.chunkOpen;
    let opened: DataSession | null;
    try {
      opened = await this.device.setState(target);
    } catch (err) {
      await this.afterFailedSet(asMigrationError(err), prev);
      return; // afterFailedSet always throws
    }
    this.v2 = target;
    const keeps = isSavingState(prev) && isSavingState(target) && opened === null; // PC -> SC: same stream
    if (!keeps) {
      const dropping = this.dropSession();
      if (dropping) await dropping;
    }
    // A session returned by an intra-group move replaces the old one (D29).
    if (opened) this.session = opened;
    if (keepEmptyChunk && isSavingState(target)) this.chunkOpen = true;
    this.deviceState = to;
    this.emulatedPrecopy = emulate;
  }

  /**
   * A SET failed. The device is in the original state, an intermediate
   * state of the combination path, or ERROR: ask it (D26).
   *  - unchanged: the previous v1 value stays (including emulated 011);
   *  - ERROR: 110b ('expose'), or reset + 001 ('reset'); sessions dropped;
   *  - intermediate: its v1 encoding (P2P states as their non-P2P twin).
   * Always rethrows `err`: the v1 write fails with the device's errno.
   */
  private async afterFailedSet(err: MigrationError, prev: MigState): Promise<never> {
    let now: MigState;
    try {
      now = await retryTransient(() => this.device.getState());
    } catch {
      // Even the GET failed: the last known state is shown, never 110b (D27).
      throw err;
    }
    if (now === prev) {
      // A device that refuses to leave RESUMING with EINVAL has rejected the data: final until reset (D25).
      if (prev === MigState.RESUMING && err.code === 'EINVAL') this.resumeRejected = true;
      throw err;
    }
    if (now === MigState.ERROR) {
      // D28: 110b ('expose'), or a reset that reads back 001 ('reset').
      await this.dropSession();
      if (this.errorRecovery === 'reset') {
        let recovered = true;
        try {
          await retryTransient(() => this.device.reset());
        } catch {
          recovered = false; // the reset failed too: the device really is in ERROR, show it
        }
        if (recovered) {
          this.enterRunningAfterReset();
          throw err;
        }
      }
      this.v2 = MigState.ERROR;
      this.deviceState = v1SetError(this.deviceState);
      this.emulatedPrecopy = false;
      this.resetStaging();
      throw err;
    }
    // An intermediate state: the session survives only inside the saving group. (RESUMING is
    // never an intermediate state of a path, and a device still in prev was handled above.)
    if (!(isSavingState(prev) && isSavingState(now))) await this.dropSession();
    this.v2 = now;
    this.deviceState = ((this.deviceState & ~V1_MASK) | v2ToV1State(now)) >>> 0;
    this.emulatedPrecopy = false;
    throw err;
  }

  private async resetDevice(): Promise<void> {
    await this.dropSession();
    this.window.fill(0);
    try {
      await retryTransient(() => this.device.reset());
    } catch (err) {
      // The device says where it is; 110b only if it really is in ERROR.
      try {
        const now = await this.device.getState();
        this.v2 = now;
        this.deviceState = v2ToV1State(now);
        this.emulatedPrecopy = false;
      } catch {
        /* keep the last known state */
      }
      throw err;
    }
    if (!this.ready) {
      this.flags = await retryTransient(() => this.device.migrationFlags());
      this.ready = true;
    }
    this.enterRunningAfterReset();
  }

  // ---- sessions and staging ----------------------------------------------

  private requireSession(): DataSession {
    if (!this.session) {
      throw new MigrationError('EIO', `the v2 device gave no data session for ${stateName(this.v2)}`);
    }
    return this.session;
  }

  /**
   * Close the held data session and forget everything staged; the close's own
   * errors are ignored (D30). A promise only when there was a session to close.
   */
  private dropSession(): Promise<void> | undefined {
    const s = this.session;
    this.session = null;
    this.resetStaging();
    return s ? closeQuietly(s) : undefined;
  }

  private resetStaging(): void {
    this.dropSaveStaging();
    this.dropResumeStaging();
  }
}

/** A session's close whose own errors are ignored: the device ended it already (D30). */
async function closeQuietly(s: DataSession): Promise<void> {
  try {
    await s.close();
  } catch {
    /* the device ended it already */
  }
}
