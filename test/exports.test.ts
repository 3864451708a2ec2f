// `import { ... } from 'vfio-mig-shim'` resolves through package.json
// "exports" to the build in dist/: this checks what a user really gets.
// Each public name is checked for its kind and one documented behaviour: a
// constant's value (from <linux/vfio.h>), a struct codec's name and sizeof,
// a class that constructs and works, a function's arity and one call.
// The test doubles are a second entry point, 'vfio-mig-shim/testing', and
// never part of the package root.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import * as pkg from 'vfio-mig-shim';
import * as testing from 'vfio-mig-shim/testing';
import { Sink } from './support/sim-helpers.js';

const { MigState, MigFlags } = pkg;

/** sizeof(struct X) in <linux/vfio.h> (6.12), and in the 5.8-5.17 header for the v1 region. */
const STRUCT_SIZES: Record<string, number> = {
  vfio_device_migration_info: 32,
  vfio_device_feature: 8,
  vfio_device_feature_migration: 8,
  vfio_device_feature_mig_state: 8,
  vfio_device_feature_mig_data_size: 8,
  vfio_precopy_info: 24,
  vfio_device_info: 24,
  vfio_region_info: 32,
  vfio_info_cap_header: 8,
  vfio_region_info_cap_type: 16,
  vfio_region_info_cap_sparse_mmap: 16,
  vfio_group_status: 8,
  vfio_iommu_type1_info: 24,
  vfio_iommu_type1_info_cap_migration: 32,
};

/** Constants and their values in the uAPI headers (_IO(';', VFIO_BASE + n) for ioctls). */
const CONSTANTS: Record<string, number> = {
  V1_RUNNING: 1,
  V1_SAVING: 2,
  V1_RESUMING: 4,
  V1_MASK: 7,
  VFIO_REGION_TYPE_MIGRATION_DEPRECATED: 3,
  VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED: 1,
  VFIO_TYPE: ';'.charCodeAt(0),
  VFIO_BASE: 100,
  VFIO_DEVICE_FEATURE: (0x3b << 8) | (100 + 17),
  VFIO_MIG_GET_PRECOPY_INFO: (0x3b << 8) | (100 + 21),
};

const smallDevice = (seed = 1) => new pkg.SimDevice({ size: 3000, seed, pageSize: 256 });

/** name -> [arity, a call with a documented result]. */
const FUNCTIONS: Record<string, [number, () => unknown]> = {
  nextState: [3, () => expect(pkg.nextState(MigState.RUNNING, MigState.STOP_COPY, MigFlags.STOP_COPY)).toBe(MigState.STOP)],
  transitionPath: [
    3,
    () => expect(pkg.transitionPath(MigState.RUNNING, MigState.STOP_COPY, MigFlags.STOP_COPY)).toEqual([MigState.STOP, MigState.STOP_COPY]),
  ],
  v1IsValid: [1, () => expect([0, 1, 2, 3, 4, 5, 6, 7].map(pkg.v1IsValid)).toEqual([true, true, true, true, true, false, false, false])],
  v1IsError: [
    1,
    () => expect([0, 1, 2, 3, 4, 5, 6, 7].map(pkg.v1IsError)).toEqual([false, false, false, false, false, false, true, false]),
  ],
  v1SetError: [1, () => expect(pkg.v1SetError(0x100 | 3)).toBe(0x106)],
  v1ToV2State: [1, () => expect(pkg.v1ToV2State(3)).toBe(MigState.PRE_COPY)],
  v2ToV1State: [1, () => expect(pkg.v2ToV1State(MigState.STOP_COPY)).toBe(2)],
  isV1Fatal: [
    1,
    () => expect([pkg.isV1Fatal(new pkg.V1FatalError('EIO', 'x')), pkg.isV1Fatal(new pkg.MigrationError('EIO'))]).toEqual([true, false]),
  ],
  toMigrationError: [1, () => expect(pkg.toMigrationError(new Error('x'))).toMatchObject({ code: 'EIO' })],
  asMigrationError: [
    1,
    () => {
      expect(pkg.asMigrationError(Object.assign(new Error('x'), { code: 'EPIPE' }))).toMatchObject({ code: 'EPIPE' });
      expect(pkg.asMigrationError).toBe(pkg.toMigrationError); // one conversion, two names
    },
  ],
  retryTransient: [
    1,
    async () => {
      let calls = 0;
      const op = async () => (++calls < 3 ? Promise.reject(new pkg.MigrationError('EAGAIN')) : 'done');
      expect([await pkg.retryTransient(op), calls]).toEqual(['done', 3]);
    },
  ],
  v1SetState: [
    3,
    async () => {
      const region = new pkg.SimV1Region(smallDevice());
      expect(await pkg.v1SetState(region, pkg.V1_MASK, pkg.V1_SAVING)).toBe(3); // QEMU 7.2 save_setup: 001 -> 011
    },
  ],
  saveV1: [2, () => roundTrip('v1')],
  loadV1: [2, () => roundTrip('v1')],
  saveV2: [2, () => roundTrip('v2')],
  loadV2: [2, () => roundTrip('v2')],
  runDifferential: [
    1,
    async () => expect(await pkg.runDifferential({ seed: 1, runs: 2, pairing: 'v1-stop-copy' })).toMatchObject({ runs: 2, passed: true }),
  ],
  koffiSyscalls: [0, () => expect(pkg.koffiSyscalls()).toBeInstanceOf(pkg.KoffiSyscalls)],
  openGroupDevice: [2, () => withFakeKernel((sys) => pkg.openGroupDevice(0, 'd', sys))],
  openVfioDevice: [1, () => withFakeKernel((sys) => pkg.openVfioDevice({ group: 0, name: 'd' }, sys))],
  openCdevDevice: [1, () => withFakeKernel((sys) => pkg.openCdevDevice('/dev/vfio/devices/vfio0', sys), { iommufd: true })],
};

/** Save a small device with one client face and load it back: the fingerprints agree. */
async function roundTrip(face: 'v1' | 'v2'): Promise<void> {
  const src = smallDevice(1);
  const dst = smallDevice(2);
  const out = new Sink();
  expect(dst.fingerprint()).not.toBe(src.fingerprint());
  if (face === 'v1') {
    await pkg.saveV1(new pkg.SimV1Region(src), out);
    await pkg.loadV1(new pkg.SimV1Region(dst), Readable.from(out.chunks));
  } else {
    await pkg.saveV2(new pkg.SimV2Driver(src, { flags: MigFlags.STOP_COPY }), out);
    await pkg.loadV2(new pkg.SimV2Driver(dst, { flags: MigFlags.STOP_COPY }), Readable.from(out.chunks));
  }
  expect(dst.fingerprint()).toBe(src.fingerprint());
}

/** Open the fake kernel's one device, read its migration flags through KernelMigrationDevice, close: no fd left. */
async function withFakeKernel(open: (sys: testing.FakeSyscalls) => pkg.VfioDevice, opts: { iommufd?: boolean } = {}): Promise<void> {
  const sys = new testing.FakeSyscalls({ devices: [{ name: 'd', group: 0 }], ...opts });
  const device = new pkg.KernelMigrationDevice(open(sys));
  expect(await device.migrationFlags()).toBe(MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY);
  await device.close();
  expect(sys.openFds()).toEqual([]);
}

/** name -> a construction that must work and yield an instance of that class. */
const CLASSES: Record<string, () => object | Promise<object>> = {
  MigrationError: () => new pkg.MigrationError('EINVAL'),
  V1FatalError: () => new pkg.V1FatalError('EIO', 'failed write, re-read error state', 6),
  SimDevice: () => smallDevice(),
  SimV2Driver: () => new pkg.SimV2Driver(smallDevice(), { flags: MigFlags.STOP_COPY }),
  SimV1Region: () => new pkg.SimV1Region(smallDevice()),
  LegacyRegionOverV2: () => new pkg.LegacyRegionOverV2(new pkg.SimV2Driver(smallDevice(), { flags: MigFlags.STOP_COPY })),
  V2DeviceOverLegacy: () => new pkg.V2DeviceOverLegacy(new pkg.SimV1Region(smallDevice())),
  KernelMigrationDevice: () =>
    new pkg.KernelMigrationDevice(pkg.openGroupDevice(0, 'd', new testing.FakeSyscalls({ devices: [{ name: 'd', group: 0 }] }))),
  KernelLegacyRegion: () =>
    pkg.KernelLegacyRegion.open({ group: 0, name: 'd' }, new testing.FakeSyscalls({ devices: [{ name: 'd', group: 0, v1Region: {} }] })),
};

/** Every name of 'vfio-mig-shim/testing' -> a check of its kind and one documented behaviour. */
const TEST_DOUBLES: Record<string, () => unknown> = {
  FakeSyscalls: () => expect(new testing.FakeSyscalls().openFds()).toEqual([]),
  FakeDevice: () => expect(new testing.FakeSyscalls({ devices: [{ name: 'd', group: 7 }] }).device('d')).toBeInstanceOf(testing.FakeDevice),
  FakeKernelOops: () => expect(new testing.FakeKernelOops('x')).toBeInstanceOf(Error),
  MttyModel: () => expect(new testing.MttyModel(2).dataSize()).toBe(testing.MTTY_HEADER_SIZE + 2 * testing.MTTY_PORT_SIZE),
  MttyMigrationFile: () => expect(new testing.MttyMigrationFile('save', new testing.MttyModel(1)).direction).toBe('save'),
  V1RegionModel: () => expect(new testing.V1RegionModel(new testing.MttyModel(1), 4096, 64).size).toBe(4096 + 64),
  // struct mtty_data and struct serial_port in samples/vfio-mdev/mtty.c (x86_64)
  MTTY_MAGIC: () => expect(testing.MTTY_MAGIC).toBe(0x7e9d09898c3e2c4en),
  MTTY_HEADER_SIZE: () => expect(testing.MTTY_HEADER_SIZE).toBe(24),
  MTTY_PORT_SIZE: () => expect(testing.MTTY_PORT_SIZE).toBe(36),
  UART_SCR: () => expect(testing.UART_SCR).toBe(7),
};

describe('package root (dist/index.js)', () => {
  it.each(Object.entries(CONSTANTS))('%s is %i', (name, value) => {
    expect((pkg as Record<string, unknown>)[name]).toBe(value);
  });

  it.each(Object.entries(STRUCT_SIZES))('%s is a CStruct of sizeof %i', (name, size) => {
    const s = (pkg as Record<string, unknown>)[name];
    expect(s).toBeInstanceOf(pkg.CStruct);
    expect([(s as pkg.CStruct<pkg.FieldMap>).name, (s as pkg.CStruct<pkg.FieldMap>).size]).toEqual([name, size]);
  });

  it.each(Object.keys(CLASSES))('%s is a class whose constructor works', async (name) => {
    const C = (pkg as Record<string, unknown>)[name] as new (...args: never[]) => object;
    expect(typeof C).toBe('function');
    expect(() => (C as unknown as () => unknown)()).toThrow(TypeError); // a class, not a plain function
    expect(await CLASSES[name]()).toBeInstanceOf(C);
  });

  it.each(Object.keys(FUNCTIONS))('%s takes its documented arguments and works', async (name) => {
    const f = (pkg as Record<string, unknown>)[name] as (...args: unknown[]) => unknown;
    const [arity, call] = FUNCTIONS[name];
    expect([typeof f, f.length]).toEqual(['function', arity]);
    await call();
  });

  it('MigState and MigFlags carry the uAPI numbers (enum vfio_device_mig_state, VFIO_MIGRATION_*)', () => {
    expect([
      MigState.ERROR,
      MigState.STOP,
      MigState.RUNNING,
      MigState.STOP_COPY,
      MigState.RESUMING,
      MigState.RUNNING_P2P,
      MigState.PRE_COPY,
      MigState.PRE_COPY_P2P,
    ]).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect({ ...MigFlags }).toEqual({ STOP_COPY: 1, P2P: 2, PRE_COPY: 4 });
  });

  it('uapi and structLayouts describe the same ioctls and structs as the named exports', () => {
    expect(pkg.uapi.VFIO_DEVICE_FEATURE).toBe(pkg.VFIO_DEVICE_FEATURE);
    expect(pkg.uapi.VFIO_MIG_GET_PRECOPY_INFO).toBe(pkg.VFIO_MIG_GET_PRECOPY_INFO);
    for (const name of Object.keys(STRUCT_SIZES)) expect(`${name} ${pkg.structLayouts[name]?.size}`).toBe(`${name} ${STRUCT_SIZES[name]}`);
    expect(pkg.structLayouts.vfio_device_migration_info.offsets).toEqual({
      device_state: 0,
      reserved: 4,
      pending_bytes: 8,
      data_offset: 16,
      data_size: 24,
    });
  });

  it('DIFFERENTIAL_PAIRINGS names the pairings runDifferential accepts', async () => {
    const names = pkg.DIFFERENTIAL_PAIRINGS.map((p) => p.name);
    expect(names.length).toBeGreaterThan(0);
    for (const pairing of names) expect(await pkg.runDifferential({ seed: 1, runs: 1, pairing })).toMatchObject({ pairing, passed: true });
  });

  it('MigrationError carries code and errno', () => {
    const e = new pkg.MigrationError('EINVAL');
    expect([e.code, e.errno, e instanceof Error]).toEqual(['EINVAL', 22, true]);
  });

  it('exports no test double: nothing of vfio-mig-shim/testing, no Fake* or mtty model name', () => {
    const root = Object.keys(pkg);
    expect(root.filter((name) => name in testing)).toEqual([]);
    expect(root.filter((name) => /^Fake|Mtty|MTTY|^V1RegionModel$|^UART_/.test(name))).toEqual([]);
  });
});

describe('vfio-mig-shim/testing (dist/testing.js)', () => {
  it('exports exactly the test doubles', () => {
    expect(Object.keys(testing).sort()).toEqual(Object.keys(TEST_DOUBLES).sort());
  });

  it.each(Object.keys(TEST_DOUBLES))('%s', (name) => {
    const value = (testing as Record<string, unknown>)[name];
    if (typeof value === 'function') expect(() => (value as () => unknown)()).toThrow(TypeError); // a class, not a plain function
    TEST_DOUBLES[name]();
  });

  it('FakeSyscalls is what the kernel classes of the package root take', async () => {
    await withFakeKernel((sys) => pkg.openGroupDevice(0, 'd', sys));
  });
});
