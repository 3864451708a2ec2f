// Where the client models knowingly differ from the real QEMU recorded in
// test/fixtures/traces, with the reason; docs/qemu-oracle.md gives each one's
// evidence. trace-models.test.ts holds the models to this list exactly: a
// difference not listed fails, and so does a listed one that is gone.
export interface KnownDifference {
  /** The id docs/qemu-oracle.md uses. */
  id: string;
  /** The fixture. */
  scenario: string;
  /**
   * 'model': the model does not do what QEMU does (to be fixed in the model);
   * 'intentional': the model differs on purpose (the reason says why);
   * 'scenario': the test cannot play that part of QEMU (it has no RAM to migrate).
   */
  kind: 'model' | 'intentional' | 'scenario';
  /** The last step both did before it ('^': the start). */
  after: string;
  qemu: string[];
  model: string[];
  reason: string;
}

const FAILURE_POINT =
  "The first section of every QEMU iteration is RAM: the full pipe blocks QEMU in the RAM section, before vfio_save_iterate takes the device's pre-copy chunk, and that is where the killed reader fails the write and the cancel ends it. The model has no RAM: its output fails, or the cancel comes, only after its first round has taken the chunk.";
const FLAGS_AND_STATE =
  'saveV2 and loadV2 start with VFIO_DEVICE_FEATURE GET MIGRATION and a GET of the device state, on every call: the device rule (src/v2/takeover.ts) refuses or resets a device left in a state it cannot work from. QEMU 10 queries the flags once (vfio_migration_realize), never GETs the state, and trusts its cached RUNNING.';

export const KNOWN_DIFFERENCES: KnownDifference[] = [
  {
    id: 'v1-failure-point',
    scenario: 'q72-failed-then-completed',
    kind: 'scenario',
    after: 'read pending_bytes 0x18',
    qemu: [],
    model: ['read data_offset 0x1000', 'read data_size 0x18'],
    reason: FAILURE_POINT,
  },
  {
    id: 'v1-failure-point',
    scenario: 'q72-cancelled',
    kind: 'scenario',
    after: 'read pending_bytes 0x18',
    qemu: [],
    model: ['read data_offset 0x1000', 'read data_size 0x18'],
    reason: FAILURE_POINT,
  },
  {
    id: 'v2-flags-and-state',
    scenario: 'q10-save-running',
    kind: 'intentional',
    after: 'setState RUNNING',
    qemu: [],
    model: ['migrationFlags', 'getState'],
    reason: FLAGS_AND_STATE,
  },
  {
    id: 'v2-flags-and-state',
    scenario: 'q10-resume',
    kind: 'intentional',
    after: 'migrationFlags',
    qemu: [],
    model: ['migrationFlags', 'getState'],
    reason: FLAGS_AND_STATE,
  },
];
