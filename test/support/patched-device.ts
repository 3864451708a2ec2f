// A MigrationDevice that forwards to `inner` except for the calls given: a
// test's way to make one call misbehave the way a driver could.
import type { MigrationDevice } from '../../src/v2/contracts.js';

export function patched(inner: MigrationDevice, over: Partial<MigrationDevice>): MigrationDevice {
  return {
    migrationFlags: () => inner.migrationFlags(),
    getState: () => inner.getState(),
    setState: (t) => inner.setState(t),
    stopCopySize: () => inner.stopCopySize(),
    reset: () => inner.reset(),
    close: () => inner.close(),
    ...over,
  };
}
