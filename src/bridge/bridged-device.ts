// One device the bridge serves: LegacyRegionOverV2 over the v2 device, its
// window memory the shared mapping of the device's window file, and the v1
// register accesses the interposer forwards (READ/WRITE/RESET), answered
// with the region's result or errno, traced and counted.
import { fieldAt } from '../../legacy/region-layout.js';
import { V1_SAVING } from '../../legacy/v1-state.js';
import { LegacyRegionOverV2 } from '../../translate/legacy-region-over-v2.js';
import type { Syscalls } from '../kernel/syscalls.js';
import { MigrationError } from '../uapi/errors.js';
import type { MigrationDevice } from '../v2/contracts.js';
import { MigState } from '../v2/states.js';
import { DeviceStats } from './device-stats.js';
import type { RegionLayout } from './region-layout.js';
import type { TraceWriter } from './trace.js';
import { TracedDevice, type ErrorRecovery } from './traced-device.js';
import { WindowFile } from './window-file.js';
import { STATUS_WINDOW_WRITABLE, type Answer, type Request } from './wire-protocol.js';

export type Access = Exclude<Request, { op: 'register' }>;

export interface BridgedDeviceInfo {
  /** Numbers devices in messages and the trace (1, 2, ...). */
  id: number;
  label: string;
  pid: number;
  fd: number;
  layout: RegionLayout;
  windowPath: string;
}

export interface BridgedDeviceOptions {
  trace?: TraceWriter;
  sys?: Syscalls;
  onErrorRecovery: (r: ErrorRecovery) => void;
  /** An access failed with something that is no MigrationError (a bug): answered EIO. */
  onFault: (e: unknown) => void;
}

const DATA_SIZE_OFFSET = 24;
const HEADER_BYTES = 32;

export class BridgedDevice {
  private released = false;

  private constructor(
    readonly info: BridgedDeviceInfo,
    readonly stats: DeviceStats,
    private readonly region: LegacyRegionOverV2,
    private readonly window: WindowFile,
    private readonly options: BridgedDeviceOptions,
  ) {}

  /**
   * Make the window file, the region over `device` (owned from here on, on
   * every path), and normalise the device: LegacyRegionOverV2's first use
   * resets a device left in any state but RUNNING — never a SET out of a
   * left-over RESUMING — since a v1 user assumes 001 at start.
   */
  static async open(info: BridgedDeviceInfo, device: MigrationDevice, options: BridgedDeviceOptions): Promise<BridgedDevice> {
    let window: WindowFile;
    try {
      window = WindowFile.create(info.windowPath, Number(info.layout.windowSize), options.sys);
    } catch (e) {
      await device.close().catch(() => undefined);
      throw e;
    }
    const stats = new DeviceStats();
    const traced = new TracedDevice(device, info.id, stats, options.trace, options.onErrorRecovery);
    const region = new LegacyRegionOverV2(traced, { errorRecovery: 'reset', window: window.bytes });
    const bridged = new BridgedDevice(info, stats, region, window, options);
    try {
      await region.readAt(0, new Uint8Array(4));
    } catch (e) {
      await bridged.release();
      throw e;
    }
    return bridged;
  }

  /** Answer status bits: the window takes writes only while the device is RESUMING (LegacyRegionOverV2's rule). */
  get status(): number {
    return this.region.inspect().v2State === MigState.RESUMING ? STATUS_WINDOW_WRITABLE : 0;
  }

  async serve(access: Access): Promise<Answer> {
    let result: number;
    let payload = new Uint8Array(0);
    try {
      if (access.op === 'reset') {
        await this.region.reset();
        result = 0;
      } else if (access.op === 'read') {
        payload = new Uint8Array(access.count);
        await this.region.readAt(this.inRegion(access.offset, access.count), payload);
        result = access.count;
      } else {
        await this.region.writeAt(this.inRegion(access.offset, access.data.length), access.data);
        result = access.data.length;
      }
      this.count(access, payload);
    } catch (e) {
      if (!(e instanceof MigrationError)) this.options.onFault(e);
      result = -((e instanceof MigrationError ? e.errno : 5) /* EIO */);
      payload = new Uint8Array(0);
      this.stats.failedAccesses++;
      this.traceAccess(access, e instanceof MigrationError ? e.code : 'EIO');
      return { result, status: this.status, payload };
    }
    this.traceAccess(access, 'ok', payload);
    return { result, status: this.status, payload };
  }

  /**
   * Connection gone: a device left RESUMING (or in ERROR) is reset — never
   * SET out of RESUMING — then the region closes the device (the bridge's
   * copy of the fd) and the window is unmapped and unlinked. Idempotent;
   * returns what went wrong on the way, if anything.
   */
  async release(): Promise<string[]> {
    if (this.released) return [];
    this.released = true;
    const problems: string[] = [];
    const state = this.region.inspect().v2State;
    if (state === MigState.RESUMING || state === MigState.ERROR) {
      await this.region.reset().catch((e) => problems.push(`reset: ${(e as Error).message}`));
    }
    await this.region.close().catch((e) => problems.push(`close: ${(e as Error).message}`));
    try {
      this.window.close();
    } catch (e) {
      problems.push(`window: ${(e as Error).message}`);
    }
    this.stats.leaveStopCopy();
    return problems;
  }

  /** The region offset as a number; EINVAL past the region's end (as a v1 driver answers). */
  private inRegion(offset: bigint, length: number): number {
    if (offset + BigInt(length) > this.info.layout.size) {
      throw new MigrationError(
        'EINVAL',
        `access [0x${offset.toString(16)}, +${length}) past the end of the ${this.info.layout.size}-byte region`,
      );
    }
    return Number(offset);
  }

  /** Chunks as the v1 user moves them: a non-zero data_size read while saving, a data_size write while resuming. */
  private count(access: Access, payload: Uint8Array): void {
    if (access.op === 'reset' || access.offset !== BigInt(DATA_SIZE_OFFSET)) return;
    if (access.op === 'read' && payload.length === 8 && this.region.inspect().deviceState & V1_SAVING) {
      const n = Number(new DataView(payload.buffer, payload.byteOffset).getBigUint64(0, true));
      if (n > 0) {
        this.stats.chunksSaved++;
        this.stats.bytesSaved += n;
      }
    } else if (access.op === 'write' && access.data.length === 8) {
      const n = Number(new DataView(access.data.buffer, access.data.byteOffset).getBigUint64(0, true));
      if (n > 0) {
        this.stats.chunksResumed++;
        this.stats.bytesResumed += n;
      }
    }
  }

  private traceAccess(access: Access, result: string, payload?: Uint8Array): void {
    const trace = this.options.trace;
    if (!trace) return;
    if (access.op === 'reset') {
      trace.write('v1', { dev: this.info.id, op: 'reset', result });
      return;
    }
    const width = access.op === 'read' ? access.count : access.data.length;
    const bytes = access.op === 'write' ? access.data : result === 'ok' ? payload : undefined;
    // Header fields carry their value; window bytes only their size (the mapped window is never seen here anyway).
    const value = bytes && access.offset < BigInt(HEADER_BYTES) && width <= 8 ? littleEndian(bytes) : undefined;
    const field = access.offset < BigInt(HEADER_BYTES) ? fieldAt(Number(access.offset), width) : undefined;
    trace.write('v1', {
      dev: this.info.id,
      op: access.op,
      off: access.offset,
      width,
      ...(field ? { field } : {}),
      ...(value === undefined ? {} : { value }),
      result,
    });
  }
}

function littleEndian(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}
