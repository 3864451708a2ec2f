// The LegacyRegion contract over a real v1 migration region (type 3 /
// subtype 1, what out-of-tree 5.8-5.17 vendor drivers expose): pread/pwrite on
// the device fd at region offset + off, exactly as QEMU 7.2's vfio_mig_access
// does it (hw/vfio/migration.c): a short transfer is EINVAL. Calls are
// serialized; reset is VFIO_DEVICE_RESET. The device rule (../v2/takeover.ts)
// holds here too, on device_state: the first access takes the device over (a
// left-over 100, 010, 011 or 110b is reset, never written), a write out of a
// 100 this handle did not write is refused, and close() resets a 100 it leaves.
import { FirstFailure, MigrationError } from '../uapi/errors.js';
import { VFIO_DEVICE_RESET } from '../uapi/ioctl.js';
import type { RegionInfo } from '../uapi/region-info.js';
import { SerialQueue } from '../v2/serial.js';
import { MigState } from '../v2/states.js';
import { refuseForeignResume, takeOver } from '../v2/takeover.js';
import type { LegacyRegion } from '../../legacy/contracts.js';
import { FIELD } from '../../legacy/region-layout.js';
import { v1ToV2State } from '../../translate/state-map.js';
import { openVfioDevice, resetBeforeLeaving, type DeviceSpec, type VfioDevice } from './vfio-device.js';
import type { Syscalls } from './syscalls.js';
import { koffiSyscalls } from './koffi-syscalls.js';

export class KernelLegacyRegion implements LegacyRegion {
  readonly size: number;
  private readonly queue = new SerialQueue();
  private isClosed = false;
  /** The device rule was applied (first access, or a reset). */
  private taken = false;
  /** This handle's own device_state write entered the 100 the device is in. */
  private resumeEntered = false;

  /** Takes ownership of `vfio`; `region` is its v1 migration region (see VfioDevice.migrationRegion). */
  constructor(
    readonly vfio: VfioDevice,
    readonly region: RegionInfo,
  ) {
    if (region.size > BigInt(Number.MAX_SAFE_INTEGER)) throw new MigrationError('EOVERFLOW', 'migration region too large');
    this.size = Number(region.size);
  }

  /**
   * Open a device and find its v1 migration region (QEMU 7.2
   * vfio_migration_probe -> vfio_get_dev_region_info). ENODEV when the driver
   * has none; every fd is closed again on failure.
   */
  // eslint-disable-next-line @typescript-eslint/require-await -- async so that a failure to open is a rejection, as for every device call
  static async open(spec: DeviceSpec, sys: Syscalls = koffiSyscalls()): Promise<KernelLegacyRegion> {
    const vfio = openVfioDevice(spec, sys);
    try {
      const region = vfio.migrationRegion();
      if (!region) {
        throw new MigrationError(
          'ENODEV',
          `device ${vfio.name} has no v1 migration region (type 3 / subtype 1) among its ${vfio.info.numRegions} regions: a v2-only driver (use KernelMigrationDevice)`,
        );
      }
      // QEMU 7.2 vfio_migration_init rejects a zero-sized region.
      if (region.size === 0n) throw new MigrationError('EINVAL', `device ${vfio.name}: migration region ${region.index} has size 0`);
      return new KernelLegacyRegion(vfio, region);
    } catch (e) {
      try {
        vfio.close();
      } catch {
        /* report the cause */
      }
      throw e;
    }
  }

  get closed(): boolean {
    return this.isClosed;
  }

  readAt(offset: number, buf: Uint8Array): Promise<void> {
    return this.queue.run(async () => {
      await this.ready();
      this.vfio.readRegion(this.region, offset, buf);
    });
  }

  writeAt(offset: number, data: Uint8Array): Promise<void> {
    return this.queue.run(async () => {
      await this.ready();
      if (offset !== FIELD.device_state.offset || data.length !== FIELD.device_state.width) {
        this.vfio.writeRegion(this.region, offset, data);
        return;
      }
      const cur = this.stateNow();
      const next = v2Of(new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true));
      refuseForeignResume(`device ${this.vfio.name}`, cur, next, this.resumeEntered);
      this.vfio.writeRegion(this.region, offset, data);
      this.resumeEntered = next === MigState.RESUMING && (cur !== MigState.RESUMING || this.resumeEntered);
    });
  }

  reset(): Promise<void> {
    return this.queue.run(() => {
      this.check();
      this.resetNow();
      this.taken = true; // a reset is what taking over would do
    });
  }

  /**
   * Closes the device; one left at 100 is reset first (closed even if that
   * fails, whose error is thrown). Nothing to do when the device's other face
   * (a KernelMigrationDevice on the same VfioDevice) has closed it already.
   */
  close(): Promise<void> {
    return this.queue.run(() => {
      if (this.isClosed) return;
      this.isClosed = true;
      const failure = new FirstFailure();
      failure.run(() => {
        if (this.taken && !this.vfio.closed && this.stateNow() === MigState.RESUMING) this.resetLeftResuming();
      });
      this.vfio.close();
      failure.rethrow();
    });
  }

  /** The device rule's first step, once (src/v2/takeover.ts). */
  private async ready(): Promise<void> {
    this.check();
    if (this.taken) return;
    await takeOver(`device ${this.vfio.name}`, {
      getState: () => Promise.resolve(this.stateNow()),
      reset: () => Promise.resolve(this.resetNow()),
    });
    this.taken = true;
  }

  /** device_state, as the v2 state the rule speaks of. */
  private stateNow(): MigState {
    const buf = new Uint8Array(FIELD.device_state.width);
    this.vfio.readRegion(this.region, FIELD.device_state.offset, buf);
    return v2Of(new DataView(buf.buffer).getUint32(0, true));
  }

  private resetNow(): void {
    this.vfio.sys.ioctl(this.vfio.fd, VFIO_DEVICE_RESET);
    this.resumeEntered = false;
  }

  private resetLeftResuming(): void {
    resetBeforeLeaving(this.vfio.name, '100 (resuming)', () => this.resetNow(), 'the next user must reset it');
  }

  private check(): void {
    if (this.isClosed) throw new MigrationError('EBADF', `migration region of ${this.vfio.name} is closed`);
  }
}

/** v1 device_state as a v2 state; 101b/111b (no meaning in either protocol) count as ERROR: only a reset leaves them. */
function v2Of(raw: number): MigState {
  try {
    return v1ToV2State(raw);
  } catch {
    return MigState.ERROR;
  }
}
