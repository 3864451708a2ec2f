// Where the benches' migration files go and come from: a sink that drops
// what a save writes, a recorder that keeps it (in memory, or in a file for
// sizes that do not fit), a replay that hands the recorded chunks to a load
// as they were written (one record per chunk, as a socket delivers them),
// and the zero-cost device's file, generated without a save.
import { createReadStream, createWriteStream } from 'node:fs';
import { Writable } from 'node:stream';
import { encodeDataHeader, encodeMarker, encodeStreamEnd, encodeStreamStart, VfioMigFlag } from '../../dist/index.js';
import { patternBytes } from './pattern.mjs';

/** A Writable that takes every write at once and keeps nothing. */
export function nullSink() {
  return new Writable({ write: (_chunk, _enc, done) => done() });
}

/** A Writable that keeps every chunk it is given (the writer must not reuse them). */
export function memoryRecorder() {
  const chunks = [];
  const sink = new Writable({
    write: (chunk, _enc, done) => {
      chunks.push(chunk);
      done();
    },
  });
  return { sink, replay: () => replayChunks(chunks) };
}

/** A file-backed recorder for states too big for memory; replayed `chunkBytes` at a time. */
export function fileRecorder(path, chunkBytes) {
  return { sink: createWriteStream(path), replay: () => createReadStream(path, { highWaterMark: chunkBytes }) };
}

async function* replayChunks(chunks) {
  yield* chunks;
}

const records = new Map(); // recordBytes -> one full record (header + pattern), built once

/**
 * The migration file a save of a zero-cost device writes in `recordBytes`
 * records (stop-and-copy only): start, records, END_OF_STATE, final. Every
 * full record is the same buffer, built once per process: nothing is
 * generated per record or per file.
 */
export async function* zeroCostFile(streamBytes, recordBytes) {
  yield encodeStreamStart();
  if (!records.has(recordBytes)) records.set(recordBytes, Buffer.concat([encodeDataHeader(recordBytes), patternBytes(recordBytes)]));
  const full = records.get(recordBytes);
  let at = 0;
  for (; at + recordBytes <= streamBytes; at += recordBytes) yield full;
  if (at < streamBytes) yield Buffer.concat([encodeDataHeader(streamBytes - at), patternBytes(streamBytes - at, at)]);
  yield encodeMarker(VfioMigFlag.END_OF_STATE);
  yield encodeStreamEnd();
}
