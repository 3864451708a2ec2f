// Differential suite, v1 face: SimV1Region (the reference v1 driver) against
// LegacyRegionOverV2(SimV2Driver) for each of the four v2 flag sets, over
// random command sequences (translate/differential/v1-face.ts). Seeded: DIFF_SEED
// picks the seed (default fixed), DIFF_RUNS the sequences per pairing
// (default 1000). A failure prints the seed, fast-check's replay path and the
// shrunk command sequence.
import { differentialSuite } from './support/differential-suite.js';

differentialSuite('v1 face', ['v1-stop-copy', 'v1-p2p', 'v1-pre-copy', 'v1-all'], 'state write EINVAL');
