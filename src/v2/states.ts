// enum vfio_device_mig_state and the VFIO_MIGRATION_* feature flags (uapi/linux/vfio.h).
export enum MigState {
  ERROR = 0,
  STOP = 1,
  RUNNING = 2,
  STOP_COPY = 3,
  RESUMING = 4,
  RUNNING_P2P = 5,
  PRE_COPY = 6,
  PRE_COPY_P2P = 7,
}

/** VFIO_DEVICE_NUM_STATES in vfio_mig_get_next_state: one past the last state. */
export const MIG_STATE_COUNT = 8;

export const MigFlags = { STOP_COPY: 1, P2P: 2, PRE_COPY: 4 } as const;

/** The four flag sets a real driver can advertise (STOP_COPY is mandatory). */
export const FLAG_SETS: readonly number[] = [
  MigFlags.STOP_COPY,
  MigFlags.STOP_COPY | MigFlags.P2P,
  MigFlags.STOP_COPY | MigFlags.PRE_COPY,
  MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY,
];

/** The saving group shares one data session (uapi: "saving group"). */
export function isSavingState(s: MigState): boolean {
  return s === MigState.PRE_COPY || s === MigState.PRE_COPY_P2P || s === MigState.STOP_COPY;
}

export function stateName(s: number): string {
  return MigState[s] ?? `state(${s})`;
}

/** Parse 'RUNNING', 'running', 'pre_copy' or a number. */
export function parseState(text: string): MigState | undefined {
  const n = Number(text);
  if (text.trim() !== '' && Number.isInteger(n)) return n >= 0 && n < MIG_STATE_COUNT ? n : undefined;
  const v = (MigState as unknown as Record<string, number>)[text.toUpperCase().replace(/-/g, '_')];
  return typeof v === 'number' ? v : undefined;
}
