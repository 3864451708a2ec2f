// vfio-mig save: migrate a device's state out into a file, over v2 (QEMU 8+'s
// client) or v1 (QEMU 7.2's), through a translator when the device speaks the
// other protocol. The file (migration-file.ts) records the source and, for a
// simulated device, the fingerprint of the state saved, which `load` checks.
import { saveV1, v1VmStart } from '../../../legacy/qemu/v1-client.js';
import { readDeviceState } from '../../../legacy/v1-registers.js';
import { V1_RUNNING } from '../../../legacy/v1-state.js';
import { saveV2, type MigrationProgress } from '../../../legacy/qemu/v2-client.js';
import type { Command } from '../command.js';
import { MigFlags, MigState } from '../../v2/states.js';
import { flagNames, oneAddress, parseCount, parseVia, requireOption, withDevice } from '../device-args.js';
import { DeviceOperationError, takeoverNotes } from '../explain-error.js';
import { MigrationFileError, MigrationFileWriter, type MigrationFileInfo } from '../migration-file.js';
import { cleanUpOnInterrupt } from '../on-interrupt.js';
import type { OpenedDevice } from '../open-device.js';
import { formatSize } from '../parse-values.js';
import { progressBar } from '../progress.js';
import { UsageError } from '../usage-error.js';

export const saveCommand: Command = {
  name: 'save',
  summary: "save a device's migration state to a file (over v2 or v1)",
  usage: `save <device> --out FILE [--via v1|v2] [--rounds N] [--work PAGES] [--stop]

  <device>       sim:v2?..., sim:v1?..., /dev/vfio/<group>:<name>, /dev/vfio/devices/vfioN
  --out FILE|-   the migration file to write (replaced only once the save succeeded);
                 - writes it to standard output, for a pipe ('| ssh host vfio-mig load
                 <device> --in -'), and the report to stderr
  --via v1|v2    the protocol the client speaks (default: the device's own); v1 over a
                 v2 device goes through LegacyRegionOverV2, v2 over v1 through V2DeviceOverLegacy
  --rounds N     pre-copy passes while the device runs (default 1; 0 = straight to stop-and-copy;
                 a device without PRE_COPY has none: a warning says so)
  --work PAGES   simulated devices: pages the device dirties between passes (default size/256 pages)
  --stop         leave the device stopped afterwards, as a migration's source is left (it must
                 not run on and diverge from the state saved); by default a device that was
                 running runs again, as a VM does after QEMU's savevm

  Prints the bytes moved, the file's SHA-256 and, for a simulated device, the
  fingerprint of the state saved (load prints the loaded one).`,
  options: {
    out: { type: 'string', short: 'o' },
    via: { type: 'string' },
    rounds: { type: 'string' },
    work: { type: 'string' },
    stop: { type: 'boolean' },
  },
  async run(values, positionals, ctx) {
    const { text, address } = oneAddress(positionals, 'save');
    const out = requireOption(values.out, '--out FILE', 'save', `vfio-mig save ${text} --out state.vmig`);
    const toStdout = out === '-';
    if (toStdout && ctx.json)
      throw new UsageError('--json and --out - both write to standard output: drop --json (the report goes to stderr) or give --out FILE');
    const via = parseVia(values.via);
    const rounds = values.rounds === undefined ? 1 : parseCount(String(values.rounds), '--rounds', 100_000);
    const warnings: string[] = [];
    const isSim = address.kind === 'sim-v1' || address.kind === 'sim-v2';
    if (values.work !== undefined && !isSim)
      throw new UsageError('--work applies to simulated devices only (a real device does its own work)');
    const work =
      values.work === undefined
        ? isSim
          ? Math.max(1, Math.floor(address.size / 4096 / 256))
          : 0
        : parseCount(String(values.work), '--work', 1 << 30);

    // The output first: an unwritable path fails before the device is opened.
    const writer = toStdout ? await MigrationFileWriter.toStream(ctx.stateOut(), 'standard output') : await MigrationFileWriter.create(out);
    // Interrupted (Ctrl-C, kill): no half-written file stays behind.
    const { saved, written } = await cleanUpOnInterrupt(
      () => writer.discardSync(),
      async () => {
        let saved: Awaited<ReturnType<typeof saveOnce>>;
        try {
          saved = await withDevice(ctx, text, address, (dev) => saveOnce(dev));
        } catch (e) {
          await writer.abort();
          throw e;
        }
        return { saved, written: await writer.finish(saved.info) };
      },
    );
    const { info, result } = saved;

    ctx.print(
      `saved ${text} over ${result.via}${result.translator ? ` (through ${result.translator})` : ''} to ${toStdout ? 'standard output' : out}`,
    );
    ctx.print(
      `  device state   ${formatSize(info.deviceBytes)}: pre-copy ${formatSize(info.precopyBytes)} in ${rounds} pass${rounds === 1 ? '' : 'es'}, stop-and-copy ${formatSize(info.stopCopyBytes)}`,
    );
    ctx.print(`  file           ${formatSize(written.fileBytes)}, sha256 ${written.sha256}`);
    if (info.sim) ctx.print(`  fingerprint    ${info.sim.fingerprint} (the state saved; 'vfio-mig load' checks it)`);
    return {
      device: text,
      native: result.native,
      via: result.via,
      translator: result.translator ?? null,
      file: out,
      fileBytes: written.fileBytes,
      payloadBytes: written.payloadBytes,
      sha256: written.sha256,
      deviceBytes: info.deviceBytes,
      precopyBytes: info.precopyBytes,
      stopCopyBytes: info.stopCopyBytes,
      rounds,
      usedPrecopy: result.usedPrecopy,
      fingerprint: info.sim?.fingerprint ?? null,
      durationMs: result.durationMs,
      warnings,
      takeover: result.takeover,
    };

    async function saveOnce(dev: OpenedDevice) {
      const face = dev.face(via);
      // Without PRE_COPY a v2 device moves nothing while running (a v1 client through
      // LegacyRegionOverV2 sees nothing pending); v1 devices always have pre-copy.
      const flags = dev.v2 ? await dev.v2.migrationFlags() : undefined;
      if (values.rounds !== undefined && rounds > 0 && flags !== undefined && !(flags & MigFlags.PRE_COPY)) {
        warnings.push(
          `--rounds ${rounds} has no effect: ${text} has no PRE_COPY (migration flags ${flags}: ${flagNames(flags)}); its whole state moves in stop-and-copy`,
        );
        ctx.warn(warnings.at(-1)!);
      }
      const sim = dev.sim;
      const estimate = sim ? Number(sim.fullStreamBytes()) : dev.v2 ? Number(await dev.v2.stopCopySize().catch(() => 0n)) : 0;
      const bar = progressBar(ctx, `save ${text}`, Math.max(1, estimate));
      const onProgress = (p: MigrationProgress) => bar.update(p);
      const step = () => {
        if (sim && work > 0) sim.step(work);
      };
      const started = performance.now();
      let precopyBytes: number;
      let stopCopyBytes: number;
      let usedPrecopy: boolean;
      const wasRunning =
        face.protocol === 'v2'
          ? [MigState.RUNNING, MigState.RUNNING_P2P].includes(await face.device.getState())
          : ((await readDeviceState(face.region)) & V1_RUNNING) !== 0;
      try {
        if (face.protocol === 'v2') {
          const r = await saveV2(face.device, writer.stream, { precopyRounds: rounds, betweenRounds: step, onProgress, reuseBuffer: true });
          ({ precopyBytes, stopCopyBytes, usedPrecopy } = r);
        } else {
          // QEMU 7.2 moves one window per iterate call: a pass over the state is that many calls.
          const window = 'windowSize' in face.region ? Number((face.region as { windowSize: number }).windowSize) : face.region.size;
          const perPass = estimate > 0 ? Math.max(1, Math.ceil(estimate / window)) : 1;
          const r = await saveV1(face.region, writer.stream, {
            precopyRounds: rounds * perPass,
            windowAccess: face.windowAccess,
            vmRunning: wasRunning, // no VM here: a running device stands for a running VM's
            onProgress,
            betweenRounds: (i) => {
              if ((i + 1) % perPass === 0) step();
            },
          });
          ({ precopyBytes, stopCopyBytes, usedPrecopy } = r);
        }
        // The VM start that follows a savevm: v2 RUNNING (the kernel walks STOP -> RUNNING_P2P -> RUNNING), v1 ~MASK / RUNNING.
        if (wasRunning && values.stop !== true) {
          if (face.protocol === 'v2') await face.device.setState(MigState.RUNNING);
          else await v1VmStart(face.region);
        }
      } catch (e) {
        // A file that cannot be written is the file's problem; anything else is the device's.
        throw e instanceof MigrationFileError ? e : new DeviceOperationError('save', text, face.protocol, e);
      } finally {
        bar.stop();
        for (const note of takeoverNotes(dev)) ctx.note(`vfio-mig: note: ${note}`);
      }
      const info: MigrationFileInfo = {
        format: 'vfio-mig-shim migration file',
        source: text,
        native: dev.native,
        via: face.protocol,
        deviceBytes: precopyBytes + stopCopyBytes,
        precopyBytes,
        stopCopyBytes,
        savedAt: new Date().toISOString(),
        ...(sim ? { sim: { size: sim.size, pageSize: sim.pageSize, fingerprint: sim.fingerprint() } } : {}),
      };
      return {
        info,
        result: {
          native: dev.native,
          via: face.protocol,
          translator: face.translator,
          usedPrecopy,
          durationMs: Math.round(performance.now() - started),
          takeover: dev.takeovers(),
        },
      };
    }
  },
};
