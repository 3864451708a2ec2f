// The bridge's wire protocol (version 1): frames between the LD_PRELOAD
// interposer (C, inside QEMU) and the bridge (this process), over one
// AF_UNIX stream connection per device, little-endian. docs/bridge.md is
// the contract; this file is its only codec. Every field a peer sends is
// checked here before it is used: a frame that breaks a rule is a
// ProtocolViolation, which ends that connection (never the bridge).
import { MigrationError } from '../uapi/errors.js';
import { CStruct } from '../uapi/struct.js';

/** 'VMB1' read as a little-endian u32. */
export const BRIDGE_MAGIC = 0x31424d56;
export const PROTOCOL_VERSION = 1;
/** Largest forwarded access (READ count, WRITE payload). */
export const MAX_ACCESS_BYTES = 4096;
/** Answer status bit: the device is RESUMING, the interposer may memcpy into the window. */
export const STATUS_WINDOW_WRITABLE = 1;
export const DEVICE_NAME_BYTES = 64;
export const WINDOW_PATH_BYTES = 256;

export const OP = { REGISTER: 1, READ: 2, WRITE: 3, RESET: 4 } as const;

export const requestHeader = new CStruct('bridge_request', 24, {
  magic: ['u32', 0],
  op: ['u16', 4],
  reserved: ['u16', 6],
  length: ['u32', 8],
  count: ['u32', 12],
  offset: ['u64', 16],
});
export const answerHeader = new CStruct('bridge_answer', 16, {
  magic: ['u32', 0],
  result: ['s32', 4],
  length: ['u32', 8],
  status: ['u32', 12],
});
export const registerRequest = new CStruct('bridge_register', 24 + DEVICE_NAME_BYTES, {
  version: ['u32', 0],
  pid: ['s32', 4],
  fd: ['s32', 8],
  num_regions: ['u32', 12],
  regions_end: ['u64', 16],
  name: ['nested', 24],
});
export const registerAnswer = new CStruct('bridge_register_answer', 48 + WINDOW_PATH_BYTES, {
  bridged: ['u32', 0],
  index: ['u32', 4],
  flags: ['u32', 8],
  reserved: ['u32', 12],
  offset: ['u64', 16],
  size: ['u64', 24],
  window_offset: ['u64', 32],
  window_size: ['u64', 40],
  path: ['nested', 48],
});

export interface RegisterRequest {
  op: 'register';
  version: number;
  /** The sender's pid (must be the socket peer's). */
  pid: number;
  /** The device fd in the sender. */
  fd: number;
  /** The device's own num_regions; the synthesized region gets this index. */
  numRegions: number;
  /** End of the highest real region (max offset + size), device-fd offsets. */
  regionsEnd: bigint;
  /** As given to VFIO_GROUP_GET_DEVICE_FD; "" if unknown. */
  name: string;
}
export type Request =
  RegisterRequest | { op: 'read'; offset: bigint; count: number } | { op: 'write'; offset: bigint; data: Uint8Array } | { op: 'reset' };

export interface RegisterAnswer {
  bridged: boolean;
  index: number;
  flags: number;
  offset: bigint;
  size: bigint;
  windowOffset: bigint;
  windowSize: bigint;
  windowPath: string;
}

export interface Answer {
  /** >= 0 success (READ: bytes returned), < 0 = -errno. */
  result: number;
  status: number;
  payload: Uint8Array;
}

/** A frame that breaks the protocol: the connection ends. */
export class ProtocolViolation extends MigrationError {
  constructor(message: string) {
    super('EPROTO', message);
    this.name = 'ProtocolViolation';
  }
}

const OP_NAME: Record<number, Request['op']> = { 1: 'register', 2: 'read', 3: 'write', 4: 'reset' };

/**
 * The rules a request header must meet before its payload is even read:
 * magic, a known op, reserved 0, and length/count/offset as the op allows.
 * Returns the op and how many payload bytes follow.
 */
export function checkRequestHeader(bytes: Uint8Array): { op: Request['op']; length: number; count: number; offset: bigint } {
  const h = requestHeader.decode(bytes);
  if (h.magic !== BRIDGE_MAGIC) throw new ProtocolViolation(`bad magic 0x${h.magic.toString(16)}`);
  const op = OP_NAME[h.op];
  if (!op) throw new ProtocolViolation(`unknown op ${h.op}`);
  if (h.reserved !== 0) throw new ProtocolViolation(`reserved field is ${h.reserved}, must be 0`);
  const bad = (what: string) => new ProtocolViolation(`${op}: ${what} (length ${h.length}, count ${h.count}, offset ${h.offset})`);
  switch (op) {
    case 'register':
      if (h.length !== registerRequest.size || h.count !== 0 || h.offset !== 0n)
        throw bad(`needs length ${registerRequest.size}, count 0, offset 0`);
      break;
    case 'read':
      if (h.length !== 0 || h.count < 1 || h.count > MAX_ACCESS_BYTES) throw bad(`needs length 0 and count 1..${MAX_ACCESS_BYTES}`);
      break;
    case 'write':
      if (h.length < 1 || h.length > MAX_ACCESS_BYTES || h.count !== 0) throw bad(`needs length 1..${MAX_ACCESS_BYTES} and count 0`);
      break;
    case 'reset':
      if (h.length !== 0 || h.count !== 0 || h.offset !== 0n) throw bad('needs length 0, count 0, offset 0');
      break;
  }
  return { op, length: h.length, count: h.count, offset: h.offset };
}

function decodeRegister(payload: Uint8Array): RegisterRequest {
  const r = registerRequest.decode(payload);
  if (r.version !== PROTOCOL_VERSION) throw new ProtocolViolation(`protocol version ${r.version}; this bridge speaks ${PROTOCOL_VERSION}`);
  if (r.pid <= 0) throw new ProtocolViolation(`register: pid ${r.pid}`);
  if (r.fd < 0) throw new ProtocolViolation(`register: fd ${r.fd}`);
  if (r.num_regions === 0xffffffff) throw new ProtocolViolation('register: num_regions leaves no index for the migration region');
  return {
    op: 'register',
    version: r.version,
    pid: r.pid,
    fd: r.fd,
    numRegions: r.num_regions,
    regionsEnd: r.regions_end,
    name: decodeName(payload.subarray(24, 24 + DEVICE_NAME_BYTES)),
  };
}

/** The NUL-padded name: printable text, then only NULs. */
function decodeName(field: Uint8Array): string {
  const end = field.indexOf(0) < 0 ? field.length : field.indexOf(0);
  if (field.subarray(end).some((b) => b !== 0)) throw new ProtocolViolation("register: bytes after the device name's NUL");
  const name = new TextDecoder('utf-8', { fatal: false }).decode(field.subarray(0, end));
  // The name goes into log lines and the trace: no control characters (a forged line break).
  // eslint-disable-next-line no-control-regex -- matching control characters is the point
  if (/[\u0000-\u001f\u007f-\u009f\ufffd]/.test(name)) throw new ProtocolViolation('register: device name is not printable UTF-8');
  return name;
}

/** Bytes in arrival order; frames are cut from the front. */
class ByteQueue {
  private buf: Uint8Array = new Uint8Array(0);

  get length(): number {
    return this.buf.length;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.buf.length === 0) {
      // A plain view (a Buffer's slice() would not copy in take()).
      this.buf = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
      return;
    }
    const next = new Uint8Array(this.buf.length + chunk.length);
    next.set(this.buf);
    next.set(chunk, this.buf.length);
    this.buf = next;
  }

  peek(n: number): Uint8Array {
    return this.buf.subarray(0, n);
  }

  take(n: number): Uint8Array {
    const out = this.buf.slice(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
}

/**
 * Cuts requests out of a byte stream however it was split. next() returns
 * the next whole request, undefined while one is incomplete, and throws a
 * ProtocolViolation as soon as a header breaks a rule (its payload is never
 * waited for).
 */
export class RequestReader {
  private readonly queue = new ByteQueue();

  push(chunk: Uint8Array): void {
    this.queue.push(chunk);
  }

  /** Bytes received and not yet returned as a request. */
  get buffered(): number {
    return this.queue.length;
  }

  next(): Request | undefined {
    if (this.queue.length < requestHeader.size) return undefined;
    const h = checkRequestHeader(this.queue.peek(requestHeader.size));
    if (this.queue.length < requestHeader.size + h.length) return undefined;
    this.queue.take(requestHeader.size);
    const payload = this.queue.take(h.length);
    switch (h.op) {
      case 'register':
        return decodeRegister(payload);
      case 'read':
        return { op: 'read', offset: h.offset, count: h.count };
      case 'write':
        return { op: 'write', offset: h.offset, data: payload };
      case 'reset':
        return { op: 'reset' };
    }
  }
}

/** Answers as a client reads them: header, then `length` payload bytes. */
export class AnswerReader {
  private readonly queue = new ByteQueue();

  push(chunk: Uint8Array): void {
    this.queue.push(chunk);
  }

  next(): Answer | undefined {
    if (this.queue.length < answerHeader.size) return undefined;
    const h = answerHeader.decode(this.queue.peek(answerHeader.size));
    if (h.magic !== BRIDGE_MAGIC) throw new ProtocolViolation(`answer with bad magic 0x${h.magic.toString(16)}`);
    if (h.length > MAX_ACCESS_BYTES) throw new ProtocolViolation(`answer length ${h.length}`);
    if (this.queue.length < answerHeader.size + h.length) return undefined;
    this.queue.take(answerHeader.size);
    return { result: h.result, status: h.status, payload: this.queue.take(h.length) };
  }
}

export function encodeRequest(r: Request): Uint8Array {
  const payload = r.op === 'write' ? r.data : r.op === 'register' ? encodeRegister(r) : new Uint8Array(0);
  const out = new Uint8Array(requestHeader.size + payload.length);
  requestHeader.encode(
    {
      magic: BRIDGE_MAGIC,
      op: OP[r.op.toUpperCase() as keyof typeof OP],
      reserved: 0,
      length: payload.length,
      count: r.op === 'read' ? r.count : 0,
      offset: r.op === 'read' || r.op === 'write' ? r.offset : 0n,
    },
    out,
  );
  out.set(payload, requestHeader.size);
  return out;
}

function encodeRegister(r: RegisterRequest): Uint8Array {
  const out = registerRequest.encode({
    version: r.version,
    pid: r.pid,
    fd: r.fd,
    num_regions: r.numRegions,
    regions_end: r.regionsEnd,
  });
  putString(out, 24, DEVICE_NAME_BYTES, r.name);
  return out;
}

export function encodeAnswer(a: Answer): Uint8Array {
  const out = new Uint8Array(answerHeader.size + a.payload.length);
  answerHeader.encode({ magic: BRIDGE_MAGIC, result: a.result, length: a.payload.length, status: a.status }, out);
  out.set(a.payload, answerHeader.size);
  return out;
}

export function encodeRegisterAnswer(a: RegisterAnswer): Uint8Array {
  const out = registerAnswer.encode({
    bridged: a.bridged ? 1 : 0,
    index: a.index,
    flags: a.flags,
    reserved: 0,
    offset: a.offset,
    size: a.size,
    window_offset: a.windowOffset,
    window_size: a.windowSize,
  });
  putString(out, 48, WINDOW_PATH_BYTES - 1, a.windowPath); // NUL-terminated: the last byte stays 0
  return out;
}

export function decodeRegisterAnswer(payload: Uint8Array): RegisterAnswer {
  if (payload.length !== registerAnswer.size) throw new ProtocolViolation(`register answer of ${payload.length} bytes`);
  const a = registerAnswer.decode(payload);
  const path = payload.subarray(48, 48 + WINDOW_PATH_BYTES);
  const end = path.indexOf(0);
  if (end < 0) throw new ProtocolViolation('register answer: window path is not NUL-terminated');
  return {
    bridged: a.bridged === 1,
    index: a.index,
    flags: a.flags,
    offset: a.offset,
    size: a.size,
    windowOffset: a.window_offset,
    windowSize: a.window_size,
    windowPath: new TextDecoder().decode(path.subarray(0, end)),
  };
}

function putString(out: Uint8Array, at: number, max: number, text: string): void {
  const bytes = new TextEncoder().encode(text);
  if (bytes.length > max) throw new MigrationError('EINVAL', `'${text}' is longer than ${max} bytes`);
  out.set(bytes, at);
}
