/**
 * Calibration measures against a hand-made table of four samples over three classes:
 *   sample  probabilities        label  top (confidence)  right?
 *   1       0.7  0.2  0.1        0      0 (0.7)           yes
 *   2       0.1  0.62 0.28       2      1 (0.62)          no
 *   3       0.2  0.18 0.62       2      2 (0.62)          yes
 *   4       0.05 0.9  0.05       1      1 (0.9)           yes
 * 15 bins of width 1/15: 0.62 · 15 = 9.3 → bin 9, (0.6, 0.667]; 0.7 · 15 = 10.5 → bin 10; 0.9 · 15 = 13.5 → bin 13.
 * ECE = 2/4 · |0.5 − 0.62| + 1/4 · |1 − 0.7| + 1/4 · |1 − 0.9| = 0.06 + 0.075 + 0.025 = 0.16.
 * Brier: (0.09 + 0.04 + 0.01) + (0.01 + 0.3844 + 0.5184) + (0.04 + 0.0324 + 0.1444) + (0.0025 + 0.01 + 0.0025)
 *   = 0.14 + 0.9128 + 0.2168 + 0.015 = 1.2846, / 4 = 0.32115.
 * NLL: (−ln 0.7 − ln 0.28 − ln 0.62 − ln 0.9) / 4 = (0.356675 + 1.272966 + 0.478036 + 0.105361) / 4 = 0.553260.
 * The inputs are float32 (as the model's outputs are), so the sums agree to ~1e-7.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { calibration, ECE_BINS } from '../src/evaluation/calibration';

const near = (actual: number, expected: number, what: string) =>
  assert.ok(Math.abs(actual - expected) < 1e-6, `${what}: ${actual}, expected ${expected}`);

const TABLE = Float32Array.from([0.7, 0.2, 0.1, 0.1, 0.62, 0.28, 0.2, 0.18, 0.62, 0.05, 0.9, 0.05]);
const LABELS = Int32Array.from([0, 2, 2, 1]);

test('ECE, Brier score and NLL of a hand-made table match the hand-computed values', () => {
  const c = calibration(TABLE, LABELS, 3);
  near(c.ece, 0.16, 'ECE');
  near(c.brier, 0.32115, 'Brier');
  near(c.nll, 0.55326, 'NLL');
});

test('the reliability bins hold the samples by confidence, with their accuracy and mean confidence', () => {
  const { bins } = calibration(TABLE, LABELS, 3);
  assert.equal(bins.length, ECE_BINS);
  assert.deepEqual(
    bins.map((b) => b.count),
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 1, 0],
  );
  near(bins[9]!.confidence!, 0.62, 'bin 9 confidence');
  assert.equal(bins[9]!.accuracy, 0.5);
  assert.equal(bins[10]!.accuracy, 1);
  assert.equal(bins[0]!.accuracy, null);
  assert.deepEqual([bins[9]!.lower, bins[9]!.upper], [9 / 15, 10 / 15]);
});

test('a confidence on a bin edge belongs to the bin it closes, as Guo et al. define (lower, upper]', () => {
  // Edges exact in float32: 0.5 (inside bin 7) and 1 (the last bin's closing edge).
  const c = calibration(Float32Array.from([0.5, 0.5, 1, 0]), Int32Array.from([0, 0]), 2);
  // 0.5 · 15 = 7.5 → bin 7, (7/15, 8/15]; 1 · 15 = 15 → the last bin, which closes at 1.
  assert.equal(c.bins[7]!.count, 1);
  assert.equal(c.bins[14]!.count, 1);
  // Both right: |1 − 0.5| / 2 + |1 − 1| / 2.
  near(c.ece, 0.25, 'ECE');
});

test('a perfectly calibrated, certain and right model has ECE, Brier and NLL 0; certain and wrong has Brier 2 and NLL Infinity', () => {
  const right = calibration(Float32Array.from([1, 0, 0, 0, 1, 0]), Int32Array.from([0, 1]), 3);
  assert.deepEqual([right.ece, right.brier, right.nll], [0, 0, 0]);
  const wrong = calibration(Float32Array.from([0, 1, 0]), Int32Array.from([0]), 3);
  assert.deepEqual([wrong.ece, wrong.brier, wrong.nll], [1, 2, Infinity]);
});

test('a table whose size does not fit the labels and classes is refused', () => {
  assert.throws(() => calibration(TABLE, LABELS, 4), {
    message: 'calibration: 12 probabilities for 4 samples of 4 classes',
  });
});
