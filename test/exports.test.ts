// `import { ... } from 'vfio-mig-shim'` resolves through package.json
// "exports" to the build in dist/: this checks what a user really gets.
import { describe, expect, it } from 'vitest';
import * as pkg from 'vfio-mig-shim';

const PUBLIC_NAMES = [
  // issue 2: protocol core
  'MigState', 'MigFlags', 'nextState', 'transitionPath', 'MigrationError', 'uapi', 'structLayouts',
  'V1_RUNNING', 'V1_SAVING', 'V1_RESUMING', 'V1_MASK', 'v1IsValid', 'v1IsError', 'v1SetError',
  'vfio_device_migration_info', 'VFIO_REGION_TYPE_MIGRATION_DEPRECATED', 'VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED',
  'VFIO_TYPE', 'VFIO_BASE', 'VFIO_DEVICE_FEATURE', 'VFIO_MIG_GET_PRECOPY_INFO', 'vfio_device_feature',
  'vfio_device_feature_migration', 'vfio_device_feature_mig_state', 'vfio_device_feature_mig_data_size',
  'vfio_precopy_info', 'vfio_device_info', 'vfio_region_info', 'vfio_info_cap_header', 'vfio_region_info_cap_type',
  'vfio_region_info_cap_sparse_mmap', 'vfio_group_status', 'vfio_iommu_type1_info', 'vfio_iommu_type1_info_cap_migration',
  // issue 3: reference devices and the two clients
  'SimDevice', 'SimV2Driver', 'SimV1Region', 'saveV2', 'loadV2', 'saveV1', 'loadV1', 'v1SetState', 'V1FatalError', 'isV1Fatal',
  // issue 4: the translators and the differential comparison
  'LegacyRegionOverV2', 'V2DeviceOverLegacy', 'v1ToV2State', 'v2ToV1State', 'runDifferential', 'DIFFERENTIAL_PAIRINGS',
  // issue 5: the kernel backend
  'KernelMigrationDevice', 'KernelLegacyRegion', 'koffiSyscalls', 'FakeSyscalls', 'openVfioDevice', 'openGroupDevice', 'openCdevDevice',
];

describe('package root (dist/index.js)', () => {
  it.each(PUBLIC_NAMES)('exports %s', (name) => {
    expect((pkg as Record<string, unknown>)[name], name).toBeDefined();
  });
  it('MigrationError carries code and errno', () => {
    const e = new pkg.MigrationError('EINVAL');
    expect([e.code, e.errno, e instanceof Error]).toEqual(['EINVAL', 22, true]);
  });
});
