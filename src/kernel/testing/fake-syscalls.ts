// An in-memory Linux for unit tests of the kernel backend: /dev/vfio/vfio
// (container), /dev/vfio/<group>, /dev/vfio/devices/vfioN + /dev/iommu (cdev,
// only when `iommufd` is on), sysfs links, and mtty-like devices behind them.
// It mirrors the 6.12 kernel's checks and errnos (drivers/vfio/{container,
// group,vfio_main,device_cdev}.c) and mtty.c's driver logic (fake-mtty.ts).
// Every fd it hands out is tracked, so tests can prove nothing leaks; faults can
// be injected into any call; every call is logged.
import { ERRNO, MigrationError } from '../../uapi/errors.js';
import {
  VFIO_CHECK_EXTENSION, VFIO_DEVICE_BIND_IOMMUFD, VFIO_DEVICE_FEATURE, VFIO_DEVICE_GET_INFO,
  VFIO_DEVICE_GET_REGION_INFO, VFIO_DEVICE_RESET, VFIO_GET_API_VERSION, VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS, VFIO_GROUP_SET_CONTAINER, VFIO_GROUP_UNSET_CONTAINER, VFIO_MIG_GET_PRECOPY_INFO,
  VFIO_SET_IOMMU,
} from '../../uapi/ioctl.js';
import {
  VFIO_API_VERSION, VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT, VFIO_DEVICE_FEATURE_DMA_LOGGING_START,
  VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP, VFIO_DEVICE_FEATURE_GET, VFIO_DEVICE_FEATURE_MASK,
  VFIO_DEVICE_FEATURE_MIGRATION, VFIO_DEVICE_FEATURE_MIG_DATA_SIZE, VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE,
  VFIO_DEVICE_FEATURE_PROBE, VFIO_DEVICE_FEATURE_SET, VFIO_DEVICE_FLAGS_PCI, VFIO_GROUP_FLAGS_CONTAINER_SET,
  VFIO_GROUP_FLAGS_VIABLE, VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE, VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU,
} from '../../uapi/constants.js';
import {
  vfio_device_feature, vfio_device_feature_mig_data_size, vfio_device_feature_mig_state,
  vfio_device_feature_migration, vfio_device_info, vfio_group_status, vfio_precopy_info, vfio_region_info,
} from '../../uapi/structs.js';
import { encodeRegionInfo, type RegionInfo, type SparseArea } from '../../uapi/region-info.js';
import { MigFlags } from '../../v2/states.js';
import {
  VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED, VFIO_REGION_TYPE_MIGRATION_DEPRECATED,
} from '../../../legacy/region-layout.js';
import {
  IOMMU_IOAS_ALLOC, VFIO_DEVICE_ATTACH_IOMMUFD_PT, VFIO_NOIOMMU_IOMMU, iommu_ioas_alloc, vfio_device_attach_iommufd_pt,
  vfio_device_bind_iommufd,
} from '../cdev-abi.js';
import { FakeKernelOops, MttyMigrationFile, MttyModel, V1RegionModel } from './fake-mtty.js';
import { PROT_WRITE, type IoctlArg, type Mapping, type Syscalls, ioctlName } from '../syscalls.js';

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
  errno: keyof typeof ERRNO;
  /** Fire on the nth matching call (1-based, default 1). */
  nth?: number;
}

/** One fake device: the mtty model, its PCI config space and an optional v1 region. */
export class FakeDevice {
  readonly model: MttyModel;
  readonly hasMigration: boolean;
  readonly config = new Uint8Array(256);
  readonly v1: V1RegionModel | null;
  readonly v1Mmap: boolean;
  openCount = 0;

  constructor(readonly opts: FakeDeviceOptions, readonly cdevIndex: number) {
    const flags = opts.migrationFlags === undefined ? MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY : opts.migrationFlags;
    this.hasMigration = flags !== null;
    this.model = new MttyModel(opts.ports ?? 2, flags ?? MigFlags.STOP_COPY);
    this.v1 = opts.v1Region ? new V1RegionModel(this.model, 0x1000, opts.v1Region.windowSize ?? 0x1000) : null;
    this.v1Mmap = opts.v1Region?.mmap ?? false;
    // mtty_create_config_space: vendor 0x4348, device 0x3253 (a WCH serial card).
    new DataView(this.config.buffer).setUint32(0, 0x32534348, true);
  }

  get name(): string { return this.opts.name; }
  get group(): number { return this.opts.group; }
  get numRegions(): number { return this.v1 ? VFIO_PCI_NUM_REGIONS + 1 : VFIO_PCI_NUM_REGIONS; }

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
        ? [{ offset: BigInt(this.v1.dataOffset), size: BigInt(this.v1.window.length) }] : undefined;
      return {
        index, flags: rw | (this.v1Mmap ? VFIO_REGION_INFO_FLAG_MMAP : 0), size: BigInt(this.v1.size), offset,
        type: { type: VFIO_REGION_TYPE_MIGRATION_DEPRECATED, subtype: VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED },
        sparseAreas: sparse,
      };
    }
    return undefined;
  }
}

interface ContainerFile { kind: 'container'; groups: Set<number>; iommu: number | null }
interface GroupFile { kind: 'group'; group: number }
interface DeviceFile { kind: 'device'; dev: FakeDevice; cdev: boolean; bound: boolean; attached: boolean }
interface DataFile { kind: 'data'; migf: MttyMigrationFile; dev: FakeDevice }
interface IommufdFile { kind: 'iommufd'; ioas: Set<number>; nextId: number }
type FakeFile = ContainerFile | GroupFile | DeviceFile | DataFile | IommufdFile;

interface GroupState { id: number; openFd: number | null; container: ContainerFile | null; users: number }

const fail = (code: keyof typeof ERRNO | number, msg?: string): never => {
  throw new MigrationError(code, msg);
};

export class FakeSyscalls implements Syscalls {
  readonly devices: FakeDevice[];
  readonly calls: FakeCall[] = [];
  private readonly files = new Map<number, FakeFile>();
  private readonly groups = new Map<number, GroupState>();
  private readonly mappings = new Map<bigint, { fd: number; mapping: Mapping }>();
  private faults: (FakeFault & { seen: number })[] = [];
  private nextMapAddress = 0x7f0000000000n;
  private panicked: string | null = null;

  constructor(readonly opts: FakeKernelOptions = {}) {
    this.devices = (opts.devices ?? []).map((d, i) => new FakeDevice(d, d.cdev ?? i));
    for (const d of this.devices) {
      if (!this.groups.has(d.group)) this.groups.set(d.group, { id: d.group, openFd: null, container: null, users: 0 });
    }
  }

  device(name: string): FakeDevice {
    const d = this.devices.find((x) => x.name === name);
    if (!d) throw new Error(`fake: no device ${name}`);
    return d;
  }

  /** The first kernel oops a device model hit, or null; after one, every call throws FakeKernelOops. */
  get oops(): string | null {
    return this.panicked;
  }

  /** Every fd currently open, with what it is: the leak check. */
  openFds(): { fd: number; kind: FakeFileKind }[] {
    return [...this.files.entries()].map(([fd, f]) => ({ fd, kind: f.kind }));
  }

  /** Mappings not yet unmapped. */
  liveMappings(): Mapping[] {
    return [...this.mappings.values()].map((m) => m.mapping);
  }

  /** Make a matching call fail with `errno` (once). */
  inject(fault: FakeFault): void {
    this.faults.push({ ...fault, seen: 0 });
  }

  clearFaults(): void {
    this.faults = [];
  }

  /** Calls of one kind, e.g. all ioctls with a given request. */
  callsOf(op: FakeCall['op'], request?: number): FakeCall[] {
    return this.calls.filter((c) => c.op === op && (request === undefined || c.request === request));
  }

  // --- the Syscalls interface -------------------------------------------------

  open(path: string, _flags: number): number {
    return this.run({ op: 'open', path }, () => {
      if (this.opts.denied?.includes(path)) fail('EACCES', `open ${path}`);
      const file = this.lookup(path);
      const fd = this.allocFd(file);
      if (file.kind === 'group') this.groups.get(file.group)!.openFd = fd;
      if (file.kind === 'device') file.dev.openCount++;
      return fd;
    });
  }

  close(fd: number): void {
    this.run({ op: 'close', fd }, () => {
      const file = this.files.get(fd) ?? fail('EBADF', `close fd ${fd}`);
      this.release(fd, file);
    }, () => {
      // close(2) releases the fd even when it reports an error.
      const file = this.files.get(fd);
      if (file) this.release(fd, file);
    });
  }

  ioctl(fd: number, request: number, arg?: IoctlArg): number {
    const call: FakeCall = { op: 'ioctl', fd, request };
    if (arg instanceof Uint8Array && arg.length >= 4) call.argsz = new DataView(arg.buffer, arg.byteOffset).getUint32(0, true);
    if (request === VFIO_DEVICE_FEATURE && arg instanceof Uint8Array && arg.length >= 8) {
      call.featureFlags = new DataView(arg.buffer, arg.byteOffset).getUint32(4, true);
    }
    return this.run(call, () => {
      const file = this.files.get(fd) ?? fail('EBADF', `${ioctlName(request)} on fd ${fd}`);
      switch (file.kind) {
        case 'container': return this.containerIoctl(file, request, arg);
        case 'group': return this.groupIoctl(file, request, arg);
        case 'device': return this.deviceIoctl(file, request, arg);
        case 'data': return this.dataIoctl(file, request, arg);
        case 'iommufd': return this.iommufdIoctl(file, request, arg);
      }
    });
  }

  read(fd: number, buf: Uint8Array): number {
    return this.run({ op: 'read', fd, length: buf.length }, () => {
      const file = this.files.get(fd) ?? fail('EBADF');
      if (file.kind !== 'data') fail('EINVAL', 'fake: read() without a position only on data fds');
      return (file as DataFile).migf.read(buf);
    });
  }

  write(fd: number, buf: Uint8Array): number {
    return this.run({ op: 'write', fd, length: buf.length }, () => {
      const file = this.files.get(fd) ?? fail('EBADF');
      if (file.kind !== 'data') fail('EINVAL', 'fake: write() without a position only on data fds');
      return (file as DataFile).migf.write(buf);
    });
  }

  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.run({ op: 'pread', fd, offset, length: buf.length }, () => this.deviceRw(fd, buf, offset, false));
  }

  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.run({ op: 'pwrite', fd, offset, length: buf.length }, () => this.deviceRw(fd, buf, offset, true));
  }

  mmap(fd: number, length: number, prot: number, offset: bigint): Mapping {
    return this.run({ op: 'mmap', fd, offset, length }, () => {
      const file = this.files.get(fd) ?? fail('EBADF');
      if (file.kind !== 'device') fail('ENODEV', 'mmap of a non-device fd');
      const { dev } = file as DeviceFile;
      this.checkAccess(file as DeviceFile);
      const index = Number(offset >> 40n);
      const info = dev.regionInfo(index);
      // vfio_pci_core_mmap: the region must advertise MMAP, and the range must lie in it.
      if (!info || !(info.flags & VFIO_REGION_INFO_FLAG_MMAP) || !dev.v1) fail('EINVAL', `region ${index} is not mmappable`);
      const off = Number(offset & ((1n << 40n) - 1n));
      const area = info!.sparseAreas?.find((a) => BigInt(off) >= a.offset && BigInt(off + length) <= a.offset + a.size);
      if (!area) fail('EINVAL', 'mmap outside the sparse areas');
      if (prot & PROT_WRITE && !(info!.flags & VFIO_REGION_INFO_FLAG_WRITE)) fail('EINVAL');
      const start = off - dev.v1!.dataOffset;
      const mapping: Mapping = { address: this.nextMapAddress, length, bytes: dev.v1!.window.subarray(start, start + length) };
      this.nextMapAddress += BigInt(Math.ceil(length / 4096) * 4096 + 4096);
      this.mappings.set(mapping.address, { fd, mapping });
      return mapping;
    });
  }

  munmap(mapping: Mapping): void {
    this.run({ op: 'munmap', length: mapping.length }, () => {
      if (!this.mappings.delete(mapping.address)) fail('EINVAL', 'munmap of an unknown mapping');
    });
  }

  readlink(path: string): string {
    return this.run({ op: 'readlink', path }, () => {
      const m = /^\/sys\/bus\/([^/]+)\/devices\/([^/]+)\/iommu_group$/.exec(path) ?? fail('ENOENT', `readlink ${path}`);
      const dev = this.devices.find((d) => d.name === m![2] && (d.opts.bus ?? 'mdev') === m![1]) ?? fail('ENOENT', `readlink ${path}`);
      return `../../../kernel/iommu_groups/${dev.group}`;
    });
  }

  readdir(path: string): string[] {
    return this.run({ op: 'readdir', path }, () => {
      const m = /^\/sys\/bus\/([^/]+)\/devices\/([^/]+)\/vfio-dev$/.exec(path) ?? fail('ENOENT', `readdir ${path}`);
      const dev = this.devices.find((d) => d.name === m![2] && (d.opts.bus ?? 'mdev') === m![1]) ?? fail('ENOENT', `readdir ${path}`);
      if (!this.opts.iommufd) fail('ENOENT', `readdir ${path}`);
      return [`vfio${dev.cdevIndex}`];
    });
  }

  // --- internals --------------------------------------------------------------

  private run<T>(call: FakeCall, body: () => T, onFault?: () => void): T {
    if (call.fd !== undefined) call.target = this.files.get(call.fd)?.kind;
    this.calls.push(call);
    // oops=panic, as the lab boots: after an oops nothing answers any more.
    if (this.panicked) throw new FakeKernelOops(`the kernel panicked earlier: ${this.panicked}`);
    const fault = this.faults.find((f) => (f.op === undefined || f.op === call.op)
      && (f.request === undefined || f.request === call.request)
      && (f.target === undefined || f.target === call.target)
      && (f.path === undefined || f.path === call.path)
      && ++f.seen === (f.nth ?? 1));
    if (fault) {
      this.faults.splice(this.faults.indexOf(fault), 1);
      call.errno = fault.errno;
      onFault?.();
      throw new MigrationError(fault.errno, `injected into ${call.op}${call.request !== undefined ? ` ${ioctlName(call.request)}` : ''}`);
    }
    try {
      return body();
    } catch (e) {
      if (e instanceof MigrationError) call.errno = e.code;
      if (e instanceof FakeKernelOops) this.panicked ??= e.message;
      throw e;
    }
  }

  private allocFd(file: FakeFile): number {
    let fd = 3;
    while (this.files.has(fd)) fd++; // the kernel hands out the lowest free number
    this.files.set(fd, file);
    return fd;
  }

  private lookup(path: string): FakeFile {
    const vfio = this.opts.vfio ?? true;
    if (path === '/dev/vfio/vfio' && vfio) return { kind: 'container', groups: new Set(), iommu: null };
    const g = /^\/dev\/vfio\/(noiommu-)?(\d+)$/.exec(path);
    if (g && vfio) {
      const group = this.groups.get(Number(g[2])) ?? fail('ENOENT', `open ${path}`);
      if (!!g[1] !== this.isNoiommu(group.id)) fail('ENOENT', `open ${path}`);
      // vfio_group_fops_open: one opener at a time.
      if (group.openFd !== null) fail('EBUSY', `open ${path}: group already open`);
      // ... and not while one of its devices is open through its cdev (cdev_device_open_cnt).
      const cdevOpen = [...this.files.values()].some((f) => f.kind === 'device' && f.cdev && f.dev.group === group.id);
      if (cdevOpen) fail('EBUSY', `open ${path}: a device of the group is open through its cdev`);
      return { kind: 'group', group: group.id };
    }
    if (this.opts.iommufd && vfio) {
      if (path === '/dev/iommu') return { kind: 'iommufd', ioas: new Set(), nextId: 1 };
      const c = /^\/dev\/vfio\/devices\/vfio(\d+)$/.exec(path);
      const dev = c && this.devices.find((d) => d.cdevIndex === Number(c[1]));
      if (dev) {
        // vfio_device_fops_cdev_open: refused while the group path has the group open.
        if (this.groups.get(dev.group)!.openFd !== null) fail('EBUSY', `open ${path}: group in use`);
        return { kind: 'device', dev, cdev: true, bound: false, attached: false };
      }
    }
    return fail('ENOENT', `open ${path}`);
  }

  private release(fd: number, file: FakeFile): void {
    // A mapping outlives its fd, as in Linux: munmap is still required.
    this.files.delete(fd);
    switch (file.kind) {
      case 'group': {
        const g = this.groups.get(file.group)!;
        g.openFd = null;
        // vfio_group_fops_release: the group leaves its container once no device holds it.
        if (g.users === 0 && g.container) this.detach(g);
        return;
      }
      case 'device': {
        file.dev.openCount--;
        if (!file.cdev) {
          const g = this.groups.get(file.dev.group)!;
          g.users--;
          if (g.users === 0 && g.openFd === null && g.container) this.detach(g);
        }
        if (file.dev.openCount === 0 && (file.cdev ? file.bound : true)) file.dev.model.closeDevice();
        return;
      }
      case 'container':
        for (const id of file.groups) {
          const g = this.groups.get(id)!;
          if (g.container === file) g.container = null;
        }
        return;
      default:
        return;
    }
  }

  private isNoiommu(group: number): boolean {
    return this.devices.some((d) => d.group === group && d.opts.noiommu);
  }

  private detach(g: GroupState): void {
    const c = g.container!;
    c.groups.delete(g.id);
    if (c.groups.size === 0) c.iommu = null;
    g.container = null;
  }

  // drivers/vfio/container.c vfio_fops_unl_ioctl
  private containerIoctl(file: ContainerFile, request: number, arg: IoctlArg): number {
    const type1 = this.opts.type1 ?? true;
    switch (request) {
      case VFIO_GET_API_VERSION: return VFIO_API_VERSION;
      case VFIO_CHECK_EXTENSION:
        if (arg === VFIO_NOIOMMU_IOMMU) return this.devices.some((d) => d.opts.noiommu) ? 1 : 0;
        return type1 && (arg === VFIO_TYPE1_IOMMU || arg === VFIO_TYPE1v2_IOMMU) ? 1 : 0;
      case VFIO_SET_IOMMU: {
        // vfio_ioctl_set_iommu: needs a group, a driver for the type, and no driver yet.
        if (file.groups.size === 0) fail('EINVAL', 'VFIO_SET_IOMMU before any group was added');
        if (file.iommu !== null) fail('EBUSY', 'iommu already set');
        // A group only works with the driver of its kind (type1, or vfio-noiommu for noiommu groups).
        const noiommu = [...file.groups].some((id) => this.isNoiommu(id));
        const ok = noiommu ? arg === VFIO_NOIOMMU_IOMMU : type1 && (arg === VFIO_TYPE1_IOMMU || arg === VFIO_TYPE1v2_IOMMU);
        if (!ok) fail(noiommu ? 'EINVAL' : 'ENODEV', `no iommu driver for type ${String(arg)}`);
        file.iommu = arg as number;
        return 0;
      }
      default: return fail('ENOTTY', ioctlName(request));
    }
  }

  // drivers/vfio/group.c vfio_group_fops_unl_ioctl
  private groupIoctl(file: GroupFile, request: number, arg: IoctlArg): number {
    const g = this.groups.get(file.group)!;
    const viable = !this.opts.nonViable?.includes(g.id);
    switch (request) {
      case VFIO_GROUP_GET_STATUS: {
        const buf = this.structArg(arg, vfio_group_status.size);
        if (vfio_group_status.decode(buf).argsz < 8) fail('EINVAL');
        let flags = 0;
        if (g.container) flags |= VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
        else if (viable) flags |= VFIO_GROUP_FLAGS_VIABLE;
        vfio_group_status.encode({ flags }, buf);
        return 0;
      }
      case VFIO_GROUP_SET_CONTAINER: {
        const buf = this.structArg(arg, 4);
        const cfd = new DataView(buf.buffer, buf.byteOffset).getInt32(0, true);
        const c = this.files.get(cfd) ?? fail('EBADF', 'container fd');
        if (g.container) fail('EINVAL', 'group already in a container');
        if (c.kind !== 'container') return fail('EBADFD', 'not a container fd');
        // vfio_container_attach_group -> iommu_group_claim_dma_owner
        if (!viable) fail('EBUSY', 'group DMA owner already claimed');
        c.groups.add(g.id);
        g.container = c;
        return 0;
      }
      case VFIO_GROUP_UNSET_CONTAINER: {
        if (!g.container) fail('EINVAL');
        if (g.users > 0) fail('EBUSY');
        this.detach(g);
        return 0;
      }
      case VFIO_GROUP_GET_DEVICE_FD: {
        const buf = this.structArg(arg, 1);
        const nul = buf.indexOf(0);
        const name = new TextDecoder().decode(buf.subarray(0, nul < 0 ? buf.length : nul));
        const dev = this.devices.find((d) => d.group === g.id && d.name === name) ?? fail('ENODEV', `no device ${name} in group ${g.id}`);
        // vfio_df_group_open / vfio_group_use_container
        if (!g.container || g.container.iommu === null) fail('EINVAL', 'group has no container with an iommu');
        g.users++;
        dev.openCount++;
        return this.allocFd({ kind: 'device', dev, cdev: false, bound: true, attached: true });
      }
      default: return fail('ENOTTY', ioctlName(request));
    }
  }

  // drivers/iommu/iommufd: only what opening a cdev needs
  private iommufdIoctl(file: IommufdFile, request: number, arg: IoctlArg): number {
    if (request !== IOMMU_IOAS_ALLOC) return fail('ENOTTY', ioctlName(request));
    const buf = this.structArg(arg, iommu_ioas_alloc.size);
    const a = iommu_ioas_alloc.decode(buf);
    if (a.size < iommu_ioas_alloc.size || a.flags !== 0) fail('EOPNOTSUPP');
    const id = file.nextId++;
    file.ioas.add(id);
    iommu_ioas_alloc.encode({ out_ioas_id: id }, buf);
    return 0;
  }

  private checkAccess(file: DeviceFile): void {
    // vfio_device_fops_unl_ioctl / read / write: nothing before a cdev is bound.
    if (!file.bound) fail('EINVAL', 'device fd not bound to an iommufd');
  }

  // vfio_device_fops_unl_ioctl -> vfio_ioctl_device_feature or mtty_ioctl
  private deviceIoctl(file: DeviceFile, request: number, arg: IoctlArg): number {
    const { dev } = file;
    if (request === VFIO_DEVICE_BIND_IOMMUFD) {
      if (!file.cdev) fail('ENOTTY');
      const buf = this.structArg(arg, vfio_device_bind_iommufd.size);
      const b = vfio_device_bind_iommufd.decode(buf);
      if (b.argsz < vfio_device_bind_iommufd.size || b.flags !== 0) fail('EINVAL');
      if (file.bound) fail('EINVAL', 'already bound');
      const ictx = this.files.get(b.iommufd);
      if (!ictx || ictx.kind !== 'iommufd') fail('EBADF', 'not an iommufd');
      file.bound = true;
      vfio_device_bind_iommufd.encode({ out_devid: 1 }, buf);
      return 0;
    }
    this.checkAccess(file);
    if (request === VFIO_DEVICE_ATTACH_IOMMUFD_PT) {
      if (!file.cdev) fail('EINVAL');
      const buf = this.structArg(arg, vfio_device_attach_iommufd_pt.size);
      const a = vfio_device_attach_iommufd_pt.decode(buf);
      if (a.argsz < vfio_device_attach_iommufd_pt.size || a.flags !== 0) fail('EINVAL');
      const ictx = [...this.files.values()].find((f): f is IommufdFile => f.kind === 'iommufd' && f.ioas.has(a.pt_id));
      if (!ictx) fail('ENOENT', `no IOAS ${a.pt_id}`);
      file.attached = true;
      return 0;
    }
    if (request === VFIO_DEVICE_FEATURE) return this.deviceFeature(dev, this.structArg(arg, 8));
    switch (request) {
      case VFIO_DEVICE_GET_INFO: {
        // mtty_ioctl: copies only up to num_irqs (16 bytes) back.
        const buf = this.structArg(arg, 16);
        if (vfio_device_info.decode(padTo(buf, 24)).argsz < 16) fail('EINVAL');
        const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
        v.setUint32(4, VFIO_DEVICE_FLAGS_PCI, true);
        v.setUint32(8, dev.numRegions, true);
        v.setUint32(12, 5, true); // VFIO_PCI_NUM_IRQS
        return 0;
      }
      case VFIO_DEVICE_GET_REGION_INFO: {
        const buf = this.structArg(arg, vfio_region_info.size);
        const req = vfio_region_info.decode(buf);
        if (req.argsz < vfio_region_info.size) fail('EINVAL');
        const info = dev.regionInfo(req.index) ?? fail('EINVAL', `no region ${req.index}`);
        // vfio_info_add_capability + copy_to_user: the chain only when argsz has room.
        const out = encodeRegionInfo(info, Math.min(req.argsz, buf.length));
        buf.set(out.subarray(0, Math.min(out.length, req.argsz, buf.length)));
        return 0;
      }
      case VFIO_DEVICE_RESET:
        dev.model.reset();
        dev.v1?.reset();
        return 0;
      default:
        return fail('ENOTTY', ioctlName(request));
    }
  }

  // vfio_ioctl_device_feature + vfio_check_feature + the three migration features
  private deviceFeature(dev: FakeDevice, buf: Uint8Array): number {
    const { argsz, flags } = vfio_device_feature.decode(buf);
    if (argsz < 8) fail('EINVAL', 'argsz < 8');
    if (argsz > buf.length) fail('EFAULT', 'argsz past the buffer');
    const known = VFIO_DEVICE_FEATURE_MASK | VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE;
    if (flags & ~known) fail('EINVAL', 'unknown feature flags');
    const get = (flags & VFIO_DEVICE_FEATURE_GET) !== 0;
    const set = (flags & VFIO_DEVICE_FEATURE_SET) !== 0;
    const probe = (flags & VFIO_DEVICE_FEATURE_PROBE) !== 0;
    if (!probe && get && set) fail('EINVAL', 'GET and SET without PROBE');
    const payload = buf.subarray(8, argsz);
    const check = (supported: number, minsz: number): boolean => {
      if ((flags & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET)) & ~supported) fail('EINVAL', 'unsupported GET/SET');
      if (probe) return false;
      if (!get && !set) fail('EINVAL', 'neither GET nor SET');
      if (argsz - 8 < minsz) fail('EINVAL', `payload ${argsz - 8} < ${minsz}`);
      return true;
    };
    const feature = flags & VFIO_DEVICE_FEATURE_MASK;
    switch (feature) {
      case VFIO_DEVICE_FEATURE_MIGRATION: {
        if (!dev.hasMigration) fail('ENOTTY', 'no mig_ops');
        if (!check(VFIO_DEVICE_FEATURE_GET, 8)) return 0;
        vfio_device_feature_migration.encode({ flags: BigInt(dev.model.flags) }, payload);
        return 0;
      }
      case VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE: {
        if (!dev.hasMigration) fail('ENOTTY', 'no mig_ops');
        if (!check(VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET, 8)) return 0;
        const mig = vfio_device_feature_mig_state.decode(payload);
        if (get) {
          vfio_device_feature_mig_state.encode({ device_state: dev.model.getState(), data_fd: -1 }, payload);
          return 0;
        }
        let migf: MttyMigrationFile | null;
        try {
          migf = dev.model.setState(mig.device_state);
        } catch (e) {
          // The core copies the struct out with data_fd = -1 even on failure.
          vfio_device_feature_mig_state.encode({ data_fd: -1 }, payload);
          throw e;
        }
        const fd = migf ? this.allocFd({ kind: 'data', migf, dev }) : -1;
        vfio_device_feature_mig_state.encode({ data_fd: fd }, payload);
        return 0;
      }
      case VFIO_DEVICE_FEATURE_MIG_DATA_SIZE: {
        if (!dev.hasMigration) fail('ENOTTY', 'no mig_ops');
        if (!check(VFIO_DEVICE_FEATURE_GET, 8)) return 0;
        vfio_device_feature_mig_data_size.encode({ stop_copy_length: BigInt(dev.model.dataSize()) }, payload);
        return 0;
      }
      case VFIO_DEVICE_FEATURE_DMA_LOGGING_START:
      case VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP:
      case VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT: {
        if (!dev.hasMigration) fail('ENOTTY', 'no log_ops');
        const ops = feature === VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT ? VFIO_DEVICE_FEATURE_GET : VFIO_DEVICE_FEATURE_SET;
        if (!check(ops, 0)) return 0;
        return fail('EOPNOTSUPP', 'fake: DMA logging is only modelled for PROBE');
      }
      default:
        return fail('ENOTTY', `feature ${feature}`); // mtty has no device_feature op
    }
  }

  private dataIoctl(file: DataFile, request: number, arg: IoctlArg): number {
    // Only the saving file has unlocked_ioctl (mtty_precopy_ioctl); the resuming file has none.
    if (file.migf.direction !== 'save' || request !== VFIO_MIG_GET_PRECOPY_INFO) return fail('ENOTTY', ioctlName(request));
    const buf = this.structArg(arg, vfio_precopy_info.size);
    if (vfio_precopy_info.decode(buf).argsz < vfio_precopy_info.size) fail('EINVAL');
    const { initial, dirty } = file.migf.precopyInfo();
    vfio_precopy_info.encode({ initial_bytes: initial, dirty_bytes: dirty }, buf);
    return 0;
  }

  // vfio_device_fops_read/write -> mtty_read/mtty_write -> mdev_access
  private deviceRw(fd: number, buf: Uint8Array, offset: bigint, isWrite: boolean): number {
    const file = this.files.get(fd) ?? fail('EBADF');
    if (file.kind === 'data') fail('ESPIPE', 'data_fd is a stream (stream_open): no positioned I/O');
    if (file.kind !== 'device') fail('EINVAL');
    const { dev } = file as DeviceFile;
    this.checkAccess(file as DeviceFile);
    const index = Number(offset >> 40n);
    const off = Number(offset & ((1n << 40n) - 1n));
    if (index === VFIO_PCI_NUM_REGIONS && dev.v1) {
      if (isWrite) dev.v1.write(off, buf);
      else dev.v1.read(off, buf);
      return buf.length;
    }
    if (index === 7) {
      if (off + buf.length > dev.config.length) fail('EFAULT');
      if (isWrite) dev.config.set(buf, off);
      else buf.set(dev.config.subarray(off, off + buf.length));
      return buf.length;
    }
    if (index === 0 || (index === 1 && dev.model.nrPorts === 2)) {
      dev.model.barAccess(index, off, buf, isWrite);
      return buf.length;
    }
    return fail('EFAULT', `mdev_access: no region ${index}`);
  }

  private structArg(arg: IoctlArg, min: number): Uint8Array {
    if (!(arg instanceof Uint8Array) || arg.length < min) return fail('EFAULT', 'bad ioctl argument pointer');
    return arg;
  }
}

function padTo(buf: Uint8Array, n: number): Uint8Array {
  if (buf.length >= n) return buf;
  const out = new Uint8Array(n);
  out.set(buf);
  return out;
}
