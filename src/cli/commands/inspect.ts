// vfio-mig inspect: what a device offers for migration, without changing it:
// v2 flags, current state, MIG_DATA_SIZE, whether it has a v1 migration
// region, its regions (kernel devices) and its parameters (simulated devices).
import { SimV1Region } from '../../../legacy/sim-v1-region.js';
import { readDeviceState } from '../../../legacy/v1-registers.js';
import { v1StateName } from '../../../legacy/v1-state.js';
import { KernelLegacyRegion } from '../../kernel/kernel-legacy-region.js';
import type { RegionInfo } from '../../uapi/region-info.js';
import {
  VFIO_DEVICE_FLAGS_CAPS,
  VFIO_DEVICE_FLAGS_PCI,
  VFIO_DEVICE_FLAGS_RESET,
  VFIO_REGION_INFO_FLAG_MMAP,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
} from '../../uapi/constants.js';
import { MigrationError } from '../../uapi/errors.js';
import { stateName } from '../../v2/states.js';
import { VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED, VFIO_REGION_TYPE_MIGRATION_DEPRECATED } from '../../../legacy/region-layout.js';
import type { Command } from '../command.js';
import { flagNames, oneAddress, withDevice } from '../device-args.js';
import type { OpenedDevice } from '../open-device.js';
import { formatSize } from '../parse-values.js';
import { renderTextTable } from '../text-table.js';

export interface InspectReport {
  device: string;
  kind: string;
  /** The protocol the device speaks itself. */
  native: 'v1' | 'v2';
  /** How a client speaking each protocol reaches it. */
  clients: { v1: 'native' | 'LegacyRegionOverV2'; v2: 'native' | 'V2DeviceOverLegacy' };
  /** The v2 face: native, or through V2DeviceOverLegacy for a v1 device. */
  v2: {
    flags: number;
    flagNames: string;
    state: string;
    /** MIG_DATA_SIZE in bytes; null when the device cannot say (v1 devices outside SAVING). */
    stopCopySize: number | null;
    stopCopySizeNote?: string;
    /** Why a kernel device has no native v2 face. */
    nativeUnavailable?: string;
    /** The state the device was found in and what opening it did (the device rule: a left-over state is reset). */
    takeover?: { found: string; action: 'kept' | 'reset' };
  };
  /** The device's own v1 migration region, or null. */
  v1Region: null | {
    size: number;
    deviceState: number;
    deviceStateName: string;
    index?: number;
    windowSize?: number;
    dataOffset?: number;
    policy?: string;
    mmap?: boolean;
  };
  sim?: {
    size: number;
    pageSize: number;
    pages: number;
    seed: number;
    steps: number;
    streamBytes: number;
    fingerprint: string;
    flags?: number;
    window?: number;
    policy?: string;
  };
  kernel?: {
    name: string;
    api: 'group' | 'cdev';
    flags: number;
    flagNames: string;
    irqs: number;
    regions: {
      index: number;
      name: string;
      size: number;
      flags: string[];
      offset: string;
      type?: string;
      sparseAreas?: { offset: number; size: number }[];
    }[];
  };
}

const PCI_REGION_NAMES = ['BAR0', 'BAR1', 'BAR2', 'BAR3', 'BAR4', 'BAR5', 'ROM', 'CONFIG', 'VGA'];

function regionName(r: RegionInfo, pci: boolean): string {
  if (r.type?.type === VFIO_REGION_TYPE_MIGRATION_DEPRECATED && r.type.subtype === VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED)
    return 'migration (v1)';
  if (r.type) return `type ${r.type.type}/${r.type.subtype}`;
  return pci && r.index < PCI_REGION_NAMES.length ? PCI_REGION_NAMES[r.index] : `region ${r.index}`;
}

function regionFlags(flags: number): string[] {
  const out: string[] = [];
  if (flags & VFIO_REGION_INFO_FLAG_READ) out.push('read');
  if (flags & VFIO_REGION_INFO_FLAG_WRITE) out.push('write');
  if (flags & VFIO_REGION_INFO_FLAG_MMAP) out.push('mmap');
  return out;
}

function deviceFlagNames(flags: number): string {
  const names: string[] = [];
  if (flags & VFIO_DEVICE_FLAGS_PCI) names.push('PCI');
  if (flags & VFIO_DEVICE_FLAGS_RESET) names.push('RESET');
  if (flags & VFIO_DEVICE_FLAGS_CAPS) names.push('CAPS');
  return names.join('|') || 'none';
}

/**
 * Gather everything inspect shows. Reads only: no state is changed, except
 * that opening a kernel device applies the device rule (a state an earlier
 * user left mid-migration is reset, never SET), which the report shows.
 */
export async function inspectDevice(dev: OpenedDevice): Promise<InspectReport> {
  const { address } = dev;
  const v2Face = dev.face('v2');
  const flags = await v2Face.device.migrationFlags();
  const state = await v2Face.device.getState();
  let stopCopySize: number | null = null;
  let stopCopySizeNote: string | undefined;
  const takeover = dev.takeovers().find((t) => t.face === 'v2');
  if (dev.v2) {
    try {
      stopCopySize = Number(await dev.v2.stopCopySize());
    } catch (e) {
      if (!(e instanceof MigrationError)) throw e;
      stopCopySizeNote = `MIG_DATA_SIZE failed: ${e.message}`;
    }
  } else {
    stopCopySizeNote = 'a v1 device reports pending_bytes only while saving';
  }

  let v1Region: InspectReport['v1Region'] = null;
  if (dev.v1) {
    const raw = await readDeviceState(dev.v1);
    v1Region = { size: dev.v1.size, deviceState: raw, deviceStateName: v1StateName(raw) };
    if (dev.v1 instanceof SimV1Region)
      Object.assign(v1Region, { windowSize: dev.v1.windowSize, dataOffset: dev.v1.dataOffset, policy: dev.v1.policy });
    if (dev.v1 instanceof KernelLegacyRegion)
      Object.assign(v1Region, { index: dev.v1.region.index, mmap: Boolean(dev.v1.region.sparseAreas?.length) });
  }

  const report: InspectReport = {
    device: dev.text,
    kind:
      address.kind === 'sim-v2'
        ? 'simulated v2 driver (SimV2Driver)'
        : address.kind === 'sim-v1'
          ? 'simulated v1 region (SimV1Region)'
          : `VFIO device ${dev.vfio?.name ?? ''} (${address.kind === 'cdev' ? 'cdev' : 'group'} API)`,
    native: dev.native,
    clients: { v1: dev.v1 ? 'native' : 'LegacyRegionOverV2', v2: dev.v2 ? 'native' : 'V2DeviceOverLegacy' },
    v2: {
      flags,
      flagNames: flagNames(flags),
      state: stateName(state),
      stopCopySize,
      ...(stopCopySizeNote ? { stopCopySizeNote } : {}),
      ...(dev.v2Unavailable ? { nativeUnavailable: dev.v2Unavailable } : {}),
      ...(takeover ? { takeover: { found: takeover.found, action: takeover.action } } : {}),
    },
    v1Region,
  };
  if (dev.sim) {
    const s = dev.sim;
    report.sim = {
      size: s.size,
      pageSize: s.pageSize,
      pages: s.pageCount,
      seed: s.seed,
      steps: s.steps,
      streamBytes: Number(s.fullStreamBytes()),
      fingerprint: s.fingerprint(),
      ...(address.kind === 'sim-v2' ? { flags: address.flags } : {}),
      ...(address.kind === 'sim-v1' ? { window: address.window, policy: address.policy } : {}),
    };
  }
  if (dev.vfio) {
    const v = dev.vfio;
    const pci = Boolean(v.info.flags & VFIO_DEVICE_FLAGS_PCI);
    report.kernel = {
      name: v.name,
      api: v.api,
      flags: v.info.flags,
      flagNames: deviceFlagNames(v.info.flags),
      irqs: v.info.numIrqs,
      regions: v.regions().map((r) => ({
        index: r.index,
        name: regionName(r, pci),
        size: Number(r.size),
        flags: regionFlags(r.flags),
        offset: `0x${r.offset.toString(16)}`,
        ...(r.type ? { type: `${r.type.type}/${r.type.subtype}` } : {}),
        ...(r.sparseAreas ? { sparseAreas: r.sparseAreas.map((a) => ({ offset: Number(a.offset), size: Number(a.size) })) } : {}),
      })),
    };
  }
  return report;
}

const bytes = (n: number): string => (n >= 1024 ? `${formatSize(n)} (${n} bytes)` : `${n} bytes`);

export function renderInspect(r: InspectReport): string {
  const rows: [string, string][] = [
    ['device', r.device],
    ['kind', r.kind],
    [
      'protocol',
      r.native === 'v2'
        ? `v2 native; v1 clients ${r.clients.v1 === 'native' ? 'use its own v1 region' : 'go through LegacyRegionOverV2 (--via v1)'}`
        : `v1 native (migration region); v2 clients go through V2DeviceOverLegacy (--via v2)`,
    ],
    [r.native === 'v2' ? 'flags' : 'flags (v2 face)', `${r.v2.flags} (${r.v2.flagNames})`],
    [
      r.native === 'v2' ? 'state' : 'state (v2 face)',
      r.v2.takeover?.action === 'reset'
        ? `${r.v2.state} (found in ${r.v2.takeover.found}, left by an earlier user: reset with VFIO_DEVICE_RESET)`
        : r.v2.state,
    ],
    ['MIG_DATA_SIZE', r.v2.stopCopySize === null ? `unknown: ${r.v2.stopCopySizeNote ?? ''}` : bytes(r.v2.stopCopySize)],
  ];
  if (r.v2.nativeUnavailable) rows.push(['v2 (native)', `none: ${r.v2.nativeUnavailable.replace(/^E\w+: /, '')}`]);
  if (r.v1Region) {
    const v = r.v1Region;
    const parts = [`${formatSize(v.size)}`, `device_state ${v.deviceStateName}`];
    if (v.index !== undefined) parts.unshift(`region ${v.index}`);
    if (v.windowSize !== undefined) parts.push(`window ${formatSize(v.windowSize)} at ${v.dataOffset}`);
    if (v.policy) parts.push(`policy ${v.policy}`);
    if (v.mmap !== undefined) parts.push(v.mmap ? 'mmap-able window' : 'no mmap (8-byte accesses)');
    rows.push(['v1 region', parts.join(', ')]);
  } else {
    rows.push(['v1 region', 'none']);
  }
  if (r.sim) {
    const s = r.sim;
    rows.push([
      'simulation',
      `${formatSize(s.size)} of state, ${s.pages} pages of ${s.pageSize} bytes, seed ${s.seed}, stream ${formatSize(s.streamBytes)}`,
    ]);
    rows.push(['fingerprint', s.fingerprint]);
  }
  if (r.kernel) {
    rows.push(['device info', `flags ${r.kernel.flagNames}, ${r.kernel.regions.length} regions, ${r.kernel.irqs} IRQ types`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  let text = rows.map(([k, v]) => `${k.padEnd(width)}${v}`).join('\n');
  if (r.kernel) {
    text += `\n\n${renderTextTable(
      ['region', 'name', 'size', 'flags', 'offset'],
      r.kernel.regions.map((g) => [String(g.index), g.name, g.size === 0 ? '-' : formatSize(g.size), g.flags.join(' ') || '-', g.offset]),
    )}`;
  }
  return text;
}

export const inspectCommand: Command = {
  name: 'inspect',
  summary: "show a device's migration support: flags, state, data size, v1 region, regions",
  usage: `inspect <device>

  <device>  sim:v2?size=64MiB&flags=7&seed=1, sim:v1?size=64MiB&window=1MiB&seed=1&policy=qemu,
            /dev/vfio/<group>:<device-name> or /dev/vfio/devices/vfioN
  Reads only: the device's state is not changed, except that a device an
  earlier user left mid-migration (RESUMING, ERROR, a saving state) is reset
  to RUNNING, as every command does; the state row says so.`,
  options: {},
  async run(_values, positionals, ctx) {
    const { text, address } = oneAddress(positionals, 'inspect');
    return withDevice(ctx, text, address, async (dev) => {
      const report = await inspectDevice(dev);
      ctx.print(renderInspect(report));
      return report;
    });
  },
};
