// Raw VFIO_DEVICE_FEATURE / region-info facts of docs/PROTOCOL.md §3.1, checked with
// hand-built ioctl buffers on a device fd. Run against the real kernel in the
// lab and against the fake in unit tests, so the fake stays honest.
import { expect } from 'vitest';
import {
  MigState,
  MigrationError,
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_FEATURE_GET,
  VFIO_DEVICE_FEATURE_MIGRATION,
  VFIO_DEVICE_FEATURE_MIG_DATA_SIZE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_PROBE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_GET_REGION_INFO,
  vfio_device_feature,
  vfio_device_feature_mig_state,
  vfio_region_info,
  type Syscalls,
} from '../../index.js';

function feature(flags: number, payload: Uint8Array, argsz = 8 + payload.length): Uint8Array {
  const buf = new Uint8Array(8 + payload.length);
  vfio_device_feature.encode({ argsz, flags }, buf);
  buf.set(payload, 8);
  return buf;
}

function code(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (!(e instanceof MigrationError)) throw e;
    return e.code;
  }
}

/** Leaves the device in RUNNING (it must start there) and opens no data fd. */
export function checkRawFeatureAbi(sys: Syscalls, fd: number): void {
  const ioctl = (buf: Uint8Array) => code(() => sys.ioctl(fd, VFIO_DEVICE_FEATURE, buf));
  const state = (s: number, dataFd: number) => vfio_device_feature_mig_state.encode({ device_state: s, data_fd: dataFd });
  const MIG_STATE = VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;

  // GET reports the state with data_fd forced to -1
  let buf = feature(VFIO_DEVICE_FEATURE_GET | MIG_STATE, state(0, 77));
  expect(ioctl(buf)).toBe('ok');
  expect(vfio_device_feature_mig_state.decode(buf, 8)).toEqual({ device_state: MigState.RUNNING, data_fd: -1 });

  // a failed SET still copies the struct out, data_fd -1 (vfio_ioctl_device_feature_mig_device_state out_copy)
  buf = feature(VFIO_DEVICE_FEATURE_SET | MIG_STATE, state(MigState.ERROR, 77));
  expect(ioctl(buf)).toBe('EINVAL');
  expect(vfio_device_feature_mig_state.decode(buf, 8)).toEqual({ device_state: MigState.ERROR, data_fd: -1 });

  // a SET that opens no file answers data_fd -1 too
  buf = feature(VFIO_DEVICE_FEATURE_SET | MIG_STATE, state(MigState.RUNNING_P2P, 77));
  expect(ioctl(buf)).toBe('ok');
  expect(vfio_device_feature_mig_state.decode(buf, 8).data_fd).toBe(-1);
  buf = feature(VFIO_DEVICE_FEATURE_SET | MIG_STATE, state(MigState.RUNNING, 77));
  expect(ioctl(buf)).toBe('ok');

  // vfio_ioctl_device_feature: argsz < 8, unknown flag bits, GET|SET without PROBE
  expect(ioctl(feature(VFIO_DEVICE_FEATURE_GET | MIG_STATE, state(0, 0), 4))).toBe('EINVAL');
  expect(ioctl(feature((1 << 19) | VFIO_DEVICE_FEATURE_GET | MIG_STATE, state(0, 0)))).toBe('EINVAL');
  expect(ioctl(feature(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | MIG_STATE, state(0, 0)))).toBe('EINVAL');
  // vfio_check_feature: payload too short, unsupported op, neither GET nor SET
  expect(ioctl(feature(VFIO_DEVICE_FEATURE_GET | MIG_STATE, new Uint8Array(4)))).toBe('EINVAL');
  expect(ioctl(feature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIGRATION, new Uint8Array(8)))).toBe('EINVAL');
  expect(ioctl(feature(VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, new Uint8Array(8)))).toBe('EINVAL');
  expect(ioctl(feature(MIG_STATE, state(0, 0)))).toBe('EINVAL');
  // PROBE succeeds without a payload, and GET|SET is fine with PROBE
  expect(ioctl(feature(VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | MIG_STATE, new Uint8Array(0)))).toBe(
    'ok',
  );
  // a feature mtty does not implement (BUS_MASTER, 10): ENOTTY
  expect(ioctl(feature(VFIO_DEVICE_FEATURE_GET | 10, new Uint8Array(8)))).toBe('ENOTTY');

  // region info: argsz < 32 is EINVAL, an index past num_regions too (mtty_ioctl)
  const ri = (argsz: number, index: number) =>
    code(() => sys.ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, vfio_region_info.encode({ argsz, index })));
  expect(ri(16, 0)).toBe('EINVAL');
  expect(ri(32, 9)).toBe('EINVAL');
  expect(ri(32, 7)).toBe('ok');
}
