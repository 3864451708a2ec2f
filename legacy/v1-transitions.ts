// Which v1 device_state arcs a v1 driver accepts. v1 never had a formal
// matrix (the uAPI only numbers six transitions), so strictness is a policy
// (D5 of docs/SEMANTICS.md; docs/PROTOCOL.md §1.3, §2.4). Tables are over the low
// three bits (from, to); reserved bits 3..31 play no part. A write whose
// target fails VFIO_DEVICE_STATE_VALID never reaches the table (EINVAL),
// and nothing leaves 110b except VFIO_DEVICE_RESET.
import { MigrationError } from '../src/uapi/errors.js';
import { V1_MASK } from './v1-state.js';

export type V1Policy = 'qemu' | 'uapi' | 'libvfio-user' | 'libvfio-user-as-written';
export const V1_POLICIES: readonly V1Policy[] = ['qemu', 'uapi', 'libvfio-user', 'libvfio-user-as-written'];

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
  /* 101 */ 0,
  /* 110 */ 0,
  /* 111 */ 0,
];

/**
 * 'libvfio-user': the v1 server of libvfio-user as released, i.e. its last
 * v1 tree (lib/migration_priv.h migr_states[], checked by
 * vfio_migr_state_transition_is_valid() in lib/migration.c, at the parent of
 * commit 190f85b, which replaced v1 with v2). It is the table as the C
 * compiler reads it: the pre-copy row's term `1 << RUNNING | SAVING` binds as
 * `(1 << 1) | 2`, i.e. bit 1, so 011->001 is accepted and the same-state
 * write 011->011 is refused. This is the default of the two because a client
 * tested against it meets what the real server binary does.
 * Also refused: STOP->SAVING/PRE_COPY/RESUMING and RESUMING->STOP.
 *
 * libvfio-user lists 110b (error) as a target of every row but STOP; here
 * VFIO_DEVICE_STATE_VALID() is checked first and fails for 110b, so a write
 * of 110b is EINVAL under every policy (a user never asks for the error
 * state; only the driver enters it). libvfio-user shifts by the whole
 * 32-bit value, so it also refuses targets with reserved bits set; the
 * policies here, like the uAPI, look at the low three bits only.
 */
const LIBVFIO_USER: readonly number[] = [
  /* 000 */ set(0, 1),
  /* 001 */ set(0, 1, 2, 3, 4),
  /* 010 */ set(0, 1, 2),
  /* 011 */ set(0, 1, 2),
  /* 100 */ set(1, 4),
  /* 101 */ 0,
  /* 110 */ 0,
  /* 111 */ 0,
];

/**
 * 'libvfio-user-as-written': the same table with the pre-copy row as its
 * author meant it, `1 << (RUNNING | SAVING)`: 011 -> {000, 010, 011}. Useful
 * to check a client does not depend on the slip (011->001).
 */
const LIBVFIO_USER_AS_WRITTEN: readonly number[] = [
  /* 000 */ set(0, 1),
  /* 001 */ set(0, 1, 2, 3, 4),
  /* 010 */ set(0, 1, 2),
  /* 011 */ set(0, 2, 3),
  /* 100 */ set(1, 4),
  /* 101 */ 0,
  /* 110 */ 0,
  /* 111 */ 0,
];

/**
 * 'qemu' (default): every arc QEMU 7.2's vfio_migration_set_state() can
 * produce — its (mask, value) pairs of docs/PROTOCOL.md §2.4 applied to each valid
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
  /* 101 */ 0,
  /* 110 */ 0,
  /* 111 */ 0,
];

const TABLES: Readonly<Record<V1Policy, readonly number[]>> = {
  qemu: QEMU,
  uapi: UAPI,
  'libvfio-user': LIBVFIO_USER,
  'libvfio-user-as-written': LIBVFIO_USER_AS_WRITTEN,
};

/** Targets (low bits 0..7) the policy accepts from `from`'s low bits. */
export function v1AllowedTargets(policy: V1Policy, from: number): number[] {
  const row = tableOf(policy)[from & V1_MASK];
  return [0, 1, 2, 3, 4, 5, 6, 7].filter((t) => row & (1 << t));
}

/**
 * Does the policy accept the write `from` -> `to` (reserved bits ignored)?
 * No table lists 101, 110 or 111 as a target or lets anything leave them,
 * so a state failing VALID, and the error state, are refused here too.
 */
export function v1TransitionAllowed(policy: V1Policy, from: number, to: number): boolean {
  return (tableOf(policy)[from & V1_MASK] & (1 << (to & V1_MASK))) !== 0;
}

/** Throws EINVAL for an unknown policy name (e.g. from a CLI string). */
export function parseV1Policy(name: string): V1Policy {
  if ((V1_POLICIES as readonly string[]).includes(name)) return name as V1Policy;
  throw new MigrationError('EINVAL', `unknown v1 transition policy '${name}' (use ${V1_POLICIES.join(', ')})`);
}

function tableOf(policy: V1Policy): readonly number[] {
  const t = Object.hasOwn(TABLES, policy) ? TABLES[policy] : undefined;
  if (!t) throw new MigrationError('EINVAL', `unknown v1 transition policy '${String(policy)}'`);
  return t;
}
