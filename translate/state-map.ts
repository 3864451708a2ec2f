// v1 device_state bits <-> v2 MigState (D3 of docs/SEMANTICS.md). The same integer
// means different things in the two protocols (v1 2 = stop-and-copy, v2 2 =
// RUNNING), so values are never passed through: every crossing goes through
// these two functions.
import { MigrationError } from '../src/uapi/errors.js';
import { MigState } from '../src/v2/states.js';
import { V1_ERROR, V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, V1_STOP, v1StateName } from '../legacy/v1-state.js';

/**
 * v1 -> v2, on the low three bits (reserved bits 3..31 are ignored):
 * 000 STOP, 001 RUNNING, 010 STOP_COPY, 011 PRE_COPY, 100 RESUMING, 110 ERROR.
 * 101 and 111 have no meaning in either protocol: EINVAL.
 */
export function v1ToV2State(v1: number): MigState {
  switch (v1 & V1_MASK) {
    case V1_STOP:
      return MigState.STOP;
    case V1_RUNNING:
      return MigState.RUNNING;
    case V1_SAVING:
      return MigState.STOP_COPY;
    case V1_RUNNING | V1_SAVING:
      return MigState.PRE_COPY;
    case V1_RESUMING:
      return MigState.RESUMING;
    case V1_ERROR:
      return MigState.ERROR;
    default:
      throw new MigrationError('EINVAL', `v1 device_state ${v1StateName(v1)} has no v2 equivalent`);
  }
}

/**
 * v2 -> v1 low bits. The P2P states have no v1 encoding; they show as their
 * non-P2P twin (RUNNING_P2P 001, PRE_COPY_P2P 011), which is what a v1 user
 * needs after a failed SET left the device on an intermediate P2P state.
 */
export function v2ToV1State(s: MigState): number {
  switch (s) {
    case MigState.STOP:
      return V1_STOP;
    case MigState.RUNNING:
    case MigState.RUNNING_P2P:
      return V1_RUNNING;
    case MigState.STOP_COPY:
      return V1_SAVING;
    case MigState.PRE_COPY:
    case MigState.PRE_COPY_P2P:
      return V1_RUNNING | V1_SAVING;
    case MigState.RESUMING:
      return V1_RESUMING;
    case MigState.ERROR:
      return V1_ERROR;
    default:
      throw new MigrationError('EINVAL', `not a v2 state: ${String(s)}`);
  }
}
