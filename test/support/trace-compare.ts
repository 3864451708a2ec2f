// Comparing what a client model did with what real QEMU did, both as traces
// (docs/qemu-oracle.md "How a model is compared"):
//  * v1: the register accesses of one device, as "read device_state 0x1",
//    "write data_size 0x18", "reset", with " -> ERRNO" when one failed.
//    Window accesses are left out: QEMU copies the window through its own
//    mapping, so the recording has none.
//  * polls (legacy/qemu/trace/polls.ts: what QEMU repeats once per migration
//    iteration while the device pre-copies) are matched as runs: a run keeps
//    each distinct poll once, in the order of its last appearance. How many
//    iterations RAM takes is not the device's story.
//  * v2: the device calls, "setState PRE_COPY", "stopCopySize + precopyInfo"
//    (the pair vfio_state_pending_exact asks), "read 96 -> 24", "write 24 ->
//    24", "close", with " -> ERRNO" on failure.
// The two step lists are aligned (longest common subsequence) and what does
// not line up is given as hunks: what QEMU did there, what the model did.
import { collapsePollRuns, unitsOf } from '../../legacy/qemu/trace/polls.js';
import { isData, isV1, isV2, type TraceLine } from '../../legacy/qemu/trace/trace-format.js';

export interface Step {
  text: string;
  /** Trace line it came from (the first of a collapsed run). */
  line: number;
}

export interface Hunk {
  /** The last step both did before the difference ('^' at the start). */
  after: string;
  /** Trace line of QEMU's first differing step, or of `after` when QEMU has none here. */
  line: number;
  qemu: string[];
  model: string[];
}

const hex = (v: bigint | undefined) => (v === undefined ? '' : ` 0x${v.toString(16)}`);
const failed = (result: string) => (result === 'ok' ? '' : ` -> ${result}`);

function collapse(steps: (Step & { poll: boolean })[]): Step[] {
  return collapsePollRuns(steps, (s) => s.text).map(({ text, line }) => ({ text, line }));
}

/** The v1 register accesses of device `dev`. */
export function v1Steps(lines: readonly TraceLine[], dev = 1): Step[] {
  const steps = unitsOf(lines).flatMap((u) => {
    const l = u.lines[u.lines.length - 1];
    if (u.dev !== dev || !isV1(l) || (l.op !== 'reset' && l.field === undefined)) return [];
    const text = l.op === 'reset' ? `reset${failed(l.result)}` : `${l.op} ${l.field}${hex(l.value)}${failed(l.result)}`;
    return [{ text, line: l.line, poll: u.poll }];
  });
  return collapse(steps);
}

function v2Text(l: TraceLine): string {
  if (isV2(l)) return `${l.call}${l.arg ? ` ${l.arg}` : ''}${failed(l.result)}`;
  const d = l as Extract<TraceLine, { ev: 'data' }>;
  return d.op === 'close'
    ? `close${failed(d.result)}`
    : `${d.op} ${d.size ?? '?'}${d.result === 'ok' ? ` -> ${d.ret ?? '?'}` : failed(d.result)}`;
}

/** The v2 device and data_fd calls of device `dev` (a MIG_DATA_SIZE + PRECOPY_INFO pair is one step). */
export function v2Steps(lines: readonly TraceLine[], dev = 1): Step[] {
  const steps = unitsOf(lines).flatMap((u) => {
    if (u.dev !== dev || !u.lines.every((l) => isV2(l) || isData(l))) return [];
    return [{ text: u.lines.map(v2Text).join(' + '), line: u.lines[0].line, poll: u.poll }];
  });
  return collapse(steps);
}

/** Where the model's steps differ from QEMU's, after aligning the two. */
export function diffSteps(qemu: readonly Step[], model: readonly Step[]): Hunk[] {
  const n = qemu.length;
  const m = model.length;
  // lcs[i][j]: length of the longest common subsequence of qemu[i..] and model[j..].
  const lcs = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = qemu[i].text === model[j].text ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const hunks: Hunk[] = [];
  let open: Hunk | null = null;
  let after: Step | null = null;
  const hunk = (): Hunk => (open ??= { after: after?.text ?? '^', line: after?.line ?? 0, qemu: [], model: [] });
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && qemu[i].text === model[j].text) {
      if (open) hunks.push(open);
      open = null;
      after = qemu[i];
      i++;
      j++;
    } else if (j >= m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1])) {
      const h = hunk();
      if (h.qemu.length === 0) h.line = qemu[i].line;
      h.qemu.push(qemu[i++].text);
    } else {
      hunk().model.push(model[j++].text);
    }
  }
  if (open) hunks.push(open);
  return hunks;
}
