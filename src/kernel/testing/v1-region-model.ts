// The v1 migration region (type 3 / subtype 1) a FakeSyscalls device can
// carry, as a 5.8-5.17 out-of-tree vendor driver implemented it: the trapped
// header at 0, the data window at `dataOffset`, accessed by pread/pwrite with
// the project's v1 access rules (legacy/v1-access.ts). The stream it saves
// and resumes is mtty's, over the same port state as the v2 driver, so the
// two faces can be compared. Synchronous, like the kernel.
import { MigrationError } from '../../uapi/errors.js';
import type { FieldName } from '../../../legacy/region-layout.js';
import { classifyV1Access, putV1Field, writeV1Field } from '../../../legacy/v1-access.js';
import { V1_MASK, V1_RESUMING, V1_RUNNING, V1_SAVING, v1IsValid } from '../../../legacy/v1-state.js';
import { MTTY_MAGIC, putMttyHeader, type MttyModel } from './mtty-model.js';

export class V1RegionModel {
  deviceState = V1_RUNNING;
  readonly window: Uint8Array;
  private stream: Uint8Array | null = null;
  private streamPos = 0;
  private staged = 0;
  private resumeBuf: Uint8Array | null = null;
  private resumeLen = 0;

  constructor(
    private readonly model: MttyModel,
    readonly dataOffset: number,
    windowSize: number,
  ) {
    this.window = new Uint8Array(windowSize);
  }

  get size(): number {
    return this.dataOffset + this.window.length;
  }

  reset(): void {
    this.deviceState = V1_RUNNING;
    this.stream = null;
    this.staged = 0;
    this.resumeBuf = null;
  }

  read(off: number, buf: Uint8Array): void {
    const at = classifyV1Access(off, buf.length, this.dataOffset, this.size);
    if (at.kind === 'window') buf.set(this.window.subarray(at.start, at.start + at.length));
    else putV1Field(at.field, this.readField(at.field), buf);
  }

  write(off: number, data: Uint8Array): void {
    const at = classifyV1Access(off, data.length, this.dataOffset, this.size);
    if (at.kind === 'window') this.window.set(data, at.start);
    else void writeV1Field(at.field, data, { deviceState: (v) => this.setDeviceState(v), dataSize: (n) => this.writeDataSize(n) });
  }

  private readField(field: FieldName): bigint {
    switch (field) {
      case 'device_state':
        return BigInt(this.deviceState);
      case 'reserved':
        return 0n;
      case 'pending_bytes':
        if (!this.stream) return 0n;
        // Step f of the save sequence: reading pending_bytes releases the consumed chunk.
        this.streamPos += this.staged;
        this.staged = 0;
        return BigInt(this.stream.length - this.streamPos);
      case 'data_offset':
        if (this.stream && this.staged === 0) {
          // Step b: the trigger; stage the next chunk in the window.
          this.staged = Math.min(this.window.length, this.stream.length - this.streamPos);
          this.window.set(this.stream.subarray(this.streamPos, this.streamPos + this.staged));
        }
        return BigInt(this.dataOffset);
      case 'data_size':
        return BigInt(this.stream ? this.staged : 0);
    }
  }

  /** Resume step c: the first `value` window bytes are appended to the resume data. */
  private writeDataSize(value: bigint): void {
    if ((this.deviceState & V1_MASK) !== V1_RESUMING || !this.resumeBuf)
      throw new MigrationError('EINVAL', 'data_size written outside RESUMING');
    const n = Number(value);
    if (n > this.window.length) throw new MigrationError('EINVAL', `data_size ${n} larger than the window`);
    if (this.resumeLen + n > this.resumeBuf.length) throw new MigrationError('ENOMEM', 'resume data too long');
    this.resumeBuf.set(this.window.subarray(0, n), this.resumeLen);
    this.resumeLen += n;
  }

  private setDeviceState(value: number): void {
    if (!v1IsValid(value)) throw new MigrationError('EINVAL', `invalid v1 device_state ${value.toString(2)}b`);
    const old = this.deviceState & V1_MASK;
    const low = value & V1_MASK;
    if (old === V1_RESUMING && low !== V1_RESUMING) {
      // Leaving RESUMING applies the data; on failure the state stays (the v1 uAPI's rule).
      const buf = this.resumeBuf!;
      const size = this.model.dataSize();
      const v = new DataView(buf.buffer);
      if (this.resumeLen !== size || v.getBigUint64(0, true) !== MTTY_MAGIC || v.getUint32(16, true) !== this.model.nrPorts) {
        throw new MigrationError('EINVAL', `resume data rejected (${this.resumeLen} of ${size} bytes)`);
      }
      this.model.loadPorts(buf);
      this.resumeBuf = null;
    }
    if (low & V1_SAVING && !(old & V1_SAVING)) {
      const s = new Uint8Array(this.model.dataSize());
      putMttyHeader(s, this.model.nrPorts);
      this.model.savePorts(s);
      this.stream = s;
      this.streamPos = 0;
      this.staged = 0;
    } else if (!(low & V1_SAVING)) {
      this.stream = null;
      this.staged = 0;
    }
    if (low === V1_RESUMING && old !== V1_RESUMING) {
      this.resumeBuf = new Uint8Array(this.model.dataSize());
      this.resumeLen = 0;
    }
    this.deviceState = value >>> 0;
  }
}
