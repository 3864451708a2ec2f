// v1 bits <-> v2 MigState (docs/PROTOCOL.md §6.1-6.2), against a table written out here.
import { describe, expect, it } from 'vitest';
import { MigrationError } from '../src/uapi/errors.js';
import { MigState } from '../src/v2/states.js';
import { v1StateName } from '../legacy/v1-state.js';
import { v1ToV2State, v2ToV1State } from '../translate/state-map.js';

const { ERROR: E, STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;

describe('state map', () => {
  it('v1 -> v2: 000 STOP, 001 RUNNING, 010 STOP_COPY, 011 PRE_COPY, 100 RESUMING, 110 ERROR; 101/111 EINVAL', () => {
    const table: [number, MigState | 'EINVAL'][] = [
      [0, S],
      [1, R],
      [2, SC],
      [3, PC],
      [4, RS],
      [5, 'EINVAL'],
      [6, E],
      [7, 'EINVAL'],
    ];
    for (const [bits, want] of table) {
      for (const reserved of [0, 0x8, 0xfffffff8]) {
        const v = (bits | reserved) >>> 0;
        let got: MigState | string;
        try {
          got = v1ToV2State(v);
        } catch (e) {
          got = (e as MigrationError).code;
        }
        expect(`${v.toString(16)} -> ${String(got)}`).toBe(`${v.toString(16)} -> ${String(want)}`);
      }
    }
  });

  it('v2 -> v1: the P2P states show as their non-P2P twin, ERROR as 110', () => {
    const table: [MigState, number][] = [
      [E, 6],
      [S, 0],
      [R, 1],
      [SC, 2],
      [RS, 4],
      [RP, 1],
      [PC, 3],
      [PCP, 3],
    ];
    for (const [s, bits] of table) expect(v2ToV1State(s)).toBe(bits);
    expect(() => v2ToV1State(8 as MigState)).toThrow(MigrationError);
  });

  it('round trip on the states both protocols have', () => {
    for (const s of [S, R, SC, RS, PC, E]) expect(v1ToV2State(v2ToV1State(s))).toBe(s);
  });

  it('refusals name what was refused (v1 bits and name, or the number that is no v2 state)', () => {
    expect(() => v1ToV2State(5)).toThrow(/^EINVAL: v1 device_state 101b INVALID\(101\) has no v2 equivalent$/);
    expect(() => v1ToV2State(0xf)).toThrow(/^EINVAL: v1 device_state 111b INVALID\(111\) \+reserved 0x8 has no v2 equivalent$/);
    expect(() => v2ToV1State(99 as MigState)).toThrow(/^EINVAL: not a v2 state: 99$/);
  });
});

describe('v1StateName (what messages and the CLI print)', () => {
  it('names every low-bit value, and reserved bits when set', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(v1StateName)).toEqual([
      '000b STOP',
      '001b RUNNING',
      '010b STOP_COPY(SAVING)',
      '011b PRE_COPY(RUNNING|SAVING)',
      '100b RESUMING',
      '101b INVALID(101)',
      '110b ERROR(110)',
      '111b INVALID(111)',
    ]);
    expect(v1StateName(0xfffffff9)).toBe('001b RUNNING +reserved 0xfffffff8');
  });
});
