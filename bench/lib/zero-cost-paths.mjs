// Whole saves and resumes over the zero-cost devices, by name, for the benches
// that run one path in a process of its own (memory.mjs, profile.mjs):
//   v1-face    saveV1 / loadV1 through LegacyRegionOverV2 over a zero-cost v2 device
//   v2-face    saveV2 / loadV2 through V2DeviceOverLegacy over a zero-cost v1 region
//   direct-v2  saveV2 / loadV2 on the zero-cost v2 device
//   direct-v1  saveV1 / loadV1 on the zero-cost v1 region
// Each takes (state bytes, window) and returns the device bytes it moved.
import { LegacyRegionOverV2, loadV1, loadV2, saveV1, saveV2, V2DeviceOverLegacy } from '../../dist/index.js';
import { BenchV2Device } from './bench-v2-device.mjs';
import { nullSink, zeroCostFile } from './migration-files.mjs';
import { ZeroCostV1Region } from './zero-cost-v1-region.mjs';
import { zeroCostStreams } from './zero-cost-streams.mjs';

const v1Opts = { precopyRounds: 0, windowAccess: 'mmap', reuseBuffer: true }; // the null sink keeps no buffer
const v2Opts = (window) => ({ precopyRounds: 0, maxReadBytes: window, reuseBuffer: true });

export const ZERO_COST_PATHS = {
  'v1-face': {
    save: async (size, w) =>
      (await saveV1(new LegacyRegionOverV2(new BenchV2Device(zeroCostStreams(size)), { windowSize: w }), nullSink(), v1Opts)).stopCopyBytes,
    resume: async (size, w) =>
      (await loadV1(new LegacyRegionOverV2(new BenchV2Device(zeroCostStreams(size)), { windowSize: w }), zeroCostFile(size, w), v1Opts))
        .deviceBytes,
  },
  'v2-face': {
    save: async (size, w) => (await saveV2(new V2DeviceOverLegacy(new ZeroCostV1Region(size, w)), nullSink(), v2Opts(w))).stopCopyBytes,
    resume: async (size, w) => (await loadV2(new V2DeviceOverLegacy(new ZeroCostV1Region(size, w)), zeroCostFile(size, w))).deviceBytes,
  },
  'direct-v2': {
    save: async (size, w) => (await saveV2(new BenchV2Device(zeroCostStreams(size)), nullSink(), v2Opts(w))).stopCopyBytes,
    resume: async (size, w) => (await loadV2(new BenchV2Device(zeroCostStreams(size)), zeroCostFile(size, w))).deviceBytes,
  },
  'direct-v1': {
    save: async (size, w) => (await saveV1(new ZeroCostV1Region(size, w), nullSink(), v1Opts)).stopCopyBytes,
    resume: async (size, w) => (await loadV1(new ZeroCostV1Region(size, w), zeroCostFile(size, w), v1Opts)).deviceBytes,
  },
};
