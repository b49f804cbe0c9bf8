/**
 * Damaged metrics.json files, one field each: the name of the case, the edit, and the one-line reason (after
 * "FILE: ") evaluate refuses with and compare skips with. Shared by test/hardening2.rundir*.test.ts.
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- the cases damage JSON files field by field, any shape */
export const DAMAGED_METRICS: [string, (m: Record<string, any>) => void, string][] = [
  ['sha256-number', (m) => (m.dataset.sha256 = 42), 'dataset.sha256: expected a map of file names to SHA-256, got 42'],
  ['accuracy-null', (m) => (m.test.accuracy = null), 'test.accuracy: expected a number, got null'],
  ['status-odd', (m) => (m.status = 'done'), 'status: expected complete, incomplete or failed, got "done"'],
  ['seed-negative', (m) => (m.seed = -1), 'seed: expected a count ≥ 0, got -1'],
  ['epochs-text', (m) => (m.epochsRun = '2'), 'epochsRun: expected a count, got "2"'],
  ['weights-map', (m) => (m.finalWeights = {}), 'finalWeights: expected a list, got a map'],
  [
    'normalization-missing',
    (m) => delete m.dataset.normalization,
    'dataset.normalization: expected a map, got nothing',
  ],
  [
    'version-newer',
    (m) => (m.formatVersion = 2),
    'run format version 2 is from a newer regtrain (this one reads version 1)',
  ],
];
