// ABI oracle: gcc compiles the real 6.12 <linux/vfio.h> and prints every
// constant and struct layout our table claims; each must match exactly.
import { describe, expect, it } from 'vitest';
import { structLayouts, uapi, v1IsError, v1IsValid, v1SetError } from '../index.js';
import { parseNameValues, runC } from './support/c-program.js';
import { includeVfioH } from './support/kernel-tree.js';

function cProgram(body: string): string {
  return `#include <stdio.h>\n#include <stddef.h>\n${includeVfioH()}int main(void) {\n${body}\nreturn 0;\n}\n`;
}

describe('ABI against gcc and the real 6.12 uapi header', () => {
  it('covers the names issue #2 lists', () => {
    for (const name of [
      'VFIO_TYPE',
      'VFIO_BASE',
      'VFIO_GET_API_VERSION',
      'VFIO_CHECK_EXTENSION',
      'VFIO_SET_IOMMU',
      'VFIO_GROUP_GET_STATUS',
      'VFIO_GROUP_SET_CONTAINER',
      'VFIO_GROUP_GET_DEVICE_FD',
      'VFIO_DEVICE_GET_INFO',
      'VFIO_DEVICE_GET_REGION_INFO',
      'VFIO_DEVICE_RESET',
      'VFIO_IOMMU_GET_INFO',
      'VFIO_DEVICE_FEATURE',
      'VFIO_MIG_GET_PRECOPY_INFO',
      'VFIO_DEVICE_FEATURE_GET',
      'VFIO_DEVICE_FEATURE_SET',
      'VFIO_DEVICE_FEATURE_PROBE',
      'VFIO_DEVICE_FEATURE_MIGRATION',
      'VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE',
      'VFIO_DEVICE_FEATURE_MIG_DATA_SIZE',
      'VFIO_MIGRATION_STOP_COPY',
      'VFIO_MIGRATION_P2P',
      'VFIO_MIGRATION_PRE_COPY',
      'VFIO_REGION_INFO_FLAG_MMAP',
      'VFIO_REGION_INFO_CAP_TYPE',
      'VFIO_REGION_INFO_CAP_SPARSE_MMAP',
      'VFIO_REGION_TYPE_MIGRATION_DEPRECATED',
      'VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED',
      'VFIO_DEVICE_STATE_V1_RUNNING',
      'VFIO_DEVICE_STATE_MASK',
      'VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION',
    ])
      expect(uapi, name).toHaveProperty(name);
    for (const s of [
      'vfio_device_feature',
      'vfio_device_feature_migration',
      'vfio_device_feature_mig_state',
      'vfio_device_feature_mig_data_size',
      'vfio_precopy_info',
      'vfio_device_info',
      'vfio_region_info',
      'vfio_info_cap_header',
      'vfio_region_info_cap_type',
      'vfio_region_info_cap_sparse_mmap',
      'vfio_group_status',
      'vfio_iommu_type1_info',
      'vfio_iommu_type1_info_cap_migration',
      'vfio_device_migration_info',
    ])
      expect(structLayouts, s).toHaveProperty(s);
  });

  it('every constant equals what C prints', () => {
    const body = Object.keys(uapi)
      .map((k) => `printf("%s %llu\\n", "${k}", (unsigned long long)(${k}));`)
      .join('\n');
    const c = parseNameValues(runC(cProgram(body)));
    for (const [k, v] of Object.entries(uapi)) expect(`${k}=${BigInt(v)}`).toBe(`${k}=${c.get(k)}`);
  });

  it('every struct size and field offset equals what C prints', () => {
    const lines: string[] = [];
    for (const [s, layout] of Object.entries(structLayouts)) {
      lines.push(`printf("%s %zu\\n", "${s}.sizeof", sizeof(struct ${s}));`);
      for (const f of Object.keys(layout.offsets)) {
        lines.push(`printf("%s %zu\\n", "${s}.${f}", offsetof(struct ${s}, ${f}));`);
      }
    }
    const c = parseNameValues(runC(cProgram(lines.join('\n'))));
    for (const [s, layout] of Object.entries(structLayouts)) {
      expect(`${s}.sizeof=${layout.size}`).toBe(`${s}.sizeof=${c.get(`${s}.sizeof`)}`);
      for (const [f, off] of Object.entries(layout.offsets)) expect(`${s}.${f}=${off}`).toBe(`${s}.${f}=${c.get(`${s}.${f}`)}`);
    }
  });

  it('v1 VALID / IS_ERROR / SET_ERROR agree with the header macros (low bits and reserved bits)', () => {
    const samples = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x13, 0x16, 0x80000004, 0xfffffff8, 0xffffffff];
    const body = samples
      .map(
        (s) =>
          `{ unsigned int s = ${s}u; printf("v%u %d\\ne%u %d\\nx%u %u\\n", s, (int)(VFIO_DEVICE_STATE_VALID(s)), s, (int)(VFIO_DEVICE_STATE_IS_ERROR(s)), s, (unsigned)(VFIO_DEVICE_STATE_SET_ERROR(s))); }`,
      )
      .join('\n');
    const c = parseNameValues(runC(cProgram(body)));
    for (const s of samples) {
      expect(BigInt(v1IsValid(s) ? 1 : 0), `VALID(${s})`).toBe(c.get(`v${s}`));
      expect(BigInt(v1IsError(s) ? 1 : 0), `IS_ERROR(${s})`).toBe(c.get(`e${s}`));
      expect(BigInt(v1SetError(s)), `SET_ERROR(${s})`).toBe(c.get(`x${s}`));
    }
  });
});
