// libvfio-user's last v1 transition check, evaluated by gcc from the verbatim
// source lines in test/fixtures/libvfio-user-migr-states.h, so the precedence
// slip in its pre-copy row is decided by a C compiler, not by us.
//   'compiled':   the header as it is (what the released server did);
//   'as-written': each `(1 << A | B)` term read as its author meant it,
//                 `(1 << (A | B))`, then compiled the same way.
import { readFileSync } from 'node:fs';
import { runC } from './c-program.js';

export type LvuForm = 'compiled' | 'as-written';

const FIXTURE = new URL('../fixtures/libvfio-user-migr-states.h', import.meta.url);

/** The fixture's text, and `as-written` rewritten term by term. */
export function lvuSource(form: LvuForm): { text: string; rewrites: number } {
  const text = readFileSync(FIXTURE, 'utf8');
  if (form === 'compiled') return { text, rewrites: 0 };
  let rewrites = 0;
  const fixed = text.replace(/\(1 << (\w+ \| \w+)\)/g, (_, operand: string) => {
    rewrites++;
    return `(1 << (${operand}))`;
  });
  return { text: fixed, rewrites };
}

/** allowed[from][to] for from, to in 0..7, as vfio_migr_state_transition_is_valid() answers. */
export function lvuAllowed(form: LvuForm): boolean[][] {
  const program = [
    '#include <stdbool.h>',
    '#include <stdint.h>',
    '#include <stdio.h>',
    '#include <linux/vfio.h>',
    '#define MOCK_DEFINE(f) (f)', // lib/common.h outside UNIT_TEST
    lvuSource(form).text,
    'int main(void) {',
    '  for (uint32_t from = 0; from < 8; from++) {',
    "    for (uint32_t to = 0; to < 8; to++) putchar(vfio_migr_state_transition_is_valid(from, to) ? '1' : '0');",
    "    putchar('\\n');",
    '  }',
    '  return 0;',
    '}',
  ].join('\n');
  const rows = runC(program).trim().split('\n');
  if (rows.length !== 8 || rows.some((r) => !/^[01]{8}$/.test(r))) throw new Error(`unexpected oracle output: ${rows.join('|')}`);
  return rows.map((r) => [...r].map((c) => c === '1'));
}
