// Runs one migration: the source client saves into a pipe while the
// destination client loads from it, in one process, and measures it.
import { PassThrough } from 'node:stream';
import type { MigrationProgress } from '../../legacy/qemu/migration-progress.js';

export interface TransferSides {
  /** Save into `out` (not ending it); report progress. */
  save(
    out: PassThrough,
    onProgress: (p: MigrationProgress) => void,
  ): Promise<{ precopyBytes: number; stopCopyBytes: number; fileBytes: number }>;
  /** Load everything from `input`. */
  load(input: PassThrough): Promise<unknown>;
}

export interface TransferStats {
  fileBytes: number;
  precopyBytes: number;
  stopCopyBytes: number;
  /** Wall time from the source entering stop-and-copy until the destination finished loading. */
  stopCopyMs: number;
  totalMs: number;
  /** Device bytes per second over the whole transfer. */
  bytesPerSecond: number;
}

export async function runTransfer(sides: TransferSides, onProgress: (p: MigrationProgress) => void): Promise<TransferStats> {
  const pipe = new PassThrough({ highWaterMark: 4 << 20 });
  const started = performance.now();
  let stopCopyAt: number | undefined;
  const saving = sides
    .save(pipe, (p) => {
      if (p.phase === 'stopcopy' && stopCopyAt === undefined) stopCopyAt = performance.now();
      onProgress(p);
    })
    .finally(() => pipe.end());
  const loading = sides.load(pipe);
  // Whichever side fails first, stop the other: a dead reader must not leave the writer waiting forever.
  loading.catch((e) => pipe.destroy(e as Error));
  const [saved] = await Promise.all([saving, loading]);
  const ended = performance.now();
  const deviceBytes = saved.precopyBytes + saved.stopCopyBytes;
  return {
    fileBytes: saved.fileBytes,
    precopyBytes: saved.precopyBytes,
    stopCopyBytes: saved.stopCopyBytes,
    stopCopyMs: ended - (stopCopyAt ?? started),
    totalMs: ended - started,
    bytesPerSecond: deviceBytes / ((ended - started) / 1000),
  };
}
