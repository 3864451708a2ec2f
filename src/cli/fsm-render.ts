// Renders the kernel's FSM for one flag set: the next-step table, and the
// single arcs a driver executes (derived from nextState, so exactly the arcs
// the kernel asks of a driver) as Graphviz DOT or Mermaid.
import { nextState, stateSupported } from '../v2/fsm.js';
import { isSavingState, MIG_STATE_COUNT, MigState, stateName } from '../v2/states.js';

export interface Arc {
  from: MigState;
  to: MigState;
  opensSession: boolean;
}

export function supportedStates(flags: number): MigState[] {
  return [...Array(MIG_STATE_COUNT).keys()].filter((s) => stateSupported(s, flags));
}

/** Arcs that open a data session: into the saving group from outside it, and STOP -> RESUMING. */
function opensSession(from: MigState, to: MigState): boolean {
  return (isSavingState(to) && !isSavingState(from)) || (from === MigState.STOP && to === MigState.RESUMING);
}

export function driverArcs(flags: number): Arc[] {
  const seen = new Set<string>();
  const arcs: Arc[] = [];
  const states = supportedStates(flags);
  for (const from of states) {
    for (const target of states) {
      if (from === target) continue;
      let to: MigState;
      try {
        to = nextState(from, target, flags);
      } catch {
        continue;
      }
      const key = `${from}>${to}`;
      if (!seen.has(key)) {
        seen.add(key);
        arcs.push({ from, to, opensSession: opensSession(from, to) });
      }
    }
  }
  return arcs.sort((a, b) => a.from - b.from || a.to - b.to);
}

/** Rows: current state; columns: target; cells: next single step or '-' (EINVAL). */
export function nextStepTable(flags: number): { states: MigState[]; cells: (MigState | null)[][] } {
  const states = supportedStates(flags);
  const cells = states.map((cur) =>
    states.map((target) => {
      try {
        return nextState(cur, target, flags);
      } catch {
        return null;
      }
    }),
  );
  return { states, cells };
}

export function renderTable(flags: number): string {
  const { states, cells } = nextStepTable(flags);
  const names = states.map(stateName);
  const width = Math.max(...names.map((n) => n.length), 'cur \\ target'.length);
  const pad = (s: string) => s.padEnd(width);
  const lines = [[pad('cur \\ target'), ...names.map(pad)].join(' ').trimEnd()];
  states.forEach((_, i) => lines.push([pad(names[i]), ...cells[i].map((c) => pad(c === null ? '-' : stateName(c)))].join(' ').trimEnd()));
  return lines.join('\n');
}

export function renderDot(flags: number): string {
  const lines = [`digraph vfio_mig_fsm_flags_${flags} {`, '  rankdir=LR;', '  node [shape=box, style=rounded];'];
  for (const s of supportedStates(flags)) lines.push(`  ${stateName(s)};`);
  for (const a of driverArcs(flags)) {
    lines.push(`  ${stateName(a.from)} -> ${stateName(a.to)}${a.opensSession ? ' [label="data_fd", style=bold]' : ''};`);
  }
  lines.push('}');
  return lines.join('\n');
}

export function renderMermaid(flags: number): string {
  const lines = ['stateDiagram-v2'];
  for (const a of driverArcs(flags)) {
    lines.push(`    ${stateName(a.from)} --> ${stateName(a.to)}${a.opensSession ? ': data_fd' : ''}`);
  }
  return lines.join('\n');
}
