// The interposer's side of the bridge protocol, in TypeScript, for tests:
// BridgeClient sends frames and reads answers; BridgedRegion is a v1
// LegacyRegion as QEMU sees the synthesized region through the interposer —
// window accesses are memcpys on the client's own mapping of the window file
// (writes only while the last answer said WINDOW_WRITABLE), everything else
// is forwarded as READ/WRITE (4096 bytes at most), reset as RESET.
import { closeSync, openSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import type { LegacyRegion } from '../../legacy/contracts.js';
import { koffiSyscalls } from '../../src/kernel/koffi-syscalls.js';
import { PROT_READ, PROT_WRITE, type Mapping } from '../../src/kernel/syscalls.js';
import {
  AnswerReader,
  MAX_ACCESS_BYTES,
  PROTOCOL_VERSION,
  STATUS_WINDOW_WRITABLE,
  decodeRegisterAnswer,
  encodeRequest,
  type Answer,
  type RegisterAnswer,
  type Request,
} from '../../src/bridge/wire-protocol.js';
import { VFIO_REGION_INFO_FLAG_MMAP } from '../../src/uapi/constants.js';
import { MigrationError } from '../../src/uapi/errors.js';

export class BridgeClient {
  private readonly reader = new AnswerReader();
  private readonly queued: Answer[] = [];
  private waiting: { resolve(a: Answer): void; reject(e: Error): void } | null = null;
  private ended = false;
  /** Every answer received, in order. */
  readonly answers: Answer[] = [];
  /** Resolves when the bridge has closed the connection. */
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      for (let a = this.reader.next(); a; a = this.reader.next()) {
        this.answers.push(a);
        if (this.waiting) {
          const w = this.waiting;
          this.waiting = null;
          w.resolve(a);
        } else {
          this.queued.push(a);
        }
      }
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.ended = true;
        this.waiting?.reject(new MigrationError('EIO', 'the bridge closed the connection'));
        this.waiting = null;
        resolve();
      });
    });
    socket.on('error', () => undefined);
  }

  static connect(path: string): Promise<BridgeClient> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => resolve(new BridgeClient(s)));
      s.once('error', reject);
    });
  }

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The next answer (queued or to come); EIO once the connection is closed. */
  next(): Promise<Answer> {
    const q = this.queued.shift();
    if (q) return Promise.resolve(q);
    if (this.ended) return Promise.reject(new MigrationError('EIO', 'the bridge closed the connection'));
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  request(r: Request): Promise<Answer> {
    this.send(encodeRequest(r));
    return this.next();
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface RegisterOptions {
  pid?: number;
  fd?: number;
  name: string;
  numRegions?: number;
  regionsEnd?: bigint;
}

/** The region as QEMU uses it through the interposer. Offsets are region offsets. */
export class BridgedRegion implements LegacyRegion {
  readonly size: number;
  /** Frames forwarded to the bridge, by kind: the test's view of what did not stay in shared memory. */
  readonly forwarded = { read: 0, write: 0, windowRead: 0, windowWrite: 0, reset: 0 };
  private status: number;
  private closedRegion = false;

  private constructor(
    readonly client: BridgeClient,
    readonly info: RegisterAnswer,
    registerStatus: number,
    private readonly mapping: Mapping,
  ) {
    this.size = Number(info.size);
    this.status = registerStatus;
  }

  /** REGISTER; the answer when the device is not bridged (the connection is then closed, as the interposer does). */
  static async register(socketPath: string, o: RegisterOptions): Promise<BridgedRegion | RegisterAnswer> {
    const client = await BridgeClient.connect(socketPath);
    const a = await client.request({
      op: 'register',
      version: PROTOCOL_VERSION,
      pid: o.pid ?? process.pid,
      fd: o.fd ?? 42,
      numRegions: o.numRegions ?? 9,
      regionsEnd: o.regionsEnd ?? (8n << 40n) + 0x1000n,
      name: o.name,
    });
    if (a.result < 0) {
      client.close();
      throw new MigrationError(-a.result, 'REGISTER failed');
    }
    const info = decodeRegisterAnswer(a.payload);
    if (!info.bridged) {
      client.close();
      return info;
    }
    const fd = openSync(info.windowPath, 'r+');
    try {
      const mapping = koffiSyscalls().mmap(fd, Number(info.windowSize), PROT_READ | PROT_WRITE, 0n);
      return new BridgedRegion(client, info, a.status, mapping);
    } finally {
      closeSync(fd);
    }
  }

  /** How QEMU 7.2 moves window bytes here: memcpy over the mapping, or 8-byte pread/pwrite pieces. */
  get windowAccess(): 'mmap' | 'pieces' {
    return this.info.flags & VFIO_REGION_INFO_FLAG_MMAP ? 'mmap' : 'pieces';
  }

  get windowWritable(): boolean {
    return (this.status & STATUS_WINDOW_WRITABLE) !== 0;
  }

  /** The client's own mapping of the window file. */
  get window(): Uint8Array {
    return this.mapping.bytes;
  }

  async readAt(offset: number, buf: Uint8Array): Promise<void> {
    const w = this.inWindow(offset, buf.length);
    if (w !== undefined) {
      buf.set(this.window.subarray(w, w + buf.length));
      return;
    }
    await this.forward({ op: 'read', offset: BigInt(offset), count: buf.length }, buf);
  }

  async writeAt(offset: number, data: Uint8Array): Promise<void> {
    const w = this.inWindow(offset, data.length);
    if (w !== undefined) {
      if (!this.windowWritable) throw new MigrationError('EINVAL', 'window write while the device is not RESUMING');
      this.window.set(data, w);
      return;
    }
    await this.forward({ op: 'write', offset: BigInt(offset), data: data.slice() });
  }

  async reset(): Promise<void> {
    this.forwarded.reset++;
    await this.forward({ op: 'reset' });
  }

  async close(): Promise<void> {
    if (this.closedRegion) return;
    this.closedRegion = true;
    this.client.close();
    await this.client.closed;
    koffiSyscalls().munmap(this.mapping);
  }

  /** The window offset of an access entirely inside the window; undefined otherwise. */
  private inWindow(offset: number, length: number): number | undefined {
    const start = Number(this.info.windowOffset);
    return offset >= start && offset + length <= this.size ? offset - start : undefined;
  }

  private async forward(r: Request, into?: Uint8Array): Promise<void> {
    if (r.op === 'read' || r.op === 'write') {
      const length = r.op === 'read' ? r.count : r.data.length;
      if (r.offset + BigInt(length) > BigInt(this.size) || length > MAX_ACCESS_BYTES)
        throw new MigrationError('EINVAL', 'access outside the region');
      const inWin = r.offset >= this.info.windowOffset;
      if (r.op === 'read') this.forwarded[inWin ? 'windowRead' : 'read']++;
      else this.forwarded[inWin ? 'windowWrite' : 'write']++;
    }
    const a = await this.client.request(r);
    this.status = a.status;
    if (a.result < 0) throw new MigrationError(-a.result, `${r.op} answered by the bridge`);
    if (into) into.set(a.payload);
  }
}
