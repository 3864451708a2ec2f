// vfio-mig bridge: run a v1 migration user (QEMU <= 7.2, or any program that
// drives a v1 migration region) with its VFIO devices served by
// LegacyRegionOverV2 over the kernel's v2 interface, through an LD_PRELOAD
// interposer (src/bridge, docs/bridge.md). All the bridge says goes to
// stderr, one line each; stdout and stdin stay the command's.
import { LEGACY_OVER_V2_DEFAULT_WINDOW } from '../../../translate/legacy-region-over-v2.js';
import type { BridgedRecord } from '../../bridge/bridge-server.js';
import { locateInterposer } from '../../bridge/interposer-location.js';
import { runBridge, type RunEvent } from '../../bridge/run-bridge.js';
import { ExitWith, type Command } from '../command.js';
import { formatSize, parseSize } from '../parse-values.js';
import { qemuCommandWarnings } from '../qemu-command-checks.js';
import { UsageError } from '../usage-error.js';

const PREFIX = 'vfio-mig bridge:';
/** The window lives in a tmpfs file per device: keep it to memory one can spare. */
const MAX_WINDOW = 1 << 30;
const PAGE = 4096;

export const bridgeCommand: Command = {
  name: 'bridge',
  summary: 'run QEMU <= 7.2 (a v1 migration user) so its v2-only VFIO devices migrate',
  usage: `bridge [--window SIZE] [--no-mmap] [--trace FILE] [--quiet] -- CMD [ARGS...]

  Runs CMD with an LD_PRELOAD interposer that gives every VFIO device with v2
  migration (and no v1 region) the v1 migration region QEMU 7.2 looks for,
  served by this process over the kernel's v2 interface. CMD keeps stdin and
  stdout; the bridge writes to stderr only and exits with CMD's status.

  --window SIZE  data window per device, i.e. the largest chunk (default 1 MiB;
                 whole 4 KiB pages unless --no-mmap)
  --no-mmap      do not offer the window for mmap: QEMU copies it 8 bytes per
                 pread (slow; for drivers or tools that cannot map it)
  --trace FILE   JSON lines of every v1 register access and v2 call (docs/bridge.md)
  --quiet        only warnings and errors (no start lines, no summary)

  e.g. vfio-mig bridge -- qemu-system-x86_64 ... \\
         -device vfio-pci,sysfsdev=/sys/bus/mdev/devices/<uuid>,x-enable-migration=on`,
  options: {
    window: { type: 'string', default: String(LEGACY_OVER_V2_DEFAULT_WINDOW) },
    'no-mmap': { type: 'boolean' },
    trace: { type: 'string' },
    quiet: { type: 'boolean' },
  },
  async run(values, positionals, ctx) {
    if (ctx.json)
      throw new UsageError(
        '--json does not apply to bridge: stdout belongs to the command; use --trace FILE for a machine-readable record',
      );
    if (positionals.length === 0) throw new UsageError('bridge needs a command to run, e.g. vfio-mig bridge -- qemu-system-x86_64 ...');
    const windowSize = parseSize(String(values.window), '--window');
    if (windowSize > MAX_WINDOW) throw new UsageError(`--window ${formatSize(windowSize)} is more than ${formatSize(MAX_WINDOW)}`);
    const mmap = values['no-mmap'] !== true;
    // QEMU maps the window as one sparse area of RAM-device memory: keep it whole pages.
    if (mmap && windowSize % PAGE)
      throw new UsageError(`--window ${windowSize} is not a multiple of 4 KiB, which the mmap path needs (or use --no-mmap)`);
    if (values.trace === '') throw new UsageError('--trace needs a file name');
    const quiet = values.quiet === true;
    const say = (line: string) => ctx.note(`${PREFIX} ${line}`);
    // Mistakes that would only show on the destination host, said before QEMU starts (shown even with --quiet).
    for (const warning of qemuCommandWarnings(positionals)) say(`warning: ${warning}`);
    const interposer = await locateInterposer();
    const run = await runBridge({
      command: positionals,
      interposer,
      windowSize,
      mmap,
      tracePath: typeof values.trace === 'string' ? values.trace : undefined,
      onEvent: (e) => {
        const line = eventLine(e, positionals[0]);
        if (line && (!quiet || line.loud)) say(line.text);
      },
    });
    if (run.startError) say(run.startError);
    if (!quiet) for (const line of summaryLines(run.devices)) say(line);
    return new ExitWith(run.status, {
      status: run.status,
      devices: run.devices.map((d) => ({ label: d.info.label, ...d.stats.toJSON() })),
    });
  },
};

/** What the user is told about an event; `loud` lines are shown even with --quiet. */
export function eventLine(e: RunEvent, command: string): { text: string; loud: boolean } | undefined {
  switch (e.kind) {
    case 'bridged': {
      const { label, pid, fd, layout } = e.device;
      const path = layout.flags & 4 /* VFIO_REGION_INFO_FLAG_MMAP */ ? 'mmap' : 'trapped';
      return {
        text: `bridging ${label} (pid ${pid}, fd ${fd}): v1 migration region ${layout.index} at 0x${layout.offset.toString(16)}, ${formatSize(layout.windowSize)} window, ${path}`,
        loud: false,
      };
    }
    case 'not-bridged':
      return e.expected
        ? { text: `not bridging ${e.name || `fd ${e.fd}`} (pid ${e.pid}): ${e.reason}`, loud: false }
        : { text: `warning: cannot bridge ${e.name || `fd ${e.fd}`} (pid ${e.pid}): ${e.reason}`, loud: true };
    case 'refused':
      return { text: `warning: refused a connection${e.pid ? ` from pid ${e.pid}` : ''}: ${e.reason}`, loud: true };
    case 'error-recovery': {
      const { label } = e.device;
      const { cause, reset } = e.recovery;
      return reset === 'ok'
        ? {
            text: `ERROR: ${label} went to the v2 ERROR state (${cause}); reset it: the state write fails and device_state reads 001, so QEMU 7.2 fails the migration instead of aborting the VM`,
            loud: true,
          }
        : {
            text: `ERROR: ${label} went to the v2 ERROR state (${cause}) and the reset failed with ${reset}: device_state reads 110b, QEMU 7.2 will abort`,
            loud: true,
          };
    }
    case 'released':
      return e.problems.length ? { text: `warning: releasing ${e.device.label}: ${e.problems.join('; ')}`, loud: true } : undefined;
    case 'fault':
      return { text: `internal error: ${e.message.split('\n')[0]}`, loud: true };
    case 'waiting':
      return {
        text: `${command} exited; serving ${e.connections} device${e.connections === 1 ? '' : 's'} its descendants still hold until they close them (Ctrl-C stops)`,
        loud: false,
      };
  }
}

/** One line per bridged device: what moved, the device's share of downtime, what failed. */
export function summaryLines(devices: readonly BridgedRecord[]): string[] {
  const chunks = (n: number) => `${n} chunk${n === 1 ? '' : 's'}`;
  return devices.map(({ info, stats: s }) => {
    const parts = [
      `saved ${chunks(s.chunksSaved)} (${formatSize(s.bytesSaved)})`,
      `resumed ${chunks(s.chunksResumed)} (${formatSize(s.bytesResumed)})`,
      `stop-and-copy ${s.stopCopyMs().toFixed(1)} ms`,
      `${s.failedAccesses} failed access${s.failedAccesses === 1 ? '' : 'es'}`,
      ...(s.errorResets ? [`${s.errorResets} reset${s.errorResets === 1 ? '' : 's'} out of ERROR`] : []),
    ];
    return `summary ${info.label}: ${parts.join(', ')}`;
  });
}
