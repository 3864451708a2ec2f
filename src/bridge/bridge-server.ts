// BridgeServer: the bridge's end of the interposer protocol. It listens on
// a Unix socket (0600) in a private directory (0700), admits only peers with
// its own uid that are the started command or a descendant (SO_PEERCRED +
// /proc), and serves each registered device with LegacyRegionOverV2 over the
// device a DeviceSource provides. A connection that misbehaves ends alone;
// the bridge, its devices and other connections carry on.
import { chmodSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { koffiSyscalls } from '../kernel/koffi-syscalls.js';
import type { DeviceIdentity } from '../kernel/device-identity.js';
import type { PeerCredentials, ProcessSyscalls, Syscalls } from '../kernel/syscalls.js';
import { MigrationError } from '../uapi/errors.js';
import { BridgeConnection, errorAnswer, type ConnectionHost } from './bridge-connection.js';
import { BridgedDevice, type BridgedDeviceInfo } from './bridged-device.js';
import { NotBridgeable, type DeviceCandidate, type DeviceSource } from './device-source.js';
import type { DeviceStats } from './device-stats.js';
import { peerRefusal } from './peer-check.js';
import { synthesizedRegion } from './region-layout.js';
import type { TraceWriter } from './trace.js';
import type { ErrorRecovery } from './traced-device.js';
import { ProtocolViolation, WINDOW_PATH_BYTES, type RegisterAnswer, type RegisterRequest } from './wire-protocol.js';

export const SOCKET_NAME = 'bridge.sock';
/** sockaddr_un.sun_path holds 108 bytes with the NUL. */
const SUN_PATH_MAX = 107;

export type BridgeEvent =
  | { kind: 'bridged'; device: BridgedDeviceInfo }
  | {
      kind: 'not-bridged';
      pid: number;
      fd: number;
      name: string;
      reason: string;
      /** false: something failed, not just "not for us" */ expected: boolean;
    }
  | { kind: 'refused'; pid?: number; reason: string }
  | { kind: 'error-recovery'; device: BridgedDeviceInfo; recovery: ErrorRecovery }
  | { kind: 'released'; device: BridgedDeviceInfo; stats: DeviceStats; reason: string; problems: string[] }
  | { kind: 'fault'; message: string };

export interface BridgeServerOptions {
  /** The private directory (see makePrivateDir): socket and window files go here. */
  dir: string;
  /** Data window bytes per device. */
  windowSize: number;
  /** Advertise the window as mmap-able (VFIO_REGION_INFO_FLAG_MMAP + sparse-mmap capability). */
  mmap: boolean;
  devices: DeviceSource;
  /** The started command's pid; peers must be it or its descendants (undefined: nobody yet). */
  commandPid(): number | undefined;
  /** The uid peers must have (default: ours). */
  uid?: number;
  sys?: Syscalls & ProcessSyscalls;
  trace?: TraceWriter;
  onEvent?(event: BridgeEvent): void;
}

export interface BridgedRecord {
  info: BridgedDeviceInfo;
  stats: DeviceStats;
  /** Still served. */
  live: boolean;
}

const NOT_BRIDGED: RegisterAnswer = {
  bridged: false,
  index: 0,
  flags: 0,
  offset: 0n,
  size: 0n,
  windowOffset: 0n,
  windowSize: 0n,
  windowPath: '',
};

export class BridgeServer implements ConnectionHost {
  readonly socketPath: string;
  private readonly connections = new Set<BridgeConnection>();
  /** The devices being served, and those being opened: a second registration of one is refused before it touches the device. */
  private readonly served = new Map<BridgedDevice, DeviceCandidate>();
  private readonly opening = new Set<DeviceCandidate>();
  private readonly records: BridgedRecord[] = [];
  private nextId = 1;
  /** Processes whose `client` line the trace has. */
  private readonly clients = new Set<number>();
  private closing = false;
  private readonly sys: Syscalls & ProcessSyscalls;
  private readonly uid: number;

  private constructor(
    private readonly server: Server,
    private readonly options: BridgeServerOptions,
  ) {
    this.socketPath = join(options.dir, SOCKET_NAME);
    this.sys = options.sys ?? koffiSyscalls();
    this.uid = options.uid ?? process.getuid!();
  }

  static async listen(options: BridgeServerOptions): Promise<BridgeServer> {
    if (!Number.isSafeInteger(options.windowSize) || options.windowSize < 1) {
      throw new MigrationError('EINVAL', `window size must be a positive integer, got ${options.windowSize}`);
    }
    const socketPath = join(options.dir, SOCKET_NAME);
    if (Buffer.byteLength(socketPath) > SUN_PATH_MAX) {
      throw new MigrationError(
        'EINVAL',
        `socket path ${socketPath} is longer than a Unix socket address allows (${SUN_PATH_MAX} bytes): set XDG_RUNTIME_DIR to a shorter directory`,
      );
    }
    if (Buffer.byteLength(join(options.dir, 'window-4294967295')) >= WINDOW_PATH_BYTES) {
      throw new MigrationError('EINVAL', `directory ${options.dir} is too long for window file paths (${WINDOW_PATH_BYTES - 1} bytes)`);
    }
    // allowHalfOpen: frames a peer sent before its FIN are still served, in order.
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
    const bridge = new BridgeServer(server, options);
    server.on('connection', (socket) => bridge.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(socketPath, 0o600);
    return bridge;
  }

  /** Every device bridged so far, served or released, in registration order. */
  get devices(): readonly BridgedRecord[] {
    return this.records;
  }

  /** Connections open now. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Settles once no connection is open (each one's device released). */
  async drained(): Promise<void> {
    while (this.connections.size > 0) await Promise.all([...this.connections].map((c) => c.closed));
  }

  /** Stop accepting, drop every connection, release every device. */
  async close(): Promise<void> {
    this.closing = true;
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.connections) c.abort();
    await Promise.all([...this.connections].map((c) => c.closed));
    await stopped;
  }

  // ---- ConnectionHost ----------------------------------------------------

  async register(request: RegisterRequest, peer: PeerCredentials): Promise<{ answer: RegisterAnswer; device?: BridgedDevice }> {
    const { pid, fd, name } = request;
    if (pid !== peer.pid) throw new ProtocolViolation(`REGISTER names pid ${pid}, the socket's peer is pid ${peer.pid}`);
    const no = (reason: string, expected: boolean) => {
      this.emit({ kind: 'not-bridged', pid, fd, name, reason, expected });
      return { answer: NOT_BRIDGED };
    };
    // "Not for us" needs no errno; a failure keeps it.
    const refusal = (e: unknown) => (e instanceof NotBridgeable ? no(e.message.replace(/^E\w+: /, ''), true) : no(messageOf(e), false));
    if (this.closing) return no('the bridge is shutting down', false);
    const { windowSize, mmap } = this.options;
    let layout;
    let candidate;
    try {
      layout = synthesizedRegion(request.numRegions, request.regionsEnd, windowSize, mmap);
      candidate = await this.options.devices({ pid, fd, name });
    } catch (e) {
      return refusal(e);
    }
    const holder = this.holderOf(candidate);
    if (holder) {
      candidate.discard();
      return no(`${candidate.label} is already bridged as ${holder.label} (one connection per device; left untouched)`, false);
    }
    // Held as "opening" until it is served or refused: a duplicate arriving meanwhile is refused untouched.
    this.opening.add(candidate);
    try {
      return await this.openAndServe(request, candidate, layout, refusal, no);
    } finally {
      this.opening.delete(candidate);
    }
  }

  private async openAndServe(
    { pid, fd, name }: RegisterRequest,
    candidate: DeviceCandidate,
    layout: ReturnType<typeof synthesizedRegion>,
    refusal: (e: unknown) => { answer: RegisterAnswer },
    no: (reason: string, expected: boolean) => { answer: RegisterAnswer },
  ): Promise<{ answer: RegisterAnswer; device?: BridgedDevice }> {
    const { mmap } = this.options;
    let sourceDevice;
    try {
      sourceDevice = await candidate.open();
    } catch (e) {
      return refusal(e);
    }
    const id = this.nextId++;
    const info: BridgedDeviceInfo = { id, label: candidate.label, pid, fd, layout, windowPath: join(this.options.dir, `window-${id}`) };
    let device: BridgedDevice;
    try {
      device = await BridgedDevice.open(info, sourceDevice, {
        trace: this.options.trace,
        sys: this.sys,
        onErrorRecovery: (recovery) => this.emit({ kind: 'error-recovery', device: info, recovery }),
        onFault: (e) => this.fault(e),
      });
    } catch (e) {
      return no(`cannot bring ${candidate.label} to a known state: ${messageOf(e)}`, false);
    }
    this.served.set(device, candidate);
    this.records.push({ info, stats: device.stats, live: true });
    this.options.trace?.write('register', {
      dev: id,
      name,
      label: candidate.label,
      pid,
      fd,
      index: layout.index,
      offset: layout.offset,
      size: layout.size,
      mmap,
      window: info.windowPath,
    });
    this.traceIdentity(id, name || candidate.label, candidate.identity, pid);
    this.emit({ kind: 'bridged', device: info });
    return { answer: { bridged: true, ...layout, windowPath: info.windowPath }, device };
  }

  /** The served or opening device `candidate` is (same key, or same open file), if any. */
  private holderOf(candidate: DeviceCandidate): DeviceCandidate | undefined {
    for (const other of [...this.served.values(), ...this.opening]) {
      if (other.key === candidate.key || candidate.sameFileAs?.(other)) return other;
    }
    return undefined;
  }

  async released(device: BridgedDevice, reason: string): Promise<void> {
    const problems = await device.release();
    this.served.delete(device);
    const record = this.records.find((r) => r.info === device.info);
    if (record) record.live = false;
    this.options.trace?.write('release', { dev: device.info.id, reason, problems, stats: device.stats.toJSON() });
    this.emit({ kind: 'released', device: device.info, stats: device.stats, reason, problems });
  }

  /**
   * The trace's `device` line (which device `dev` is) and, the first time a
   * process registers, its `client` line: the program's executable from
   * /proc/<pid>/exe. Its version is not knowable from here; a recorder that
   * knows it adds it (docs/trace-format.md).
   */
  private traceIdentity(dev: number, name: string, identity: DeviceIdentity | undefined, pid: number): void {
    const trace = this.options.trace;
    if (!trace) return;
    trace.write('device', { dev, name, protocol: 'v1', ...identity });
    if (this.clients.has(pid)) return;
    this.clients.add(pid);
    let exe: string | undefined;
    try {
      exe = this.sys.readlink(`/proc/${pid}/exe`);
    } catch {
      return; // gone, or not ours to read: no client line
    }
    trace.write('client', { name: exe.slice(exe.lastIndexOf('/') + 1), exe, pid });
  }

  violation(peer: PeerCredentials, reason: string): void {
    this.options.trace?.write('refused', { pid: peer.pid, reason });
    this.emit({ kind: 'refused', pid: peer.pid, reason: `protocol violation: ${reason}` });
  }

  fault(e: unknown): void {
    this.emit({ kind: 'fault', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }

  // ---- connections -------------------------------------------------------

  private accept(socket: Socket): void {
    const refuse = (reason: string, pid?: number) => {
      this.options.trace?.write('refused', { pid, reason });
      this.emit({ kind: 'refused', pid, reason });
      socket.on('error', () => undefined);
      socket.end(errorAnswer('EPERM'), () => socket.destroy());
    };
    if (this.closing) return refuse('the bridge is shutting down');
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    let peer: PeerCredentials;
    try {
      if (typeof fd !== 'number' || fd < 0) throw new MigrationError('EBADF', 'the accepted socket has no fd');
      peer = this.sys.peerCredentials(fd);
    } catch (e) {
      return refuse(`cannot read the peer's credentials: ${messageOf(e)}`);
    }
    const why = peerRefusal(peer, { uid: this.uid, commandPid: this.options.commandPid() });
    if (why) return refuse(why, peer.pid);
    const connection = new BridgeConnection(socket, peer, this);
    this.connections.add(connection);
    void connection.closed.then(() => this.connections.delete(connection));
    socket.resume();
  }

  private emit(event: BridgeEvent): void {
    try {
      this.options.onEvent?.(event);
    } catch {
      /* a listener's problem is not the connection's */
    }
  }
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
