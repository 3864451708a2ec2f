// Calls on one device are serialized, as the kernel's state mutex serializes
// them: a second call starts only after the first has settled.
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  /** Run `task` (sync or async) once every earlier task has settled; its result or error is the promise's. */
  run<T>(task: () => T | Promise<T>): Promise<T> {
    const result = this.tail.then(task, task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
