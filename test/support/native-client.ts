// Builds the interposer, the fake VFIO device and the v1 client (test/native), plainly or
// under AddressSanitizer + UndefinedBehaviorSanitizer, and drives the client line by line.
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { constants } from 'node:os';
import { expect } from 'vitest';
import { UAPI_VFIO_H, requireFile } from './kernel-tree.js';

export const INTERPOSER_C = fileURLToPath(new URL('../../src/bridge/interposer.c', import.meta.url));
const NATIVE = fileURLToPath(new URL('../native/', import.meta.url));

/** The product's own build line (src/bridge/interposer.c's header comment). */
export const PRODUCT_FLAGS = ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror'];
const SANITIZE = ['-O1', '-g', '-fsanitize=address,undefined', '-fno-omit-frame-pointer', '-fno-sanitize-recover=all'];

export interface NativeBuild {
  sanitized: boolean;
  interposer: string;
  fake: string;
  client: string;
  /** LD_PRELOAD for the client: the interposer first, so that its RTLD_NEXT finds the fake. */
  preload: string;
  env: Record<string, string>;
}

export function gcc(args: string[]): void {
  execFileSync('gcc', args, { stdio: ['ignore', 'pipe', 'pipe'] });
}

const builds = new Map<boolean, NativeBuild>();

export function buildNative(sanitized: boolean): NativeBuild {
  const cached = builds.get(sanitized);
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), `vfio-mig-native-${sanitized ? 'san' : 'plain'}-`));
  const extra = sanitized ? SANITIZE : [];
  const uapi = [`-DVFIO_H="${requireFile(UAPI_VFIO_H, 'linux-headers-6.12.117+deb12-common')}"`, '-D__user=', `-I${NATIVE}`];
  const b: NativeBuild = {
    sanitized,
    interposer: join(dir, 'vfio-mig-interposer.so'),
    fake: join(dir, 'fake-vfio.so'),
    client: join(dir, 'v1-client'),
    preload: '',
    env: {},
  };
  gcc([...PRODUCT_FLAGS, ...extra, '-o', b.interposer, INTERPOSER_C, '-ldl', '-lpthread']);
  gcc(['-std=gnu11', ...PRODUCT_FLAGS, ...extra, ...uapi, '-o', b.fake, join(NATIVE, 'fake-vfio.c'), '-ldl']);
  gcc(['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', ...extra, ...uapi, '-o', b.client, join(NATIVE, 'v1-client.c'), '-lpthread']);
  if (sanitized) {
    // An ASan-built library in LD_PRELOAD needs the ASan runtime loaded first.
    const libasan = execFileSync('gcc', ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
    b.preload = [libasan, b.interposer, b.fake].join(':');
    b.env = {
      ASAN_OPTIONS: 'halt_on_error=1:exitcode=97:detect_leaks=1:verify_asan_link_order=0',
      UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1:exitcode=98',
    };
  } else {
    b.preload = [b.interposer, b.fake].join(':');
  }
  builds.set(sanitized, b);
  return b;
}

/** Native tests run twice: built as the product builds it, and under ASan + UBSan (any report fails). */
export const BUILD_VARIANTS = [
  { name: 'product build', sanitized: false },
  { name: 'ASan + UBSan build', sanitized: true },
];

/** A sanitizer report anywhere in a process's stderr. */
export function sanitizerReport(stderr: string): string | undefined {
  return /(ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer)[^\n]*/.exec(stderr)?.[0];
}

export interface Answer {
  r: number;
  errno: number;
  ms: number;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

/** The client exited by itself with status 0, and no sanitizer reported anything. */
export function expectCleanExit(exit: Exit): void {
  expect(sanitizerReport(exit.stderr), exit.stderr).toBeUndefined();
  expect({ code: exit.code, signal: exit.signal }, exit.stderr).toEqual({ code: 0, signal: null });
}

/** The client sets errno to EXDEV before each call: a call that succeeds leaves it there. */
export function ok(a: Answer): Answer {
  expect(a, JSON.stringify(a)).toMatchObject({ errno: constants.errno.EXDEV });
  expect(a.r, JSON.stringify(a)).toBeGreaterThanOrEqual(0);
  return a;
}

export function failsWith(a: Answer, errno: number): void {
  expect({ r: a.r, errno: a.errno }, JSON.stringify(a)).toEqual({ r: -1, errno });
}

/** Wait until cond() holds (checked every 10 ms, for 10 s at most). */
export async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** One running v1 client; cmd() sends a line and resolves with its JSON answer. */
export class ClientSession {
  stderr = '';
  private readonly lines: string[] = [];
  private waiting?: (line: string | undefined) => void;
  private readonly exited: Promise<Exit>;
  private ended = false;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    child.stderr.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(line);
      } else {
        this.lines.push(line);
      }
    });
    this.exited = new Promise((resolve) =>
      child.on('close', (code, signal) => {
        this.ended = true;
        this.waiting?.(undefined);
        resolve({ code, signal, stderr: this.stderr });
      }),
    );
  }

  /** The client's pid (what a bridge's peer check must admit). */
  get pid(): number {
    return this.child.pid!;
  }

  static start(build: NativeBuild, env: Record<string, string | undefined>): ClientSession {
    const all: Record<string, string | undefined> = { ...process.env, ...build.env, LD_PRELOAD: build.preload };
    delete all.VFIO_MIG_BRIDGE_SOCKET;
    delete all.VFIO_MIG_BRIDGE_TIMEOUT_MS;
    Object.assign(all, env);
    const defined = Object.fromEntries(Object.entries(all).filter((e): e is [string, string] => e[1] !== undefined));
    return new ClientSession(spawn(build.client, [], { env: defined, stdio: 'pipe' }));
  }

  async cmd(line: string): Promise<Answer> {
    this.child.stdin.write(`${line}\n`);
    const text =
      this.lines.shift() ??
      (this.ended
        ? undefined
        : await new Promise<string | undefined>((r) => {
            this.waiting = r;
          }));
    if (text === undefined) {
      const e = await this.exited;
      throw new Error(`v1 client ended (code ${e.code}, signal ${e.signal}) during '${line}':\n${e.stderr}`);
    }
    return JSON.parse(text) as Answer;
  }

  /** Ask the client to exit; resolves with how it ended and everything it wrote to stderr. */
  async close(): Promise<Exit> {
    if (!this.ended) this.child.stdin.end('exit\n');
    return this.exited;
  }
}

/** A directory of fake VFIO files (test/native/fake-vfio.c): group, dev-a, dev-b and a plain file. */
export function fakeDeviceDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vfio-mig-fake-dev-'));
  for (const f of ['group', 'dev-a', 'dev-b', 'plain']) writeFileSync(join(dir, f), '');
  return dir;
}
