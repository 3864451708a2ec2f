// Where a bridged device comes from. A REGISTER names an fd in the peer;
// a DeviceSource turns that into a v2 MigrationDevice the bridge serves.
// The real source adopts QEMU's own fd with pidfd_getfd (a VFIO group admits
// one opener, so the bridge cannot open the device itself); tests inject one
// that returns a simulated driver.
import { KernelMigrationDevice } from '../kernel/kernel-migration-device.js';
import { koffiSyscalls } from '../kernel/koffi-syscalls.js';
import type { ProcessSyscalls, Syscalls } from '../kernel/syscalls.js';
import { adoptVfioDevice } from '../kernel/vfio-device.js';
import { deviceIdentity, type DeviceIdentity } from '../kernel/device-identity.js';
import { MigrationError } from '../uapi/errors.js';
import type { MigrationDevice } from '../v2/contracts.js';
import { MigFlags } from '../v2/states.js';

export interface DeviceRegistration {
  /** The peer process (already checked: the command or a descendant). */
  pid: number;
  /** The device fd in that process. */
  fd: number;
  /** As the peer gave it to VFIO_GROUP_GET_DEVICE_FD; "" if unknown. */
  name: string;
}

export interface SourcedDevice {
  device: MigrationDevice;
  /** Two registrations with the same key are the same device: the second is refused. */
  key: string;
  /** How messages name it. */
  label: string;
  /** What kind of device it is, as far as known (the trace's `device` line). */
  identity?: DeviceIdentity;
}

/** Throws NotBridgeable (the device is not for the bridge) or another MigrationError (something failed). */
export type DeviceSource = (registration: DeviceRegistration) => Promise<SourcedDevice>;

/** The device is fine but the bridge has nothing to add: no v2 migration, or a v1 region of its own. */
export class NotBridgeable extends MigrationError {
  constructor(code: ConstructorParameters<typeof MigrationError>[0], message: string) {
    super(code, message);
    this.name = 'NotBridgeable';
  }
}

/**
 * Take a copy of fd `fd` of process `pid`: pidfd_open + pidfd_getfd (the
 * bridge is the peer's ancestor and the same user, which is the ptrace
 * access pidfd_getfd asks for). The pidfd is closed again on every path.
 */
export function takeFd(sys: Syscalls & ProcessSyscalls, pid: number, fd: number): number {
  const pidfd = sys.pidfdOpen(pid);
  try {
    return sys.pidfdGetfd(pidfd, fd);
  } finally {
    sys.close(pidfd);
  }
}

/**
 * The real source: QEMU's device fd, identified (readlink) before any ioctl,
 * then VFIO_DEVICE_FEATURE GET MIGRATION must offer STOP_COPY and the device
 * must have no v1 migration region (QEMU 7.2 would use that one directly).
 */
export function kernelDeviceSource(sys: Syscalls & ProcessSyscalls = koffiSyscalls()): DeviceSource {
  return async ({ pid, fd, name }) => {
    const copy = takeFd(sys, pid, fd);
    let vfio;
    try {
      vfio = adoptVfioDevice(copy, name, sys);
    } catch (e) {
      throw e instanceof MigrationError && e.code === 'ENOTTY'
        ? new NotBridgeable('ENOTTY', `fd ${fd} of pid ${pid}: ${e.message.replace(/^E\w+: /, '')}`)
        : e;
    }
    const device = new KernelMigrationDevice(vfio);
    const label = name || `fd ${fd} of pid ${pid}`;
    try {
      let flags: number;
      try {
        flags = await device.migrationFlags();
      } catch (e) {
        if (e instanceof MigrationError && e.code === 'ENOTTY') throw new NotBridgeable('ENOTTY', `${label} has no v2 migration support`);
        throw e;
      }
      if (!(flags & MigFlags.STOP_COPY)) throw new NotBridgeable('ENOTTY', `${label} offers no STOP_COPY (migration flags ${flags})`);
      const own = vfio.migrationRegion();
      if (own) throw new NotBridgeable('EEXIST', `${label} has a v1 migration region of its own (index ${own.index})`);
      // The sysfs name identifies the device; a cdev node too; an unnamed group fd cannot be told apart.
      const key = name || (vfio.api === 'cdev' ? sys.readlink(`/proc/self/fd/${copy}`) : `pid ${pid} fd ${fd}`);
      return { device, key, label, identity: deviceIdentity(name, sys) };
    } catch (e) {
      await device.close().catch(() => undefined);
      throw e;
    }
  };
}
