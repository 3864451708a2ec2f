// Dirty-page log of one saving session: pages below `boundary` (already sent
// by the first pass) that the device modified since they were last sent.
// Pages at or past the boundary need no mark: the first pass will send them
// as they are when it gets there.
import type { StateGeometry } from './state-geometry.js';

export class DirtyTracker {
  /** One byte per page (1 = dirty), so the next dirty page is a native indexOf. */
  private readonly dirty: Uint8Array;
  private scanFrom = 0;
  private pages = 0;
  private bytes = 0;
  /** Pages below this index have been sent once; the saver advances it. */
  boundary = 0;
  /** Stop-copy: the device no longer changes, nothing more is recorded. */
  frozen = false;

  constructor(private readonly geometry: StateGeometry) {
    this.dirty = new Uint8Array(geometry.pageCount);
  }

  get dirtyPages(): number {
    return this.pages;
  }

  /** Stream bytes needed to re-send every dirty page. */
  get dirtyBytes(): number {
    return this.bytes;
  }

  mark(index: number): void {
    if (this.frozen || index >= this.boundary || this.dirty[index] === 1) return;
    this.dirty[index] = 1;
    this.pages++;
    this.bytes += this.geometry.recordBytes(index);
  }

  /** Take the next dirty page (clearing its mark), or -1 when none is left. */
  takeNext(): number {
    if (this.pages === 0) return -1;
    let index = this.dirty.indexOf(1, this.scanFrom);
    if (index < 0) index = this.dirty.indexOf(1);
    this.dirty[index] = 0;
    this.pages--;
    this.bytes -= this.geometry.recordBytes(index);
    this.scanFrom = index + 1;
    return index;
  }
}
