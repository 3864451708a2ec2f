// vfio_region_info with its capability chain: what VFIO_DEVICE_GET_REGION_INFO
// returns. `next` offsets count from the start of the info buffer; 0 ends the chain.
import { MigrationError } from './errors.js';
import { VFIO_REGION_INFO_CAP_SPARSE_MMAP, VFIO_REGION_INFO_CAP_TYPE, VFIO_REGION_INFO_FLAG_CAPS } from './constants.js';
import {
  vfio_info_cap_header,
  vfio_region_info,
  vfio_region_info_cap_sparse_mmap,
  vfio_region_info_cap_type,
  vfio_region_sparse_mmap_area,
} from './structs.js';

export interface CapEntry {
  id: number;
  version: number;
  offset: number;
}
export interface SparseArea {
  offset: bigint;
  size: bigint;
}

export interface RegionInfo {
  index: number;
  flags: number;
  size: bigint;
  offset: bigint;
  /** argsz the kernel asked for: larger than the buffer means "retry bigger". */
  argsz: number;
  type?: { type: number; subtype: number };
  sparseAreas?: SparseArea[];
}

/** Walk a capability chain; rejects loops, backward links and entries past the buffer. */
export function parseCapChain(buf: Uint8Array, first: number): CapEntry[] {
  const caps: CapEntry[] = [];
  let at = first;
  while (at !== 0) {
    if (caps.length > 64) throw new MigrationError('EINVAL', 'capability chain too long');
    const hdr = vfio_info_cap_header.decode(buf, at);
    caps.push({ id: hdr.id, version: hdr.version, offset: at });
    if (hdr.next !== 0 && hdr.next <= at) throw new MigrationError('EINVAL', `capability chain loops at ${at}`);
    at = hdr.next;
  }
  return caps;
}

export function decodeRegionInfo(buf: Uint8Array): RegionInfo {
  const fixed = vfio_region_info.decode(buf);
  const info: RegionInfo = {
    index: fixed.index,
    flags: fixed.flags,
    size: fixed.size,
    offset: fixed.offset,
    argsz: fixed.argsz,
  };
  // The chain is only there when it fit: argsz within the buffer and the CAPS flag set.
  if (!(fixed.flags & VFIO_REGION_INFO_FLAG_CAPS) || fixed.cap_offset === 0 || fixed.argsz > buf.length) {
    return info;
  }
  for (const cap of parseCapChain(buf, fixed.cap_offset)) {
    if (cap.id === VFIO_REGION_INFO_CAP_TYPE) {
      const t = vfio_region_info_cap_type.decode(buf, cap.offset);
      info.type = { type: t.type, subtype: t.subtype };
    } else if (cap.id === VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
      const s = vfio_region_info_cap_sparse_mmap.decode(buf, cap.offset);
      info.sparseAreas = [];
      for (let i = 0; i < s.nr_areas; i++) {
        const a = vfio_region_sparse_mmap_area.decode(buf, cap.offset + 16 + i * 16);
        info.sparseAreas.push({ offset: a.offset, size: a.size });
      }
    }
  }
  return info;
}

/**
 * Encode a region info answer the way the kernel does for a caller whose buffer
 * holds `bufSize` bytes: the fixed part always, the chain only if it fits
 * (otherwise argsz grows and cap_offset stays 0, vfio_info_add_capability style).
 */
export function encodeRegionInfo(info: Omit<RegionInfo, 'argsz'>, bufSize: number): Uint8Array {
  const caps: Uint8Array[] = [];
  if (info.type) {
    caps.push(vfio_region_info_cap_type.encode({ type: info.type.type, subtype: info.type.subtype }));
    vfio_info_cap_header.encode({ id: VFIO_REGION_INFO_CAP_TYPE, version: 1 }, caps[caps.length - 1]);
  }
  if (info.sparseAreas) {
    const areas = info.sparseAreas;
    const cap = new Uint8Array(16 + areas.length * 16);
    vfio_region_info_cap_sparse_mmap.encode({ nr_areas: areas.length }, cap);
    vfio_info_cap_header.encode({ id: VFIO_REGION_INFO_CAP_SPARSE_MMAP, version: 1 }, cap);
    areas.forEach((a, i) => vfio_region_sparse_mmap_area.encode(a, cap, 16 + i * 16));
    caps.push(cap);
  }
  const total = vfio_region_info.size + caps.reduce((n, c) => n + c.length, 0);
  const fits = caps.length > 0 && total <= bufSize;
  const out = new Uint8Array(Math.max(bufSize, vfio_region_info.size));
  vfio_region_info.encode(
    {
      argsz: caps.length ? total : vfio_region_info.size,
      flags: info.flags | (caps.length ? VFIO_REGION_INFO_FLAG_CAPS : 0),
      index: info.index,
      cap_offset: fits ? vfio_region_info.size : 0,
      size: info.size,
      offset: info.offset,
    },
    out,
  );
  if (fits) {
    let at = vfio_region_info.size;
    caps.forEach((cap, i) => {
      out.set(cap, at);
      const next = i + 1 < caps.length ? at + cap.length : 0;
      vfio_info_cap_header.encode({ next }, out, at);
      at += cap.length;
    });
  }
  return out;
}
