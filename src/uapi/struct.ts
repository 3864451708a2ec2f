// One declarative description per C struct: field -> [type, offset]. The same
// description drives encode/decode and the ABI table checked against gcc.
import { MigrationError } from './errors.js';

/** 'nested' marks an embedded struct or a flexible array: in the layout, not in the codec. */
export type FieldType = 'u8' | 'u16' | 'u32' | 's32' | 'u64' | 'nested';
type ScalarType = Exclude<FieldType, 'nested'>;
type JsOf<T extends FieldType> = T extends 'u64' ? bigint : number;
export type FieldMap = Record<string, readonly [FieldType, number]>;
export type Decoded<F extends FieldMap> = {
  [K in keyof F as F[K][0] extends 'nested' ? never : K]: JsOf<F[K][0]>;
};

export interface StructLayout {
  size: number;
  offsets: Record<string, number>;
}

export class CStruct<F extends FieldMap> {
  constructor(
    readonly name: string,
    readonly size: number,
    readonly fields: F,
  ) {}

  /** Decode the struct found at `at`; EINVAL when the buffer is too short. */
  decode(buf: Uint8Array, at = 0): Decoded<F> {
    if (at < 0 || at + this.size > buf.length) {
      throw new MigrationError('EINVAL', `${this.name}: need ${this.size} bytes at ${at}, have ${buf.length - at}`);
    }
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const out: Record<string, number | bigint> = {};
    for (const [field, [type, off]] of Object.entries(this.fields)) {
      if (type !== 'nested') out[field] = readField(view, at + off, type);
    }
    return out as Decoded<F>;
  }

  /** Encode into `buf` (a fresh zeroed buffer of `size` by default); missing fields stay as they are. */
  encode(values: Partial<Decoded<F>>, buf: Uint8Array = new Uint8Array(this.size), at = 0): Uint8Array {
    if (at < 0 || at + this.size > buf.length) {
      throw new MigrationError('EINVAL', `${this.name}: need ${this.size} bytes at ${at}`);
    }
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    for (const [field, value] of Object.entries<number | bigint | undefined>(values)) {
      const def = this.fields[field];
      if (def === undefined || def[0] === 'nested') throw new MigrationError('EINVAL', `${this.name} has no field ${field}`);
      if (value !== undefined) writeField(view, at + def[1], def[0], value);
    }
    return buf;
  }

  layout(): StructLayout {
    const offsets: Record<string, number> = {};
    for (const [field, [, off]] of Object.entries(this.fields)) offsets[field] = off;
    return { size: this.size, offsets };
  }
}

function readField(view: DataView, off: number, type: ScalarType): number | bigint {
  switch (type) {
    case 'u8':
      return view.getUint8(off);
    case 'u16':
      return view.getUint16(off, true);
    case 'u32':
      return view.getUint32(off, true);
    case 's32':
      return view.getInt32(off, true);
    case 'u64':
      return view.getBigUint64(off, true);
  }
}

function writeField(view: DataView, off: number, type: ScalarType, value: number | bigint): void {
  switch (type) {
    case 'u8':
      view.setUint8(off, Number(value));
      return;
    case 'u16':
      view.setUint16(off, Number(value), true);
      return;
    case 'u32':
      view.setUint32(off, Number(value) >>> 0, true);
      return;
    case 's32':
      view.setInt32(off, Number(value), true);
      return;
    case 'u64':
      view.setBigUint64(off, BigInt(value), true);
      return;
  }
}
