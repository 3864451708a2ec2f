// Where a bridged device comes from. A REGISTER names an fd in the peer;
// a DeviceSource turns that into a v2 MigrationDevice the bridge serves.
// The real source adopts QEMU's own fd with pidfd_getfd (a VFIO group admits
// one opener, so the bridge cannot open the device itself); tests inject one
// that returns a simulated driver.
import { KernelMigrationDevice } from '../kernel/kernel-migration-device.js';
import { koffiSyscalls } from '../kernel/koffi-syscalls.js';
import type { ProcessSyscalls, Syscalls } from '../kernel/syscalls.js';
import { adoptVfioDevice, type VfioDevice } from '../kernel/vfio-device.js';
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

/**
 * A registered fd, identified but not touched: no ioctl has reached the
 * device yet. The server first checks it is not bridged already (a second
 * registration must not reset a device another connection is serving: the
 * takeover rule resets a left-over state on first touch), then opens it.
 */
export interface DeviceCandidate {
  /** Two candidates with the same key are the same device. */
  key: string;
  /** How messages name it. */
  label: string;
  /** What kind of device it is, as far as known (the trace's `device` line). */
  identity?: DeviceIdentity;
  /** Whether this is the same open file as `other` (the same device whatever its name says); leave out if unknown. */
  sameFileAs?(other: DeviceCandidate): boolean;
  /**
   * The first touch: the device must be for the bridge (NotBridgeable
   * otherwise) and is taken over. On failure everything is released.
   */
  open(): Promise<MigrationDevice>;
  /** Let go without touching the device (a duplicate). */
  discard(): void;
}

/** Throws NotBridgeable (the fd is not a device for the bridge) or another MigrationError (something failed). */
export type DeviceSource = (registration: DeviceRegistration) => Promise<DeviceCandidate>;

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
 * The real source: QEMU's device fd, identified by readlink (before any
 * ioctl), VFIO_DEVICE_GET_INFO and kcmp, none of which touches its migration
 * state; opening it then asks VFIO_DEVICE_FEATURE GET MIGRATION (which
 * takes the device over), which must offer STOP_COPY, and the device must
 * have no v1 migration region (QEMU 7.2 would use that one directly).
 */
export function kernelDeviceSource(sys: Syscalls & ProcessSyscalls = koffiSyscalls()): DeviceSource {
  const identify = ({ pid, fd, name }: DeviceRegistration): DeviceCandidate => {
    const copy = takeFd(sys, pid, fd);
    let vfio: VfioDevice;
    try {
      vfio = adoptVfioDevice(copy, name, sys);
    } catch (e) {
      throw e instanceof MigrationError && e.code === 'ENOTTY'
        ? new NotBridgeable('ENOTTY', `fd ${fd} of pid ${pid}: ${e.message.replace(/^E\w+: /, '')}`)
        : e;
    }
    const label = name || `fd ${fd} of pid ${pid}`;
    // The sysfs name identifies the device; a cdev node too; an unnamed group fd cannot be told apart by name.
    const key = name || (vfio.api === 'cdev' ? sys.readlink(`/proc/self/fd/${copy}`) : `pid ${pid} fd ${fd}`);
    const candidate: KernelCandidate = {
      key,
      label,
      identity: deviceIdentity(name, sys),
      fd: copy,
      sameFileAs: (other) => {
        if (!isKernelCandidate(other)) return false;
        try {
          return sys.sameOpenFile(copy, other.fd);
        } catch {
          return false; // no kcmp (CONFIG_KCMP off): the key alone decides
        }
      },
      discard: () => vfio.close(),
      open: async () => {
        const device = new KernelMigrationDevice(vfio);
        try {
          let flags: number;
          try {
            flags = await device.migrationFlags();
          } catch (e) {
            if (e instanceof MigrationError && e.code === 'ENOTTY')
              throw new NotBridgeable('ENOTTY', `${label} has no v2 migration support`);
            throw e;
          }
          if (!(flags & MigFlags.STOP_COPY)) throw new NotBridgeable('ENOTTY', `${label} offers no STOP_COPY (migration flags ${flags})`);
          const own = vfio.migrationRegion();
          if (own) throw new NotBridgeable('EEXIST', `${label} has a v1 migration region of its own (index ${own.index})`);
          return device;
        } catch (e) {
          await device.close().catch(() => undefined);
          throw e;
        }
      },
    };
    return candidate;
  };
  return (registration) => Promise.resolve().then(() => identify(registration));
}

interface KernelCandidate extends DeviceCandidate {
  /** The bridge's copy of the peer's fd. */
  fd: number;
}

function isKernelCandidate(c: DeviceCandidate): c is KernelCandidate {
  return typeof (c as Partial<KernelCandidate>).fd === 'number';
}
