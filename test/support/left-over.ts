// Devices left behind the way an aborted user leaves them, with raw ioctls on
// a device fd (no KernelMigrationDevice in the way, so none of its rules
// apply): SET a state, close the data_fd, close the device fd, no reset.
// For RESUMING this is what an aborted QEMU destination leaves: mtty_close
// frees the resume file while the state stays RESUMING.
import {
  MigState,
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_SET,
  openVfioDevice,
  vfio_device_feature,
  vfio_device_feature_mig_state,
  type DeviceSpec,
  type Syscalls,
} from '../../index.js';

function stateIoctl(sys: Syscalls, fd: number, flags: number, state: number): number {
  const buf = new Uint8Array(vfio_device_feature.size + vfio_device_feature_mig_state.size);
  vfio_device_feature.encode({ argsz: buf.length, flags: flags | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE }, buf);
  buf.set(vfio_device_feature_mig_state.encode({ device_state: state, data_fd: -1 }), vfio_device_feature.size);
  sys.ioctl(fd, VFIO_DEVICE_FEATURE, buf);
  const out = vfio_device_feature_mig_state.decode(buf, vfio_device_feature.size);
  return flags === VFIO_DEVICE_FEATURE_GET ? out.device_state : out.data_fd;
}

/** SET `state` on a fresh open of `spec` (optionally writing `resumeBytes` into RESUMING's data_fd), then close everything. */
export function abandonIn(spec: DeviceSpec, sys: Syscalls, state: MigState, resumeBytes?: Uint8Array): void {
  const vfio = openVfioDevice(spec, sys);
  try {
    const dataFd = stateIoctl(sys, vfio.fd, VFIO_DEVICE_FEATURE_SET, state);
    if (dataFd >= 0) {
      try {
        if (resumeBytes) sys.write(dataFd, resumeBytes);
      } finally {
        sys.close(dataFd);
      }
    }
  } finally {
    vfio.close();
  }
}

/** The device's state, read with a raw GET on a fresh open (which changes nothing). */
export function rawState(spec: DeviceSpec, sys: Syscalls): MigState {
  const vfio = openVfioDevice(spec, sys);
  try {
    return stateIoctl(sys, vfio.fd, VFIO_DEVICE_FEATURE_GET, 0);
  } finally {
    vfio.close();
  }
}

/** A v1 device left at device_state `bits` (a raw pwrite on its migration region), then closed without a reset. */
export function abandonV1At(spec: DeviceSpec, sys: Syscalls, bits: number): void {
  const vfio = openVfioDevice(spec, sys);
  try {
    const state = new Uint8Array(4);
    new DataView(state.buffer).setUint32(0, bits, true);
    vfio.writeRegion(vfio.migrationRegion()!, 0, state);
  } finally {
    vfio.close();
  }
}
