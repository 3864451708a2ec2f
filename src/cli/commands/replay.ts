// vfio-mig replay: a recorded v1 client (a `vfio-mig bridge --trace` file,
// e.g. QEMU 7.2's accesses in test/fixtures/traces) replayed against any v1
// region, reporting every place the region answers differently than the
// recorded one did (legacy/qemu/trace/v1-replay.ts; docs/replay.md).
// A v2 device is replayed through LegacyRegionOverV2 as the bridge serves it
// (errorRecovery 'reset', the recorded window size); a device with a v1
// region of its own (sim:v1, a v1 kernel driver) directly.
import { readFile } from 'node:fs/promises';
import type { LegacyRegion } from '../../../legacy/contracts.js';
import { deviceBytesOf, ownState, resumesData } from '../../../legacy/qemu/trace/resume-data.js';
import { isClient, isDevice, parseTrace, type TraceLine } from '../../../legacy/qemu/trace/trace-format.js';
import { replayV1, v1Devices, type ReplayReport } from '../../../legacy/qemu/trace/v1-replay.js';
import { LegacyRegionOverV2 } from '../../../translate/legacy-region-over-v2.js';
import { MigrationError, type ErrnoName } from '../../uapi/errors.js';
import type { MigrationDevice } from '../../v2/contracts.js';
import { CommandFailed, type Command } from '../command.js';
import { parseCount, requireOption, withDevice } from '../device-args.js';
import { parseAddress } from '../address.js';
import { readPayload, verifyMigrationFile } from '../migration-file.js';
import type { OpenedDevice } from '../open-device.js';
import { formatSize } from '../parse-values.js';
import { UsageError } from '../usage-error.js';

async function readTrace(path: string): Promise<TraceLine[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new MigrationError(
      (code && code in { ENOENT: 1, EACCES: 1, EISDIR: 1 } ? code : 'EIO') as ErrnoName,
      `cannot read the trace ${path}: ${(e as Error).message}`,
    );
  }
  return parseTrace(text);
}

/** The window the recording's region had (the bridge's start line), so chunks are cut alike. */
function recordedWindow(lines: readonly TraceLine[]): number | undefined {
  const start = lines.find((l) => l.ev === 'start');
  const w = start && (start as { window?: unknown }).window;
  return typeof w === 'number' && Number.isSafeInteger(w) && w > 0 ? w : undefined;
}

/** The device for a translator to use but not to close: the opened device closes it. */
function borrowed(d: MigrationDevice): MigrationDevice {
  return {
    migrationFlags: () => d.migrationFlags(),
    getState: () => d.getState(),
    setState: (s) => d.setState(s),
    stopCopySize: () => d.stopCopySize(),
    reset: () => d.reset(),
    close: () => Promise.resolve(),
  };
}

/** The region a recorded v1 client talked to, on this device. Returns it and whether we made it (a translator we close). */
function regionOf(dev: OpenedDevice, window: number | undefined): { region: LegacyRegion; translator: boolean } {
  if (dev.v1) return { region: dev.v1, translator: false };
  // As src/bridge/bridged-device.ts serves a bridged device.
  return {
    region: new LegacyRegionOverV2(borrowed(dev.v2!), { errorRecovery: 'reset', ...(window ? { windowSize: window } : {}) }),
    translator: true,
  };
}

function describe(d: ReplayReport['divergences'][number]): string {
  return `line ${d.line}: ${d.access}: ${d.message} (recorded ${d.recorded}, replayed ${d.replayed})`;
}

export const replayCommand: Command = {
  name: 'replay',
  summary: 'replay a recorded v1 client (vfio-mig bridge --trace) against a device and report every divergence',
  usage: `replay <trace> --device <device> [--dev N] [--data FILE]

  <trace>          a trace file (docs/trace-format.md): 'vfio-mig bridge --trace FILE',
                   or a fixture of test/fixtures/traces
  --device D       the v1 region to replay against: sim:v1?... (SimV1Region), sim:v2?...
                   or a v2 kernel device (through LegacyRegionOverV2, as the bridge serves it),
                   a kernel device with a v1 region of its own (directly)
  --dev N          the trace's device to replay (default: the only one)
  --data FILE      for a trace that resumes data: the device bytes of a file written by
                   'vfio-mig save'; default: the device's own state, saved through the same
                   region just before (then the device is reset)

  Every recorded access is made as recorded. A divergence is a different
  errno, a device_state that reads back differently, or a stream that ends
  at a different point; sizes the device decides (pre-copy, chunk sizes) are
  not compared, only where the stream ends and how many bytes it held.
  A simulated device sized to mtty's 96-byte stream: sim:v2?size=24.
  Exit 1 when the replay diverges.`,
  options: {
    device: { type: 'string' },
    dev: { type: 'string' },
    data: { type: 'string' },
  },
  async run(values, positionals, ctx) {
    if (positionals.length !== 1)
      throw new UsageError(
        `replay takes one trace file, got ${positionals.length ? positionals.map((p) => `'${p}'`).join(' ') : 'none'} (e.g. vfio-mig replay trace.jsonl --device 'sim:v2?size=24')`,
      );
    const tracePath = positionals[0];
    const text = requireOption(values.device, '--device D', 'replay', `vfio-mig replay ${tracePath} --device 'sim:v2?size=24'`);
    const address = parseAddress(text);
    const devArg = values.dev === undefined ? undefined : parseCount(String(values.dev), '--dev', 1 << 20);
    const lines = await readTrace(tracePath);
    const devices = v1Devices(lines);
    if (devices.length === 0)
      throw new UsageError(`${tracePath} has no v1 register accesses to replay (a v2 trace, such as QEMU 10's, is not replayed)`);
    if (devArg === undefined && devices.length > 1)
      throw new UsageError(`${tracePath} has v1 accesses of devices ${devices.join(', ')}: choose one with --dev N`);
    const dev = devArg ?? devices[0];
    if (!devices.includes(dev)) throw new UsageError(`${tracePath} has no v1 accesses of device ${dev}: it has ${devices.join(', ')}`);
    const given = typeof values.data === 'string' ? values.data : undefined;
    const needsData = resumesData(lines, dev);
    let resumeData: Uint8Array | undefined;
    if (given !== undefined) {
      const file = await verifyMigrationFile(given);
      resumeData = await deviceBytesOf(readPayload(file));
    }

    const report = await withDevice(ctx, text, address, async (opened) => {
      const { region, translator } = regionOf(opened, recordedWindow(lines));
      try {
        if (needsData && resumeData === undefined) resumeData = await ownState(region);
        return await replayV1(lines, region, { dev, resumeData });
      } finally {
        if (translator) await region.close();
      }
    });

    const client = lines.find(isClient);
    const device = lines.filter(isDevice).find((l) => l.dev === dev);
    const who = [
      client && `${client.name}${client.version ? ` ${client.version}` : ''}`,
      device && [device.name, device.bus, device.type].filter(Boolean).join(' '),
    ]
      .filter(Boolean)
      .join(', ');
    const result = {
      trace: tracePath,
      device: text,
      client: client ? { name: client.name, version: client.version ?? null } : null,
      dev,
      accesses: report.accesses,
      divergences: report.divergences,
      savedBytes: report.savedBytes,
      resumedBytes: report.resumedBytes,
      resumeData: needsData ? (given ?? 'own state') : null,
    };
    for (const d of report.divergences) ctx.print(describe(d));
    ctx.print(
      `replayed ${report.accesses} accesses of device ${dev} from ${tracePath}${who ? ` (${who})` : ''} against ${text}: ` +
        `${report.divergences.length === 0 ? 'no divergence' : `${report.divergences.length} divergence${report.divergences.length === 1 ? '' : 's'}`}` +
        `; saved ${formatSize(report.savedBytes.replayed)} (recorded ${formatSize(report.savedBytes.recorded)}), resumed ${formatSize(report.resumedBytes)}`,
    );
    if (report.divergences.length > 0)
      throw new CommandFailed(
        `the replay of ${tracePath} against ${text} diverges ${report.divergences.length} time(s), first at line ${report.divergences[0].line}`,
        result,
      );
    return result;
  },
};
