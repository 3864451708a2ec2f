// The single arcs a v2 driver must implement for its feature flags (the
// comment above vfio_from_fsm_table in drivers/vfio/vfio_main.c, 6.12). The
// kernel's vfio_mig_get_next_state() only ever asks a driver for these, so a
// driver that is handed another arc has a bug (mtty_step_state WARNs).
import { MigFlags, MigState } from './states.js';

const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;

export function requiredArcs(flags: number): ReadonlyArray<readonly [MigState, MigState]> {
  const p2p = (flags & MigFlags.P2P) !== 0;
  const precopy = (flags & MigFlags.PRE_COPY) !== 0;
  const arcs: [MigState, MigState][] = [
    [RS, S],
    [S, RS],
    [S, SC],
    [SC, S],
  ];
  if (p2p) arcs.push([R, RP], [RP, R], [RP, S], [S, RP]);
  else arcs.push([R, S], [S, R]);
  if (precopy && !p2p) arcs.push([R, PC], [PC, R], [PC, SC]);
  if (precopy && p2p) arcs.push([R, PC], [PC, R], [PC, PCP], [PCP, PC], [PCP, RP], [PCP, SC], [RP, PCP]);
  return arcs;
}
