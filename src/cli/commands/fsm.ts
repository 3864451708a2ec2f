// vfio-mig fsm: the kernel's v2 FSM for a flag set, as a table, one path, DOT or Mermaid.
import { transitionPath } from '../../v2/fsm.js';
import { stateName } from '../../v2/states.js';
import type { Command } from '../command.js';
import { driverArcs, nextStepTable, renderDot, renderMermaid, renderTable } from '../fsm-render.js';
import { parseFlags, parseStateArg } from '../parse-values.js';
import { UsageError } from '../usage-error.js';
import { MigrationError } from '../../uapi/errors.js';

export const fsmCommand: Command = {
  name: 'fsm',
  summary: 'show the v2 state machine the kernel enforces (vfio_mig_get_next_state)',
  usage: `fsm [--flags F] [--format table|dot|mermaid]
  fsm [--flags F] --from STATE --to STATE

  --flags F        VFIO_MIGRATION_* flags: 1..7, or STOP_COPY|P2P|PRE_COPY, or all (default: all)
  --format FMT     table (next step per current/target), dot (Graphviz), mermaid
  --from, --to     print the single arcs the kernel walks from one state to another`,
  options: {
    flags: { type: 'string', default: 'all' },
    format: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
  },
  run(values, positionals, ctx) {
    if (positionals.length) throw new UsageError(`fsm takes no arguments, got '${positionals[0]}'`);
    const flags = parseFlags(String(values.flags));
    if (!(flags & 1)) throw new UsageError('flags must include STOP_COPY (1): the kernel requires it of every migration driver');
    if ((values.from === undefined) !== (values.to === undefined)) throw new UsageError('--from and --to go together');
    if (ctx.json && values.format !== undefined) {
      throw new UsageError(
        '--json and --format both choose what is printed: --json gives the next-step table and the arcs as JSON; drop one',
      );
    }
    if (values.from !== undefined) {
      const from = parseStateArg(String(values.from), '--from');
      const to = parseStateArg(String(values.to), '--to');
      try {
        const path = transitionPath(from, to, flags);
        ctx.print([stateName(from), ...path.map(stateName)].join(' -> '));
        return { flags, from: stateName(from), to: stateName(to), path: path.map(stateName) };
      } catch (e) {
        if (e instanceof MigrationError) {
          throw new MigrationError(
            'EINVAL',
            `the kernel refuses ${stateName(from)} -> ${stateName(to)} with flags ${flags}: ${e.message.replace(/^EINVAL: /, '')}`,
          );
        }
        throw e;
      }
    }
    const format = String(values.format ?? 'table');
    if (format === 'table') ctx.print(renderTable(flags));
    else if (format === 'dot') ctx.print(renderDot(flags));
    else if (format === 'mermaid') ctx.print(renderMermaid(flags));
    else throw new UsageError(`bad --format '${format}': use table, dot or mermaid`);
    const { states, cells } = nextStepTable(flags);
    return {
      flags,
      states: states.map(stateName),
      next: Object.fromEntries(
        states.map((s, i) => [
          stateName(s),
          Object.fromEntries(states.map((t, j) => [stateName(t), cells[i][j] === null ? null : stateName(cells[i][j])])),
        ]),
      ),
      arcs: driverArcs(flags).map((a) => ({ from: stateName(a.from), to: stateName(a.to), opensSession: a.opensSession })),
    };
  },
};
