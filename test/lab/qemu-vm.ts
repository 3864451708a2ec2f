// A nested VM for the lab's migration scenarios: QEMU 7.2 (the host's, Debian 12)
// or QEMU 10 (the Debian 13 root, run in a chroot), with mtty instances passed
// through as vfio-pci devices, driven over QMP. The nested guest boots nothing
// (SeaBIOS finds no boot device and waits): what migrates is the machine, its
// RAM and the devices' state, which is all these scenarios look at.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sysfs } from './lab-env.js';

export type QemuVersion = '7.2' | '10';

export interface BridgeRun {
  /** The command line that runs `vfio-mig bridge` (node + the installed bin). */
  command: string[];
  /** Extra bridge options (e.g. --no-mmap, --trace FILE). */
  options?: string[];
}

export interface VmOptions {
  qemu: QemuVersion;
  /** A short name for files and messages. */
  name: string;
  /** mdev uuids, one vfio-pci device each, in this order on both sides of a migration. */
  devices: string[];
  /** `-incoming` value (destination). */
  incoming?: string;
  /** Start paused in prelaunch (-S). */
  prelaunch?: boolean;
  /** Run QEMU under `vfio-mig bridge` (QEMU 7.2 only). */
  bridge?: BridgeRun;
  /** Machine type; both sides must agree and 7.2 must know it (docs/PROTOCOL.md §7, cross-version). */
  machine?: string;
  /** More QEMU options, after the others (e.g. -trace, -D). */
  extraArgs?: string[];
}

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['vfio-mig']);

/** `vfio-mig bridge [options]` as the package installs it, run by the lab's node. */
export const vfioMigBridge = (...options: string[]): BridgeRun => ({ command: [process.execPath, bin], options });

/** The installed `vfio-mig` command line. */
export const vfioMigCommand = (): string[] => [process.execPath, bin];

/** Where the lab keeps sockets and migration files: /tmp is the same path inside the QEMU 10 chroot. */
export const LAB_RUN_DIR = `${process.env.LAB_TMP ?? '/tmp/vfio-mig-lab'}/vms`;

/**
 * vfio-pci options per QEMU version. 7.2: migration is experimental and off by
 * default (x-enable-migration, hw/vfio/pci.c). 10: enable-migration=on plus
 * x-device-dirty-page-tracking=off, because mtty registers dummy DMA-logging ops
 * that 6.12 without IOMMUFD cannot serve (DMA_LOGGING_REPORT is EOPNOTSUPP): the
 * type1 container's dirty tracking is used instead, as QEMU 7.2 does.
 */
export function vfioDeviceOption(version: QemuVersion, uuid: string, index: number): string {
  const common = `vfio-pci,sysfsdev=${sysfs(uuid)},id=vfio${index}`;
  return version === '7.2' ? `${common},x-enable-migration=on` : `${common},enable-migration=on,x-device-dirty-page-tracking=off`;
}

export interface MigrationInfo {
  status: string;
  totalTimeMs?: number;
  downtimeMs?: number;
  setupTimeMs?: number;
  /** query-migrate's ram.mbps: the whole stream over (total - setup) time, megabits per second (migration_calculate_complete). */
  mbps?: number;
  /** query-migrate's ram.transferred (QEMU 7.2: the whole stream; QEMU 10: RAM pages only, device data apart). */
  transferredBytes?: number;
  /** `info migrate` as the HMP monitor prints it. */
  text: string;
}

interface QueryMigrate {
  status?: string;
  'total-time'?: number;
  downtime?: number;
  'setup-time'?: number;
  ram?: { mbps?: number; transferred?: number };
}

interface QmpReply {
  return?: unknown;
  error?: { class: string; desc: string };
  event?: string;
  QMP?: unknown;
}

export class QemuVm {
  readonly output: string[] = [];
  private readonly qmpPath: string;
  private readonly child: ChildProcess;
  private socket?: Socket;
  private pending: { resolve: (r: QmpReply) => void; reject: (e: Error) => void }[] = [];
  private hungUp = false;
  private buffered = '';
  private exited?: Promise<number | null>;
  readonly events: string[] = [];

  private constructor(
    readonly options: VmOptions,
    argv: string[],
  ) {
    mkdirSync(LAB_RUN_DIR, { recursive: true });
    this.qmpPath = `${LAB_RUN_DIR}/${options.name}.qmp`;
    const full = argv.concat(['-qmp', `unix:${this.qmpPath},server=on,wait=off`]);
    this.child = spawn(full[0], full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer) => this.output.push(chunk.toString());
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : null))));
  }

  /** Start a VM and connect to its QMP monitor. */
  static async start(options: VmOptions): Promise<QemuVm> {
    const vm = new QemuVm(options, QemuVm.commandLine(options));
    await vm.connect();
    return vm;
  }

  static commandLine(o: VmOptions): string[] {
    const qemu = [
      'qemu-system-x86_64',
      '-machine',
      o.machine ?? 'pc-q35-7.2',
      '-accel',
      'tcg',
      '-m',
      '128',
      '-nodefaults',
      '-no-user-config',
      '-display',
      'none',
      '-serial',
      'none',
      '-monitor',
      'none',
      ...o.devices.flatMap((u, i) => ['-device', vfioDeviceOption(o.qemu, u, i)]),
      ...(o.prelaunch ? ['-S'] : []),
      ...(o.incoming ? ['-incoming', o.incoming] : []),
      ...(o.extraArgs ?? []),
    ];
    if (o.qemu === '10') {
      if (o.bridge) throw new Error('the bridge is for QEMU 7.2 (v1); QEMU 10 speaks v2 natively');
      const root = process.env.LAB_TRIXIE;
      if (!root) throw new Error('LAB_TRIXIE is not set: the lab has no QEMU 10 root');
      return ['chroot', root, '/usr/bin/env', '-i', 'PATH=/usr/bin:/bin', 'HOME=/tmp', ...qemu];
    }
    return o.bridge ? [...o.bridge.command, 'bridge', ...(o.bridge.options ?? []), '--', ...qemu] : qemu;
  }

  /** Everything QEMU (and the bridge) printed so far. */
  get log(): string {
    return this.output.join('');
  }

  /** The process (QEMU, or the bridge around it) has not exited yet. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number {
    return this.child.pid!;
  }

  private async connect(): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const exit = await Promise.race([this.exited, new Promise((r) => setTimeout(r, 200, 'wait'))]);
      if (exit !== 'wait') throw new Error(`${this.options.name}: QEMU exited (${String(exit)}) before its monitor came up:\n${this.log}`);
      try {
        this.socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect(this.qmpPath, () => resolve(s));
          s.once('error', reject);
        });
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`${this.options.name}: no QMP monitor at ${this.qmpPath} after 60 s:\n${this.log}`);
      }
    }
    this.socket.setEncoding('utf8');
    this.socket.on('data', (text: string) => this.onData(text));
    this.socket.on('error', () => undefined); // 'close' follows and says it
    this.socket.on('close', () => this.onHangUp());
    await this.next(); // the greeting
    await this.execute('qmp_capabilities');
  }

  private onData(text: string): void {
    this.buffered += text;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (!line) continue;
      const msg = JSON.parse(line) as QmpReply;
      if (msg.event) {
        this.events.push(msg.event);
        continue;
      }
      this.pending.shift()?.resolve(msg);
    }
  }

  /** QEMU went away (e.g. a failed incoming migration ends it): no reply will come, so fail fast. */
  private onHangUp(): void {
    this.hungUp = true;
    for (const p of this.pending.splice(0)) p.reject(this.hangUpError());
  }

  private hangUpError(): Error {
    return new Error(`${this.options.name}: the QMP connection closed (QEMU exited?):\n${this.log}`);
  }

  private next(): Promise<QmpReply> {
    if (this.hungUp) return Promise.reject(this.hangUpError());
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  }

  /** One QMP command; rejects with QEMU's error text. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    const reply = this.next();
    this.socket!.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    const r = await reply;
    if (r.error) throw new Error(`${this.options.name}: ${command}: ${r.error.desc}`);
    return r.return as T;
  }

  /** An HMP command, as typed at QEMU's monitor. */
  hmp(commandLine: string): Promise<string> {
    return this.execute<string>('human-monitor-command', { 'command-line': commandLine });
  }

  async status(): Promise<string> {
    return (await this.execute<{ status: string }>('query-status')).status;
  }

  async waitStatus(wanted: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let now: string;
    while ((now = await this.status()) !== wanted) {
      if (Date.now() > deadline)
        throw new Error(`${this.options.name}: status '${now}' after ${timeoutMs} ms, waiting for '${wanted}'\n${this.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** `migrate URI` (HMP, so QEMU's own error text comes back); returns what the monitor printed. */
  migrate(uri: string): Promise<string> {
    return this.hmp(`migrate "${uri}"`);
  }

  /** Poll query-migrate until the migration ends; `info migrate` is kept as QEMU prints it. */
  async waitMigration(timeoutMs = 120_000): Promise<MigrationInfo> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const q = await this.execute<QueryMigrate>('query-migrate');
      const status = q.status ?? 'none';
      if (['completed', 'failed', 'cancelled'].includes(status)) {
        return {
          status,
          totalTimeMs: q['total-time'],
          downtimeMs: q.downtime,
          setupTimeMs: q['setup-time'],
          mbps: q.ram?.mbps,
          transferredBytes: q.ram?.transferred,
          text: await this.hmp('info migrate'),
        };
      }
      if (Date.now() > deadline) throw new Error(`${this.options.name}: migration still '${status}' after ${timeoutMs} ms\n${this.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** `quit`, then wait for the process (and a bridge around it) to exit; kill after 30 s. */
  async quit(): Promise<number | null> {
    try {
      await Promise.race([this.execute('quit'), new Promise((r) => setTimeout(r, 5000))]);
    } catch {
      /* it may exit before answering */
    }
    return this.waitExit();
  }

  async waitExit(timeoutMs = 30_000): Promise<number | null> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited!;
    } finally {
      clearTimeout(timer);
      this.socket?.destroy();
    }
  }

  /** Pids of the processes whose parent is this VM's process (QEMU, when a bridge runs it). */
  children(): number[] {
    return readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map(Number)
      .filter((pid) => {
        try {
          // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces, so read after the last ')'.
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === this.pid;
        } catch {
          return false; // exited meanwhile
        }
      });
  }

  /**
   * `quit` QEMUs whose parent (the bridge) was killed: their exit cannot be
   * waited for, so poll until each pid is gone or a zombie (its fds, and so its
   * devices, are released then).
   */
  async quitOrphans(pids: number[], timeoutMs = 30_000): Promise<void> {
    if (this.socket && !this.socket.destroyed) this.socket.write(`${JSON.stringify({ execute: 'quit' })}\n`);
    const deadline = Date.now() + timeoutMs;
    // Alive while any of its threads is: the leader can be a zombie while QEMU's other threads
    // still tear down, holding the fd table (and so the device fd, which pins the VFIO group:
    // drivers/vfio/group.c, vfio_group_fops_release). Only then is the group free to open.
    const alive = (pid: number) => {
      try {
        return readdirSync(`/proc/${pid}/task`).some((tid) => {
          const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
          return !'ZX'.includes(stat.slice(stat.lastIndexOf(')') + 2)[0]);
        });
      } catch {
        return false; // gone (or gone meanwhile)
      }
    };
    while (pids.some(alive)) {
      if (Date.now() > deadline) {
        for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL');
        throw new Error(`${this.options.name}: QEMU (${pids.join(', ')}) did not quit within ${timeoutMs} ms`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    this.socket?.destroy();
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }
}

/**
 * migrate-set-parameters that let QEMU >= 8.2 switch over with `stateMiB` of
 * VFIO device state. QEMU counts a device's whole stop-copy size as pending
 * (vfio_state_pending_exact, hw/vfio/migration.c) and, with an idle guest,
 * measures a pre-copy bandwidth near 0, so its switchover test (pending below
 * bandwidth x downtime-limit, migration_iteration_run) never passes: seen in
 * the lab as 'active' after 600 s. avail-switchover-bandwidth replaces the
 * measured bandwidth in that test; sized so that the device state plus 8 MiB
 * fits the 300 ms downtime-limit, QEMU switches over once RAM's first pass is
 * done, and the device state is nearly all of the downtime's payload.
 * QEMU 7.2 does not count the stop-copy size (a v1 device reports only its
 * pre-copy pending_bytes) and switches over at once: it needs none of this.
 */
export function switchoverParameters(stateMiB: number): Record<string, number> {
  const downtimeMs = 300;
  return { 'downtime-limit': downtimeMs, 'avail-switchover-bandwidth': Math.ceil(((stateMiB + 8) * 2 ** 20 * 1000) / downtimeMs) };
}

/** The VMs a test file started, so that each test can quit what it left running (afterEach). */
export class VmPool {
  private readonly vms: QemuVm[] = [];

  async start(options: VmOptions): Promise<QemuVm> {
    const vm = await QemuVm.start(options);
    this.vms.push(vm);
    return vm;
  }

  async quitAll(): Promise<void> {
    for (const vm of this.vms.splice(0)) await vm.quit();
  }
}
