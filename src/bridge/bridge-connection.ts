// One interposer connection = one device record in the peer. Frames are
// served strictly one after another (the interposer has one request in
// flight per device; a peer that pipelines just waits): the socket is paused
// while a batch is served, so a flooding peer is held back by the kernel's
// socket buffer, not by our memory. The first frame must be REGISTER and
// the only one; any broken rule ends this connection with an EPROTO answer,
// and however the connection ends, its device is released.
import type { Socket } from 'node:net';
import type { PeerCredentials } from '../kernel/syscalls.js';
import { ERRNO } from '../uapi/errors.js';
import type { BridgedDevice } from './bridged-device.js';
import {
  ProtocolViolation,
  RequestReader,
  encodeAnswer,
  encodeRegisterAnswer,
  type Answer,
  type RegisterAnswer,
  type RegisterRequest,
  type Request,
} from './wire-protocol.js';

export interface ConnectionHost {
  register(request: RegisterRequest, peer: PeerCredentials): Promise<{ answer: RegisterAnswer; device?: BridgedDevice }>;
  released(device: BridgedDevice, reason: string): Promise<void>;
  violation(peer: PeerCredentials, reason: string): void;
  fault(e: unknown): void;
}

/** A failure answer with no payload: what a refused or broken connection gets before it is closed. */
export function errorAnswer(code: keyof typeof ERRNO): Uint8Array {
  return encodeAnswer({ result: -ERRNO[code], status: 0, payload: new Uint8Array(0) });
}

export class BridgeConnection {
  private readonly reader = new RequestReader();
  private work: Promise<void> = Promise.resolve();
  private device: BridgedDevice | undefined;
  private registered = false;
  private peerEnded = false;
  private shut = false;
  private resolveClosed!: () => void;
  /** Settles once the connection is gone and its device released. */
  readonly closed = new Promise<void>((resolve) => (this.resolveClosed = resolve));

  constructor(
    private readonly socket: Socket,
    private readonly peer: PeerCredentials,
    private readonly host: ConnectionHost,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      socket.pause();
      this.enqueue(() => this.drain());
    });
    socket.on('end', () => {
      this.peerEnded = true;
      this.enqueue(() => this.drain());
    });
    socket.on('error', () => {
      /* 'close' follows */
    });
    socket.on('close', () => this.end('connection closed'));
  }

  /** Drop the connection (bridge shutting down). */
  abort(): void {
    this.socket.destroy();
  }

  private enqueue(task: () => Promise<void> | void): void {
    this.work = this.work.then(task).catch((e) => this.host.fault(e));
  }

  /** Serve every whole frame received; then wait for more, or finish if the peer is done sending. */
  private async drain(): Promise<void> {
    while (!this.shut) {
      let answer: Answer;
      try {
        const request = this.reader.next();
        if (!request) break;
        answer = await this.handle(request);
      } catch (e) {
        if (!(e instanceof ProtocolViolation)) throw e;
        this.host.violation(this.peer, e.message.replace(/^EPROTO: /, ''));
        this.socket.end(errorAnswer('EPROTO'), () => this.socket.destroy());
        this.end('protocol violation');
        return;
      }
      if (!this.shut) this.socket.write(encodeAnswer(answer));
    }
    if (this.shut) return;
    if (this.peerEnded) {
      // A trailing partial frame is a truncated frame: nothing to answer.
      this.socket.end(() => this.socket.destroy());
      this.end('peer closed');
    } else {
      this.socket.resume();
    }
  }

  private async handle(request: Request): Promise<Answer> {
    if (request.op === 'register') {
      if (this.registered) throw new ProtocolViolation('a second REGISTER on one connection');
      this.registered = true;
      const { answer, device } = await this.host.register(request, this.peer);
      this.device = device;
      return { result: 0, status: device?.status ?? 0, payload: encodeRegisterAnswer(answer) };
    }
    if (!this.device)
      throw new ProtocolViolation(this.registered ? `${request.op} for a device that is not bridged` : `${request.op} before REGISTER`);
    return this.device.serve(request);
  }

  /** Once: after the frame being served (if any), release the device. */
  private end(reason: string): void {
    if (this.shut) return;
    this.shut = true;
    this.enqueue(async () => {
      const device = this.device;
      this.device = undefined;
      if (device) await this.host.released(device, reason);
    });
    void this.work.then(() => this.resolveClosed()); // work never rejects: enqueue catches
  }
}
