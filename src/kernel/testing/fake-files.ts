// The fake kernel's open files: what each fd is, the /dev names open(2)
// resolves (drivers/vfio/{container,group,device_cdev}.c and /dev/iommu),
// and the group bookkeeping opening and releasing them does in vfio.
import type { MttyMigrationFile } from './mtty-model.js';
import type { FakeDevice } from './fake-device.js';
import type { FakeFileKind, FakeKernelOptions } from './fake-kernel-options.js';
import { fail } from './fail.js';

export interface ContainerFile {
  kind: 'container';
  groups: Set<number>;
  iommu: number | null;
}
export interface GroupFile {
  kind: 'group';
  group: number;
}
export interface DeviceFile {
  kind: 'device';
  dev: FakeDevice;
  cdev: boolean;
  bound: boolean;
  attached: boolean;
}
export interface DataFile {
  kind: 'data';
  migf: MttyMigrationFile;
  dev: FakeDevice;
}
export interface IommufdFile {
  kind: 'iommufd';
  ioas: Set<number>;
  nextId: number;
}
export type FakeFile = ContainerFile | GroupFile | DeviceFile | DataFile | IommufdFile;

export interface GroupState {
  id: number;
  openFd: number | null;
  container: ContainerFile | null;
  users: number;
}

export class FakeFiles {
  readonly groups = new Map<number, GroupState>();
  private readonly byFd = new Map<number, FakeFile>();

  constructor(
    readonly devices: readonly FakeDevice[],
    readonly opts: FakeKernelOptions,
  ) {
    for (const d of devices) {
      if (!this.groups.has(d.group)) this.groups.set(d.group, { id: d.group, openFd: null, container: null, users: 0 });
    }
  }

  get(fd: number): FakeFile | undefined {
    return this.byFd.get(fd);
  }

  /** Every fd currently open, with what it is. */
  list(): { fd: number; kind: FakeFileKind }[] {
    return [...this.byFd.entries()].map(([fd, f]) => ({ fd, kind: f.kind }));
  }

  /** The open files, for the checks that look at all of them (a group open through a cdev, an IOAS id). */
  all(): IterableIterator<FakeFile> {
    return this.byFd.values();
  }

  /** open(2) of one of the fake kernel's nodes. */
  open(path: string): number {
    if (this.opts.denied?.includes(path)) fail('EACCES', `open ${path}`);
    const file = this.lookup(path);
    const fd = this.alloc(file);
    if (file.kind === 'group') this.groups.get(file.group)!.openFd = fd;
    if (file.kind === 'device') file.dev.openCount++;
    return fd;
  }

  alloc(file: FakeFile): number {
    let fd = 3;
    while (this.byFd.has(fd)) fd++; // the kernel hands out the lowest free number
    this.byFd.set(fd, file);
    return fd;
  }

  release(fd: number, file: FakeFile): void {
    // A mapping outlives its fd, as in Linux: munmap is still required.
    this.byFd.delete(fd);
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

  isNoiommu(group: number): boolean {
    return this.devices.some((d) => d.group === group && d.opts.noiommu);
  }

  detach(g: GroupState): void {
    const c = g.container!;
    c.groups.delete(g.id);
    if (c.groups.size === 0) c.iommu = null;
    g.container = null;
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
      const cdevOpen = [...this.byFd.values()].some((f) => f.kind === 'device' && f.cdev && f.dev.group === group.id);
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
}
