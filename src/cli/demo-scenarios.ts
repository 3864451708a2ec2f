// The three migrations `vfio-mig demo` shows, on simulated devices:
//  1. QEMU 7.2 (v1 client) migrates a v2-only device through LegacyRegionOverV2;
//  2. QEMU 8+ (v2 client) migrates a v1-only device through V2DeviceOverLegacy;
//  3. across protocols: saved by QEMU 7.2 through the translator, resumed by
//     QEMU 8+ directly on a v2 device (an old host handing a VM to a new one).
import type { PassThrough } from 'node:stream';
import { loadV1, saveV1 } from '../../legacy/qemu/v1-client.js';
import { SimV1Region } from '../../legacy/sim-v1-region.js';
import { SimDevice } from '../sim/sim-device.js';
import { SimV2Driver } from '../sim/sim-v2-driver.js';
import { LegacyRegionOverV2 } from '../../translate/legacy-region-over-v2.js';
import { V2DeviceOverLegacy } from '../../translate/v2-device-over-legacy.js';
import { loadV2, saveV2, type MigrationProgress } from '../../legacy/qemu/v2-client.js';
import type { TransferSides } from './transfer.js';

export interface DemoOptions {
  size: number;
  window: number;
  flags: number;
  rounds: number;
  seed: number;
  /** Pages the running source dirties between pre-copy rounds. */
  work: number;
}

export interface Scenario {
  direction: string;
  source: SimDevice;
  destination: SimDevice;
  sides: TransferSides;
}

type Progress = (p: MigrationProgress) => void;

function devices(o: DemoOptions): { source: SimDevice; destination: SimDevice } {
  // Different seeds: the destination starts out with other content, so equal fingerprints mean the state arrived.
  return { source: new SimDevice({ size: o.size, seed: o.seed }), destination: new SimDevice({ size: o.size, seed: (o.seed + 1) >>> 0 }) };
}

/** QEMU 7.2 takes one window-sized chunk per iterate call; a "round" is one pass over the state. */
function v1Save(region: LegacyRegionOverV2, source: SimDevice, o: DemoOptions) {
  const chunksPerRound = Math.max(1, Math.ceil(o.size / o.window));
  return (out: PassThrough, onProgress: Progress) =>
    saveV1(region, out, {
      precopyRounds: o.rounds * chunksPerRound,
      betweenRounds: (i) => {
        if ((i + 1) % chunksPerRound === 0) source.step(o.work);
      },
      windowAccess: 'mmap',
      onProgress,
    });
}

export function demoScenarios(o: DemoOptions): Scenario[] {
  const v1OverV2 = devices(o);
  const v2OverV1 = devices(o);
  const cross = devices(o);
  const v2Save = (device: V2DeviceOverLegacy | SimV2Driver, source: SimDevice) => (out: PassThrough, onProgress: Progress) =>
    saveV2(device, out, { precopyRounds: o.rounds, betweenRounds: () => void source.step(o.work), onProgress });
  return [
    {
      direction: 'QEMU 7.2 (v1) -> v2 device',
      ...v1OverV2,
      sides: {
        save: v1Save(
          new LegacyRegionOverV2(new SimV2Driver(v1OverV2.source, { flags: o.flags }), { windowSize: o.window }),
          v1OverV2.source,
          o,
        ),
        load: (input) =>
          loadV1(new LegacyRegionOverV2(new SimV2Driver(v1OverV2.destination, { flags: o.flags }), { windowSize: o.window }), input, {
            windowAccess: 'mmap',
          }),
      },
    },
    {
      direction: 'QEMU 8+ (v2) -> v1 device',
      ...v2OverV1,
      sides: {
        save: v2Save(new V2DeviceOverLegacy(new SimV1Region(v2OverV1.source, { windowSize: o.window })), v2OverV1.source),
        load: (input) => loadV2(new V2DeviceOverLegacy(new SimV1Region(v2OverV1.destination, { windowSize: o.window })), input),
      },
    },
    {
      direction: 'saved over v1, resumed over v2',
      ...cross,
      sides: {
        save: v1Save(new LegacyRegionOverV2(new SimV2Driver(cross.source, { flags: o.flags }), { windowSize: o.window }), cross.source, o),
        load: (input) => loadV2(new SimV2Driver(cross.destination, { flags: o.flags }), input),
      },
    },
  ];
}
