// Every failure the CLI reports, as one line naming the cause and the fix.
// The facts come from where the error was raised (DeviceOpenError's problem,
// MigrationFileError's problem, the errno); the wording lives here only.
// main.ts prints `vfio-mig: <message>`, and the stack only with --debug.
import { MigrationError } from '../uapi/errors.js';
import { recoveryOf } from '../../legacy/qemu/failure-recovery.js';
import { CommandFailed } from './command.js';
import { MigrationFileError } from './migration-file.js';
import { DeviceOpenError, type FaceTakeover, type OpenedDevice } from './open-device.js';
import { UsageError } from './usage-error.js';

/** A save or load that failed on the device (the file was fine). */
export class DeviceOperationError extends MigrationError {
  constructor(
    readonly operation: 'save' | 'load',
    readonly address: string,
    readonly via: string,
    cause: unknown,
  ) {
    const inner =
      cause instanceof MigrationError ? cause : new MigrationError('EIO', cause instanceof Error ? cause.message : String(cause));
    super(inner.errno, inner.message.replace(/^E\w+: /, ''));
    this.name = 'DeviceOperationError';
    (this as { cause?: unknown }).cause = cause;
  }
}

export interface Explanation {
  /** One line, no trailing newline. */
  message: string;
  /** The errno name, when there is one. */
  code?: string;
  /** What kind of problem (file or device), for scripts. */
  problem?: string;
  /** Exit status 2 instead of 1. */
  usage: boolean;
  /** A command's result despite the failure (diff summaries). */
  result?: unknown;
}

const oneLine = (s: string): string => s.replace(/\s*\n\s*/g, ' ').trim();
/** The modules the kernel layer's own hints name (src/kernel/vfio-device.ts), so the summary and --debug agree. */
const VFIO_MODPROBE = 'modprobe vfio vfio_iommu_type1';
const strip = (s: string): string => s.replace(/^E[A-Z0-9]+: /, '');

export function explainError(e: unknown): Explanation {
  if (e instanceof UsageError) return { message: oneLine(e.message), usage: true };
  if (e instanceof CommandFailed) return { message: oneLine(e.message), usage: false, result: e.result };
  if (e instanceof DeviceOpenError) {
    const problem = deviceProblem(e);
    // Every rule words "<address>: <cause and fix>"; the errno goes between, whatever the rule.
    const message = deviceMessage(e, problem).replace(`${e.address}: `, `${e.address}: ${e.code}: `);
    return { message: oneLine(message), code: e.code, problem, usage: false };
  }
  if (e instanceof MigrationFileError) return { message: oneLine(fileMessage(e)), code: e.code, problem: e.problem, usage: false };
  if (e instanceof DeviceOperationError) return { message: oneLine(operationMessage(e)), code: e.code, usage: false };
  if (e instanceof MigrationError) return { message: oneLine(e.message), code: e.code, usage: false };
  // TypeError, RangeError, ...: a bug, not a condition a user can fix. A plain Error is a command's own verdict.
  const bug =
    e instanceof TypeError || e instanceof RangeError || e instanceof ReferenceError || e instanceof SyntaxError || !(e instanceof Error);
  const message = e instanceof Error ? e.message : String(e);
  return { message: oneLine(bug ? `internal error: ${message} (run with --debug for the stack trace)` : message), usage: false };
}

function groupOf(address: string): { node: string; number: string; name: string } | null {
  const m = /^(\/dev\/vfio\/(?:noiommu-)?(\d+)):(.+)$/.exec(address);
  return m ? { node: m[1], number: m[2], name: m[3] } : null;
}

/** What kept a device from opening. */
export type DeviceProblem =
  | 'no-vfio'
  | 'no-group'
  | 'no-cdev'
  | 'no-device'
  | 'stale-node'
  | 'permission'
  | 'busy'
  | 'not-viable'
  | 'no-migration'
  | 'no-ffi'
  | 'other';

/** The errno of a failed open, read with the facts open-device gathered. */
export function deviceProblem(e: DeviceOpenError): DeviceProblem {
  switch (e.code) {
    case 'ENOENT':
      // The cdev API needs /dev/iommu and its own node, not the container: its detail names what is missing.
      if (e.addressKind === 'cdev') return 'no-cdev';
      return e.facts.vfioLoaded === false ? 'no-vfio' : 'no-group';
    case 'ENXIO':
      // chrdev_open (fs/char_dev.c): a device node with no driver registered behind its number.
      return 'stale-node';
    case 'EACCES':
    case 'EPERM':
      return 'permission';
    case 'EBUSY':
      return /not viable/.test(e.detail) ? 'not-viable' : 'busy';
    case 'ENODEV':
      return /no device/.test(e.detail) ? 'no-device' : 'other';
    case 'ENOTTY':
      // open-device raises ENOTTY only when FEATURE_MIGRATION says ENOTTY and there is no v1 region.
      return 'no-migration';
    case 'ENOSYS':
      return /koffi/.test(e.detail) ? 'no-ffi' : 'other';
    default:
      return 'other';
  }
}

function deviceMessage(e: DeviceOpenError, problem: DeviceProblem): string {
  const a = e.address;
  const g = groupOf(a);
  switch (problem) {
    case 'no-vfio':
      return `${a}: /dev/vfio/vfio does not exist: the vfio modules are not loaded; run '${VFIO_MODPROBE}', then bind the device to a vfio driver: a PCI device with 'modprobe vfio-pci' and bind the device to vfio-pci, an mdev by loading its parent driver (e.g. 'modprobe mtty') and creating it`;
    case 'no-group':
      return `${a}: there is no VFIO group ${g?.node ?? ''}: the device is not bound to a vfio driver, or its group has another number; with the vfio modules loaded ('${VFIO_MODPROBE}'), bind it ('driverctl set-override <pci-address> vfio-pci', or echo it into /sys/bus/pci/drivers/vfio-pci/bind) and look its group up with 'ls /dev/vfio'`;
    case 'stale-node':
      return `${a}: no VFIO ${e.addressKind === 'cdev' ? 'device' : 'group'} is registered behind ${g?.node ?? a} (a stale device node: the device was unbound or its group released, or /dev was filled by hand); rebind the device to a vfio driver and use the node that 'ls ${e.addressKind === 'cdev' ? '/dev/vfio/devices' : '/dev/vfio'}' shows now`;
    case 'no-cdev':
      return `${a}: ${e.detail}; or bind the device to vfio-pci on a kernel with CONFIG_VFIO_DEVICE_CDEV, or address it by group: /dev/vfio/<group>:<device-name>`;
    case 'no-device':
      return `${a}: group ${g?.node ?? ''} has no device '${g?.name ?? ''}': list its devices with 'ls /sys/kernel/iommu_groups/${g?.number ?? '<N>'}/devices' (PCI address or mdev UUID)`;
    case 'permission':
      return `${a}: permission denied (${e.detail.replace(/:.*$/, '')}): run as root, or give your user the VFIO nodes (chown or a udev rule for ${g?.node ?? a} and /dev/vfio/vfio) and enough locked memory (ulimit -l)`;
    case 'busy':
      return `${a}: busy: another process (a running QEMU?) has the group or device open; stop it and retry`;
    case 'not-viable':
      return `${a}: group not viable: every device in the IOMMU group must be bound to vfio-pci (see 'ls /sys/kernel/iommu_groups/${g?.number ?? '<N>'}/devices')`;
    case 'no-migration':
      return `${a}: the device does not support migration (ENOTTY on VFIO_DEVICE_FEATURE_MIGRATION and no v1 migration region): its driver cannot migrate it; use a vfio variant driver with migration support (e.g. mlx5_vfio_pci, hisi_acc_vfio_pci; mtty for testing)`;
    case 'no-ffi':
      return `${a}: ${e.detail}; reinstall the dependencies (npm ci) on a supported platform (Linux x86_64/arm64)`;
    case 'other':
      return `${a}: ${e.detail}`;
  }
}

function fileMessage(e: MigrationFileError): string {
  const p = `'${e.path}'`;
  const again = 'copy it again or save again';
  switch (e.problem) {
    case 'unreadable':
      if (e.code === 'ENOENT') return `cannot read ${p}: no such file (check the path)`;
      if (e.code === 'EACCES' || e.code === 'EPERM')
        return `cannot read ${p}: permission denied (run as a user who may read it, or fix its permissions with chmod/chown)`;
      return `cannot read ${p}: ${e.code} (${strip(e.detail)})`;
    case 'unwritable':
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR')
        return `cannot write ${p}: its directory does not exist (create it or choose another path)`;
      if (e.code === 'EACCES' || e.code === 'EPERM')
        return `cannot write ${p}: permission denied (choose a directory you may write to, or run as a user who may)`;
      if (e.code === 'ENOSPC') return `cannot write ${p}: no space left on the device (free some space or save elsewhere)`;
      if (e.code === 'EROFS') return `cannot write ${p}: read-only file system (save elsewhere)`;
      if (e.code === 'EPIPE')
        return `cannot write ${p}: the reader went away (EPIPE) before the whole file was written; what it got has no end marker and any load refuses it`;
      return `cannot write ${p}: ${e.code} (${strip(e.detail)})`;
    case 'not-a-file':
      return `${p} is a directory or special file, not a migration file: give a file path`;
    case 'bad-magic':
      return `${p} is not a vfio-mig migration file (${e.detail}): give a file written by 'vfio-mig save'`;
    case 'bad-version':
      return `${p}: ${e.detail}: load it with the vfio-mig that saved it`;
    case 'incomplete':
      return `${p} is incomplete: ${e.detail}; save again`;
    case 'truncated':
      return `${p} is truncated (${e.detail}): it was cut short (an interrupted copy or a full disk); ${again}`;
    case 'trailing-bytes':
    case 'damaged':
    case 'checksum':
    case 'bad-stream':
    case 'bad-info':
      return `${p} is damaged: ${e.detail}; ${again}`;
    case 'changed':
      return `${p} changed while it was being loaded (${e.detail}); the load was stopped before the device accepted the state: leave the file alone during a load and load again`;
  }
}

function operationMessage(e: DeviceOperationError): string {
  const what = e.operation === 'save' ? `saving ${e.address} (over ${e.via})` : `loading into ${e.address} (over ${e.via})`;
  let hint = '';
  if (e.operation === 'load' && e.code === 'EINVAL')
    hint = ': the device refused the state; was the file saved from this kind of device (same type, same size)?';
  if (e.code === 'EOPNOTSUPP') hint = ': the device cannot do this';
  if ((e.code === 'ENOSPC' || e.code === 'ENOMEM') && e.operation === 'load') {
    hint = ': the device took no more data; the file holds more state than this device has (was it saved from this kind of device?)';
  }
  return `${what} failed: ${e.code}: ${strip(e.message)}${hint}${recoveryMessage(e.cause)}`;
}

/** What the client did to the device after the failure (failure-recovery.ts), as the message's last clause. */
function recoveryMessage(cause: unknown): string {
  const r = recoveryOf(cause);
  if (!r) return '';
  if (r.reset) return '; the device was reset (VFIO_DEVICE_RESET) and is RUNNING again';
  return `; resetting the device failed too (${r.error.code}: ${strip(r.error.message)}): it may be left mid-migration, so reset it before any other use`;
}

/** One line per face that reset a device an earlier user left behind (the device rule), for stderr. */
export function takeoverNotes(dev: OpenedDevice): string[] {
  return dev
    .takeovers()
    .filter((t) => t.action === 'reset')
    .map((t) => takeoverNote(dev.text, t));
}

function takeoverNote(address: string, t: FaceTakeover): string {
  const reset = 'it was reset (VFIO_DEVICE_RESET) to RUNNING before use';
  if (t.face === 'v1')
    return `${address} was in ${t.found}; the v1 face (LegacyRegionOverV2) starts from RUNNING, as QEMU 7.2 assumes 001: ${reset}`;
  return `${address} was left in ${t.found} by an earlier user; ${reset}`;
}
