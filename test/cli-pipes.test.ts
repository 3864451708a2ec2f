// vfio-mig in pipelines: a reader that goes away (`vfio-mig diff | head -1`)
// ends the command quietly; `--out -` / `--in -` carry a migration file over
// stdout/stdin (`vfio-mig save A --out - | ssh host vfio-mig load B --in -`),
// and a piped load is verified whole before the device is touched, as a file is.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { MigState, SimV2Driver } from '../index.js';
import { FakeSyscalls } from '../testing.js';
import { main } from '../src/cli/main.js';

const ROOT = join(import.meta.dirname, '..');
const BIN = join(ROOT, JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).bin['vfio-mig']);
const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-pipes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

interface Exit {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** Wait for `child`; collect its output (not stdout when another process reads it). */
function exited(child: ReturnType<typeof spawn>, readStdout = true): Promise<Exit> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  if (readStdout) child.stdout?.on('data', (b: Buffer) => out.push(b));
  child.stderr?.on('data', (b: Buffer) => err.push(b));
  return new Promise((resolve) =>
    child.on('close', (status, signal) =>
      resolve({
        status,
        signal,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString(),
      }),
    ),
  );
}

/** The real bin (--quiet: no progress lines) with its stdout's reading end closed at once: every write it makes is EPIPE. */
async function withReaderGone(...args: string[]): Promise<Exit> {
  const child = spawn(process.execPath, [BIN, '--quiet', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  return exited(child);
}

describe('a reader that goes away', () => {
  // 141 = 128 + SIGPIPE: what `yes | head -1` reports for yes; no message, no stack.
  for (const args of [['diff'], ['demo'], ['fsm', '--format', 'dot']]) {
    it(`vfio-mig ${args.join(' ')} | (closed): exit 141, nothing on stderr, no work after it`, async () => {
      const r = await withReaderGone(...args);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(141);
    });
  }

  it('vfio-mig save ... --out FILE | (closed): the file is saved, then the report stops quietly', async () => {
    const out = join(dir, 'closed-reader.vmig');
    const r = await withReaderGone('save', 'sim:v2?size=64KiB', '--out', out);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(141);
    expect(readFileSync(out).subarray(0, 8).toString('latin1')).toBe('VFIOMIGC');
  });
});

describe('stdout errors in-process (what bin.ts turns into an exit)', () => {
  for (const [code, status, message] of [
    ['EPIPE', 141, ''],
    ['ENOSPC', 1, 'vfio-mig: cannot write to standard output: ENOSPC\n'],
  ] as const) {
    it(`${code}: exit(${status}) once, ${message ? 'naming the errno' : 'silently'}`, async () => {
      const stdout = new Writable({
        write(_c, _e, done) {
          done(Object.assign(new Error(`write ${code}`), { code }));
        },
      });
      const exits: number[] = [];
      const err: string[] = [];
      const stderr = new Writable({
        write(c, _e, done) {
          err.push(String(c));
          done();
        },
      });
      await main(['fsm'], {
        stdout,
        stderr,
        exit: (s) => {
          exits.push(s);
        },
      });
      await new Promise((resolve) => setImmediate(resolve)); // the 'error' event comes a tick after the write
      expect(exits).toEqual([status]);
      expect(err.join('')).toBe(message);
    });
  }
});

describe('--out - | --in -', () => {
  it('save --out - piped into load --in - (two processes): the state arrives, the report goes to stderr', async () => {
    const save = spawn(process.execPath, [BIN, 'save', 'sim:v2?size=2MiB&seed=21', '--out', '-', '--rounds', '2'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const load = spawn(process.execPath, [BIN, 'load', 'sim:v1?size=2MiB&seed=22', '--in', '-', '--via', 'v2', '--json'], {
      stdio: [save.stdout, 'pipe', 'pipe'],
    });
    save.stdout.destroy(); // load has its own copy of the pipe's reading end
    const [s, l] = await Promise.all([exited(save, false), exited(load)]);
    expect(s.status, s.stderr).toBe(0);
    expect(l.status, l.stderr).toBe(0);
    const fingerprint = /fingerprint +([0-9a-f]{64})/.exec(s.stderr)?.[1];
    expect(s.stderr).toMatch(/^saved sim:v2\?size=2MiB&seed=21 over v2 to standard output$/m);
    const result = JSON.parse(l.stdout.toString()).result;
    expect(result).toMatchObject({ file: '-', fingerprintMatch: true, fingerprint, translator: 'V2DeviceOverLegacy' });
  });

  it('a streamed file kept in a regular file loads like any other; cut short, it is refused as truncated', async () => {
    const streamed = await runIo(['save', 'sim:v2?size=1MiB&seed=4', '--out', '-']);
    expect(streamed.status, streamed.stderr).toBe(0);
    const path = join(dir, 'streamed.vmig');
    writeFileSync(path, streamed.stdout);
    const ok = await runIo(['load', 'sim:v2?size=1MiB', '--in', path, '--json']);
    expect(ok.status, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout.toString()).result.fingerprintMatch).toBe(true);
    writeFileSync(path, streamed.stdout.subarray(0, streamed.stdout.length - 10));
    const cut = await runIo(['load', 'sim:v2?size=1MiB', '--in', path, '--json']);
    expect(cut.status).toBe(1);
    expect(JSON.parse(cut.stdout.toString()).error).toMatchObject({ problem: 'truncated' });
    expect(cut.stderr).toMatch(/the stream was cut short/);
  });

  it('load --in -: a damaged stream is refused before the device is touched, and the private copy is removed', async () => {
    const streamed = await runIo(['save', 'sim:v2?size=1MiB&seed=4', '--out', '-']);
    const damaged = Buffer.from(streamed.stdout);
    damaged[damaged.length >> 1] ^= 0x10;
    const tmp = mkdtempSync(join(dir, 'tmp-'));
    vi.stubEnv('TMPDIR', tmp);
    const touched = vi.spyOn(SimV2Driver.prototype, 'setState');
    const r = await runIo(['load', 'sim:v2?size=1MiB', '--in', '-', '--json'], damaged);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout.toString()).error).toMatchObject({ problem: 'checksum' });
    expect(r.stderr).toMatch(/^vfio-mig: 'standard input' is damaged: SHA-256 mismatch/m);
    expect(touched).not.toHaveBeenCalled();
    expect(readdirSync(tmp)).toEqual([]);
    // And the same bytes undamaged do load (the spy sees it).
    const good = await runIo(['load', 'sim:v2?size=1MiB', '--in', '-', '--json'], streamed.stdout);
    expect(good.status, good.stderr).toBe(0);
    expect(touched).toHaveBeenCalled();
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('save --out - whose reader goes away mid-save: exit 1 naming EPIPE, the kernel device back to RUNNING, no fd left', async () => {
    const sys = new FakeSyscalls({ devices: [{ name: 'src', group: 3 }] });
    let written = 0;
    const stdout = new Writable({
      write(chunk: Buffer, _enc, done) {
        written += chunk.length;
        done(written > 100 ? Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }) : null);
      },
    });
    const r = await runIo(['save', '/dev/vfio/3:src', '--out', '-'], undefined, { stdout, syscalls: sys });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^vfio-mig: cannot write 'standard output': the reader went away \(EPIPE\)/m);
    expect(sys.device('src').model.getState()).toBe(MigState.RUNNING);
    expect(sys.openFds()).toEqual([]);
  });

  it('refused: binary state to or from a terminal, and --json on the stdout that carries the state', async () => {
    const tty = Object.assign(new PassThrough(), { isTTY: true });
    const toTty = await runIo(['save', 'sim:v2?size=64KiB', '--out', '-'], undefined, { stdout: tty });
    expect(toTty.status).toBe(2);
    expect(toTty.stderr).toMatch(/standard output is a terminal/);
    const fromTty = await runIo(['load', 'sim:v2?size=64KiB', '--in', '-'], undefined, {
      stdin: Object.assign(Readable.from([]), { isTTY: true }),
    });
    expect(fromTty.status).toBe(2);
    expect(fromTty.stderr).toMatch(/standard input is a terminal/);
    const json = await runIo(['save', 'sim:v2?size=64KiB', '--out', '-', '--json']);
    expect(json.status).toBe(2);
    expect(json.stderr).toMatch(/--json and --out - both write to standard output/);
  });

  it('--help says what a piped load checks before the device is touched', async () => {
    const r = await runIo(['load', '--help']);
    expect(r.stdout.toString()).toMatch(/--in FILE\|-/);
    expect(r.stdout.toString()).toMatch(/private temporary file .*verified whole/s);
  });
});

/** main() in-process with byte-exact stdout and an optional stdin. */
async function runIo(
  args: string[],
  stdin?: Buffer,
  io: { stdout?: Writable; stdin?: NodeJS.ReadableStream; syscalls?: FakeSyscalls } = {},
): Promise<{ status: number; stdout: Buffer; stderr: string }> {
  const out: Buffer[] = [];
  const err: string[] = [];
  const stdout =
    io.stdout ??
    new Writable({
      write(c: Buffer, _e, done) {
        out.push(Buffer.from(c));
        done();
      },
    });
  const stderr = new Writable({
    write(c, _e, done) {
      err.push(String(c));
      done();
    },
  });
  const status = await main(args, {
    stdout,
    stderr,
    stdin: io.stdin ?? (stdin ? Readable.from([stdin]) : undefined),
    syscalls: io.syscalls,
  });
  return { status, stdout: Buffer.concat(out), stderr: err.join('') };
}
