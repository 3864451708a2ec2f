// The device rule (src/v2/takeover.ts) on KernelMigrationDevice, over the fake
// kernel whose mtty oopses exactly where the real one does: a SET out of a
// RESUMING whose resume file a device close dropped (mtty_close ->
// mtty_disable_files; mtty_load_state then dereferences NULL).
import { afterEach, describe, expect, it } from 'vitest';
import {
  KernelMigrationDevice,
  MigState,
  MigrationError,
  VFIO_DEVICE_FEATURE,
  VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_SET,
  VFIO_DEVICE_RESET,
  VfioDevice,
  openVfioDevice,
  stateName,
} from '../index.js';
import { FakeKernelOops, FakeSyscalls } from '../testing.js';
import { failure } from './support/errno.js';
import { abandonIn, rawState } from './support/left-over.js';
import { readAll, resumeStream, saveStream, writeAll } from './support/mtty-scenarios.js';

const A = 'aaaaaaaa-0000-4000-8000-000000000001';
const SPEC = { group: 0, name: A };
const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP, ERROR: E } = MigState;

let sys: FakeSyscalls;
const kernel = () => (sys = new FakeSyscalls({ devices: [{ name: A, group: 0 }] }));
const sets = () =>
  sys
    .callsOf('ioctl', VFIO_DEVICE_FEATURE)
    .filter((c) => c.featureFlags === (VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE));
const resets = () => sys.callsOf('ioctl', VFIO_DEVICE_RESET);

afterEach(() => {
  expect(sys.oops, 'the kernel oopsed').toBeNull();
  expect(sys.openFds()).toEqual([]);
});

describe('the fake mtty is oops-faithful', () => {
  it('a SET out of a RESUMING whose file a device close dropped oopses, and nothing answers afterwards', () => {
    kernel();
    abandonIn(SPEC, sys, RS);
    const vfio = openVfioDevice(SPEC, sys);
    const buf = new Uint8Array(16);
    new DataView(buf.buffer).setUint32(0, 16, true);
    new DataView(buf.buffer).setUint32(4, VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE, true);
    new DataView(buf.buffer).setUint32(8, R, true);
    expect(() => sys.ioctl(vfio.fd, VFIO_DEVICE_FEATURE, buf)).toThrow(FakeKernelOops);
    expect(sys.oops).toMatch(/NULL pointer dereference in mtty_load_state/);
    expect(() => vfio.close()).toThrow(FakeKernelOops); // the guest is gone
    kernel(); // afterEach checks a machine that is still alive
  });
});

describe('taking a device over (KernelMigrationDevice)', () => {
  it('a device left in RESUMING by an aborted destination is reset at open, never SET; a save then works', async () => {
    kernel();
    abandonIn(SPEC, sys, RS);
    const setsBefore = sets().length;
    const dev = await KernelMigrationDevice.open(SPEC, sys);
    expect(dev.takeover).toEqual({ found: RS, action: 'reset' });
    expect(sets()).toHaveLength(setsBefore);
    expect(resets()).toHaveLength(1);
    expect(await dev.getState()).toBe(R);
    expect((await saveStream(dev)).length).toBe(96);
    await dev.close();
  });

  it.each(
    (
      [
        [RS, 'reset'],
        [E, 'reset'],
        [SC, 'reset'],
        [PC, 'reset'],
        [PCP, 'reset'],
        [R, 'kept'],
        [S, 'kept'],
        [RP, 'kept'],
      ] as [MigState, string][]
    ).map(([left, action]) => [stateName(left), action, left] as const),
  )('left in %s: %s', async (_name, action, left) => {
    kernel();
    if (left === E)
      sys.device(A).model.state = E; // mtty itself never enters ERROR; a driver may
    else abandonIn(SPEC, sys, left);
    const dev = await KernelMigrationDevice.open(SPEC, sys);
    expect(dev.takeover).toEqual({ found: left, action });
    expect(resets()).toHaveLength(action === 'reset' ? 1 : 0);
    expect(await dev.getState()).toBe(action === 'reset' ? R : left);
    await dev.close();
  });

  it('a device whose reset fails is refused: the error says why, nothing is SET, every fd is closed', async () => {
    kernel();
    abandonIn(SPEC, sys, RS);
    const setsBefore = sets().length;
    // Both the takeover's reset and the one open()'s cleanup retries (close resets a RESUMING) fail.
    sys.inject({ op: 'ioctl', request: VFIO_DEVICE_RESET, errno: 'EIO' });
    sys.inject({ op: 'ioctl', request: VFIO_DEVICE_RESET, errno: 'EIO' });
    const e = await failure(KernelMigrationDevice.open(SPEC, sys));
    expect(e.code).toBe('EIO');
    expect(e.message).toMatch(/left in RESUMING by an earlier user and VFIO_DEVICE_RESET failed.*refusing/);
    expect(sets()).toHaveLength(setsBefore);
    // ... and the device is still in that RESUMING: the next holder resets it (the reset works now).
    expect(rawState(SPEC, sys)).toBe(RS);
    const dev = await KernelMigrationDevice.open(SPEC, sys);
    expect(dev.takeover).toEqual({ found: RS, action: 'reset' });
    await dev.close();
  });

  it("applies to a VfioDevice built on an already-open device fd (as the bridge adopts QEMU's)", async () => {
    kernel();
    abandonIn(SPEC, sys, RS);
    const owner = openVfioDevice(SPEC, sys); // someone else's open, e.g. QEMU's
    const adopted = new KernelMigrationDevice(new VfioDevice(sys, owner.fd, A, 'group', []));
    expect(await adopted.getState()).toBe(R); // the first call takes over: reset, no SET
    expect(adopted.takeover).toEqual({ found: RS, action: 'reset' });
    const s = (await adopted.setState(SC))!;
    expect((await readAll(s)).length).toBe(96);
    await adopted.reset();
    owner.close(); // the fd is the owner's to close
  });

  it('a SET out of a RESUMING this handle did not enter is refused (EBUSY); its own RESUMING it may leave', async () => {
    kernel();
    const a = await KernelMigrationDevice.open(SPEC, sys);
    // A second handle on the same open device fd (the bridge and QEMU share one).
    const b = new KernelMigrationDevice(new VfioDevice(sys, a.vfio.fd, A, 'group', []));
    expect(await b.getState()).toBe(R);
    const image = await saveStream(a);
    const s = (await a.setState(RS))!;
    await writeAll(s, image);
    const e = await failure(b.setState(R));
    expect(e.code).toBe('EBUSY');
    expect(e.message).toMatch(/RESUMING this handle did not enter.*reset the device/);
    expect(await a.getState()).toBe(RS); // untouched
    await s.close(); // closing our data_fd in the same device open is harmless: mtty keeps its reference
    await a.setState(R); // the holder that entered it applies the data
    expect(await a.getState()).toBe(R);
    await a.close(); // b shares a's fd: closing a is enough
  });

  it('close resets a device its holder left in RESUMING; the next user then needs no reset', async () => {
    kernel();
    const a = await KernelMigrationDevice.open(SPEC, sys);
    const s = (await a.setState(RS))!;
    await writeAll(s, new Uint8Array(16)); // part of a header, never applied
    await a.close();
    expect(rawState(SPEC, sys)).toBe(R);
    expect(resets()).toHaveLength(1);
    const b = await KernelMigrationDevice.open(SPEC, sys);
    expect(b.takeover).toEqual({ found: R, action: 'kept' });
    await resumeStream(b, await saveStream(b));
    await b.close();
  });

  it('close still closes every fd when that reset fails, and says the device may be left in RESUMING', async () => {
    kernel();
    const a = await KernelMigrationDevice.open(SPEC, sys);
    await a.setState(RS);
    sys.inject({ op: 'ioctl', request: VFIO_DEVICE_RESET, errno: 'EIO' });
    const e = await failure(a.close());
    expect(e.code).toBe('EIO');
    expect(e.message).toMatch(/left in RESUMING.*VFIO_DEVICE_RESET failed/);
    expect(a.closed).toBe(true);
    expect(sys.openFds()).toEqual([]);
    expect(rawState(SPEC, sys)).toBe(RS); // the next holder resets it at takeover
    const b = await KernelMigrationDevice.open(SPEC, sys);
    expect(b.takeover).toEqual({ found: RS, action: 'reset' });
    await b.close();
  });

  it('a VFIO_DEVICE_RESET that fails while a session is open still closes the session and its data fd', async () => {
    kernel();
    const a = await KernelMigrationDevice.open(SPEC, sys);
    const s = (await a.setState(PC))!;
    expect(sys.openFds().filter((f) => f.kind === 'data')).toHaveLength(1);
    sys.inject({ op: 'ioctl', request: VFIO_DEVICE_RESET, errno: 'EIO' });
    expect((await failure(a.reset())).code).toBe('EIO');
    expect(a.liveSessions).toBe(0);
    expect(s.fd).toBe(-1);
    expect(sys.openFds().filter((f) => f.kind === 'data')).toEqual([]);
    expect((await failure(s.read(new Uint8Array(8)))).code).toBe('EBADF');
    await a.reset();
    await a.close();
  });

  it('the refusal is a MigrationError with an errno, never a crash', async () => {
    kernel();
    abandonIn(SPEC, sys, RS);
    sys.inject({ op: 'ioctl', request: VFIO_DEVICE_RESET, errno: 'ENODEV' });
    const e = await KernelMigrationDevice.open(SPEC, sys).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(MigrationError);
    expect((e as MigrationError).code).toBe('ENODEV');
    await (await KernelMigrationDevice.open(SPEC, sys)).close();
  });
});
