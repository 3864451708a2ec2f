// Ctrl-C or kill during a command that leaves files behind (a partial save, a
// private copy of standard input): remove them, then let the signal end the
// process as it would have.
export async function cleanUpOnInterrupt<T>(cleanupSync: () => void, body: () => Promise<T>): Promise<T> {
  const onSignal = (signal: NodeJS.Signals) => {
    cleanupSync();
    process.kill(process.pid, signal);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await body();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
