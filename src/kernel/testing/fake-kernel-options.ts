// What a FakeSyscalls kernel is made of (its devices and modules), and what
// it records: every call, the faults a test injects into them.
import type { ErrnoName } from '../../uapi/errors.js';

export interface FakeDeviceOptions {
  /** sysfs name: an mdev uuid (or a PCI address). */
  name: string;
  /** iommu group number: /dev/vfio/<group>. */
  group: number;
  /** N of /dev/vfio/devices/vfioN (only reachable with `iommufd`); default: its position in `devices`. */
  cdev?: number;
  /** mtty-1 or mtty-2 (default 2). */
  ports?: 1 | 2;
  /** FEATURE_MIGRATION flags (default STOP_COPY|P2P|PRE_COPY); null: the driver has no mig_ops (ENOTTY). */
  migrationFlags?: number | null;
  /** Add a v1 migration region (type 3 / subtype 1) at index 9, as an out-of-tree v1 driver would. */
  v1Region?: { windowSize?: number; mmap?: boolean };
  /** sysfs bus (default 'mdev'). */
  bus?: string;
  /** The group is a no-IOMMU group: /dev/vfio/noiommu-<group>, container type VFIO_NOIOMMU_IOMMU. */
  noiommu?: boolean;
}

export interface FakeKernelOptions {
  devices?: FakeDeviceOptions[];
  /** The vfio module is loaded: /dev/vfio/vfio exists (default true). */
  vfio?: boolean;
  /** vfio_iommu_type1 is loaded (default true). */
  type1?: boolean;
  /** CONFIG_IOMMUFD + VFIO_DEVICE_CDEV: /dev/iommu and /dev/vfio/devices/ (default false, like the lab kernel). */
  iommufd?: boolean;
  /** Paths whose open() fails with EACCES. */
  denied?: string[];
  /** Groups with a device bound to a non-vfio driver (not viable). */
  nonViable?: number[];
}

export interface FakeCall {
  op: 'open' | 'close' | 'ioctl' | 'read' | 'write' | 'pread' | 'pwrite' | 'mmap' | 'munmap' | 'readlink' | 'readdir';
  fd?: number;
  /** What the fd was when the call was made. */
  target?: FakeFileKind;
  path?: string;
  request?: number;
  /** argsz (first u32) of a struct argument. */
  argsz?: number;
  /** VFIO_DEVICE_FEATURE flags word. */
  featureFlags?: number;
  offset?: bigint;
  length?: number;
  errno?: string;
}

export type FakeFileKind = 'container' | 'group' | 'device' | 'data' | 'iommufd';

export interface FakeFault {
  op?: FakeCall['op'];
  request?: number;
  target?: FakeFileKind;
  path?: string;
  errno: ErrnoName;
  /** Fire on the nth matching call (1-based, default 1). */
  nth?: number;
}
