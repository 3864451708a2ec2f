// `vfio-mig bridge -- CMD ARGS...` minus the command line: a private
// directory, the BridgeServer in it, CMD started with the interposer
// preloaded and the socket in its environment, SIGINT/SIGTERM/SIGHUP passed
// on, and CMD's exit status handed back (128 + signal number when a signal
// killed it). The bridge never reads stdin (QEMU's monitor may be there) and
// CMD inherits stdio untouched. Everything is taken down on every path.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { EventEmitter } from 'node:events';
import { MigrationError } from '../uapi/errors.js';
import { BridgeServer, type BridgeEvent, type BridgedRecord } from './bridge-server.js';
import { kernelDeviceSource, type DeviceSource } from './device-source.js';
import { makePrivateDir, privateDirBases } from './private-dir.js';
import { TraceWriter } from './trace.js';

/** How long the interposer waits for an answer before it treats the bridge as gone. */
export const DEFAULT_TIMEOUT_MS = 60_000;
export const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export type RunEvent =
  | BridgeEvent
  /** CMD exited but descendants still hold bridged devices: the bridge serves them until they let go. */
  | { kind: 'waiting'; connections: number };

export interface RunBridgeOptions {
  /** CMD and its arguments. */
  command: string[];
  /** The interposer library (see locateInterposer). */
  interposer: string;
  windowSize: number;
  mmap: boolean;
  tracePath?: string;
  timeoutMs?: number;
  /** Default: the kernel (pidfd_getfd on CMD's device fds). */
  devices?: DeviceSource;
  /** CMD's environment before the bridge's additions (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Where the private directory is made (default $XDG_RUNTIME_DIR, /dev/shm, tmpdir). */
  runtimeBase?: string;
  /** Where the forwarded signals arrive (default the process). */
  signals?: EventEmitter;
  onEvent?(event: RunEvent): void;
}

export interface BridgeRun {
  /** CMD's exit status, or 128 + signal number; 127/126 (as a shell) when it could not be started. */
  status: number;
  /** The signal that ended CMD, if one did. */
  signal?: NodeJS.Signals;
  /** Why CMD could not be started, if it could not. */
  startError?: string;
  devices: readonly BridgedRecord[];
}

/** CMD's environment: the interposer first in LD_PRELOAD, the socket and the answer timeout. */
export function commandEnv(base: NodeJS.ProcessEnv, interposer: string, socketPath: string, timeoutMs: number): NodeJS.ProcessEnv {
  if (/[\s:]/.test(interposer)) {
    throw new MigrationError('EINVAL', `the interposer path ${interposer} holds a space or ':', which LD_PRELOAD cannot carry`);
  }
  const preload = base.LD_PRELOAD ? `${interposer}:${base.LD_PRELOAD}` : interposer;
  return { ...base, LD_PRELOAD: preload, VFIO_MIG_BRIDGE_SOCKET: socketPath, VFIO_MIG_BRIDGE_TIMEOUT_MS: String(timeoutMs) };
}

export async function runBridge(o: RunBridgeOptions): Promise<BridgeRun> {
  if (o.command.length === 0) throw new MigrationError('EINVAL', 'no command to run');
  const signals = o.signals ?? process;
  const emit = (e: RunEvent) => o.onEvent?.(e);
  const dir = makePrivateDir(o.runtimeBase ? [o.runtimeBase] : privateDirBases());
  let trace: TraceWriter | undefined;
  let server: BridgeServer | undefined;
  const forward = new Map<string, () => void>();
  let status = 1;
  try {
    if (o.tracePath) {
      trace = TraceWriter.open(o.tracePath, { pid: process.pid, command: o.command, window: o.windowSize, mmap: o.mmap });
    }
    const child: { process?: ChildProcess } = {};
    server = await BridgeServer.listen({
      dir: dir.path,
      windowSize: o.windowSize,
      mmap: o.mmap,
      devices: o.devices ?? kernelDeviceSource(),
      commandPid: () => child.process?.pid,
      trace,
      onEvent: emit,
    });
    const env = commandEnv(o.env ?? process.env, o.interposer, server.socketPath, o.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const started = spawn(o.command[0], o.command.slice(1), { stdio: 'inherit', env });
    child.process = started;
    let signalled: () => void = () => undefined;
    const aSignal = new Promise<void>((resolve) => (signalled = resolve));
    for (const sig of FORWARDED_SIGNALS) {
      const handler = () => {
        started.kill(sig);
        signalled();
      };
      forward.set(sig, handler);
      signals.on(sig, handler);
    }
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: NodeJS.ErrnoException }>((resolve) => {
      started.once('error', (error: NodeJS.ErrnoException) => resolve({ code: null, signal: null, error }));
      started.once('exit', (code, signal) => resolve({ code, signal }));
    });
    if (exit.error) {
      // As a shell has it: 127 not found, 126 found but not runnable.
      status = exit.error.code === 'ENOENT' ? 127 : 126;
      trace?.write('exit', { status, error: exit.error.message });
      return { status, startError: `cannot run ${o.command[0]}: ${exit.error.message}`, devices: server.devices };
    }
    status = exit.code ?? 128 + (constants.signals[exit.signal!] ?? 0);
    // Descendants of CMD may still hold devices: serve them until they let go (or a signal says stop).
    const waitedFor = Promise.race([server.drained(), aSignal]);
    await Promise.race([waitedFor, new Promise((r) => setTimeout(r, 200).unref())]);
    if (server.connectionCount > 0) {
      emit({ kind: 'waiting', connections: server.connectionCount });
      await waitedFor;
    }
    trace?.write('exit', { status, ...(exit.signal ? { signal: exit.signal } : {}) });
    return { status, ...(exit.signal ? { signal: exit.signal } : {}), devices: server.devices };
  } finally {
    for (const [sig, handler] of forward) signals.off(sig, handler);
    await server?.close();
    trace?.close({ status });
    dir.remove();
  }
}
