// Calls on one device are serialized, as the kernel's state mutex serializes
// them: a second call starts only after the first has settled.
//
// Why the idle fast path: a register access on a v1 face costs a few hundred
// nanoseconds of work, and chaining every call through `tail.then()` added two
// promises and a microtask hop to each (several µs per access, issue 14 f).
// When nothing runs or waits, the task starts at once, inside run(), instead
// of one microtask later; tasks still run one at a time, in the order given.
export class SerialQueue {
  /** Tasks started and not yet settled, plus tasks waiting. */
  private depth = 0;
  /** Settles when the last task queued so far has settled; null when that is the running task itself. */
  private tail: Promise<unknown> | null = null;
  /** The running task started on the fast path (what the next task waits for), or null. */
  private current: Promise<unknown> | null = null;
  /** Lets go of tasks queued while a fast-path task was still in its synchronous part. */
  private release: (() => void) | null = null;
  private readonly leave = (): void => {
    if (--this.depth === 0) {
      this.tail = null;
      this.current = null;
    }
  };

  /** Run `task` (sync or async) once every earlier task has settled; its result or error is the promise's. */
  run<T>(task: () => T | Promise<T>): Promise<T> {
    if (this.depth > 0) return this.enqueue(task);
    this.depth = 1;
    let out: T | Promise<T>;
    try {
      out = task();
    } catch (err) {
      // A task may throw anything; its promise rejects with exactly what was thrown, as a chained task's would.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      out = Promise.reject(err);
    }
    if (isThenable(out)) {
      const settled = Promise.resolve(out);
      settled.then(this.leave, this.leave);
      this.current = settled;
      this.open(settled);
      return settled;
    }
    this.open(null);
    this.leave();
    return Promise.resolve(out);
  }

  private enqueue<T>(task: () => T | Promise<T>): Promise<T> {
    this.depth++;
    // Queued during a fast-path task's synchronous part: wait for a gate opened once it has settled.
    this.tail ??= this.current ?? new Promise<void>((resolve) => (this.release = resolve));
    const result = this.tail.then(task, task);
    this.tail = result.then(this.leave, this.leave);
    return result;
  }

  /** The fast-path task's synchronous part is over: a gate set up meanwhile opens when `settled` has settled. */
  private open(settled: Promise<unknown> | null): void {
    const release = this.release;
    if (!release) return;
    this.release = null;
    if (settled) settled.then(release, release);
    else release();
  }
}

function isThenable<T>(x: T | Promise<T>): x is Promise<T> {
  return typeof (x as { then?: unknown } | null)?.then === 'function';
}
