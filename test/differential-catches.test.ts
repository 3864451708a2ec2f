// The differential comparison can fail: deliberately broken translators are
// caught, and the report carries the seed, the replay path and the shrunk
// command sequence (what `vfio-mig diff` prints).
import { describe, expect, it } from 'vitest';
import type { LegacyRegion } from '../legacy/contracts.js';
import type { DataSession, MigrationDevice } from '../src/v2/contracts.js';
import { runDifferential } from '../translate/differential/run-differential.js';

/** A v1 face that forgets the reserved bits of device_state writes. */
function dropsReservedBits(r: LegacyRegion): LegacyRegion {
  return {
    get size() {
      return r.size;
    },
    readAt: (o, b) => r.readAt(o, b),
    writeAt: (o, d) => (o === 0 && d.length === 4 ? r.writeAt(o, Uint8Array.of(d[0] & 7, 0, 0, 0)) : r.writeAt(o, d)),
    reset: () => r.reset(),
    close: () => r.close(),
  };
}

/** A v1 face whose pending_bytes reads 0 after two chunks were triggered: docs/PROTOCOL.md §7 H4's silent truncation. */
function truncatesStopCopy(r: LegacyRegion): LegacyRegion {
  let chunks = 0;
  return {
    get size() {
      return r.size;
    },
    readAt: async (o, b) => {
      await r.readAt(o, b);
      if (o === 16 && b.length === 8) chunks++;
      if (o === 8 && b.length === 8 && chunks >= 2) b.fill(0);
    },
    writeAt: (o, d) => r.writeAt(o, d),
    reset: () => r.reset(),
    close: () => r.close(),
  };
}

/** A v2 face whose saving sessions drop the last byte of every read. */
function losesBytes(d: MigrationDevice): MigrationDevice {
  const wrapSession = (s: DataSession): DataSession => ({
    read: async (buf) => {
      const n = await s.read(buf);
      return n > 1 ? n - 1 : n;
    },
    write: (buf) => s.write(buf),
    precopyInfo: () => s.precopyInfo(),
    close: () => s.close(),
  });
  return {
    migrationFlags: () => d.migrationFlags(),
    getState: () => d.getState(),
    setState: async (t) => {
      const s = await d.setState(t);
      return s ? wrapSession(s) : null;
    },
    stopCopySize: () => d.stopCopySize(),
    reset: () => d.reset(),
    close: () => d.close(),
  };
}

describe('the differential comparison catches broken translators', () => {
  it('v1 face: lost reserved bits', async () => {
    const s = await runDifferential({ seed: 42, runs: 300, pairing: 'v1-pre-copy', wrapTranslated: { v1: dropsReservedBits } });
    expect(s.passed).toBe(false);
    expect(s.report).toMatch(/seed: 42/);
    expect(s.report).toMatch(/Got error: DifferentialMismatch: device_state/);
    expect(s.counterexample?.[0]).toMatch(/^config /);
    expect(s.counterexample?.some((c) => c.startsWith('WriteState'))).toBe(true);
  });

  it('v1 face: a stop-copy stream cut short by pending_bytes 0', async () => {
    const s = await runDifferential({ seed: 43, runs: 500, pairing: 'v1-stop-copy', wrapTranslated: { v1: truncatesStopCopy } });
    expect(s.passed).toBe(false);
  });

  it('v2 face: bytes lost from the saving stream', async () => {
    const s = await runDifferential({ seed: 44, runs: 300, pairing: 'v2-pre-copy', wrapTranslated: { v2: losesBytes } });
    expect(s.passed).toBe(false);
    expect(s.report).toMatch(/DifferentialMismatch/);
  });

  it('the unwrapped translators agree on the same seeds', async () => {
    for (const pairing of ['v1-pre-copy', 'v1-stop-copy', 'v2-pre-copy'] as const) {
      expect((await runDifferential({ seed: 42, runs: 300, pairing })).passed).toBe(true);
    }
  });
});
