// What the bridge counts for one device, for the summary at exit: chunks and
// bytes saved and resumed (as the v1 user moved them: one data_size per
// chunk), the time the device spent in STOP_COPY (its share of the VM's
// downtime), failed register accesses, and resets out of ERROR.
export class DeviceStats {
  chunksSaved = 0;
  bytesSaved = 0;
  chunksResumed = 0;
  bytesResumed = 0;
  /** Register accesses and resets that failed (the v1 user saw an errno). */
  failedAccesses = 0;
  /** Times the device went to v2 ERROR and was reset (errorRecovery 'reset'). */
  errorResets = 0;
  private stopCopyTotal = 0;
  private stopCopySince: number | undefined;

  /** Milliseconds spent in STOP_COPY so far, including a stay not yet ended. */
  stopCopyMs(now = performance.now()): number {
    return this.stopCopyTotal + (this.stopCopySince === undefined ? 0 : now - this.stopCopySince);
  }

  enterStopCopy(now = performance.now()): void {
    this.stopCopySince ??= now;
  }

  leaveStopCopy(now = performance.now()): void {
    if (this.stopCopySince === undefined) return;
    this.stopCopyTotal += now - this.stopCopySince;
    this.stopCopySince = undefined;
  }

  toJSON(): Record<string, number> {
    return {
      chunksSaved: this.chunksSaved,
      bytesSaved: this.bytesSaved,
      chunksResumed: this.chunksResumed,
      bytesResumed: this.bytesResumed,
      stopCopyMs: Math.round(this.stopCopyMs() * 1000) / 1000,
      failedAccesses: this.failedAccesses,
      errorResets: this.errorResets,
    };
  }
}
