// FakeSyscalls: an in-memory Linux for unit tests of the kernel backend, a
// twin of the Syscalls the koffi backend implements. /dev/vfio/vfio
// (container), /dev/vfio/<group>, /dev/vfio/devices/vfioN + /dev/iommu (cdev,
// only when `iommufd` is on), sysfs links, and mtty devices behind them.
// It mirrors the 6.12 kernel's checks and errnos; the jobs are split:
//   fake-files.ts          what each fd is, open/release and group bookkeeping
//   fake-vfio-ioctls.ts    container, group and iommufd ioctls
//   fake-device-ioctls.ts  device and data-fd ioctls, region pread/pwrite
//   fake-device.ts         a device: mtty model, config space, optional v1 region
//   mtty-model.ts          samples/vfio-mdev/mtty.c's v2 migration driver
//   v1-region-model.ts     a v1 migration region over the same device state
// This file is the Syscalls surface: every fd it hands out is tracked (the
// leak check), faults can be injected into any call, every call is logged,
// and a model's kernel oops stops the whole machine (oops=panic, as the lab).
import { MigrationError } from '../../uapi/errors.js';
import { VFIO_DEVICE_FEATURE } from '../../uapi/ioctl.js';
import { VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_WRITE } from '../../uapi/constants.js';
import { PROT_WRITE, type IoctlArg, type Mapping, type Syscalls, ioctlName } from '../syscalls.js';
import { fail } from './fail.js';
import { checkAccess, dataIoctl, deviceIoctl, deviceRw } from './fake-device-ioctls.js';
import { FakeDevice } from './fake-device.js';
import { FakeFiles } from './fake-files.js';
import type { FakeCall, FakeFault, FakeFileKind, FakeKernelOptions } from './fake-kernel-options.js';
import { containerIoctl, groupIoctl, iommufdIoctl } from './fake-vfio-ioctls.js';
import { FakeKernelOops } from './mtty-model.js';

export { FakeDevice } from './fake-device.js';

export class FakeSyscalls implements Syscalls {
  readonly devices: FakeDevice[];
  readonly calls: FakeCall[] = [];
  private readonly files: FakeFiles;
  private readonly mappings = new Map<bigint, { fd: number; mapping: Mapping }>();
  private faults: (FakeFault & { seen: number })[] = [];
  private nextMapAddress = 0x7f0000000000n;
  private panicked: string | null = null;

  constructor(readonly opts: FakeKernelOptions = {}) {
    this.devices = (opts.devices ?? []).map((d, i) => new FakeDevice(d, d.cdev ?? i));
    this.files = new FakeFiles(this.devices, opts);
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
    return this.files.list();
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
    return this.run({ op: 'open', path }, () => this.files.open(path));
  }

  close(fd: number): void {
    this.run(
      { op: 'close', fd },
      () => {
        const file = this.files.get(fd) ?? fail('EBADF', `close fd ${fd}`);
        this.files.release(fd, file);
      },
      () => {
        // close(2) releases the fd even when it reports an error.
        const file = this.files.get(fd);
        if (file) this.files.release(fd, file);
      },
    );
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
        case 'container':
          return containerIoctl(this.files, file, request, arg);
        case 'group':
          return groupIoctl(this.files, file, request, arg);
        case 'device':
          return deviceIoctl(this.files, file, request, arg);
        case 'data':
          return dataIoctl(file, request, arg);
        case 'iommufd':
          return iommufdIoctl(file, request, arg);
      }
    });
  }

  read(fd: number, buf: Uint8Array): number {
    return this.run({ op: 'read', fd, length: buf.length }, () => {
      const file = this.files.get(fd) ?? fail('EBADF');
      if (file.kind !== 'data') fail('EINVAL', 'fake: read() without a position only on data fds');
      return file.migf.read(buf);
    });
  }

  write(fd: number, buf: Uint8Array): number {
    return this.run({ op: 'write', fd, length: buf.length }, () => {
      const file = this.files.get(fd) ?? fail('EBADF');
      if (file.kind !== 'data') fail('EINVAL', 'fake: write() without a position only on data fds');
      return file.migf.write(buf);
    });
  }

  pread(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.run({ op: 'pread', fd, offset, length: buf.length }, () => deviceRw(this.files, fd, buf, offset, false));
  }

  pwrite(fd: number, buf: Uint8Array, offset: bigint): number {
    return this.run({ op: 'pwrite', fd, offset, length: buf.length }, () => deviceRw(this.files, fd, buf, offset, true));
  }

  mmap(fd: number, length: number, prot: number, offset: bigint): Mapping {
    return this.run({ op: 'mmap', fd, offset, length }, () => {
      const file = this.files.get(fd) ?? fail('EBADF');
      if (file.kind !== 'device') fail('ENODEV', 'mmap of a non-device fd');
      const { dev } = file;
      checkAccess(file);
      const index = Number(offset >> 40n);
      const info = dev.regionInfo(index);
      // vfio_pci_core_mmap: the region must advertise MMAP, and the range must lie in it.
      if (!info || !(info.flags & VFIO_REGION_INFO_FLAG_MMAP) || !dev.v1) fail('EINVAL', `region ${index} is not mmappable`);
      const off = Number(offset & ((1n << 40n) - 1n));
      const area = info.sparseAreas?.find((a) => BigInt(off) >= a.offset && BigInt(off + length) <= a.offset + a.size);
      if (!area) fail('EINVAL', 'mmap outside the sparse areas');
      if (prot & PROT_WRITE && !(info.flags & VFIO_REGION_INFO_FLAG_WRITE)) fail('EINVAL');
      const start = off - dev.v1.dataOffset;
      const mapping: Mapping = { address: this.nextMapAddress, length, bytes: dev.v1.window.subarray(start, start + length) };
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
      const dev = this.devices.find((d) => d.name === m[2] && (d.opts.bus ?? 'mdev') === m[1]) ?? fail('ENOENT', `readlink ${path}`);
      return `../../../kernel/iommu_groups/${dev.group}`;
    });
  }

  readdir(path: string): string[] {
    return this.run({ op: 'readdir', path }, () => {
      const m = /^\/sys\/bus\/([^/]+)\/devices\/([^/]+)\/vfio-dev$/.exec(path) ?? fail('ENOENT', `readdir ${path}`);
      const dev = this.devices.find((d) => d.name === m[2] && (d.opts.bus ?? 'mdev') === m[1]) ?? fail('ENOENT', `readdir ${path}`);
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
    const fault = this.faults.find(
      (f) =>
        (f.op === undefined || f.op === call.op) &&
        (f.request === undefined || f.request === call.request) &&
        (f.target === undefined || f.target === call.target) &&
        (f.path === undefined || f.path === call.path) &&
        ++f.seen === (f.nth ?? 1),
    );
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
}
