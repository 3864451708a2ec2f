// The v2 driver behind each FakeSyscalls device: a transcription of the
// in-tree sample driver samples/vfio-mdev/mtty.c (6.12) — its arcs, migration
// files, error codes and quirks (the oops included). Synchronous, like the
// kernel. The port state it migrates is shared with the v1 region model.
import { MigrationError } from '../../uapi/errors.js';
import { MigFlags, MigState } from '../../v2/states.js';
import { nextState } from '../../v2/fsm.js';

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

/** struct mtty_data's header as mtty_save_device_data writes it: magic, major 1, minor 0, nr_ports, flags 0. */
export function putMttyHeader(data: Uint8Array, nrPorts: number): void {
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  v.setBigUint64(0, MTTY_MAGIC, true);
  v.setUint32(8, 1, true);
  v.setUint32(12, 0, true);
  v.setUint32(16, nrPorts, true);
  v.setUint32(20, 0, true);
}

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

  constructor(
    readonly direction: 'save' | 'resume',
    private readonly model: MttyModel,
  ) {}

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
      if (
        v.getBigUint64(0, true) !== MTTY_MAGIC ||
        v.getUint32(20, true) !== 0 ||
        v.getUint32(8, true) !== 1 ||
        v.getUint32(12, true) !== 0 ||
        v.getUint32(16, true) !== this.model.nrPorts
      ) {
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
  /** Set when the real driver would have oopsed (docs/PROTOCOL.md §7 H2); the device is dead afterwards. */
  oops: string | null = null;
  /** struct serial_port s[2], raw. */
  readonly ports: Uint8Array[];

  constructor(
    readonly nrPorts: number,
    readonly flags: number = MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY,
  ) {
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
  setState(target: MigState): MttyMigrationFile | null {
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
      putMttyHeader(migf.data, this.nrPorts);
      migf.filled = MTTY_HEADER_SIZE;
      ret = this.saving = migf;
    }
    if (next === SC) {
      this.savePorts(migf.data);
      migf.filled += this.nrPorts * MTTY_PORT_SIZE;
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
    this.loadPorts(migf.data);
  }

  /** The ports after the header of a struct mtty_data (the STOP_COPY part of mtty_save_device_data). */
  savePorts(data: Uint8Array): void {
    for (let i = 0; i < this.nrPorts; i++) data.set(this.ports[i], MTTY_HEADER_SIZE + i * MTTY_PORT_SIZE);
  }

  /** The ports of a struct mtty_data, applied (the copy in mtty_load_state). */
  loadPorts(data: Uint8Array): void {
    for (let i = 0; i < this.nrPorts; i++) {
      this.ports[i].set(data.subarray(MTTY_HEADER_SIZE + i * MTTY_PORT_SIZE, MTTY_HEADER_SIZE + (i + 1) * MTTY_PORT_SIZE));
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
