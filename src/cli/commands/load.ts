// vfio-mig load: resume a device from a file written by `vfio-mig save`. The
// whole file is verified (magic, sizes, SHA-256, the stream's framing) before
// the device is even opened; then it is streamed into the device over v2 or
// v1, through a translator when the device speaks the other protocol. A
// simulated device is created fresh from the address, so its fingerprint after
// the load shows whether the saved state arrived.
import { stat } from 'node:fs/promises';
import { loadV1 } from '../../../legacy/qemu/v1-client.js';
import { loadV2, type MigrationProgress } from '../../../legacy/qemu/v2-client.js';
import { CommandFailed, type Command } from '../command.js';
import { oneAddress, parseVia, requireOption, withDevice } from '../device-args.js';
import { DeviceOperationError, takeoverNotes } from '../explain-error.js';
import { MigrationFileError, readPayload, verifyMigrationFile } from '../migration-file.js';
import { withPrivateCopy } from '../stdin-copy.js';
import { formatSize } from '../parse-values.js';
import { progressBar } from '../progress.js';
import { UsageError } from '../usage-error.js';

/** A size as an address parameter: 8MiB, 3GiB, or plain bytes. */
function sizeParam(bytes: number): string {
  for (const [unit, scale] of [
    ['GiB', 2 ** 30],
    ['MiB', 2 ** 20],
    ['KiB', 1024],
  ] as const) {
    if (bytes % scale === 0) return `${bytes / scale}${unit}`;
  }
  return String(bytes);
}

export const loadCommand: Command = {
  name: 'load',
  summary: "load a device's migration state from a file (checked before the device is touched)",
  usage: `load <device> --in FILE|- [--via v1|v2]

  <device>       sim:v2?..., sim:v1?..., /dev/vfio/<group>:<name>, /dev/vfio/devices/vfioN
                 (a simulated destination needs the source's size: sim:v1?size=...)
  --in FILE|-    a file written by 'vfio-mig save'; - reads it from standard input
                 ('vfio-mig save <device> --out - | ssh host vfio-mig load <device> --in -')
  --via v1|v2    the protocol the client speaks (default: the device's own); v1 over a
                 v2 device goes through LegacyRegionOverV2, v2 over v1 through V2DeviceOverLegacy

  The whole file (magic, length, SHA-256, stream framing, the info's fields) is
  verified before the device is opened. Standard input gets the same check: it
  is first copied to a private temporary file ($TMPDIR, removed afterwards;
  it needs room for the whole file) and verified whole, so not one byte of a
  cut or damaged stream reaches the device. For a simulated device the
  fingerprint after the load is compared with the one the file recorded; a
  mismatch exits 1.`,
  options: {
    in: { type: 'string', short: 'i' },
    via: { type: 'string' },
  },
  async run(values, positionals, ctx) {
    const { text, address } = oneAddress(positionals, 'load');
    const given = requireOption(values.in, '--in FILE', 'load', `vfio-mig load ${text} --in state.vmig`);
    const via = parseVia(values.via);
    if (given !== '-') return loadFrom(given, given);
    return withPrivateCopy(ctx.stateIn(), 'standard input', (copy) => loadFrom(copy, 'standard input'));

    /** Load from the file `source`, named `path` in messages. */
    async function loadFrom(source: string, path: string) {
      // Pass 1: the whole file, before any device is opened.
      const check = progressBar(
        ctx,
        `verify ${path}`,
        await stat(source).then(
          (s) => Math.max(1, s.size),
          () => 1,
        ),
      );
      let file;
      try {
        file = await verifyMigrationFile(source, (bytes, total) => check.update({ phase: 'verify', bytes, estimate: total }), path);
        check.update({ phase: 'done', bytes: file.payloadBytes });
      } finally {
        check.stop();
      }
      const { info } = file;
      if ((address.kind === 'sim-v1' || address.kind === 'sim-v2') && info.sim && info.sim.size !== address.size) {
        throw new UsageError(
          `${path} holds the state of a simulated device of ${formatSize(info.sim.size)}, ${text} has ${formatSize(address.size)}: give the destination size=${sizeParam(info.sim.size)}`,
        );
      }

      // Pass 2: stream it into the device.
      const loaded = await withDevice(ctx, text, address, async (dev) => {
        const face = dev.face(via);
        const before = dev.sim?.fingerprint();
        const bar = progressBar(ctx, `load ${text}`, Math.max(1, file.deviceBytes));
        const onProgress = (p: MigrationProgress) => bar.update(p);
        const started = performance.now();
        let deviceBytes: number;
        try {
          deviceBytes =
            face.protocol === 'v2'
              ? (await loadV2(face.device, readPayload(file), { onProgress })).deviceBytes
              : (await loadV1(face.region, readPayload(file), { onProgress, windowAccess: face.windowAccess })).deviceBytes;
        } catch (e) {
          throw e instanceof MigrationFileError ? e : new DeviceOperationError('load', text, face.protocol, e);
        } finally {
          bar.stop();
          for (const note of takeoverNotes(dev)) ctx.note(`vfio-mig: note: ${note}`);
        }
        return {
          native: dev.native,
          via: face.protocol,
          translator: face.translator ?? null,
          deviceBytes,
          fingerprintBefore: before ?? null,
          fingerprint: dev.sim?.fingerprint() ?? null,
          durationMs: Math.round(performance.now() - started),
          takeover: dev.takeovers(),
        };
      });

      const expected = info.sim?.fingerprint ?? null;
      const fingerprintMatch = loaded.fingerprint !== null && expected !== null ? loaded.fingerprint === expected : null;
      const result = {
        device: text,
        ...loaded,
        file: given,
        fileBytes: file.fileBytes,
        payloadBytes: file.payloadBytes,
        sha256: file.sha256,
        source: {
          device: info.source,
          native: info.native,
          via: info.via,
          savedAt: info.savedAt,
          deviceBytes: info.deviceBytes,
          fingerprint: expected,
        },
        fingerprintMatch,
      };
      ctx.print(`verified ${path}: ${formatSize(file.fileBytes)}, sha256 ${file.sha256}, saved from ${info.source} over ${info.via}`);
      ctx.print(
        `loaded ${text} over ${loaded.via}${loaded.translator ? ` (through ${loaded.translator})` : ''}: ${formatSize(loaded.deviceBytes)} of device state`,
      );
      if (loaded.fingerprint !== null) {
        const verdict =
          fingerprintMatch === null
            ? '(the file records no source fingerprint)'
            : fingerprintMatch
              ? 'matches the source'
              : `DIFFERS from the source's ${expected}`;
        ctx.print(`  fingerprint    ${loaded.fingerprint} ${verdict}`);
      }
      if (fingerprintMatch === false) {
        throw new CommandFailed(
          `${text} loaded, but its fingerprint ${loaded.fingerprint!.slice(0, 16)}... differs from the source's ${expected!.slice(0, 16)}...`,
          result,
        );
      }
      return result;
    }
  },
};
