// Sizes derived from (size, pageSize): page count, the short last page, and
// how many stream bytes the records of a range of pages take.
import { MigrationError } from '../uapi/errors.js';
import { RECORD_HEADER_BYTES, STATE_HEADER_BYTES, STATE_TRAILER_BYTES } from './state-format.js';

export const MAX_PAGE_SIZE = 1 << 24;
/** pageIndex 0xffffffff is the stream's end marker. */
export const MAX_PAGE_COUNT = 0xfffffffe;

export class StateGeometry {
  readonly pageCount: number;
  readonly lastPageLength: number;

  constructor(
    readonly size: number,
    readonly pageSize: number,
  ) {
    if (!Number.isSafeInteger(size) || size < 1) throw new MigrationError('EINVAL', `device size must be a positive integer, got ${size}`);
    if (!Number.isInteger(pageSize) || pageSize < 8 || pageSize > MAX_PAGE_SIZE || pageSize % 8 !== 0) {
      throw new MigrationError('EINVAL', `page size must be a multiple of 8 in [8, ${MAX_PAGE_SIZE}], got ${pageSize}`);
    }
    this.pageCount = Math.ceil(size / pageSize);
    if (this.pageCount > MAX_PAGE_COUNT) throw new MigrationError('EINVAL', `${this.pageCount} pages is too many; use a larger page size`);
    this.lastPageLength = size - (this.pageCount - 1) * pageSize;
  }

  pageLength(index: number): number {
    return index === this.pageCount - 1 ? this.lastPageLength : this.pageSize;
  }

  recordBytes(index: number): number {
    return RECORD_HEADER_BYTES + this.pageLength(index);
  }

  /** Stream bytes of one record for each page in [first, pageCount). */
  recordBytesFrom(first: number): number {
    if (first >= this.pageCount) return 0;
    const pages = this.pageCount - first;
    return pages * RECORD_HEADER_BYTES + (pages - 1) * this.pageSize + this.lastPageLength;
  }

  /** A stream that sends every page exactly once. */
  get fullStreamBytes(): number {
    return STATE_HEADER_BYTES + this.recordBytesFrom(0) + STATE_TRAILER_BYTES;
  }
}
