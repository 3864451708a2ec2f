// Opening a device address for the subcommands: the device's native face(s)
// (a v2 MigrationDevice, a v1 LegacyRegion, or both for a kernel device that
// has both), and the face a client asks for with --via, through a translator
// when the device does not speak that protocol natively:
//   v1 client, v2 device -> LegacyRegionOverV2
//   v2 client, v1 device -> V2DeviceOverLegacy
// A simulated device lives only inside this process: each open makes a fresh
// one from the address's parameters (state, seed), so a saved file is what
// carries a state from one `vfio-mig` process to the next.
// close() closes everything opened, once, on every path.
import { SimV1Region } from '../../legacy/sim-v1-region.js';
import type { LegacyRegion } from '../../legacy/contracts.js';
import { LegacyRegionOverV2 } from '../../translate/legacy-region-over-v2.js';
import { V2DeviceOverLegacy } from '../../translate/v2-device-over-legacy.js';
import { KernelLegacyRegion } from '../kernel/kernel-legacy-region.js';
import { KernelMigrationDevice } from '../kernel/kernel-migration-device.js';
import { koffiSyscalls } from '../kernel/koffi-syscalls.js';
import { O_CLOEXEC, O_RDWR, type Syscalls } from '../kernel/syscalls.js';
import { openVfioDevice, VFIO_CONTAINER_PATH, type DeviceSpec, type VfioDevice } from '../kernel/vfio-device.js';
import { SimDevice } from '../sim/sim-device.js';
import { SimV2Driver } from '../sim/sim-v2-driver.js';
import { FirstFailure, MigrationError, type ErrnoName } from '../uapi/errors.js';
import type { MigrationDevice } from '../v2/contracts.js';
import { stateName } from '../v2/states.js';
import type { Takeover } from '../v2/takeover.js';
import type { DeviceAddress } from './address.js';

export type Protocol = 'v1' | 'v2';

/**
 * A device that could not be opened: the errno, what the layer below said,
 * and the facts gathered to tell the causes apart. explain-error.ts decides
 * what it means and words the fix.
 */
export class DeviceOpenError extends MigrationError {
  constructor(
    readonly address: string,
    readonly addressKind: DeviceAddress['kind'],
    code: ErrnoName | number,
    readonly detail: string,
    /** vfioLoaded: whether /dev/vfio/vfio exists (checked after an ENOENT). */
    readonly facts: { vfioLoaded?: boolean } = {},
    options?: { cause?: unknown },
  ) {
    super(code, `${address}: ${detail}`);
    this.name = 'DeviceOpenError';
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/**
 * What taking a device over found and did (the device rule, src/v2/takeover.ts),
 * for the face that applied it: 'v2' the kernel device (or V2DeviceOverLegacy),
 * 'v1' LegacyRegionOverV2 (which keeps only RUNNING).
 */
export interface FaceTakeover {
  face: Protocol;
  found: string;
  action: Takeover['action'];
}

/** The face a client talks to. */
export interface V2Face {
  protocol: 'v2';
  device: MigrationDevice;
  translator?: 'V2DeviceOverLegacy';
}
export interface V1Face {
  protocol: 'v1';
  region: LegacyRegion;
  translator?: 'LegacyRegionOverV2';
  windowAccess: 'pieces' | 'mmap';
}
export type Face = V2Face | V1Face;

export interface OpenedDevice {
  /** The address as given. */
  readonly text: string;
  readonly address: DeviceAddress;
  /** The protocol the device speaks itself (v2 when a kernel device has both). */
  readonly native: Protocol;
  /** The device's own faces. */
  readonly v2?: MigrationDevice;
  readonly v1?: LegacyRegion;
  /** Simulated devices: the hardware, for fingerprints. */
  readonly sim?: SimDevice;
  /** Kernel devices: the open VFIO device (regions, info). */
  readonly vfio?: VfioDevice;
  /** Kernel devices: why there is no v2 face (e.g. ENOTTY), when there is none. */
  readonly v2Unavailable?: string;
  /**
   * The face for a client speaking `via` (default: native). A translator is
   * made at most once per protocol and owns what it wraps; close() closes it.
   */
  face(via: 'v2'): V2Face;
  face(via: 'v1'): V1Face;
  face(via?: Protocol): Face;
  /** What each face that applies the device rule found and did so far (kernel devices and translators). */
  takeovers(): FaceTakeover[];
  close(): Promise<void>;
}

export interface OpenOptions {
  /** The OS boundary for kernel addresses (default: koffi, loaded only then). */
  syscalls?: Syscalls;
}

export function addressSpec(address: DeviceAddress): DeviceSpec | null {
  if (address.kind === 'group') return { group: address.groupPath, name: address.deviceName };
  if (address.kind === 'cdev') return { cdev: address.path };
  return null;
}

/** Open `address`. Errors opening a kernel device are DeviceOpenError; nothing stays open on failure. */
export async function openDevice(text: string, address: DeviceAddress, options: OpenOptions = {}): Promise<OpenedDevice> {
  switch (address.kind) {
    case 'sim-v2': {
      const sim = new SimDevice({ size: address.size, seed: address.seed });
      return new Opened(text, address, 'v2', { v2: new SimV2Driver(sim, { flags: address.flags }), sim });
    }
    case 'sim-v1': {
      const sim = new SimDevice({ size: address.size, seed: address.seed });
      return new Opened(text, address, 'v1', { v1: new SimV1Region(sim, { windowSize: address.window, policy: address.policy }), sim });
    }
    case 'group':
    case 'cdev':
      return openKernel(text, address, addressSpec(address)!, options.syscalls);
  }
}

async function openKernel(text: string, address: DeviceAddress, spec: DeviceSpec, given?: Syscalls): Promise<OpenedDevice> {
  let vfio: VfioDevice;
  try {
    vfio = openVfioDevice(spec, given ?? koffiSyscalls());
  } catch (e) {
    throw diagnoseOpen(text, address, e, given);
  }
  const v2 = new KernelMigrationDevice(vfio);
  let v2Unavailable: string | undefined;
  let v1: KernelLegacyRegion | undefined;
  try {
    try {
      await v2.migrationFlags();
    } catch (e) {
      if (!(e instanceof MigrationError && e.code === 'ENOTTY')) throw e;
      v2Unavailable = e.message;
    }
    const region = vfio.migrationRegion();
    if (region && region.size > 0n) v1 = new KernelLegacyRegion(vfio, region);
    if (v2Unavailable !== undefined && !v1) {
      throw new DeviceOpenError(
        text,
        address.kind,
        'ENOTTY',
        `device ${vfio.name} has no migration support: VFIO_DEVICE_FEATURE_MIGRATION answers ENOTTY and it has no v1 migration region`,
      );
    }
  } catch (e) {
    // Both faces share the VfioDevice; closing it once closes every fd.
    await v2.close().catch(() => undefined);
    throw e instanceof DeviceOpenError ? e : diagnoseOpen(text, address, e, given);
  }
  const faces = v2Unavailable === undefined ? { v2, v1 } : { v1 };
  return new Opened(text, address, v2Unavailable === undefined ? 'v2' : 'v1', {
    ...faces,
    vfio,
    v2Unavailable,
    extraClose: v2Unavailable === undefined ? undefined : v2,
  });
}

/** The error as a DeviceOpenError, with the facts that tell its causes apart. */
function diagnoseOpen(text: string, address: DeviceAddress, e: unknown, given?: Syscalls): unknown {
  if (!(e instanceof MigrationError)) return e;
  const facts = e.code === 'ENOENT' ? { vfioLoaded: containerExists(given) } : {};
  return new DeviceOpenError(text, address.kind, e.code as ErrnoName, e.message.replace(/^E\w+: /, ''), facts, { cause: e });
}

/** Is /dev/vfio/vfio there (the vfio module is loaded)? Opened and closed again. */
function containerExists(given?: Syscalls): boolean {
  try {
    const sys = given ?? koffiSyscalls();
    const fd = sys.open(VFIO_CONTAINER_PATH, O_RDWR | O_CLOEXEC);
    sys.close(fd);
    return true;
  } catch (e) {
    return !(e instanceof MigrationError && e.code === 'ENOENT');
  }
}

interface Parts {
  v2?: MigrationDevice;
  v1?: LegacyRegion;
  sim?: SimDevice;
  vfio?: VfioDevice;
  v2Unavailable?: string;
  /** Opened but not exposed (a kernel v2 face that answered ENOTTY): closed too. */
  extraClose?: { close(): Promise<void> };
}

class Opened implements OpenedDevice {
  readonly v2?: MigrationDevice;
  readonly v1?: LegacyRegion;
  readonly sim?: SimDevice;
  readonly vfio?: VfioDevice;
  readonly v2Unavailable?: string;
  private readonly extraClose?: { close(): Promise<void> };
  private readonly faces = new Map<Protocol, Face>();
  private closed = false;

  constructor(
    readonly text: string,
    readonly address: DeviceAddress,
    readonly native: Protocol,
    parts: Parts,
  ) {
    Object.assign(this, parts);
    this.extraClose = parts.extraClose;
  }

  face(via: 'v2'): V2Face;
  face(via: 'v1'): V1Face;
  face(via?: Protocol): Face;
  face(via: Protocol = this.native): Face {
    if (this.closed) throw new MigrationError('EBADF', `${this.text} is closed`);
    const made = this.faces.get(via);
    if (made) return made;
    let face: Face;
    if (via === 'v2') {
      face = this.v2
        ? { protocol: 'v2', device: this.v2 }
        : { protocol: 'v2', device: new V2DeviceOverLegacy(this.v1!), translator: 'V2DeviceOverLegacy' };
    } else if (this.v1) {
      face = { protocol: 'v1', region: this.v1, windowAccess: this.nativeWindowAccess() };
    } else {
      face = { protocol: 'v1', region: new LegacyRegionOverV2(this.v2!), translator: 'LegacyRegionOverV2', windowAccess: 'mmap' };
    }
    this.faces.set(via, face);
    return face;
  }

  takeovers(): FaceTakeover[] {
    const found: [Protocol, Takeover | undefined][] = [];
    if (this.v2 instanceof KernelMigrationDevice) found.push(['v2', this.v2.takeover]);
    for (const f of this.faces.values()) {
      if (f.protocol === 'v2' && f.device instanceof V2DeviceOverLegacy) found.push(['v2', f.device.inspect().takeover]);
      if (f.protocol === 'v1' && f.region instanceof LegacyRegionOverV2) found.push(['v1', f.region.inspect().takeover]);
    }
    return found
      .filter((x): x is [Protocol, Takeover] => x[1] !== undefined)
      .map(([face, t]) => ({ face, found: stateName(t.found), action: t.action }));
  }

  /**
   * How the v1 client moves window bytes: simulated regions take one access
   * per chunk; a kernel region that offers mmap too, else QEMU 7.2's 8-byte
   * pieces (vfio_mig_rw), which every v1 driver accepts.
   */
  private nativeWindowAccess(): 'pieces' | 'mmap' {
    if (!(this.v1 instanceof KernelLegacyRegion)) return 'mmap';
    return this.v1.region.sparseAreas?.length ? 'mmap' : 'pieces';
  }

  /** Translators first (each closes what it wraps), then native faces no translator took. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const toClose: { close(): Promise<void> }[] = [];
    let v2Taken = false;
    let v1Taken = false;
    for (const f of this.faces.values()) {
      if (f.protocol === 'v2' && f.translator) {
        toClose.push(f.device);
        v1Taken = true;
      }
      if (f.protocol === 'v1' && f.translator) {
        toClose.push(f.region);
        v2Taken = true;
      }
    }
    if (this.v2 && !v2Taken) toClose.push(this.v2);
    if (this.v1 && !v1Taken) toClose.push(this.v1);
    if (this.extraClose) toClose.push(this.extraClose);
    const failure = new FirstFailure();
    for (const c of toClose) await failure.runAsync(() => c.close());
    failure.rethrow();
  }
}
