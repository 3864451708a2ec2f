// Small helpers the device, client and translator suites share.
import { Writable } from 'node:stream';
import { expect } from 'vitest';
import type { LegacyRegion } from '../../legacy/contracts.js';
import { readU64Field } from '../../legacy/v1-registers.js';
import { SimDevice, type SimDeviceOptions } from '../../src/sim/sim-device.js';

/** The whole stop-copy stream a fresh saver of this device produces after `steps` of work. */
export function stopCopyStream(options: SimDeviceOptions, steps = 0): Buffer {
  const d = new SimDevice(options);
  d.running = true;
  d.step(steps);
  const saver = d.createSaver();
  saver.enterStopCopy();
  const parts: Buffer[] = [];
  for (;;) {
    const b = Buffer.alloc(4096);
    const n = saver.read(b);
    if (n === 0) break;
    parts.push(b.subarray(0, n));
  }
  return Buffer.concat(parts);
}

/** `length` bytes read from a region at `offset`. */
export async function readRegion(r: LegacyRegion, offset: number, length: number): Promise<Uint8Array> {
  const b = new Uint8Array(length);
  await r.readAt(offset, b);
  return b;
}

/** A v1 stop-copy loop until pending_bytes reads 0, checking that pending is non-zero while chunks come. */
export async function drainStopCopy(r: LegacyRegion): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for (;;) {
    const pending = await readU64Field(r, 'pending_bytes');
    if (pending === 0n) break;
    const off = Number(await readU64Field(r, 'data_offset'));
    const n = Number(await readU64Field(r, 'data_size'));
    expect(n, 'pending > 0 promises a non-empty chunk').toBeGreaterThan(0);
    parts.push(await readRegion(r, off, n));
  }
  return Buffer.concat(parts);
}

/**
 * A Writable that keeps the very buffers it is given (no copy), so a client
 * that reused a buffer it had handed over would corrupt `bytes`.
 */
export class Sink extends Writable {
  readonly chunks: Buffer[] = [];
  readonly writeSizes: number[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.chunks.push(chunk);
    this.writeSizes.push(chunk.length);
    cb();
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}
