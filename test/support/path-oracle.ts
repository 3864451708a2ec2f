// Independent path oracle: shortest paths over the single arcs the kernel
// requires drivers to implement (vfio_main.c comment above the table), with
// the uAPI's rules instead of the kernel's table:
//  - only the last arc may open a data session, so an intermediate step may be
//    a data state (STOP_COPY, RESUMING, PRE_COPY*) only while cur and target are
//    both in the saving group (the session carries on);
//  - STOP_COPY -> PRE_COPY(_P2P) is not permitted at all;
//  - ERROR and unsupported states can be neither end.
import { MigrationError } from '../../src/uapi/errors.js';
import { requiredArcs } from '../../src/v2/required-arcs.js';
import { MigFlags, MigState } from '../../src/v2/states.js';

const { STOP: S, RUNNING: R, STOP_COPY: SC, RESUMING: RS, RUNNING_P2P: RP, PRE_COPY: PC, PRE_COPY_P2P: PCP } = MigState;

// The arcs are the kernel's list (src/v2/required-arcs.ts, also what SimV2Driver accepts):
// what is independent here is the search and the uAPI's rules, not the list.
export { requiredArcs };

function exists(s: number, flags: number): boolean {
  if (!(flags & MigFlags.STOP_COPY) || !Number.isInteger(s)) return false;
  if (s === S || s === R || s === SC || s === RS) return true;
  if (s === RP) return (flags & MigFlags.P2P) !== 0;
  if (s === PC) return (flags & MigFlags.PRE_COPY) !== 0;
  if (s === PCP) return (flags & (MigFlags.P2P | MigFlags.PRE_COPY)) === (MigFlags.P2P | MigFlags.PRE_COPY);
  return false;
}

const saving = (s: number) => s === SC || s === PC || s === PCP;
const dataState = (s: number) => saving(s) || s === RS;

export function oraclePath(cur: number, target: number, flags: number): MigState[] {
  if (!exists(cur, flags) || !exists(target, flags)) throw new MigrationError('EINVAL');
  if (cur === SC && (target === PC || target === PCP)) throw new MigrationError('EINVAL');
  const staysInSession = saving(cur) && saving(target);
  const arcs = requiredArcs(flags);
  const prev = new Map<number, number>([[cur, -1]]);
  const queue = [cur];
  while (queue.length) {
    const at = queue.shift()!;
    if (at === target) break;
    if (at !== cur && dataState(at) && !staysInSession) continue; // may not pass through
    for (const [from, to] of arcs) {
      if (from === at && !prev.has(to)) {
        prev.set(to, at);
        queue.push(to);
      }
    }
  }
  if (!prev.has(target)) throw new MigrationError('EINVAL');
  const path: MigState[] = [];
  for (let s = target; s !== cur; s = prev.get(s)!) path.unshift(s);
  return path;
}
