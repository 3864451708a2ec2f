// LegacyRegionOverV2: a v1 migration region (what QEMU 5.2-7.2 drives with
// pread/pwrite) emulated on top of a v2 MigrationDevice (what every in-tree
// driver offers). Semantics: DESIGN.md "Semantics of the two translators";
// hazards: SPEC.md §6, BRIDGE.md pitfalls. Every decision DESIGN.md leaves
// open is marked "Decision:" below with its reason.
//
//   header  [0, 32)              device_state, reserved, pending_bytes, data_offset, data_size
//   gap     [32, dataOffset)     EINVAL
//   window  [dataOffset, size)   the staged chunk (save) / the bytes to forward (resume)
//
// Every call (register access, reset, close) runs on one SerialQueue, the
// analogue of a kernel driver's state mutex: a second call starts only
// after the first has settled, so two state writes never interleave.
import type { LegacyRegion } from '../legacy/contracts.js';
import type { FieldName } from '../legacy/region-layout.js';
import { classifyV1Access, putV1Field, writeV1Field } from '../legacy/v1-access.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, v1IsError, v1IsValid, v1SetError, v1StateName } from '../legacy/v1-state.js';
import { parseV1Policy, v1TransitionAllowed, type V1Policy } from '../legacy/v1-transitions.js';
import { asMigrationError, MigrationError } from '../src/uapi/errors.js';
import type { DataSession, MigrationDevice } from '../src/v2/contracts.js';
import { SerialQueue } from '../src/v2/serial.js';
import { isSavingState, MigFlags, MigState, stateName } from '../src/v2/states.js';
import { takeOver, type Takeover } from '../src/v2/takeover.js';
import { retryTransient } from './retry.js';
import { v1ToV2State, v2ToV1State } from './state-map.js';

/**
 * Decision: the window starts on the first page after the header (4096),
 * like SimV1Region and the bridge's sparse-mmap layout: data_offset must be
 * page aligned for the window to be mmapped (SPEC §1.4), and BRIDGE.md shows
 * the mmap path is the one that meets the throughput yardstick.
 */
export const LEGACY_OVER_V2_DATA_OFFSET = 4096;
/** Decision: 1 MiB default window = QEMU 8+'s default data_fd read size (SPEC §4.3), so a chunk is one device read. */
export const LEGACY_OVER_V2_DEFAULT_WINDOW = 1 << 20;

/** The largest value the 8-byte pending_bytes register holds; sums are clamped to it, never wrapped. */
const U64_MAX = (1n << 64n) - 1n;

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

export class LegacyRegionOverV2 implements LegacyRegion {
  readonly size: number;
  readonly dataOffset = LEGACY_OVER_V2_DATA_OFFSET;
  readonly windowSize: number;
  readonly policy: V1Policy;
  readonly errorRecovery: ErrorRecovery;

  private readonly queue = new SerialQueue();
  /** The data window's memory: a saved chunk is staged at [0, staged); resume bytes land where written. */
  private readonly window: Uint8Array;
  private ready = false;
  private taken: Takeover | undefined;
  private closed = false;
  private flags = 0;
  private v2: MigState = MigState.RUNNING;
  private v1 = V1_RUNNING;
  private emulatedPrecopy = false;
  private session: DataSession | null = null;
  // saving
  private staged = 0; // bytes of the stream at window[0, staged)
  private chunkOpen = false; // data_offset read in this iteration; data_size = staged is frozen
  private endOfStream = false; // the session's read returned 0 in STOP_COPY
  // resuming
  private resumeDataSize = 0;
  private resumeRejected = false; // the device refused to leave RESUMING with EINVAL (sticky until reset)

  constructor(private readonly device: MigrationDevice, options: LegacyRegionOverV2Options = {}) {
    const windowSize = options.windowSize ?? options.window?.length ?? LEGACY_OVER_V2_DEFAULT_WINDOW;
    if (!Number.isSafeInteger(windowSize) || windowSize < 1) {
      throw new MigrationError('EINVAL', `windowSize must be a positive integer, got ${windowSize}`);
    }
    const recovery = options.errorRecovery ?? 'expose';
    if (recovery !== 'expose' && recovery !== 'reset') {
      throw new MigrationError('EINVAL', `errorRecovery must be 'expose' or 'reset', got '${String(recovery)}'`);
    }
    this.windowSize = windowSize;
    this.policy = parseV1Policy(options.policy ?? 'qemu');
    this.errorRecovery = recovery;
    this.size = this.dataOffset + windowSize;
    if (options.window && options.window.length !== windowSize) {
      throw new MigrationError('EINVAL', `window is ${options.window.length} bytes, windowSize is ${windowSize}`);
    }
    this.window = options.window ?? new Uint8Array(windowSize);
  }

  inspect(): LegacyRegionOverV2Snapshot {
    return {
      deviceState: this.v1,
      v2State: this.ready ? this.v2 : undefined,
      emulatedPrecopy: this.emulatedPrecopy,
      session: this.session === null ? null : this.v2 === MigState.RESUMING ? 'resuming' : 'saving',
      stagedBytes: this.staged,
      closed: this.closed,
      ...(this.taken ? { takeover: this.taken } : {}),
    };
  }

  readAt(offset: number, buf: Uint8Array): Promise<void> {
    return this.queue.run(async () => {
      this.checkOpen();
      const at = classifyV1Access(offset, buf.length, this.dataOffset, this.size);
      await this.ensureReady();
      if (at.kind === 'window') {
        // A window read is a memcpy from the staged bytes: never a device call.
        buf.set(this.window.subarray(at.start, at.start + at.length));
        return;
      }
      const value = await this.readField(at.field);
      putV1Field(at.field, value, buf);
    });
  }

  writeAt(offset: number, data: Uint8Array): Promise<void> {
    return this.queue.run(async () => {
      this.checkOpen();
      const at = classifyV1Access(offset, data.length, this.dataOffset, this.size);
      await this.ensureReady();
      if (at.kind === 'window') {
        if (at.length === 0) return;
        // Decision: the window is writable only in RESUMING (EINVAL otherwise), as in
        // SimV1Region: a write during save would corrupt the staged chunk the user reads.
        if (this.v2 !== MigState.RESUMING) {
          throw new MigrationError('EINVAL', `data window is written only in RESUMING (state ${v1StateName(this.v1)})`);
        }
        this.window.set(data, at.start);
        return;
      }
      return writeV1Field(at.field, data, {
        deviceState: (v) => this.writeDeviceState(v),
        dataSize: (v) => this.writeDataSize(v),
      });
    });
  }

  /** VFIO_DEVICE_RESET on the v2 device: reads back 001; every session and staged byte is dropped. */
  reset(): Promise<void> {
    return this.queue.run(async () => {
      this.checkOpen();
      await this.resetDevice();
    });
  }

  /**
   * Decision: the region owns the device it was given: close() ends the
   * session (the user's data_fd) and closes the device, as closing a v1
   * device fd releases the driver behind it. A device left in RESUMING is
   * reset first (the device rule, src/v2/takeover.ts: a v2 driver keeps the
   * state when closed and may oops on the next SET out of it); the device is
   * closed even if that reset fails, whose error is then thrown. Idempotent.
   */
  close(): Promise<void> {
    return this.queue.run(async () => {
      if (this.closed) return;
      this.closed = true;
      await this.dropSession();
      let resetErr: unknown;
      if (this.ready && this.v2 === MigState.RESUMING) {
        await retryTransient(() => this.device.reset()).catch((e: unknown) => { resetErr = e; });
      }
      await this.device.close();
      if (resetErr) throw resetErr;
    });
  }

  // ---- first use ---------------------------------------------------------

  /**
   * Take the device over by the device rule (src/v2/takeover.ts), keeping
   * only RUNNING: QEMU 7.2 assumes 001 at start, so a device left in any
   * other state (STOP too) is reset, never SET (a SET out of a left-over
   * RESUMING oopses mtty). Runs inside the first queued call; if it fails,
   * that call fails with the errno and the next call retries.
   */
  private async ensureReady(): Promise<void> {
    if (this.ready) return;
    const flags = await retryTransient(() => this.device.migrationFlags());
    this.taken = await takeOver('the v2 device', {
      getState: () => retryTransient(() => this.device.getState()),
      reset: () => retryTransient(() => this.device.reset()),
    }, [MigState.RUNNING]);
    this.flags = flags;
    this.enterRunningAfterReset();
    this.ready = true;
  }

  private enterRunningAfterReset(): void {
    this.v2 = MigState.RUNNING;
    // Decision: the window memory is zeroed on reset (and only then, like
    // SimV1Region's): "reset drops every staged byte", while between sessions
    // the window behaves as the plain memory a v1 data section is.
    this.window.fill(0);
    // Decision: after a reset device_state reads exactly 001 — reserved bits
    // are cleared too, as a freshly reset register would be (LegacyRegion.reset contract).
    this.v1 = V1_RUNNING;
    this.emulatedPrecopy = false;
    this.resetStaging();
  }

  // ---- registers ---------------------------------------------------------

  private async readField(field: FieldName): Promise<bigint> {
    switch (field) {
      case 'device_state':
        // Decision: served from the translator's own state, not a GET per read.
        // The v2 device has no asynchronous state changes (SPEC §3.3, only
        // reset, which goes through us), every failed SET is followed by a GET,
        // and v1 pre-copy emulation (011 over a RUNNING device) has no v2 twin.
        return BigInt(this.v1);
      case 'reserved':
        return 0n; // "reads return zero"
      case 'pending_bytes':
        return this.readPendingBytes();
      case 'data_offset':
        return this.readDataOffset();
      case 'data_size':
        if (this.v2 === MigState.RESUMING) return BigInt(this.resumeDataSize);
        // Decision: before data_offset was read in this iteration, data_size reads 0
        // (no chunk is published yet), as in SimV1Region; it never triggers a read.
        return BigInt(this.chunkOpen ? this.staged : 0);
    }
  }

  /**
   * Save step a/f (SPEC §1.5): releases the chunk of the previous iteration,
   * then reports what is left.
   *  - STOP_COPY: read-ahead backed. Reads 0 only after the session's read
   *    returned 0 (end of stream) with nothing staged; otherwise staged bytes
   *    plus MIG_DATA_SIZE for what the device still holds.
   *  - PRE_COPY(_P2P): staged bytes plus PRECOPY_INFO initial + dirty
   *    (BRIDGE.md pitfall 5). Decision: no read-ahead here: a running
   *    device's bytes are taken when data_offset is read, the moment v1
   *    defines as the trigger (and the moment SimV1Region takes them).
   *  - anywhere else (including 011 emulated over RUNNING): 0.
   * A data-path error fails this read with its errno (pitfall 4).
   */
  private async readPendingBytes(): Promise<bigint> {
    if (this.emulatedPrecopy) {
      this.chunkOpen = false; // closes the (empty) iteration
      return 0n;
    }
    if (!isSavingState(this.v2)) return 0n;
    const session = this.requireSession();
    if (this.chunkOpen) this.releaseChunk();
    if (this.v2 === MigState.STOP_COPY) {
      if (this.staged === 0 && !this.endOfStream) await this.fillOnce(session);
      if (this.staged === 0) return 0n;
      // Decision: MIG_DATA_SIZE is only an estimate here; if it fails the staged
      // count alone (non-zero) is reported, since zero-vs-non-zero is what v1 QEMU acts on.
      let more = 0n;
      try {
        more = await this.device.stopCopySize();
      } catch {
        more = 0n;
      }
      return saturatingSum(BigInt(this.staged), more);
    }
    const info = await retryTransient(() => session.precopyInfo());
    return saturatingSum(BigInt(this.staged), info.initialBytes, info.dirtyBytes);
  }

  /**
   * Save step b, the trigger: the window is topped up to a full chunk (until
   * the window is full, the stream ends, or a pre-copy read finds nothing
   * right now) and published; re-reads in the same iteration return the same.
   * Outside the saving states it just reports where the window is.
   * Decision: chunks are as full as the window allows (several device reads
   * per chunk if needed): fewer v1 iterations, and the chunk boundaries match
   * the reference v1 driver's, so the two are comparable byte for byte.
   */
  private async readDataOffset(): Promise<bigint> {
    if (this.emulatedPrecopy) {
      this.chunkOpen = true; // an empty chunk: data_size reads 0 until the next pending_bytes read
    } else if (isSavingState(this.v2) && !this.chunkOpen) {
      const session = this.requireSession();
      const precopy = this.v2 !== MigState.STOP_COPY;
      while (this.staged < this.windowSize && !this.endOfStream) {
        if (!(await this.fillOnce(session, precopy))) break;
      }
      this.chunkOpen = true;
    }
    return BigInt(this.dataOffset);
  }

  /**
   * One read from the saving session into the window after the staged bytes.
   * Returns false when nothing came: pre-copy ENOMSG or 0 (mtty returns 0 at
   * the end of its pre-copy data, SPEC §5), or the end of stream in STOP_COPY.
   */
  private async fillOnce(session: DataSession, precopy = false): Promise<boolean> {
    let n: number;
    try {
      n = await retryTransient(() => session.read(this.window.subarray(this.staged)));
    } catch (err) {
      if (precopy && err instanceof MigrationError && err.code === 'ENOMSG') return false;
      // Decision: ENOMSG in STOP_COPY is not allowed by the uAPI (SPEC §3.4); it is a
      // device error and surfaces as such, never as an end of stream.
      throw err;
    }
    if (n === 0) {
      if (!precopy) this.endOfStream = true;
      return false;
    }
    this.staged += n;
    return true;
  }

  private releaseChunk(): void {
    this.chunkOpen = false;
    this.staged = 0;
  }

  /**
   * Resume step c: the first `data_size` window bytes go to the device now,
   * in order, short writes continued; the write fails with the device's errno.
   */
  private async writeDataSize(value: bigint): Promise<void> {
    if (this.v2 !== MigState.RESUMING) {
      throw new MigrationError('EINVAL', `data_size is written only in RESUMING (state ${v1StateName(this.v1)})`);
    }
    if (value > BigInt(this.windowSize)) {
      throw new MigrationError('EINVAL', `data_size ${value} exceeds the ${this.windowSize}-byte data window`);
    }
    if (this.resumeRejected) throw new MigrationError('EINVAL', 'the resumed data was rejected; reset the device');
    const session = this.requireSession();
    const size = Number(value);
    for (let done = 0; done < size; ) {
      const n = await retryTransient(() => session.write(this.window.subarray(done, size)));
      if (n <= 0) throw new MigrationError('ENOSPC', `device accepted no more resume data after ${done} of ${size} bytes`);
      done += n;
    }
    this.resumeDataSize = size;
  }

  // ---- device_state ------------------------------------------------------

  /**
   * device_state write: !VALID -> EINVAL with nothing changed; the policy
   * table decides which v1 arcs exist; then the v1 target is mapped to v2 and
   * the device walks the combination path itself in one SET (the kernel core
   * does, SPEC §3.5). Reserved bits 3..31 are kept as written.
   */
  private async writeDeviceState(to: number): Promise<void> {
    to >>>= 0;
    const from = this.v1;
    if (!v1IsValid(to)) throw new MigrationError('EINVAL', `device_state ${v1StateName(to)} is not VALID`);
    if (v1IsError(from)) throw new MigrationError('EINVAL', 'device is in the error state (110b); only a reset leaves it');
    if (!v1TransitionAllowed(this.policy, from, to)) {
      throw new MigrationError('EINVAL', `transition ${v1StateName(from)} -> ${v1StateName(to)} refused by policy '${this.policy}'`);
    }
    const f = from & V1_MASK;
    const t = to & V1_MASK;
    const emulate = t === (V1_RUNNING | V1_SAVING) && !(this.flags & MigFlags.PRE_COPY);
    // SPEC §6.6: 011 on a device without PRE_COPY stays RUNNING; the session opens at 011 -> 010.
    const target = emulate ? MigState.RUNNING : v1ToV2State(t);
    if (f === t && this.v2 === target && this.emulatedPrecopy === emulate) {
      // Decision: a write of the value shown over exactly the v2 state it maps to (QEMU 7.2
      // writes 1->1 at cont and 2->2 at completion): only the reserved bits change; the v2
      // device is not asked. Same low bits over another state — RUNNING_P2P shown as 001,
      // PRE_COPY_P2P as 011 after an arc failed mid-path — are not this case: the write
      // must bring the device to the state it maps to, so it goes on to the SET below.
      this.v1 = to;
      return;
    }
    if (f === V1_SAVING && t === (V1_RUNNING | V1_SAVING)) {
      // v2 forbids STOP_COPY -> PRE_COPY; with pre-copy emulated the v2 path SC->S->R
      // would exist, so the refusal is made here, for every device alike.
      throw new MigrationError('EINVAL', 'stop-and-copy (010) cannot go back to pre-copy (011): v2 forbids STOP_COPY -> PRE_COPY');
    }
    if (this.resumeRejected && f === V1_RESUMING) {
      throw new MigrationError('EINVAL', 'the resumed data was rejected; reset the device');
    }
    const prev = this.v2;
    // Decision: an (empty) emulated pre-copy chunk whose data_offset was read stays the
    // open chunk across 011 -> 010, as a real chunk does: data_offset/data_size re-reads
    // in that iteration still describe it, and the next pending_bytes read releases it.
    // Triggering a new chunk instead would hand out stream bytes the user then releases unread.
    const keepEmptyChunk = this.emulatedPrecopy && this.chunkOpen;
    if (target !== prev) {
      let opened: DataSession | null;
      try {
        opened = await this.device.setState(target);
      } catch (err) {
        await this.afterFailedSet(asMigrationError(err), prev);
        return; // afterFailedSet always throws
      }
      await this.arrived(prev, target, opened);
      if (keepEmptyChunk && isSavingState(target)) this.chunkOpen = true;
    }
    this.v1 = to;
    this.emulatedPrecopy = emulate;
  }

  /** Bookkeeping after a successful SET prev -> target that returned `opened`. */
  private async arrived(prev: MigState, target: MigState, opened: DataSession | null): Promise<void> {
    this.v2 = target;
    const keeps = isSavingState(prev) && isSavingState(target) && opened === null; // PC -> SC: same stream
    if (!keeps) await this.dropSession();
    if (opened) {
      // Decision: a session returned by an intra-group move (which the kernel never
      // does) replaces the old one, whose staged bytes belong to the old stream.
      await this.dropSession();
      this.session = opened;
    }
  }

  /**
   * A SET failed. The device is in the original state, an intermediate
   * state of the combination path, or ERROR (SPEC §3.3): ask it.
   *  - unchanged: the previous v1 value stays (including emulated 011);
   *  - ERROR: 110b ('expose'), or reset + 001 ('reset'); sessions dropped;
   *  - intermediate: its v1 encoding (P2P states as their non-P2P twin).
   * Always rethrows `err`: the v1 write fails with the device's errno.
   * Decision: an intermediate state is shown as it is rather than forcing the
   * device back to the original (v1's "should return previous state"): a
   * recovery SET could fail too (or, out of RESUMING, oops mtty), and QEMU
   * 7.2's next write (the failure notifier's ~(SAVING|RESUMING)/RUNNING)
   * works from any of these states. 'reset' recovery applies to ERROR only;
   * if that reset fails as well, 110b is shown — the device really is in ERROR.
   */
  private async afterFailedSet(err: MigrationError, prev: MigState): Promise<never> {
    let now: MigState;
    try {
      now = await retryTransient(() => this.device.getState());
    } catch {
      // Decision: if even the GET fails, nothing better than the last known state is
      // shown: never 110b, which would make QEMU 7.2 abort without proof of ERROR.
      throw err;
    }
    if (now === prev) {
      // Decision: a device that refuses to leave RESUMING with EINVAL has rejected the
      // data (the uAPI's "incomplete or invalid"); on the v1 face that is final until
      // reset — more data_size writes and another exit are EINVAL — as the reference
      // v1 driver (SimV1Region) does. v2 would let a user top up an incomplete stream,
      // but no v1 user does, and applying a resume after a reported failure would
      // surprise one. Other errnos (an arc that failed for another reason) may be retried.
      if (prev === MigState.RESUMING && err.code === 'EINVAL') this.resumeRejected = true;
      throw err;
    }
    if (now === MigState.ERROR) {
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
      this.v1 = v1SetError(this.v1);
      this.emulatedPrecopy = false;
      this.resetStaging();
      throw err;
    }
    // An intermediate state: the session survives only inside its own group.
    const sameGroup = (isSavingState(prev) && isSavingState(now)) || (prev === MigState.RESUMING && now === MigState.RESUMING);
    if (!sameGroup) await this.dropSession();
    this.v2 = now;
    this.v1 = ((this.v1 & ~V1_MASK) | v2ToV1State(now)) >>> 0;
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
        this.v1 = v2ToV1State(now);
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
   * Close the held data session and forget everything staged. Decision: the
   * close's own errors are ignored — the device has already ended the
   * session (EBADF/ENODEV from a gone fd change nothing for the v1 user).
   */
  private async dropSession(): Promise<void> {
    const s = this.session;
    this.session = null;
    this.resetStaging();
    if (s) {
      try {
        await s.close();
      } catch {
        /* the device ended it already */
      }
    }
  }

  private resetStaging(): void {
    this.staged = 0;
    this.chunkOpen = false;
    this.endOfStream = false;
    this.resumeDataSize = 0;
    this.resumeRejected = false;
  }

  private checkOpen(): void {
    if (this.closed) throw new MigrationError('EBADF', 'region is closed');
  }
}

/** a + b + ... as the 8-byte pending_bytes register holds it: clamped at 2^64 - 1, never wrapped to a small number. */
function saturatingSum(...terms: bigint[]): bigint {
  const sum = terms.reduce((x, y) => x + y, 0n);
  return sum > U64_MAX ? U64_MAX : sum;
}
