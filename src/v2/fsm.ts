// The kernel's combination-transition algorithm, vfio_mig_get_next_state()
// in drivers/vfio/vfio_main.c (6.12): a next-step table plus the rule that
// unsupported intermediate states are skipped.
import { MigrationError } from '../uapi/errors.js';
import { MIG_STATE_COUNT, MigFlags, MigState, stateName } from './states.js';

const { ERROR: E, STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;

// NEXT[cur][target], indexed by enum value: ERROR, STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P.
const NEXT: readonly (readonly MigState[])[] = [
  /* ERROR */ [E, E, E, E, E, E, E, E],
  /* STOP */ [E, S, RP, SC, RS, RP, RP, RP],
  /* RUNNING */ [E, RP, R, RP, RP, RP, PC, RP],
  /* STOP_COPY */ [E, S, S, SC, S, S, E, E],
  /* RESUMING */ [E, S, S, S, RS, S, S, S],
  /* RUNNING_P2P */ [E, S, R, S, S, RP, R, PCP],
  /* PRE_COPY */ [E, R, R, PCP, R, R, PC, PCP],
  /* PRE_COPY_P2P */ [E, RP, RP, SC, RP, RP, PC, PCP],
];

// state_flags_table: the feature flags a state needs to exist. ERROR needs ~0U, i.e. never exists.
const REQUIRED_FLAGS: readonly number[] = [
  /* ERROR */ 0xffffffff,
  /* STOP */ MigFlags.STOP_COPY,
  /* RUNNING */ MigFlags.STOP_COPY,
  /* STOP_COPY */ MigFlags.STOP_COPY,
  /* RESUMING */ MigFlags.STOP_COPY,
  /* RUNNING_P2P */ MigFlags.STOP_COPY | MigFlags.P2P,
  /* PRE_COPY */ MigFlags.STOP_COPY | MigFlags.PRE_COPY,
  /* PRE_COPY_P2P */ MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY,
];

/** Does a device with `flags` have state `s`? (ERROR and out-of-range: never.) */
export function stateSupported(s: number, flags: number): boolean {
  if (!Number.isInteger(s) || s < 0 || s >= MIG_STATE_COUNT) return false;
  const need = REQUIRED_FLAGS[s] >>> 0;
  return (need & flags) >>> 0 === need;
}

/** The next single arc from `cur` toward `target`; EINVAL exactly where the kernel returns it. */
export function nextState(cur: number, target: number, flags: number): MigState {
  if (!stateSupported(cur, flags)) {
    throw new MigrationError('EINVAL', `current state ${stateName(cur)} is not supported with flags 0x${flags.toString(16)}`);
  }
  if (!stateSupported(target, flags)) {
    throw new MigrationError('EINVAL', `target state ${stateName(target)} is not supported with flags 0x${flags.toString(16)}`);
  }
  let next = NEXT[cur][target];
  while (next !== E && !stateSupported(next, flags)) next = NEXT[next][target];
  if (next === E) {
    throw new MigrationError('EINVAL', `no path from ${stateName(cur)} to ${stateName(target)}`);
  }
  return next;
}

/** Every step the kernel takes after `cur`, ending at `target` (empty when cur === target). */
export function transitionPath(cur: number, target: number, flags: number): MigState[] {
  const path: MigState[] = [];
  let at = cur;
  nextState(cur, target, flags); // validates both ends, even when cur === target
  while (at !== target) {
    at = nextState(at, target, flags);
    path.push(at);
    if (path.length > MIG_STATE_COUNT) throw new MigrationError('EINVAL', 'transition table does not converge');
  }
  return path;
}
