// Progress of a pass over bytes (a migration, a file check) on stderr, in the
// form the terminal can take:
//  * 'bar': stderr is a terminal and TERM is not "dumb": one line redrawn in
//    place with a carriage return, cut to the terminal's width but always
//    keeping the percentage, the rate and the ETA. No escape sequences at all
//    (no cursor hiding, no colour, no line clearing: shorter frames are padded
//    with spaces), so NO_COLOR and plain terminals get plain text;
//  * 'lines': anything else (a pipe, a log, TERM=dumb): a line at each 10%, as
//    `virsh migrate --verbose` prints;
//  * 'off': --quiet or --json.
import type { MigrationProgress } from '../../legacy/qemu/migration-progress.js';
import { formatSize } from './parse-values.js';

export type ProgressMode = 'bar' | 'lines' | 'off';

/** Where progress goes: its form, the width of stderr, and raw writes to it. */
export interface ProgressOut {
  mode: ProgressMode;
  columns: number;
  write(text: string): void;
}

export function progressMode(o: { quiet: boolean; json: boolean; stderrIsTerminal: boolean; term: string | undefined }): ProgressMode {
  if (o.quiet || o.json) return 'off';
  return o.stderrIsTerminal && o.term !== 'dumb' ? 'bar' : 'lines';
}

/** A migration's progress, or any other pass over bytes (phase 'verify' for a file check). */
export type ProgressUpdate = MigrationProgress | { phase: 'verify'; bytes: number; estimate?: number };

export interface ProgressSink {
  update(p: ProgressUpdate): void;
  stop(): void;
}

const REDRAW_MS = 100;
const PHASE_NAMES: Record<ProgressUpdate['phase'], string> = {
  setup: 'setup',
  precopy: 'pre-copy',
  stopcopy: 'stop-copy',
  resume: 'resume',
  done: 'done',
  verify: 'verify',
};

/** 42s, 3m05s, 1h02m. */
function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

interface Snapshot {
  label: string;
  bytes: number;
  total: number;
  phase: string;
  seconds: number;
}

/** Percentage, amounts, rate and ETA of a snapshot; no ETA before any byte moved. */
function figures(s: Snapshot) {
  const fraction = s.phase === 'done' ? 1 : Math.min(1, s.bytes / s.total);
  const perSecond = s.seconds > 0 && s.bytes > 0 ? s.bytes / s.seconds : 0;
  return {
    fraction,
    percent: `${Math.floor(fraction * 100)}%`,
    amounts: `${formatSize(s.bytes)} of ${formatSize(s.total)}`,
    rate: perSecond > 0 ? `${formatSize(perSecond)}/s` : '-',
    eta: s.phase === 'done' ? '0s' : perSecond > 0 ? duration((s.total - s.bytes) / perSecond) : '-',
  };
}

/** One bar frame of at most `width` characters: the richest layout that fits. */
export function barFrame(s: Snapshot, width: number): string {
  const f = figures(s);
  const tail = `${f.rate} ETA ${f.eta}`;
  const bar = (n: number) => `[${'#'.repeat(Math.round(f.fraction * n)).padEnd(n, '-')}]`;
  const phase = PHASE_NAMES[s.phase as ProgressUpdate['phase']] ?? s.phase;
  const small = `${bar(10)} ${f.percent} ${tail}`;
  for (const body of [`${bar(24)} ${f.percent} ${f.amounts} ${phase} ${tail}`, `${bar(16)} ${f.percent} ${f.amounts} ${tail}`, small]) {
    const room = width - body.length - 1;
    if (s.label.length <= room) return `${s.label} ${body}`;
    if (room >= 8) return `${s.label.slice(0, room - 3)}... ${body}`;
  }
  for (const body of [small, `${f.percent} ${tail}`]) if (body.length <= width) return body;
  return `${f.percent} ${tail}`.slice(0, width);
}

/** One line for the 'lines' form. */
export function progressLine(s: Snapshot): string {
  const f = figures(s);
  return `${s.label}: ${f.percent} (${f.amounts}, ${f.rate}, ETA ${f.eta})`;
}

export function progressBar(ctx: { progress: ProgressOut }, label: string, total: number): ProgressSink {
  const out = ctx.progress;
  if (out.mode === 'off') return { update() {}, stop() {} };
  const started = Date.now();
  let last: Snapshot = { label, bytes: 0, total: Math.max(1, total), phase: 'setup', seconds: 0 };
  let drawnAt = 0;
  let drawnLength = 0;
  let decile = 0; // lines from 10%
  const draw = () => {
    // Never the last column: a full line would wrap on some terminals.
    const frame = barFrame(last, Math.max(10, out.columns - 1));
    out.write(`\r${frame.padEnd(drawnLength)}`);
    drawnLength = frame.length;
    drawnAt = Date.now();
  };
  const line = () => {
    const now = Math.floor(figures(last).fraction * 10);
    if (now > decile) {
      decile = now;
      out.write(`${progressLine(last)}\n`);
    }
  };
  if (out.mode === 'bar') draw();
  return {
    update(p) {
      // Estimates grow (pages dirtied again); at the end the bytes moved are the total.
      const total = p.phase === 'done' ? Math.max(1, p.bytes) : Math.max(last.total, p.estimate ?? 0, p.bytes);
      last = { label, bytes: p.bytes, total, phase: p.phase, seconds: (Date.now() - started) / 1000 };
      if (out.mode === 'lines') {
        if (last.bytes > 0 || p.phase === 'done') line();
      } else if (Date.now() - drawnAt >= REDRAW_MS || p.phase === 'done') {
        draw();
      }
    },
    stop() {
      if (out.mode === 'bar') {
        draw();
        out.write('\n');
      }
    },
  };
}
