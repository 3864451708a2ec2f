// A BridgeServer in a private directory, serving simulated v2 devices
// (SimV2Driver, one per registered name), with every event recorded.
import { tmpdir } from 'node:os';
import { BridgeServer, type BridgeEvent, type BridgeServerOptions } from '../../src/bridge/bridge-server.js';
import type { DeviceCandidate, DeviceSource } from '../../src/bridge/device-source.js';
import { makePrivateDir, type PrivateDir } from '../../src/bridge/private-dir.js';
import { SimDevice } from '../../src/sim/sim-device.js';
import { SimV2Driver } from '../../src/sim/sim-v2-driver.js';
import type { MigrationDevice } from '../../src/v2/contracts.js';
import { MigFlags, type MigState, stateName } from '../../src/v2/states.js';

export interface SimEntry {
  sim: SimDevice;
  driver: SimV2Driver;
  /** Every single arc the driver walked, "FROM>TO". */
  arcs: string[];
  /** Resets the driver did. */
  resets: number;
  /** Times the bridge closed its handle on the device (its copy of the fd). */
  closes: number;
  /** Times the bridge opened it (its first touch), and let a candidate go untouched. */
  opens: number;
  discards: number;
}

export interface BridgeRig {
  dir: PrivateDir;
  server: BridgeServer;
  sims: Map<string, SimEntry>;
  events: BridgeEvent[];
  close(): Promise<void>;
}

export const SIM_SIZE = 20_000;

/** A simulated device's size and page size (default: SIM_SIZE bytes in 512-byte pages). */
export interface SimShape {
  size: number;
  pageSize: number;
}
const SMALL: SimShape = { size: SIM_SIZE, pageSize: 512 };
const seedOf = (name: string) => [...name].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);

/** The device a name stands for: made on first use, the same driver on every later registration. */
export function simEntry(
  sims: Map<string, SimEntry>,
  name: string,
  flags = MigFlags.STOP_COPY | MigFlags.PRE_COPY | MigFlags.P2P,
  shape = SMALL,
): SimEntry {
  let e = sims.get(name);
  if (!e) {
    const sim = new SimDevice({ size: shape.size, seed: seedOf(name), pageSize: shape.pageSize });
    const arcs: string[] = [];
    const driver = new SimV2Driver(sim, { flags, onArc: (a: MigState, b: MigState) => arcs.push(`${stateName(a)}>${stateName(b)}`) });
    e = { sim, driver, arcs, resets: 0, closes: 0, opens: 0, discards: 0 };
    const entry = e;
    const reset = driver.reset.bind(driver);
    driver.reset = async () => {
      entry.resets++;
      await reset();
    };
    sims.set(name, e);
  }
  return e;
}

export async function bridgeRig(options: Partial<BridgeServerOptions> & { flags?: number; sim?: SimShape } = {}): Promise<BridgeRig> {
  const dir = makePrivateDir([tmpdir()]);
  const sims = new Map<string, SimEntry>();
  const events: BridgeEvent[] = [];
  const simSource: DeviceSource = ({ name }) => Promise.resolve(simCandidate(name, simEntry(sims, name, options.flags, options.sim)));
  const server = await BridgeServer.listen({
    dir: dir.path,
    windowSize: 1024,
    mmap: true,
    devices: simSource,
    commandPid: () => process.pid,
    ...options,
    onEvent: (e) => {
      events.push(e);
      options.onEvent?.(e);
    },
  });
  return {
    dir,
    server,
    sims,
    events,
    async close() {
      await server.close();
      dir.remove();
    },
  };
}

/** A registration of a simulated device, keyed by its name; open() and discard() are counted. */
export function simCandidate(name: string, entry: SimEntry): DeviceCandidate {
  return {
    key: name,
    label: name || '(unnamed)',
    open: () => {
      entry.opens++;
      return Promise.resolve(deviceHandle(entry));
    },
    discard: () => {
      entry.discards++;
    },
  };
}

/**
 * The bridge's handle on a simulated device: the driver outlives a
 * connection as a device outlives the bridge's copy of its fd, so close()
 * only counts.
 */
export function deviceHandle(entry: SimEntry): MigrationDevice {
  const d = entry.driver;
  return {
    migrationFlags: () => d.migrationFlags(),
    getState: () => d.getState(),
    setState: (s: MigState) => d.setState(s),
    stopCopySize: () => d.stopCopySize(),
    reset: () => d.reset(),
    close: async () => {
      entry.closes++;
    },
  };
}
