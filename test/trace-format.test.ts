// The trace format (docs/trace-format.md): reading and writing lines, and the
// normalisation that makes a recording a stable fixture. The committed
// fixtures are rebuilt here from the raw recordings kept beside them
// (test/fixtures/traces/raw/): normalising QEMU 7.2's bridge traces and
// converting QEMU 10's trace-event logs must give exactly the fixtures.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { normaliseTrace } from '../legacy/qemu/trace/normalise.js';
import { unitsOf } from '../legacy/qemu/trace/polls.js';
import { convertQemuTrace } from '../legacy/qemu/trace/qemu-trace-events.js';
import { formatTrace, parseTrace, TRACE_FORMAT_VERSION, type TraceLine, type V1Line } from '../legacy/qemu/trace/trace-format.js';

const DIR = new URL('./fixtures/traces/', import.meta.url);
const read = (name: string) => readFileSync(new URL(name, DIR), 'utf8');

interface Recorded {
  scenario: string;
  qemu: '7.2' | '10';
  version: string;
  summary: string;
  device: { name: string; identity?: Record<string, string> };
}
const RECORDED = JSON.parse(read('raw/recorded.json')) as Recorded[];

/** What test/lab/fixtures.mjs makes of a raw recording. */
function fixtureFrom(r: Recorded, rawText?: string): string {
  const client = { name: 'QEMU', version: r.version };
  const scenario = { name: r.scenario, summary: r.summary };
  const lines =
    r.qemu === '7.2'
      ? parseTrace(rawText ?? read(`raw/${r.scenario}.jsonl`))
      : parseTrace(
          formatTrace(
            convertQemuTrace(rawText ?? read(`raw/${r.scenario}.qemu.log`), {
              client,
              devices: { [r.device.name]: r.device.identity ?? {} },
            }),
          ),
        );
  return formatTrace(normaliseTrace(lines, { client, scenario }));
}

const line = (fields: Record<string, unknown>) => JSON.stringify({ v: 2, t: 1.5, ...fields });

describe('reading trace lines', () => {
  it('a v1 line: u64 values from "0x..." strings, the header field from offset and width', () => {
    const [l] = parseTrace(line({ ev: 'v1', dev: 1, op: 'read', off: '0x8', width: 8, value: '0xffffffffffffffff', result: 'ok' }));
    expect(l).toEqual({
      v: 2,
      t: 1.5,
      line: 1,
      ev: 'v1',
      dev: 1,
      op: 'read',
      off: 8n,
      width: 8,
      field: 'pending_bytes',
      value: 2n ** 64n - 1n,
      result: 'ok',
    });
  });

  it('version 1 (the bridge before this format) reads as well: version 2 only adds', () => {
    const text = `${JSON.stringify({ v: 1, t: 0, ev: 'v1', dev: 1, op: 'write', off: '0x0', width: 4, value: '0x3', result: 'ok' })}\n`;
    expect(parseTrace(text)[0]).toMatchObject({ v: 1, field: 'device_state', value: 3n });
  });

  it('unknown events and fields are kept, not refused; blank lines are skipped and line numbers stay true', () => {
    const ls = parseTrace(
      `\n${line({ ev: 'later', x: [1] })}\n\n${line({ ev: 'v2', dev: 1, call: 'reset', result: 'ok', extra: true })}\n`,
    );
    expect(ls.map((l) => [l.line, l.ev])).toEqual([
      [2, 'later'],
      [4, 'v2'],
    ]);
    expect(ls[0]).toMatchObject({ x: [1] });
    expect(ls[1]).toMatchObject({ extra: true });
  });

  it.each([
    ['not JSON', '{"v":2', /not JSON/],
    ['an array', '[1]', /not a JSON object/],
    ['a version it does not know', JSON.stringify({ v: 3, t: 0, ev: 'x' }), /format version 3 is not one this reader knows \(1, 2\)/],
    ['no time', JSON.stringify({ v: 2, ev: 'x' }), /no time t/],
    ['no event', JSON.stringify({ v: 2, t: 0 }), /no event ev/],
    ['a v1 op it does not know', line({ ev: 'v1', dev: 1, op: 'poke', result: 'ok' }), /op "poke" is not one of read, write, reset/],
    [
      'an offset that is no hex string',
      line({ ev: 'v1', dev: 1, op: 'read', off: 8, width: 8, result: 'ok' }),
      /off must be a "0x\.\.\." string, got 8/,
    ],
    ['a zero width', line({ ev: 'v1', dev: 1, op: 'read', off: '0x8', width: 0, result: 'ok' }), /width 0 is not a positive integer/],
    [
      'a header write without its value',
      line({ ev: 'v1', dev: 1, op: 'write', off: '0x18', width: 8, result: 'ok' }),
      /a header write without its value/,
    ],
    [
      'a field that is not what the offset is',
      line({ ev: 'v1', dev: 1, op: 'read', off: '0x10', width: 8, field: 'data_size', result: 'ok' }),
      /field 'data_size' is not what offset 16 width 8 is \(data_offset\)/,
    ],
    ['a v2 line without its call', line({ ev: 'v2', dev: 1, result: 'ok' }), /v2 line without call/],
    ['a data line with an unknown op', line({ ev: 'data', dev: 1, op: 'seek', result: 'ok' }), /op "seek"/],
    ['a device line without a protocol', line({ ev: 'device', dev: 1, name: 'x' }), /protocol undefined is not one of v1, v2/],
  ])('refuses %s, with its line number (EINVAL)', (_what, text, message) => {
    expect(() => parseTrace(`${line({ ev: 'start' })}\n${text}\n`)).toThrow(
      expect.objectContaining({ code: 'EINVAL', message: expect.stringMatching(/trace line 2: /) }),
    );
    expect(() => parseTrace(`${line({ ev: 'start' })}\n${text}\n`)).toThrow(message);
  });

  it('every fixture reads and writes back byte for byte', () => {
    for (const f of readdirSync(DIR).filter((n) => n.endsWith('.jsonl'))) {
      const text = read(f);
      const lines = parseTrace(text);
      expect(
        lines.every((l) => l.v === TRACE_FORMAT_VERSION && l.t === 0),
        f,
      ).toBe(true);
      expect(formatTrace(lines), f).toBe(text);
    }
  });
});

describe('normalised fixtures (docs/trace-format.md "Normalised traces")', () => {
  it('there is one raw recording per fixture, and the recorder named the client and the device', () => {
    expect(RECORDED.map((r) => `${r.scenario}.jsonl`).sort()).toEqual(
      readdirSync(DIR)
        .filter((n) => n.endsWith('.jsonl'))
        .sort(),
    );
    for (const r of RECORDED) expect(r.device.identity, r.scenario).toEqual({ bus: 'mdev', type: 'mtty-2', driver: 'mtty' });
  });

  for (const r of RECORDED) {
    it(`${r.scenario}: ${r.qemu === '7.2' ? 'normalising the bridge trace' : "converting and normalising QEMU 10's trace events"} gives the fixture`, () => {
      expect(fixtureFrom(r)).toBe(read(`${r.scenario}.jsonl`));
    });
  }

  it('another run of the same scenario gives the same fixture: other times, pids, fds, paths and uuids, and QEMU polling more often', () => {
    const r = RECORDED.find((x) => x.scenario === 'q72-save-running')!;
    const raw = read('raw/q72-save-running.jsonl');
    const lines = raw.trim().split('\n');
    // The first pre-copy poll (its PRECOPY_INFO line and its pending_bytes read) three more times.
    const poll = lines.findIndex((l) => l.includes('"field":"pending_bytes"'));
    const shifted = [
      ...lines.slice(0, poll + 1),
      lines[poll - 1],
      lines[poll],
      lines[poll - 1],
      lines[poll],
      lines[poll - 1],
      lines[poll],
      ...lines.slice(poll + 1),
    ]
      .map((l) =>
        l
          .replaceAll(r.device.name, '11111111-2222-3333-4444-555555555555')
          .replace(/"t":[\d.]+/, '"t":9999.5')
          .replace(/"us":\d+/g, '"us":1')
          .replace(/"pid":\d+/g, '"pid":4242')
          .replace(/"fd":\d+/g, '"fd":99')
          .replace(/vfio-mig-bridge-[\w]+/g, 'vfio-mig-bridge-OTHER')
          .replace(/"clock":"[^"]+"/, '"clock":"2030-01-01T00:00:00.000Z"'),
      )
      .join('\n');
    expect(fixtureFrom({ ...r, device: { ...r.device, name: '11111111-2222-3333-4444-555555555555' } }, shifted)).toBe(
      read('q72-save-running.jsonl'),
    );
  });

  it('the polls of a bridge trace: pre-copy pending_bytes reads (24 before the chunk, 0 after it); stop-and-copy reads are no polls', () => {
    const polls = unitsOf(parseTrace(read('q72-save-running.jsonl')))
      .filter((u) => u.poll)
      .map((u) => u.lines);
    // Each with the PRECOPY_INFO the bridge asked for it, each marked "one or more times".
    expect(polls.map((ls) => ls.map((l) => [l.ev, (l as V1Line).value ?? (l as { call?: string }).call, (l as V1Line).repeat]))).toEqual([
      [
        ['v2', 'precopyInfo', undefined],
        ['v1', 0x18n, true],
      ],
      [
        ['v2', 'precopyInfo', undefined],
        ['v1', 0n, true],
      ],
    ]);
    const stopCopy = parseTrace(read('q72-save-running.jsonl')).filter(
      (l): l is V1Line => l.ev === 'v1' && (l as V1Line).field === 'pending_bytes' && !(l as V1Line).repeat,
    );
    expect(stopCopy.map((l) => l.value)).toEqual([0xa8n, 0n]);
  });

  it("the polls of a v2 client: pre-copy reads that found nothing and MIG_DATA_SIZE + PRECOPY_INFO queries; not the setup's queries, not the last read of 0", () => {
    const units = unitsOf(parseTrace(read('q10-save-running.jsonl'))).filter((u) => u.lines.some((l) => l.ev === 'data' || l.ev === 'v2'));
    const show = (l: TraceLine) =>
      l.ev === 'data'
        ? `${(l as { op: string }).op}${(l as { ret?: number }).ret === undefined ? '' : ` -> ${(l as { ret?: number }).ret}`}`
        : ((l as { call: string; arg?: string }).arg ?? (l as { call: string }).call);
    expect(units.map((u) => `${u.lines.map(show).join(' + ')}${u.poll ? ' (poll)' : ''}`)).toEqual([
      'migrationFlags',
      'RUNNING_P2P',
      'RUNNING',
      'stopCopySize',
      'PRE_COPY',
      'precopyInfo',
      'read -> 24',
      'read -> 0 (poll)',
      'stopCopySize + precopyInfo (poll)',
      'PRE_COPY_P2P',
      'STOP_COPY',
      'read -> 72',
      'read -> 0',
      'STOP',
      'close',
    ]);
  });

  it('QEMU 10 polling more often in another run (an exact size query, another empty read, another query) gives the same fixture', () => {
    const r = RECORDED.find((x) => x.scenario === 'q10-save-running')!;
    const other = read('raw/q10-save-running.another-run.qemu.log');
    expect(other.match(/vfio_state_pending_exact/g)).toHaveLength(2);
    expect(fixtureFrom(r, other)).toBe(read('q10-save-running.jsonl'));
  });

  it('the client line gets the version only the recorder knows; a trace without one gets a client line', () => {
    const withExe = normaliseTrace(
      parseTrace(
        `${line({ ev: 'start' })}\n${line({ ev: 'client', name: 'qemu-system-x86_64', exe: '/usr/bin/qemu-system-x86_64', pid: 7 })}\n`,
      ),
      { client: { name: 'QEMU', version: '7.2.22' } },
    );
    expect(withExe[1]).toEqual({ v: 2, t: 0, ev: 'client', name: 'QEMU', version: '7.2.22', exe: '/usr/bin/qemu-system-x86_64' });
    const without = normaliseTrace(
      parseTrace(
        `${line({ ev: 'start', clock: 'x', pid: 1, command: ['q'] })}\n${line({ ev: 'v2', dev: 1, call: 'reset', result: 'ok', us: 5 })}\n`,
      ),
      { client: { name: 'QEMU' } },
    );
    expect(without).toEqual([
      { v: 2, t: 0, ev: 'start' },
      { v: 2, t: 0, ev: 'client', name: 'QEMU' },
      { v: 2, t: 0, ev: 'v2', dev: 1, call: 'reset', result: 'ok' },
    ]);
  });
});
