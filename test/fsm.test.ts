// The v2 FSM against three independent references: the next-step table as
// the uAPI digest prints it, the kernel's own vfio_mig_get_next_state()
// compiled from linux-source-6.12, and a breadth-first search over the arcs
// drivers must implement (the libvfio-user approach).
import { describe, expect, it } from 'vitest';
import { FLAG_SETS, MigFlags, MigrationError, MigState, nextState, transitionPath } from '../index.js';
import { runC } from './support/c-program.js';
import { includeVfioH, kernelSourceFile } from './support/kernel-tree.js';
import { oraclePath } from './support/path-oracle.js';

const ALL = MigFlags.STOP_COPY | MigFlags.P2P | MigFlags.PRE_COPY;
const STATES = [0, 1, 2, 3, 4, 5, 6, 7, 8]; // 8 = VFIO_DEVICE_NUM_STATES, out of range

function outcome(f: () => unknown): string {
  try {
    return String(f());
  } catch (e) {
    if (e instanceof MigrationError) return e.code;
    throw e;
  }
}

describe('nextState: docs/PROTOCOL.md §3.5 table (all flags: nothing is skipped)', () => {
  // Rows cur, columns target, in docs/PROTOCOL.md §3.5's order S R PC PCP SC RS RP (and E).
  const order = [
    MigState.STOP,
    MigState.RUNNING,
    MigState.PRE_COPY,
    MigState.PRE_COPY_P2P,
    MigState.STOP_COPY,
    MigState.RESUMING,
    MigState.RUNNING_P2P,
    MigState.ERROR,
  ];
  const abbrev: Record<string, MigState> = { S: 1, R: 2, SC: 3, RS: 4, RP: 5, PC: 6, PCP: 7, E: 0 };
  const table = `
    S   S  RP RP  RP  SC RS RP E
    R   RP R  PC  RP  RP RP RP E
    PC  R  R  PC  PCP PCP R R  E
    PCP RP RP PC  PCP SC RP RP E
    SC  S  S  E   E   SC S  S  E
    RS  S  S  S   S   S  RS S  E
    RP  S  R  R   PCP S  S  RP E`;
  for (const row of table.trim().split('\n')) {
    const [cur, ...cells] = row.trim().split(/\s+/);
    it(`row ${cur}`, () => {
      cells.forEach((cell, i) => {
        const target = order[i];
        const got = outcome(() => nextState(abbrev[cur], target, ALL));
        expect(`${cur}->${MigState[target]}: ${got}`).toBe(`${cur}->${MigState[target]}: ${cell === 'E' ? 'EINVAL' : abbrev[cell]}`);
      });
    });
  }
});

describe('nextState equals the kernel function compiled from linux-source-6.12', () => {
  it('agrees on all 324 (flags, cur, target) combinations', () => {
    const src = kernelSourceFile('drivers/vfio/vfio_main.c');
    const start = src.indexOf('int vfio_mig_get_next_state(');
    const end = src.indexOf('EXPORT_SYMBOL_GPL(vfio_mig_get_next_state);');
    expect(start).toBeGreaterThan(0);
    expect(end).toBeGreaterThan(start);
    const program = `#include <stdio.h>
#include <errno.h>
${includeVfioH()}typedef unsigned char u8;
#define WARN_ON(x) (x)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
struct vfio_device { unsigned int migration_flags; };
${src.slice(start, end)}
int main(void) {
  unsigned flags[] = { ${FLAG_SETS.join(', ')} };
  for (int f = 0; f < 4; f++) for (unsigned c = 0; c <= 8; c++) for (unsigned t = 0; t <= 8; t++) {
    struct vfio_device d = { flags[f] };
    enum vfio_device_mig_state next = 0;
    int r = vfio_mig_get_next_state(&d, c, t, &next);
    printf("%u %u %u %s\\n", flags[f], c, t, r ? "EINVAL" : (char[]){ '0' + next, 0 });
  }
  return 0;
}`;
    const kernel = runC(program).trim().split('\n');
    expect(kernel).toHaveLength(324);
    const ours = FLAG_SETS.flatMap((f) => STATES.flatMap((c) => STATES.map((t) => `${f} ${c} ${t} ${outcome(() => nextState(c, t, f))}`)));
    expect(ours).toEqual(kernel);
  });
});

describe('transitionPath agrees with the BFS oracle over required driver arcs', () => {
  for (const flags of FLAG_SETS) {
    it(`flags 0x${flags.toString(16)}: every cur, target in 0..8`, () => {
      for (const cur of STATES) {
        for (const target of STATES) {
          const got = outcome(() => transitionPath(cur, target, flags).join(','));
          const want = outcome(() => oraclePath(cur, target, flags).join(','));
          expect(`${MigState[cur] ?? cur}->${MigState[target] ?? target}: ${got}`).toBe(
            `${MigState[cur] ?? cur}->${MigState[target] ?? target}: ${want}`,
          );
        }
      }
    });
  }
});

describe('transitionPath examples from docs/PROTOCOL.md §3.5', () => {
  const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;
  const cases: [number, MigState, MigState, MigState[]][] = [
    [1, R, SC, [S, SC]],
    [1, R, RS, [S, RS]],
    [1, SC, R, [S, R]],
    [1, RS, R, [S, R]],
    [3, R, S, [RP, S]],
    [3, S, R, [RP, R]],
    [3, R, SC, [RP, S, SC]],
    [5, PC, SC, [SC]],
    [5, PC, S, [R, S]],
    [5, S, PC, [R, PC]],
    [7, PC, SC, [PCP, SC]],
    [7, PC, RS, [R, RP, S, RS]],
  ];
  for (const [flags, from, to, path] of cases) {
    it(`0x${flags.toString(16)} ${MigState[from]} -> ${MigState[to]}`, () => {
      expect(transitionPath(from, to, flags)).toEqual(path);
    });
  }
  it('STOP_COPY -> PRE_COPY is EINVAL with errno 22', () => {
    try {
      transitionPath(SC, PC, 5);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(MigrationError);
      expect((e as MigrationError).code).toBe('EINVAL');
      expect((e as MigrationError).errno).toBe(22);
    }
  });
  it('same state is an empty path; ERROR, out-of-range and non-integer states are EINVAL', () => {
    expect(transitionPath(R, R, 1)).toEqual([]);
    for (const [c, t] of [
      [0, 0],
      [2, 0],
      [0, 2],
      [2, 8],
      [-1, 2],
      [2, 1.5],
      [2, Number.NaN],
    ]) {
      expect(outcome(() => transitionPath(c, t, 7))).toBe('EINVAL');
    }
    expect(outcome(() => nextState(R, RP, 1))).toBe('EINVAL');
  });
});
