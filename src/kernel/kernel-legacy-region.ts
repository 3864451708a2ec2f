// The LegacyRegion contract over a real v1 migration region (type 3 /
// subtype 1, what out-of-tree 5.8-5.17 vendor drivers expose): pread/pwrite on
// the device fd at region offset + off, exactly as QEMU 7.2's vfio_mig_access
// does it (hw/vfio/migration.c): a short transfer is EINVAL. Calls are
// serialized; reset is VFIO_DEVICE_RESET.
import { MigrationError } from '../uapi/errors.js';
import { VFIO_DEVICE_RESET } from '../uapi/ioctl.js';
import type { RegionInfo } from '../uapi/region-info.js';
import { SerialQueue } from '../v2/serial.js';
import type { LegacyRegion } from '../../legacy/contracts.js';
import { openVfioDevice, type DeviceSpec, type VfioDevice } from './vfio-device.js';
import type { Syscalls } from './syscalls.js';
import { koffiSyscalls } from './koffi-syscalls.js';

export class KernelLegacyRegion implements LegacyRegion {
  readonly size: number;
  private readonly queue = new SerialQueue();
  private isClosed = false;

  /** Takes ownership of `vfio`; `region` is its v1 migration region (see VfioDevice.migrationRegion). */
  constructor(readonly vfio: VfioDevice, readonly region: RegionInfo) {
    if (region.size > BigInt(Number.MAX_SAFE_INTEGER)) throw new MigrationError('EOVERFLOW', 'migration region too large');
    this.size = Number(region.size);
  }

  /**
   * Open a device and find its v1 migration region (QEMU 7.2
   * vfio_migration_probe -> vfio_get_dev_region_info). ENODEV when the driver
   * has none; every fd is closed again on failure.
   */
  static async open(spec: DeviceSpec, sys: Syscalls = koffiSyscalls()): Promise<KernelLegacyRegion> {
    const vfio = openVfioDevice(spec, sys);
    try {
      const region = vfio.migrationRegion();
      if (!region) {
        throw new MigrationError('ENODEV', `device ${vfio.name} has no v1 migration region (type 3 / subtype 1) among its ${vfio.info.numRegions} regions: a v2-only driver (use KernelMigrationDevice)`);
      }
      // QEMU 7.2 vfio_migration_init rejects a zero-sized region.
      if (region.size === 0n) throw new MigrationError('EINVAL', `device ${vfio.name}: migration region ${region.index} has size 0`);
      return new KernelLegacyRegion(vfio, region);
    } catch (e) {
      try { vfio.close(); } catch { /* report the cause */ }
      throw e;
    }
  }

  get closed(): boolean {
    return this.isClosed;
  }

  readAt(offset: number, buf: Uint8Array): Promise<void> {
    return this.queue.run(async () => {
      this.check();
      this.vfio.readRegion(this.region, offset, buf);
    });
  }

  writeAt(offset: number, data: Uint8Array): Promise<void> {
    return this.queue.run(async () => {
      this.check();
      this.vfio.writeRegion(this.region, offset, data);
    });
  }

  reset(): Promise<void> {
    return this.queue.run(async () => {
      this.check();
      this.vfio.sys.ioctl(this.vfio.fd, VFIO_DEVICE_RESET);
    });
  }

  close(): Promise<void> {
    return this.queue.run(async () => {
      if (this.isClosed) return;
      this.isClosed = true;
      this.vfio.close();
    });
  }

  private check(): void {
    if (this.isClosed) throw new MigrationError('EBADF', `migration region of ${this.vfio.name} is closed`);
  }
}
