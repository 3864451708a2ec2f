// One progress bar per transfer (cli-progress) on stderr; silent when stderr
// is not a terminal or --json is set, so scripts get clean output.
import cliProgress from 'cli-progress';
import type { MigrationProgress } from '../v2/client.js';
import type { CliContext } from './command.js';
import { formatSize } from './parse-values.js';

/** A migration's progress, or any other pass over bytes (phase 'verify' for a file check). */
export type ProgressUpdate = MigrationProgress | { phase: 'verify'; bytes: number; estimate?: number };

export interface ProgressSink {
  update(p: ProgressUpdate): void;
  stop(): void;
}

export function progressBar(ctx: CliContext, label: string, total: number): ProgressSink {
  if (!ctx.interactive) return { update() {}, stop() {} };
  const started = Date.now();
  const bar = new cliProgress.SingleBar({
    format: `${label.padEnd(34)} [{bar}] {percentage}% | {moved} of {all} | {rate} | {phase} | ETA {eta_formatted}`,
    barsize: 24, hideCursor: true, clearOnComplete: false, stream: process.stderr, fps: 10,
  }, cliProgress.Presets.shades_classic);
  bar.start(total, 0, { moved: formatSize(0), all: formatSize(total), rate: '-', phase: 'setup' });
  return {
    update(p) {
      const all = Math.max(total, p.estimate ?? 0, p.bytes);
      const seconds = (Date.now() - started) / 1000;
      bar.setTotal(all);
      bar.update(p.bytes, {
        moved: formatSize(p.bytes), all: formatSize(all), phase: p.phase,
        rate: seconds > 0 ? `${formatSize(p.bytes / seconds)}/s` : '-',
      });
    },
    stop() { bar.stop(); },
  };
}
