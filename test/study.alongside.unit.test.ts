/**
 * A sweep key that moves `alongside` another instead of multiplying the grid: a study over
 * training-set size can give each size its own epochs (a budget of steps), and the members are
 * still named, grouped and paired by the size alone.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { loadSpec, parseSpec, SpecError } from '../src/spec';
import { expandStudy, studySize } from '../src/study';
import { InputError } from '../src/errors';
import { ROOT } from './helpers/cli';

const BASE = `
name: sizes
seed: 7
data: { testLimit: 500, validation: { size: 200, holdout: true } }
model:
  layers:
    - flatten: {}
    - dense: { units: 10, activation: softmax }
training: { epochs: 2 }
variants:
  base: {}
  l2: { model.layers.1.dense.kernelRegularizer: { l2: 0.01 } }
repeats: 2
`;

const sweep = (epochs: string) => `sweep:
  data.trainLimit: [500, 2000, 8000]
  training.epochs: ${epochs}
`;

test('a key alongside a swept list takes the value at the same index and adds no grid dimension', () => {
  const loaded = parseSpec(BASE + sweep('{ alongside: data.trainLimit, values: [60, 30, 15] }'), 'sizes.yaml');
  assert.deepEqual(studySize(loaded), { count: 12, formula: '2 × 3 × 2' });
  const members = expandStudy(loaded);
  assert.deepEqual(
    members
      .filter((m) => m.variant === 'l2' && m.seed === 8)
      .map((m) => [m.name, m.spec.data.trainLimit, m.spec.training.epochs]),
    [
      ['l2-trainLimit=500-seed8', 500, 60],
      ['l2-trainLimit=2000-seed8', 2000, 30],
      ['l2-trainLimit=8000-seed8', 8000, 15],
    ],
  );
  const m = members.find((x) => x.name === 'base-trainLimit=2000-seed7')!;
  // Grouped and paired by the size alone; the epochs are one more override, shown by --dry-run.
  assert.equal(m.group, 'base-trainLimit=2000');
  assert.deepEqual(m.sweep, { 'data.trainLimit': 2000 });
  assert.deepEqual(
    m.overrides.map((o) => [o.path.join('.'), o.value]),
    [
      ['data.trainLimit', 2000],
      ['training.epochs', 30],
      ['seed', 7],
    ],
  );
});

test('a key alongside a path that is not a swept list is refused, naming the lists there are', () => {
  const loaded = parseSpec(BASE + sweep('{ alongside: data.trainLimt, values: [60, 30, 15] }'), 'sizes.yaml');
  assert.throws(
    () => expandStudy(loaded),
    (e: unknown) =>
      e instanceof InputError &&
      e.message ===
        "sizes.yaml: sweep.training.epochs.alongside: 'data.trainLimt' is not a swept list in this sweep (expected one of: data.trainLimit)",
  );
});

test('a key alongside a list must have one value per value of it', () => {
  const loaded = parseSpec(BASE + sweep('{ alongside: data.trainLimit, values: [60, 30] }'), 'sizes.yaml');
  assert.throws(
    () => expandStudy(loaded),
    (e: unknown) =>
      e instanceof InputError &&
      e.message ===
        'sizes.yaml: sweep.training.epochs.values: 2 values for the 3 of data.trainLimit (expected one per value)',
  );
});

test('a sweep entry that is neither a list nor an alongside map is refused at its path', () => {
  for (const bad of ['{ along: data.trainLimit, values: [60, 30, 15] }', '15']) {
    assert.throws(
      () => parseSpec(BASE + sweep(bad), 'sizes.yaml'),
      (e: unknown) =>
        e instanceof SpecError &&
        e.message.includes(
          'sweep.training.epochs: expected a list of values, or { alongside: KEY, values: [...] } (sizes.yaml:16:20)',
        ),
      bad,
    );
  }
});

test('configs/regularizers-by-size.yaml expands to 180 valid members, each size with its own epochs, the 160 first ones as first run', () => {
  const members = expandStudy(loadSpec(path.join(ROOT, 'configs', 'regularizers-by-size.yaml')));
  assert.equal(members.length, 180);
  // The ema-mixup variant came after the first 160 runs: appended last, it keeps their names and order.
  assert.equal(members[159]!.name, 'combined-trainLimit=58000-seed5');
  assert.equal(members[160]!.name, 'ema-mixup-trainLimit=500-seed1');
  const epochsBySize = new Map(members.map((m) => [m.spec.data.trainLimit, m.spec.training.epochs]));
  assert.deepEqual(
    [...epochsBySize],
    [
      [500, 120],
      [2000, 60],
      [8000, 30],
      [58000, 15],
    ],
  );
  const combined = members.find((m) => m.name === 'combined-trainLimit=500-seed1')!.spec;
  assert.equal(combined.training.labelSmoothing, 0.1);
  assert.equal(combined.data.augmentation?.length, 2);
  assert.equal(combined.model.layers.filter((l) => l.dropout).length, 2);
  const emaMixup = members.find((m) => m.name === 'ema-mixup-trainLimit=8000-seed3')!.spec;
  assert.deepEqual(emaMixup.data.augmentation, [{ mixUp: { alpha: 0.2 } }]);
  assert.equal(emaMixup.optimizer.adam?.useEma, true);
});
