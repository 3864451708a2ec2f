// v1 device_state bits and macros (uapi/linux/vfio.h, 5.8-5.17; kept with _V1_
// names in 5.18+). SET_ERROR is written as 5.18+ spells it: the 5.8-5.17 macro
// misspelled VFIO_DEVICE_SATE_SAVING and could not compile.
export const V1_STOP = 0;
export const V1_RUNNING = 1 << 0;
export const V1_SAVING = 1 << 1;
export const V1_RESUMING = 1 << 2;
export const V1_MASK = V1_RUNNING | V1_SAVING | V1_RESUMING;
export const V1_ERROR = V1_SAVING | V1_RESUMING; // 110b

/** VFIO_DEVICE_STATE_VALID: with RESUMING set, the low bits must be exactly RESUMING. */
export function v1IsValid(state: number): boolean {
  return state & V1_RESUMING ? (state & V1_MASK) === V1_RESUMING : true;
}

/** VFIO_DEVICE_STATE_IS_ERROR: low bits 110b. */
export function v1IsError(state: number): boolean {
  return (state & V1_MASK) === V1_ERROR;
}

/** VFIO_DEVICE_STATE_SET_ERROR: keep reserved bits 3..31, low bits become 110b. */
export function v1SetError(state: number): number {
  return ((state & ~V1_MASK) | V1_ERROR) >>> 0;
}

const NAMES: Record<number, string> = {
  0: 'STOP',
  1: 'RUNNING',
  2: 'STOP_COPY(SAVING)',
  3: 'PRE_COPY(RUNNING|SAVING)',
  4: 'RESUMING',
  5: 'INVALID(101)',
  6: 'ERROR(110)',
  7: 'INVALID(111)',
};

export function v1StateName(state: number): string {
  const low = state & V1_MASK;
  const bits = low.toString(2).padStart(3, '0');
  return `${bits}b ${NAMES[low]}${state & ~V1_MASK ? ` +reserved 0x${((state & ~V1_MASK) >>> 0).toString(16)}` : ''}`;
}
