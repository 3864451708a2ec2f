// Reads the migration file format (stream-format.ts) from a Node Readable (or
// any async iterable of byte chunks), one chunk at a time: the events' data
// pieces are views into the chunk being decoded. The input must end right
// after the final section. If decoding fails or the consumer stops early, the
// input iterator is returned (a Readable is then destroyed).
import type { Readable } from 'node:stream';
import { MigrationError, asMigrationError } from '../../src/uapi/errors.js';
import { MigStreamDecoder, type MigStreamEvent } from './stream-format.js';

export async function* readMigStream(input: Readable | AsyncIterable<Uint8Array>): AsyncGenerator<MigStreamEvent> {
  const decoder = new MigStreamDecoder();
  const chunks = input[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  let inputEnded = false;
  try {
    for (;;) {
      let next: IteratorResult<unknown>;
      try {
        next = await chunks.next();
      } catch (err) {
        inputEnded = true; // a failed iterator is finished
        throw asMigrationError(err, 'EIO');
      }
      if (next.done) {
        inputEnded = true;
        break;
      }
      if (!(next.value instanceof Uint8Array)) {
        throw new MigrationError('EINVAL', 'migration input must be a byte stream (no encoding, not object mode)');
      }
      yield* decoder.push(next.value);
    }
    decoder.end();
  } finally {
    if (!inputEnded) await chunks.return?.();
  }
}
