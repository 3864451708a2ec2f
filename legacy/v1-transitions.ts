// Which v1 device_state arcs a v1 driver accepts. v1 never had a formal
// matrix (SPEC §1.3), so strictness is a policy. Tables are over the low
// three bits (from, to); reserved bits 3..31 play no part. A write whose
// target fails VFIO_DEVICE_STATE_VALID never reaches the table (EINVAL),
// and nothing leaves 110b except VFIO_DEVICE_RESET.
import { MigrationError } from '../src/uapi/errors.js';
import { V1_MASK, v1IsError, v1IsValid } from './v1-state.js';

export type V1Policy = 'qemu' | 'uapi' | 'libvfio-user';
export const V1_POLICIES: readonly V1Policy[] = ['qemu', 'uapi', 'libvfio-user'];

// Allowed targets per current state, as bit sets over 0..7 (bit n = target n).
const set = (...targets: number[]): number => targets.reduce((m, t) => m | (1 << t), 0);

/**
 * 'uapi': transitions 0-5 of the 5.8-5.17 uAPI comment (RUNNING->STOP,
 * RUNNING->SAVING->STOP, RUNNING->RUNNING|SAVING->SAVING->STOP,
 * RUNNING->RESUMING, RESUMING->RUNNING) plus same-state writes.
 */
const UAPI: readonly number[] = [
  /* 000 */ set(0),
  /* 001 */ set(0, 1, 2, 3, 4),
  /* 010 */ set(0, 2),
  /* 011 */ set(2, 3),
  /* 100 */ set(1, 4),
  /* 101 */ 0, /* 110 */ 0, /* 111 */ 0,
];

/**
 * 'libvfio-user': the migr_states[] table of libvfio-user's 2021 v1 server
 * (lib/migration.c), as SPEC §1.3 prints it (the pre-copy row as intended:
 * the source's `1 << RUNNING | SAVING` precedence slip is not reproduced).
 * Its rows coincide with 'uapi'; STOP->RUNNING is refused.
 */
const LIBVFIO_USER: readonly number[] = [
  /* 000 */ set(0),
  /* 001 */ set(0, 1, 2, 3, 4),
  /* 010 */ set(0, 2),
  /* 011 */ set(2, 3),
  /* 100 */ set(1, 4),
  /* 101 */ 0, /* 110 */ 0, /* 111 */ 0,
];

/**
 * 'qemu' (default): every arc QEMU 7.2's vfio_migration_set_state() can
 * produce — its (mask, value) pairs of SPEC §2.4 applied to each valid
 * state — plus the 'uapi' arcs, plus RESUMING->STOP (v2's RS->S, which
 * validates and applies the resumed data without starting the device).
 * Refused: STOP->PRE_COPY, PRE_COPY->STOP and SAVING->RUNNING|SAVING
 * (a stream cannot go back from stop-and-copy to pre-copy; v2 forbids SC->PC).
 */
const QEMU: readonly number[] = [
  /* 000 */ set(0, 1, 2, 4),
  /* 001 */ set(0, 1, 2, 3, 4),
  /* 010 */ set(0, 1, 2, 4),
  /* 011 */ set(1, 2, 3, 4),
  /* 100 */ set(0, 1, 4),
  /* 101 */ 0, /* 110 */ 0, /* 111 */ 0,
];

const TABLES: Readonly<Record<V1Policy, readonly number[]>> = { qemu: QEMU, uapi: UAPI, 'libvfio-user': LIBVFIO_USER };

/** Targets (low bits 0..7) the policy accepts from `from`'s low bits. */
export function v1AllowedTargets(policy: V1Policy, from: number): number[] {
  const row = tableOf(policy)[from & V1_MASK];
  return [0, 1, 2, 3, 4, 5, 6, 7].filter((t) => row & (1 << t));
}

/** Does the policy accept the write `from` -> `to` (reserved bits ignored)? */
export function v1TransitionAllowed(policy: V1Policy, from: number, to: number): boolean {
  if (v1IsError(from) || !v1IsValid(from) || !v1IsValid(to)) return false;
  return (tableOf(policy)[from & V1_MASK] & (1 << (to & V1_MASK))) !== 0;
}

/** Throws EINVAL for an unknown policy name (e.g. from a CLI string). */
export function parseV1Policy(name: string): V1Policy {
  if ((V1_POLICIES as readonly string[]).includes(name)) return name as V1Policy;
  throw new MigrationError('EINVAL', `unknown v1 transition policy '${name}' (use ${V1_POLICIES.join(', ')})`);
}

function tableOf(policy: V1Policy): readonly number[] {
  const t = TABLES[policy];
  if (!t) throw new MigrationError('EINVAL', `unknown v1 transition policy '${String(policy)}'`);
  return t;
}
