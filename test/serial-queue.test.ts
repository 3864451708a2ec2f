// SerialQueue (src/v2/serial.ts): one task at a time, in the order given, with
// the idle fast path (a task on an idle queue starts inside run()).
import { describe, expect, it } from 'vitest';
import { SerialQueue } from '../src/v2/serial.js';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('SerialQueue', () => {
  it('an idle queue starts the task inside run(); its result is the promise', async () => {
    const q = new SerialQueue();
    let started = false;
    const p = q.run(() => {
      started = true;
      return 7;
    });
    expect(started).toBe(true);
    expect(await p).toBe(7);
  });

  it('a task queued behind an async task starts only after it settled, in order', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    let finishA!: () => void;
    const a = q.run(async () => {
      log.push('a start');
      await new Promise<void>((resolve) => (finishA = resolve));
      log.push('a end');
    });
    const b = q.run(() => log.push('b'));
    const c = q.run(async () => {
      await tick();
      log.push('c');
    });
    await tick();
    expect(log).toEqual(['a start']);
    finishA();
    await Promise.all([a, b, c]);
    expect(log).toEqual(['a start', 'a end', 'b', 'c']);
  });

  it('a task queued from inside a running task (its synchronous part) runs after it, not inside it', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    let inner: Promise<unknown> | undefined;
    await q.run(async () => {
      inner = q.run(() => log.push('inner'));
      log.push('outer sync');
      await tick();
      log.push('outer end');
    });
    await inner;
    expect(log).toEqual(['outer sync', 'outer end', 'inner']);
  });

  it('a throwing or rejecting task rejects its own promise only; the queue goes on', async () => {
    const q = new SerialQueue();
    const boom = new Error('boom');
    const a = q.run(() => {
      throw boom;
    });
    const b = q.run(() => Promise.reject(new Error('later')));
    const c = q.run(() => 'c');
    await expect(a).rejects.toBe(boom);
    await expect(b).rejects.toThrow('later');
    expect(await c).toBe('c');
    // idle again: the next task takes the fast path
    let started = false;
    const d = q.run(() => (started = true));
    expect(started).toBe(true);
    await d;
  });

  it('a task returning a foreign thenable holds the queue until it settles', async () => {
    const q = new SerialQueue();
    const log: string[] = [];
    let settle!: () => void;
    const thenable = {
      then(onFulfilled: (v: string) => void) {
        settle = () => onFulfilled('t');
      },
    };
    const a = q.run(() => thenable as unknown as Promise<string>);
    const b = q.run(() => log.push('b'));
    await tick();
    expect(log).toEqual([]);
    settle();
    expect(await a).toBe('t');
    await b;
    expect(log).toEqual(['b']);
  });
});
