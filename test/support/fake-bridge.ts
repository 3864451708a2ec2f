// A stand-in for the bridge, for testing the interposer alone: it speaks the wire protocol
// (docs/bridge.md) on an AF_UNIX socket, answers REGISTER with the layout rule the real
// bridge uses, keeps a 32-byte v1 header per device in memory, and can hang or die on demand.
// It checks nothing a hostile peer could break: the interposer is the peer under test.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const MAGIC = 0x31424d56;
export const OP = { REGISTER: 1, READ: 2, WRITE: 3, RESET: 4 } as const;
export const WINDOW_WRITABLE = 1;
const TIB = 1n << 40n;

export interface Register {
  version: number;
  pid: number;
  fd: number;
  numRegions: number;
  regionsEnd: bigint;
  name: string;
}

export interface Frame {
  conn: number;
  magic: number;
  op: number;
  reserved: number;
  length: number;
  count: number;
  offset: bigint;
  payload: Buffer;
}

export interface Connection {
  id: number;
  register?: Register;
  regionOffset: bigint;
  windowPath: string;
  header: Buffer; // device_state, reserved, pending_bytes, data_offset, data_size
  closed: boolean;
  socket: Socket;
}

export interface FakeBridgeOptions {
  window?: number; // window size (default 64 KiB)
  mmap?: boolean; // MMAP flag in the answer (default true)
  refuse?: (r: Register) => boolean; // answer "not bridged"
  answer?: (frame: Frame, conn: Connection) => Buffer | undefined; // override one answer
  editRegister?: (payload: Buffer, conn: Connection) => void; // spoil a REGISTER answer
}

export class FakeBridge {
  readonly dir = mkdtempSync(join(tmpdir(), 'vfio-mig-fake-bridge-'));
  readonly socketPath = join(this.dir, 'bridge.sock');
  readonly frames: Frame[] = [];
  readonly connections: Connection[] = [];
  readonly errors: string[] = []; // frames that break the protocol (the test asserts none)
  readonly window: number;
  private server: Server;
  private hanging = false;

  private constructor(private readonly opts: FakeBridgeOptions) {
    this.window = opts.window ?? 64 * 1024;
    this.server = createServer((s) => this.accept(s));
  }

  static async start(opts: FakeBridgeOptions = {}): Promise<FakeBridge> {
    const b = new FakeBridge(opts);
    await new Promise<void>((resolve) => b.server.listen(b.socketPath, resolve));
    return b;
  }

  /** Stop answering; requests are still read (and recorded). */
  hang(): void {
    this.hanging = true;
  }

  /** Close every connection and the listener: the bridge process is gone. */
  async die(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  async stop(): Promise<void> {
    if (this.server.listening) await this.die();
    rmSync(this.dir, { recursive: true, force: true });
  }

  framesOf(conn: Connection, op?: number): Frame[] {
    return this.frames.filter((f) => f.conn === conn.id && (op === undefined || f.op === op));
  }

  /** Stage one chunk the way a saving v1 device presents it: data in the window at 0. */
  stageChunk(conn: Connection, data: Buffer): void {
    writeFileSync(conn.windowPath, data, { flag: 'r+' });
    conn.header.writeBigUInt64LE(BigInt(data.length), 8);
    conn.header.writeBigUInt64LE(4096n, 16);
    conn.header.writeBigUInt64LE(BigInt(data.length), 24);
  }

  state(conn: Connection): number {
    return conn.header.readUInt32LE(0);
  }

  private accept(socket: Socket): void {
    const conn: Connection = {
      id: this.connections.length,
      regionOffset: 0n,
      windowPath: '',
      header: Buffer.alloc(32),
      closed: false,
      socket,
    };
    conn.header.writeUInt32LE(1, 0);
    conn.header.writeBigUInt64LE(4096n, 16);
    this.connections.push(conn);
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        if (pending.length < 24) return;
        const length = pending.readUInt32LE(8);
        if (length > 4096) {
          this.errors.push(`frame announces ${length} payload bytes`);
          socket.destroy();
          return;
        }
        if (pending.length < 24 + length) return;
        const frame: Frame = {
          conn: conn.id,
          magic: pending.readUInt32LE(0),
          op: pending.readUInt16LE(4),
          reserved: pending.readUInt16LE(6),
          length,
          count: pending.readUInt32LE(12),
          offset: pending.readBigUInt64LE(16),
          payload: pending.subarray(24, 24 + length),
        };
        pending = pending.subarray(24 + length);
        this.frames.push(frame);
        const wrong = malformed(frame);
        if (wrong) {
          this.errors.push(wrong);
          socket.destroy();
          return;
        }
        if (this.hanging) continue;
        socket.write(this.opts.answer?.(frame, conn) ?? this.serve(frame, conn));
      }
    });
    socket.on('close', () => {
      conn.closed = true;
    });
    socket.on('error', () => {
      conn.closed = true;
    });
  }

  private serve(f: Frame, conn: Connection): Buffer {
    switch (f.op) {
      case OP.REGISTER:
        return this.register(f, conn);
      case OP.READ: {
        const data = Buffer.alloc(f.count);
        if (f.offset < 32n) conn.header.copy(data, 0, Number(f.offset), Math.min(32, Number(f.offset) + f.count));
        return answer(data.length, data, this.status(conn));
      }
      case OP.WRITE:
        if (f.offset < 32n) f.payload.copy(conn.header, Number(f.offset), 0, Math.min(f.length, 32 - Number(f.offset)));
        return answer(f.length, Buffer.alloc(0), this.status(conn));
      case OP.RESET:
        conn.header.writeUInt32LE(1, 0);
        return answer(0, Buffer.alloc(0), this.status(conn));
      default:
        throw new Error(`unknown op ${f.op}`);
    }
  }

  private status(conn: Connection): number {
    return this.state(conn) === 4 ? WINDOW_WRITABLE : 0;
  }

  private register(f: Frame, conn: Connection): Buffer {
    const p = f.payload;
    const r: Register = {
      version: p.readUInt32LE(0),
      pid: p.readInt32LE(4),
      fd: p.readInt32LE(8),
      numRegions: p.readUInt32LE(12),
      regionsEnd: p.readBigUInt64LE(16),
      name: p.subarray(24, 88).toString('latin1').replace(/\0+$/, ''),
    };
    conn.register = r;
    const out = Buffer.alloc(304);
    if (this.opts.refuse?.(r)) return answer(0, out, 0);
    conn.regionOffset = ((r.regionsEnd + TIB - 1n) / TIB) * TIB; // first multiple of 2^40 at or past the end
    conn.windowPath = join(this.dir, `window-${conn.id}`);
    writeFileSync(conn.windowPath, windowPattern(this.window, conn.id));
    const mmap = this.opts.mmap ?? true;
    out.writeUInt32LE(1, 0);
    out.writeUInt32LE(r.numRegions, 4);
    out.writeUInt32LE(1 | 2 | 8 | (mmap ? 4 : 0), 8); // READ | WRITE | CAPS (| MMAP)
    out.writeBigUInt64LE(conn.regionOffset, 16);
    out.writeBigUInt64LE(BigInt(4096 + this.window), 24);
    out.writeBigUInt64LE(4096n, 32);
    out.writeBigUInt64LE(BigInt(this.window), 40);
    out.write(conn.windowPath, 48, 'latin1');
    this.opts.editRegister?.(out, conn);
    return answer(0, out, 0);
  }
}

/** What the real bridge would refuse in a request (docs/bridge.md), or undefined. */
export function malformed(f: Frame): string | undefined {
  const shape: Record<number, (f: Frame) => boolean> = {
    [OP.REGISTER]: (f) => f.length === 88 && f.count === 0 && f.offset === 0n,
    [OP.READ]: (f) => f.length === 0 && f.count >= 1 && f.count <= 4096,
    [OP.WRITE]: (f) => f.length >= 1 && f.length <= 4096 && f.count === 0,
    [OP.RESET]: (f) => f.length === 0 && f.count === 0 && f.offset === 0n,
  };
  if (f.magic !== MAGIC || f.reserved !== 0 || !shape[f.op]?.(f))
    return `malformed frame op ${f.op} length ${f.length} count ${f.count} offset ${f.offset}`;
  return undefined;
}

export function answer(result: number, payload: Buffer, status: number, magic = MAGIC): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(magic, 0);
  h.writeInt32LE(result, 4);
  h.writeUInt32LE(payload.length, 8);
  h.writeUInt32LE(status, 12);
  return Buffer.concat([h, payload]);
}

/** The bytes a fresh window file holds: distinct per connection, never all zero. */
export function windowPattern(size: number, id: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + id * 13 + 1) & 0xff;
  return b;
}
