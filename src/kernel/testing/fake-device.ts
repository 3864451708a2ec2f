// One device of the fake kernel: an mtty instance (its v2 migration driver,
// mtty-model.ts), its PCI config space, and optionally the v1 migration
// region an out-of-tree v1 driver would add (v1-region-model.ts); with the
// region info mtty_get_region_info reports for it.
import {
  VFIO_PCI_NUM_REGIONS,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from '../../uapi/constants.js';
import type { RegionInfo, SparseArea } from '../../uapi/region-info.js';
import { MigFlags } from '../../v2/states.js';
import { VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED, VFIO_REGION_TYPE_MIGRATION_DEPRECATED } from '../../../legacy/region-layout.js';
import type { FakeDeviceOptions } from './fake-kernel-options.js';
import { MttyModel } from './mtty-model.js';
import { V1RegionModel } from './v1-region-model.js';

/** One fake device: the mtty model, its PCI config space and an optional v1 region. */
export class FakeDevice {
  readonly model: MttyModel;
  readonly hasMigration: boolean;
  readonly config = new Uint8Array(256);
  readonly v1: V1RegionModel | null;
  readonly v1Mmap: boolean;
  openCount = 0;

  constructor(
    readonly opts: FakeDeviceOptions,
    readonly cdevIndex: number,
  ) {
    const flags = opts.migrationFlags === undefined ? MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY : opts.migrationFlags;
    this.hasMigration = flags !== null;
    this.model = new MttyModel(opts.ports ?? 2, flags ?? MigFlags.STOP_COPY);
    this.v1 = opts.v1Region ? new V1RegionModel(this.model, 0x1000, opts.v1Region.windowSize ?? 0x1000) : null;
    this.v1Mmap = opts.v1Region?.mmap ?? false;
    // mtty_create_config_space: vendor 0x4348, device 0x3253 (a WCH serial card).
    new DataView(this.config.buffer).setUint32(0, 0x32534348, true);
  }

  get name(): string {
    return this.opts.name;
  }
  get group(): number {
    return this.opts.group;
  }
  get numRegions(): number {
    return this.v1 ? VFIO_PCI_NUM_REGIONS + 1 : VFIO_PCI_NUM_REGIONS;
  }

  /** mtty_get_region_info (+ the v1 region at index 9 when configured). */
  regionInfo(index: number): Omit<RegionInfo, 'argsz'> | undefined {
    const offset = BigInt(index) << 40n;
    const rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    if (index < VFIO_PCI_NUM_REGIONS) {
      let size = 0n;
      if (index === 7) size = 0xffn; // MTTY_CONFIG_SPACE_SIZE
      if (index === 0 || (index === 1 && this.model.nrPorts === 2)) size = 8n; // MTTY_IO_BAR_SIZE
      return { index, flags: rw, size, offset };
    }
    if (index === VFIO_PCI_NUM_REGIONS && this.v1) {
      const sparse: SparseArea[] | undefined = this.v1Mmap
        ? [{ offset: BigInt(this.v1.dataOffset), size: BigInt(this.v1.window.length) }]
        : undefined;
      return {
        index,
        flags: rw | (this.v1Mmap ? VFIO_REGION_INFO_FLAG_MMAP : 0),
        size: BigInt(this.v1.size),
        offset,
        type: { type: VFIO_REGION_TYPE_MIGRATION_DEPRECATED, subtype: VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED },
        sparseAreas: sparse,
      };
    }
    return undefined;
  }
}
