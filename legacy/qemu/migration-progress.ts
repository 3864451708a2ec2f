// What both QEMU clients report while they move a device's state, and the
// one way they run a recovery step after a failure.

export type MigrationPhase = 'setup' | 'precopy' | 'stopcopy' | 'resume' | 'done';

export interface MigrationProgress {
  phase: MigrationPhase;
  /** Device bytes moved so far (the opaque data, not the file's framing). */
  bytes: number;
  /** Expected device bytes in total, from the device's estimates; undefined when loading. */
  estimate?: number;
}

/** Run a recovery step whose own failure is not reported: the first error is. */
export async function ignoreFailure(step: () => Promise<unknown>): Promise<void> {
  try {
    await step();
  } catch {
    // already failing: the first error is the one reported
  }
}
