// The device models behind FakeSyscalls: a transcription of the in-tree v2
// sample driver samples/vfio-mdev/mtty.c (6.12) — its arcs, migration files,
// error codes and quirks — plus a small v1 migration region driver of the kind
// out-of-tree 5.8-5.17 vendor drivers implemented (SPEC.md §1), over the same
// serial-port state so the two can be compared. Synchronous, like the kernel.
import { MigrationError } from '../../uapi/errors.js';
import { MigFlags, MigState } from '../../v2/states.js';
import { nextState } from '../../v2/fsm.js';
import {
  V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, v1IsValid,
} from '../../../legacy/v1-state.js';

const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;

/** struct mtty_data header: magic, major, minor, nr_ports, flags (x86_64 layout). */
export const MTTY_MAGIC = 0x7e9d09898c3e2c4en;
export const MTTY_HEADER_SIZE = 24;
/** sizeof(struct serial_port) on x86_64. */
export const MTTY_PORT_SIZE = 36;
/** struct serial_port: uart_reg[8] first; UART_SCR is register 7. */
export const UART_SCR = 7;
/** MAX_FIFO_SIZE, stored in serial_port.max_fifo_size (offset 33) by mtty_init_dev. */
const MAX_FIFO_OFFSET = 33;

/** The data a migration file carries: struct mtty_data with room for two ports. */
const MIGF_CAPACITY = MTTY_HEADER_SIZE + 2 * MTTY_PORT_SIZE;

/**
 * What the real driver does where this model throws it: a kernel oops (the
 * lab boots with oops=panic, the guest dies). Deliberately not a
 * MigrationError: no caller can handle it, and FakeSyscalls fails every later
 * call with it, as nothing runs after a panic.
 */
export class FakeKernelOops extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FakeKernelOops';
  }
}

/** struct mtty_migration_file */
export class MttyMigrationFile {
  readonly data = new Uint8Array(MIGF_CAPACITY);
  filled = 0;
  /** filp->f_pos */
  pos = 0;
  disabled = false;

  constructor(readonly direction: 'save' | 'resume', private readonly model: MttyModel) {}

  /** mtty_save_read: stream only (a position is ESPIPE, checked by the caller). */
  read(buf: Uint8Array): number {
    if (this.direction !== 'save') throw new MigrationError('EBADF', 'resuming data_fd is write-only');
    if (this.disabled) throw new MigrationError('ENODEV', 'migration file disabled');
    if (this.pos > this.filled) throw new MigrationError('EINVAL');
    const len = Math.min(this.filled - this.pos, buf.length);
    buf.set(this.data.subarray(this.pos, this.pos + len));
    this.pos += len;
    return len;
  }

  /** mtty_resume_write */
  write(buf: Uint8Array): number {
    if (this.direction !== 'resume') throw new MigrationError('EBADF', 'saving data_fd is read-only');
    const requested = this.pos + buf.length;
    if (requested > this.model.dataSize()) throw new MigrationError('ENOMEM', `resume data past ${this.model.dataSize()} bytes`);
    if (this.disabled) throw new MigrationError('ENODEV', 'migration file disabled');
    this.data.set(buf, this.pos);
    this.pos += buf.length;
    let err: MigrationError | undefined;
    if (this.filled < MTTY_HEADER_SIZE && this.filled + buf.length >= MTTY_HEADER_SIZE) {
      const v = new DataView(this.data.buffer);
      if (v.getBigUint64(0, true) !== MTTY_MAGIC || v.getUint32(20, true) !== 0
        || v.getUint32(8, true) !== 1 || v.getUint32(12, true) !== 0
        || v.getUint32(16, true) !== this.model.nrPorts) {
        err = new MigrationError('EFAULT', 'mtty stream header failed validation');
      }
    }
    // mtty counts the bytes even when the header check fails (and returns -EFAULT).
    this.filled += buf.length;
    if (err) throw err;
    return buf.length;
  }

  /** mtty_precopy_ioctl: initial = filled - pos, dirty always 0. */
  precopyInfo(): { initial: bigint; dirty: bigint } {
    const st = this.model.state;
    if (st !== PC && st !== PCP) throw new MigrationError('EINVAL', 'PRECOPY_INFO outside PRE_COPY');
    if (this.disabled) throw new MigrationError('ENODEV', 'migration file disabled');
    if (this.pos > this.filled) throw new MigrationError('EINVAL');
    return { initial: BigInt(this.filled - this.pos), dirty: 0n };
  }

  /** mtty_disable_file */
  disable(): void {
    this.disabled = true;
    this.filled = 0;
    this.pos = 0;
  }
}

/** The mtty v2 driver state for one mdev instance. */
export class MttyModel {
  state: MigState = R;
  saving: MttyMigrationFile | null = null;
  resuming: MttyMigrationFile | null = null;
  /** Set when the real driver would have oopsed (BRIDGE.md pitfall 2); the device is dead afterwards. */
  oops: string | null = null;
  /** struct serial_port s[2], raw. */
  readonly ports: Uint8Array[];

  constructor(readonly nrPorts: number, readonly flags: number = MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY) {
    this.ports = [0, 1].map(() => {
      const p = new Uint8Array(MTTY_PORT_SIZE);
      p[MAX_FIFO_OFFSET] = 16;
      return p;
    });
  }

  /** mtty_data_size */
  dataSize(): number {
    return MTTY_HEADER_SIZE + this.nrPorts * MTTY_PORT_SIZE;
  }

  /** mtty_set_state: walk vfio_mig_get_next_state one arc at a time; a file only from the last arc. */
  setState(target: number): MttyMigrationFile | null {
    this.checkAlive();
    let ret: MttyMigrationFile | null = null;
    try {
      while (this.state !== target) {
        const next = nextState(this.state, target, this.flags);
        ret = this.step(next);
        this.state = next;
        if (ret && next !== target) throw new MigrationError('EINVAL', 'WARN: data file from an intermediate arc');
      }
    } finally {
      this.deferredReset();
    }
    return ret;
  }

  getState(): MigState {
    this.checkAlive();
    return this.state;
  }

  /** mtty_reset: deferred_reset -> RUNNING, files disabled. */
  reset(): void {
    this.checkAlive();
    this.pendingReset = true;
    this.deferredReset();
  }

  /** mtty_close (close_device, last device fd closed): files disabled, state kept. */
  closeDevice(): void {
    this.disableFiles();
  }

  private pendingReset = false;

  /** mtty_state_mutex_unlock */
  private deferredReset(): void {
    if (!this.pendingReset) return;
    this.pendingReset = false;
    this.state = R;
    this.disableFiles();
  }

  private checkAlive(): void {
    if (this.oops) throw new FakeKernelOops(`device unusable after kernel oops: ${this.oops}`);
  }

  /** mtty_disable_files */
  private disableFiles(): void {
    this.saving?.disable();
    this.saving = null;
    this.resuming?.disable();
    this.resuming = null;
  }

  /** mtty_step_state */
  private step(next: MigState): MttyMigrationFile | null {
    const cur = this.state;
    const is = (a: MigState, b: MigState) => cur === a && next === b;
    if (is(R, RP) || is(RP, R) || is(RP, S) || is(PC, PCP) || is(PCP, PC) || is(S, RP)) return null;
    // Arcs for flag sets mtty itself never advertises (no P2P): R<->S are no-ops
    // like R<->RP, and PC->SC fills the open file like PCP->SC.
    if (is(R, S) || is(S, R)) return null;
    if (is(RS, S)) {
      this.loadState();
      this.disableFiles();
      return null;
    }
    if (is(PC, R) || is(PCP, RP) || is(SC, S)) {
      this.disableFiles();
      return null;
    }
    if (is(R, PC) || is(RP, PCP) || is(S, SC) || is(PCP, SC) || is(PC, SC)) {
      return this.saveDeviceData(next);
    }
    if (is(S, RS)) {
      this.resuming = new MttyMigrationFile('resume', this);
      return this.resuming;
    }
    throw new MigrationError('EINVAL', `WARN: mtty has no arc ${MigState[cur]} -> ${MigState[next]}`);
  }

  /** mtty_save_device_data: a new file gets the header; STOP_COPY appends the ports. */
  private saveDeviceData(next: MigState): MttyMigrationFile | null {
    let ret: MttyMigrationFile | null = null;
    let migf = this.saving;
    if (migf) {
      if (next !== SC) return null;
    } else {
      migf = new MttyMigrationFile('save', this);
      const v = new DataView(migf.data.buffer);
      v.setBigUint64(0, MTTY_MAGIC, true);
      v.setUint32(8, 1, true);
      v.setUint32(12, 0, true);
      v.setUint32(16, this.nrPorts, true);
      migf.filled = MTTY_HEADER_SIZE;
      ret = this.saving = migf;
    }
    if (next === SC) {
      for (let i = 0; i < this.nrPorts; i++) {
        migf.data.set(this.ports[i], MTTY_HEADER_SIZE + i * MTTY_PORT_SIZE);
        migf.filled += MTTY_PORT_SIZE;
      }
    }
    return ret;
  }

  /**
   * mtty_load_state. With no resuming file (mtty_close dropped it while the
   * state stayed RESUMING) the real driver dereferences NULL: an oops.
   */
  private loadState(): void {
    const migf = this.resuming;
    if (!migf) {
      this.oops = 'BUG: kernel NULL pointer dereference in mtty_load_state (RESUMING left without a resuming file)';
      throw new FakeKernelOops(this.oops);
    }
    if (migf.filled < this.dataSize()) {
      throw new MigrationError('EINVAL', `resume data incomplete: expected ${this.dataSize()}, got ${migf.filled}`);
    }
    for (let i = 0; i < this.nrPorts; i++) {
      this.ports[i].set(migf.data.subarray(MTTY_HEADER_SIZE + i * MTTY_PORT_SIZE, MTTY_HEADER_SIZE + (i + 1) * MTTY_PORT_SIZE));
    }
  }

  /** BAR access (mdev_access -> handle_bar_read/write): the UART registers of port `index`. */
  barAccess(index: number, offset: number, buf: Uint8Array, isWrite: boolean): void {
    const regs = this.ports[index].subarray(0, 8);
    for (let i = 0; i < buf.length; i++) {
      const reg = offset + i;
      if (reg >= 8) break; // mtty's switch ignores registers past the 8-byte BAR
      if (isWrite) regs[reg] = buf[i];
      else buf[i] = regs[reg];
    }
  }
}

/**
 * A v1 migration region (type 3 / subtype 1) as a 5.8-5.17 vendor driver
 * implemented it (SPEC.md §1.2-1.7): trapped header at 0, data window at
 * `dataOffset`. The stream is mtty's, so it shares the port state.
 */
export class V1RegionModel {
  deviceState = V1_RUNNING;
  readonly window: Uint8Array;
  private stream: Uint8Array | null = null;
  private streamPos = 0;
  private staged = 0;
  private resumeBuf: Uint8Array | null = null;
  private resumeLen = 0;

  constructor(private readonly model: MttyModel, readonly dataOffset: number, windowSize: number) {
    this.window = new Uint8Array(windowSize);
  }

  get size(): number {
    return this.dataOffset + this.window.length;
  }

  reset(): void {
    this.deviceState = V1_RUNNING;
    this.stream = null;
    this.staged = 0;
    this.resumeBuf = null;
  }

  read(off: number, buf: Uint8Array): void {
    if (off >= this.dataOffset) {
      this.windowRange(off, buf.length);
      buf.set(this.window.subarray(off - this.dataOffset, off - this.dataOffset + buf.length));
      return;
    }
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    switch (this.field(off, buf.length)) {
      case 'device_state': v.setUint32(0, this.deviceState, true); return;
      case 'reserved': v.setUint32(0, 0, true); return;
      case 'pending_bytes': {
        if (this.stream) {
          // Step f of the save sequence: reading pending_bytes releases the consumed chunk.
          this.streamPos += this.staged;
          this.staged = 0;
          v.setBigUint64(0, BigInt(this.stream.length - this.streamPos), true);
        } else {
          v.setBigUint64(0, 0n, true);
        }
        return;
      }
      case 'data_offset': {
        if (this.stream && this.staged === 0) {
          // Step b: the trigger; stage the next chunk in the window.
          this.staged = Math.min(this.window.length, this.stream.length - this.streamPos);
          this.window.set(this.stream.subarray(this.streamPos, this.streamPos + this.staged));
        }
        v.setBigUint64(0, BigInt(this.dataOffset), true);
        return;
      }
      case 'data_size': v.setBigUint64(0, BigInt(this.stream ? this.staged : 0), true); return;
    }
  }

  write(off: number, data: Uint8Array): void {
    if (off >= this.dataOffset) {
      this.windowRange(off, data.length);
      this.window.set(data, off - this.dataOffset);
      return;
    }
    const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    switch (this.field(off, data.length)) {
      case 'device_state': this.setDeviceState(v.getUint32(0, true)); return;
      case 'reserved': return;
      case 'data_size': {
        if ((this.deviceState & V1_MASK) !== V1_RESUMING || !this.resumeBuf) throw new MigrationError('EINVAL', 'data_size written outside RESUMING');
        const n = Number(v.getBigUint64(0, true));
        if (n > this.window.length) throw new MigrationError('EINVAL', `data_size ${n} larger than the window`);
        if (this.resumeLen + n > this.resumeBuf.length) throw new MigrationError('ENOMEM', 'resume data too long');
        this.resumeBuf.set(this.window.subarray(0, n), this.resumeLen);
        this.resumeLen += n;
        return;
      }
      default: throw new MigrationError('EINVAL', 'pending_bytes and data_offset are read-only');
    }
  }

  private setDeviceState(value: number): void {
    if (!v1IsValid(value)) throw new MigrationError('EINVAL', `invalid v1 device_state ${value.toString(2)}b`);
    const old = this.deviceState & V1_MASK;
    const low = value & V1_MASK;
    if (old === V1_RESUMING && low !== V1_RESUMING) {
      // Leaving RESUMING applies the data; on failure the state stays (SPEC §1.7).
      const buf = this.resumeBuf!;
      const size = this.model.dataSize();
      const v = new DataView(buf.buffer);
      if (this.resumeLen !== size || v.getBigUint64(0, true) !== MTTY_MAGIC || v.getUint32(16, true) !== this.model.nrPorts) {
        throw new MigrationError('EINVAL', `resume data rejected (${this.resumeLen} of ${size} bytes)`);
      }
      for (let i = 0; i < this.model.nrPorts; i++) {
        this.model.ports[i].set(buf.subarray(MTTY_HEADER_SIZE + i * MTTY_PORT_SIZE, MTTY_HEADER_SIZE + (i + 1) * MTTY_PORT_SIZE));
      }
      this.resumeBuf = null;
    }
    if (low & V1_SAVING && !(old & V1_SAVING)) {
      const s = new Uint8Array(this.model.dataSize());
      const v = new DataView(s.buffer);
      v.setBigUint64(0, MTTY_MAGIC, true);
      v.setUint32(8, 1, true);
      v.setUint32(16, this.model.nrPorts, true);
      for (let i = 0; i < this.model.nrPorts; i++) s.set(this.model.ports[i], MTTY_HEADER_SIZE + i * MTTY_PORT_SIZE);
      this.stream = s;
      this.streamPos = 0;
      this.staged = 0;
    } else if (!(low & V1_SAVING)) {
      this.stream = null;
      this.staged = 0;
    }
    if (low === V1_RESUMING && old !== V1_RESUMING) {
      this.resumeBuf = new Uint8Array(this.model.dataSize());
      this.resumeLen = 0;
    }
    this.deviceState = value >>> 0;
  }

  /** Native width and alignment only (SPEC §1.2); anything else is EINVAL. */
  private field(off: number, len: number): 'device_state' | 'reserved' | 'pending_bytes' | 'data_offset' | 'data_size' {
    if (off === 0 && len === 4) return 'device_state';
    if (off === 4 && len === 4) return 'reserved';
    if (off === 8 && len === 8) return 'pending_bytes';
    if (off === 16 && len === 8) return 'data_offset';
    if (off === 24 && len === 8) return 'data_size';
    throw new MigrationError('EINVAL', `v1 header access of ${len} bytes at ${off}`);
  }

  private windowRange(off: number, len: number): void {
    if (off + len > this.size) throw new MigrationError('EINVAL', `access past the end of the migration region (${off}+${len})`);
  }
}
