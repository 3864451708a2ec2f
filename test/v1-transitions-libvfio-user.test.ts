// The 'libvfio-user' policies against libvfio-user's own source: the
// migr_states[] table and vfio_migr_state_transition_is_valid() of its last
// v1 server (lib/migration_priv.h, lib/migration.c at 190f85b^), compiled by
// gcc from the verbatim lines in test/fixtures (see support/libvfio-user-oracle).
import { describe, expect, it } from 'vitest';
import { errnoOf } from './support/errno.js';
import { lvuAllowed, lvuSource, type LvuForm } from './support/libvfio-user-oracle.js';
import {
  SimDevice,
  SimV1Region,
  readDeviceState,
  v1AllowedTargets,
  v1TransitionAllowed,
  writeDeviceState,
  type V1Policy,
} from '../index.js';

const bits = (n: number) => n.toString(2).padStart(3, '0');
const ERROR_STATE = 0b110;
const FORMS: [V1Policy, LvuForm][] = [
  ['libvfio-user', 'compiled'],
  ['libvfio-user-as-written', 'as-written'],
];
const oracle = { compiled: lvuAllowed('compiled'), 'as-written': lvuAllowed('as-written') };

describe('the oracle itself', () => {
  it('reading the slip as intended rewrites exactly one term of the header', () => {
    expect(lvuSource('as-written').rewrites).toBe(1);
  });

  it('the two forms differ only in the pre-copy row: 011->001 vs 011->011', () => {
    const diffs: string[] = [];
    for (let from = 0; from < 8; from++) {
      for (let to = 0; to < 8; to++) {
        if (oracle.compiled[from][to] !== oracle['as-written'][from][to])
          diffs.push(`${bits(from)}>${bits(to)} compiled=${oracle.compiled[from][to]}`);
      }
    }
    expect(diffs).toEqual(['011>001 compiled=true', '011>011 compiled=false']);
  });

  it('libvfio-user lists 110 (error) as a target from every state but STOP, and nothing leaves 101, 110 or 111', () => {
    for (const form of ['compiled', 'as-written'] as const) {
      expect(oracle[form].map((row) => row[ERROR_STATE])).toEqual([false, true, true, true, true, false, false, false]);
      for (const from of [5, 6, 7]) expect(oracle[form][from].some(Boolean)).toBe(false);
    }
  });
});

describe.each(FORMS)("policy '%s' is libvfio-user's table %s", (policy, form) => {
  it('v1TransitionAllowed over 8x8 (reserved bits ignored), except that 110 is refused as not VALID', () => {
    for (let from = 0; from < 8; from++) {
      for (let to = 0; to < 8; to++) {
        const key = `${bits(from)}>${bits(to)}`;
        const want = oracle[form][from][to] && to !== ERROR_STATE;
        expect(`${key} ${v1TransitionAllowed(policy, from, to)}`).toBe(`${key} ${want}`);
        expect(`${key}+reserved ${v1TransitionAllowed(policy, from | 0x80, to | 0x100)}`).toBe(`${key}+reserved ${want}`);
      }
    }
  });

  it('v1AllowedTargets lists the same rows', () => {
    for (let from = 0; from < 8; from++) {
      const want = [0, 1, 2, 3, 4, 5, 6, 7].filter((to) => oracle[form][from][to] && to !== ERROR_STATE && from !== ERROR_STATE);
      expect(`${bits(from)}: ${v1AllowedTargets(policy, from).join(',')}`).toBe(`${bits(from)}: ${want.join(',')}`);
    }
  });

  it('a region under this policy refuses a write of 110 before the table (EINVAL, state kept)', async () => {
    const r = new SimV1Region(new SimDevice({ size: 4096, seed: 1 }), { policy });
    expect(await errnoOf(writeDeviceState(r, ERROR_STATE))).toBe('EINVAL');
    expect(await readDeviceState(r)).toBe(1);
  });
});
