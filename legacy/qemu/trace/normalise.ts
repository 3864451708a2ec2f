// A recorded trace made stable, so that recording the same scenario twice
// gives the same bytes (the committed fixtures, docs/trace-format.md
// "Normalised traces"). What varies from run to run goes:
//  * times: every `t` becomes 0 (the order of the lines stays), `us` and the
//    start line's wall `clock` go, and so does the time in the release stats;
//  * processes: pids, fds, the command line and the bridge's private paths;
//  * device names (uuids, PCI addresses) become `device-<dev>`;
//  * polling: a run of polls (polls.ts: what a client repeats while the
//    device pre-copies) keeps each distinct poll once, in the order of its
//    last appearance, and every poll is marked `repeat: true` ("one or more
//    times"). How often QEMU polls depends on timing; what it saw does not.
// The recorder adds what the trace cannot know itself: the client's version
// and the scenario.
import { collapsePollRuns, unitsOf, type Unit } from './polls.js';
import { traceJson, type DataLine, type TraceLine, type V1Line, type V2Line } from './trace-format.js';

export interface NormaliseOptions {
  /** The program that made the calls, as the recorder knows it (merged into the client line, or a new one). */
  client?: { name: string; version?: string };
  /** What was done, for a reader of the fixture (on the start line). */
  scenario?: { name: string; summary: string };
}

/** Fields that differ between two runs of the same scenario, per event. */
const VOLATILE: Record<string, string[]> = {
  start: ['clock', 'pid', 'command'],
  register: ['pid', 'fd', 'window', 'label'],
  client: ['pid'],
  refused: ['pid'],
};

export function normaliseTrace(lines: readonly TraceLine[], options: NormaliseOptions = {}): TraceLine[] {
  const names = new Map<string, string>();
  for (const l of lines) {
    if ((l.ev === 'device' || l.ev === 'register') && typeof l.name === 'string' && typeof l.dev === 'number' && !names.has(l.name)) {
      names.set(l.name, `device-${l.dev}`);
    }
  }
  const stable = lines.map((l) => stabilise(l, names, options));
  if (options.client && !stable.some((l) => l.ev === 'client')) {
    const at = stable.findIndex((l) => l.ev !== 'start');
    stable.splice(at < 0 ? stable.length : at, 0, { v: stable[0]?.v ?? 2, t: 0, ev: 'client', ...options.client } as TraceLine);
  }
  return collapsePolls(stable);
}

function stabilise(l: TraceLine, names: Map<string, string>, options: NormaliseOptions): TraceLine {
  const out: Record<string, unknown> = { ...l, t: 0 };
  delete out.us;
  delete out.line;
  for (const f of VOLATILE[l.ev] ?? []) delete out[f];
  if (typeof out.name === 'string' && names.has(out.name)) out.name = names.get(out.name);
  if (l.ev === 'release' && typeof out.stats === 'object' && out.stats !== null) {
    const { stopCopyMs: _time, ...stats } = out.stats as Record<string, unknown>;
    out.stats = stats;
  }
  if (l.ev === 'client' && options.client) Object.assign(out, options.client);
  if (l.ev === 'start' && options.scenario) Object.assign(out, { scenario: options.scenario.name, summary: options.scenario.summary });
  return out as unknown as TraceLine;
}

/** Polls collapsed (polls.ts), and every poll marked `repeat: true`: one poll or five, the normalised line is the same. */
function collapsePolls(lines: TraceLine[]): TraceLine[] {
  const key = (u: Unit) => u.lines.map((l) => traceJson({ ...l, repeat: undefined })).join('\n');
  return collapsePollRuns(unitsOf(lines), key).flatMap((u) => {
    if (u.poll) (u.lines[u.lines.length - 1] as V1Line | DataLine | V2Line).repeat = true;
    return u.lines;
  });
}
