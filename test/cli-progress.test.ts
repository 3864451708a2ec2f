// Progress on any terminal: a bar redrawn with a carriage return that keeps
// its rate and ETA at 80 columns and never writes an escape sequence; a line
// per 10% when stderr is no terminal (or TERM=dumb); nothing with --quiet;
// and closing tables that fit the terminal they are printed on.
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli/main.js';

afterEach(() => vi.unstubAllEnvs());

/** A stream that says it is a terminal of `columns` columns, and keeps what is written. */
function terminal(columns: number): Writable & { isTTY: true; columns: number; text(): string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(c, _e, done) {
      chunks.push(String(c));
      done();
    },
  });
  return Object.assign(w, { isTTY: true as const, columns, text: () => chunks.join('') });
}

function pipe(): Writable & { text(): string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(c, _e, done) {
      chunks.push(String(c));
      done();
    },
  });
  return Object.assign(w, { text: () => chunks.join('') });
}

async function run(args: string[], stdout: Writable, stderr: Writable): Promise<number> {
  return main(args, { stdout, stderr });
}

const DEMO = ['demo', '--size', '8MiB', '--window', '64KiB', '--rounds', '2'];

describe('on a terminal', () => {
  it('at 80 columns every frame fits, keeps the rate and the ETA, and there is no escape sequence', async () => {
    vi.stubEnv('TERM', 'xterm-256color');
    const err = terminal(80);
    expect(await run(DEMO, pipe(), err)).toBe(0);
    const text = err.text();
    expect(text).not.toMatch(/\x1b/); // eslint-disable-line no-control-regex -- no escape sequence, on purpose
    const frames = text.split(/[\r\n]/).filter((f) => f.trim());
    expect(frames.length).toBeGreaterThan(3);
    for (const f of frames) {
      expect(f.length, f).toBeLessThan(80);
      expect(f.trimEnd(), f).toMatch(/(\d+(\.\d+)? [KMG]?i?B\/s|-) ETA (\d+[hms][\dms]*|-)$/);
    }
    // 0%: no data yet, so no ETA to give (not "ETA 0s").
    expect(frames[0]).toMatch(/ 0% .*ETA -$/);
    expect(text.match(/\n/g)).toHaveLength(3); // one finished line per migration
  });

  it('a very narrow terminal still gets the percentage, rate and ETA', async () => {
    vi.stubEnv('TERM', 'xterm');
    const err = terminal(40);
    expect(await run(DEMO, pipe(), err)).toBe(0);
    const frames = err
      .text()
      .split(/[\r\n]/)
      .filter((x) => x.trim());
    expect(frames.length).toBeGreaterThan(3);
    for (const f of frames) {
      expect(f.length, f).toBeLessThan(40);
      expect(f.trimEnd()).toMatch(/\d+% .* ETA \S+$/); // spaces after a frame wipe a longer one before it
    }
  });

  it('NO_COLOR: the same plain text', async () => {
    vi.stubEnv('TERM', 'xterm');
    vi.stubEnv('NO_COLOR', '1');
    const err = terminal(120);
    expect(await run(DEMO, pipe(), err)).toBe(0);
    expect(err.text()).not.toMatch(/\x1b/); // eslint-disable-line no-control-regex -- no escape sequence, on purpose
    expect(err.text()).toMatch(/\r/);
  });

  it('TERM=dumb: lines, as on a pipe (no carriage returns, no escapes)', async () => {
    vi.stubEnv('TERM', 'dumb');
    const err = terminal(80);
    expect(await run(DEMO, pipe(), err)).toBe(0);
    expect(err.text()).not.toMatch(/[\r\x1b]/); // eslint-disable-line no-control-regex -- no escape sequence, on purpose
    expect(err.text()).toMatch(/: 100% /);
  });

  it('the closing table fits an 80-column stdout; a pipe gets the one-row-per-migration table', async () => {
    const out = terminal(80);
    expect(await run(DEMO, out, pipe())).toBe(0);
    for (const line of out.text().split('\n')) expect(line.length, line).toBeLessThanOrEqual(80);
    expect(out.text()).toMatch(/^QEMU 7\.2 \(v1\) -> v2 device\n {2}state +8 MiB$/m);
    expect(out.text().match(/ match [0-9a-f]{12}$/gm)).toHaveLength(3);
    const piped = pipe();
    expect(await run(DEMO, piped, pipe())).toBe(0);
    expect(piped.text()).toMatch(/^direction +state +bytes moved +pre-copy +stop-and-copy +throughput +fingerprint$/m);
  });
});

describe('stderr not a terminal', () => {
  it('a line per 10%, as virsh migrate --verbose prints', async () => {
    const err = pipe();
    expect(await run(['save', 'sim:v2?size=4MiB', '--out', '/dev/null/x', '--rounds', '0'], pipe(), err)).toBe(1); // unwritable: no progress at all
    expect(err.text()).toMatch(/^vfio-mig: cannot write/);
    const dir = (await import('node:fs')).mkdtempSync(
      (await import('node:path')).join((await import('node:os')).tmpdir(), 'vfio-mig-progress-'),
    );
    const saveErr = pipe();
    expect(await run(['save', 'sim:v2?size=4MiB', '--out', `${dir}/s.vmig`, '--rounds', '0'], pipe(), saveErr)).toBe(0);
    const lines = saveErr.text().trimEnd().split('\n');
    expect(
      lines.every((l) => /^save sim:v2\?size=4MiB: \d+% \(/.test(l)),
      saveErr.text(),
    ).toBe(true);
    const percents = lines.map((l) => Number(/: (\d+)%/.exec(l)![1]));
    expect(percents.at(-1)).toBe(100);
    expect(percents.length).toBeLessThanOrEqual(11);
    expect(percents.length).toBeGreaterThanOrEqual(5);
    expect([...percents].sort((a, b) => a - b)).toEqual(percents);
    (await import('node:fs')).rmSync(dir, { recursive: true, force: true });
  });

  it('--quiet: nothing on stderr for a run that succeeds; errors still say why', async () => {
    const err = pipe();
    expect(await run([...DEMO, '--quiet'], pipe(), err)).toBe(0);
    expect(err.text()).toBe('');
    const tty = terminal(80);
    expect(await run(['--quiet', ...DEMO], pipe(), tty)).toBe(0);
    expect(tty.text()).toBe('');
    const bad = pipe();
    expect(await run(['demo', '--size', '0', '--quiet'], pipe(), bad)).toBe(2);
    expect(bad.text()).toMatch(/^vfio-mig: bad --size '0'/);
  });
});
