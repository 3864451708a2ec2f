// Differential suite, v2 face: SimV2Driver against V2DeviceOverLegacy over
// SimV1Region (STOP_COPY|PRE_COPY, and STOP_COPY alone with precopy off),
// and the round trip V2DeviceOverLegacy(LegacyRegionOverV2(SimV2Driver))
// against the SimV2Driver it wraps (with and without PRE_COPY) (translate/differential/v2-face.ts). Seeded:
// DIFF_SEED / DIFF_RUNS as in differential-v1.test.ts.
import { differentialSuite } from './support/differential-suite.js';

differentialSuite('v2 face', ['v2-pre-copy', 'v2-stop-copy', 'v2-round-trip', 'v2-round-trip-stop-copy'], 'SET EINVAL');
