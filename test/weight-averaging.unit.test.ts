/**
 * The weight averages by hand: Keras's EMA of the weights (useEma: the first update copies, then
 * m·average + (1 − m)·w; every emaOverwriteFrequency updates the weights become the averages) on both
 * training steps, and SWA (PyTorch's swa_utils): the equal running average over 3 epochs, SWALR's
 * learning rates, and update_bn's cumulative batch-norm statistics on a tiny model.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { handStep } from './helpers/hand-model';
import { buildModel } from '../src/model';
import { validateSpec } from '../src/spec';
import { createReferenceStep } from '../src/train/step';
import { createOptimizer } from '../src/train/optimizers';
import { addSnapshot, swaLearningRate } from '../src/train/weight-averaging';
import { StochasticWeightAveraging } from '../src/train/callbacks/weight-averaging';
import type { TrainingContext } from '../src/train/callbacks/callback';
import type { RunContext } from '../src/train/callbacks/declaration';
import { Console } from '../src/console';
import { useBackend } from './helpers/backend';
import { specRefusal } from './helpers/spec-refusal';

test('the EMA copies the first update’s weights, then follows m·average + (1 − m)·w (Keras’s formula, 3 updates by hand)', () => {
  const optimizer = createOptimizer({ sgd: { useEma: true, emaMomentum: 0.5 } });
  const steps = [
    [1, 2],
    [3, 6],
    [5, 10],
  ];
  const want = [
    [1, 2], // the first update: a copy
    [2, 4], // 0.5·[1, 2] + 0.5·[3, 6]
    [3.5, 7], // 0.5·[2, 4] + 0.5·[5, 10]
  ];
  steps.forEach((w, i) => {
    assert.equal(optimizer.updateAverages([{ name: 'dense/kernel', data: Float32Array.from(w) }]), false);
    optimizer.endStep();
    assert.deepEqual(Array.from(optimizer.average('dense/kernel')!), want[i]);
  });
  // Keras's default momentum 0.99, in float32: 0.99·1 + 0.01·3 after the second update.
  const keras = createOptimizer({ sgd: { useEma: true } });
  assert.equal(keras.ema!.momentum, 0.99);
  keras.updateAverages([{ name: 'w', data: Float32Array.from([1]) }]);
  keras.endStep();
  keras.updateAverages([{ name: 'w', data: Float32Array.from([3]) }]);
  const f = Math.fround;
  assert.equal(keras.average('w')![0], f(f(f(0.99) * 1) + f(f(1 - f(0.99)) * 3)));
  assert.ok(Math.abs(keras.average('w')![0]! - 1.02) < 1e-6);
});

test('the EMA says to overwrite the weights every emaOverwriteFrequency updates (after updates 2 and 4 of 5 for 2)', () => {
  const optimizer = createOptimizer({ sgd: { useEma: true, emaOverwriteFrequency: 2 } });
  const overwrites: boolean[] = [];
  for (let i = 0; i < 5; i++) {
    overwrites.push(optimizer.updateAverages([{ name: 'w', data: Float32Array.from([i]) }]));
    optimizer.endStep();
  }
  assert.deepEqual(overwrites, [false, true, false, true, false]);
});

/** The hand model after `n` SGD steps (lr 1) on its one image, label 0: its weights and the optimizer's averages. */
function stepsOn(lean: boolean, n: number, sgd: Record<string, unknown>) {
  const spec = validateSpec({
    name: 'ema',
    model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax' } }] },
    optimizer: { sgd: { learningRate: 1, ...sgd } },
  });
  const { built, optimizer, step, x, y } = handStep(spec, lean);
  const weights: number[][][] = [];
  for (let i = 0; i < n; i++) {
    step.run(x, y, 0);
    weights.push(built.model.getWeights().map((w) => Array.from(w.dataSync())));
  }
  const names = built.model.trainableWeights.map((w) => (w.read() as tf.Variable).name);
  const averages = names.map((name) => Array.from(optimizer.average(name) ?? []));
  tf.dispose([x, y]);
  step.dispose();
  built.model.dispose();
  return { weights, averages };
}

for (const lean of [false, true]) {
  const which = lean ? 'lean' : 'reference';
  test(`on the ${which} step, the EMA of 3 updates is Keras’s formula over the raw weights, which it leaves alone`, async () => {
    await useBackend('cpu');
    const raw = stepsOn(lean, 3, {});
    const ema = stepsOn(lean, 3, { useEma: true, emaMomentum: 0.5 });
    assert.deepEqual(ema.weights, raw.weights, 'without an overwrite the model trains on its raw weights');
    const f = Math.fround;
    raw.weights[2]!.forEach((w3, v) =>
      w3.forEach((_, i) => {
        const [w1, w2, w3i] = [raw.weights[0]![v]![i]!, raw.weights[1]![v]![i]!, w3[i]!];
        const a2 = f(f(0.5 * w1) + f(0.5 * w2));
        assert.equal(ema.averages[v]![i], f(f(0.5 * a2) + f(0.5 * w3i)), `variable ${v}[${i}]`);
      }),
    );
  });

  test(`on the ${which} step, emaOverwriteFrequency 2 puts the average in the model after the second update`, async () => {
    await useBackend('cpu');
    const raw = stepsOn(lean, 2, {});
    const ema = stepsOn(lean, 3, { useEma: true, emaMomentum: 0.5, emaOverwriteFrequency: 2 });
    assert.deepEqual(ema.weights[0], raw.weights[0]);
    const f = Math.fround;
    const average2 = raw.weights[0]!.map((w1, v) => w1.map((x, i) => f(f(0.5 * x) + f(0.5 * raw.weights[1]![v]![i]!))));
    assert.deepEqual(ema.weights[1], average2, 'after update 2 the weights are the averages');
    // Update 3 starts from the average: kernel row 0 and the bias move, the average follows.
    assert.notDeepEqual(ema.weights[2], average2);
  });
}

test('the lean step and the reference step keep the same EMA (to float32 rounding)', async () => {
  await useBackend('cpu');
  const lean = stepsOn(true, 3, { useEma: true, emaMomentum: 0.9 });
  const reference = stepsOn(false, 3, { useEma: true, emaMomentum: 0.9 });
  lean.averages.forEach((a, v) =>
    a.forEach((x, i) => assert.ok(Math.abs(x - reference.averages[v]![i]!) <= 1e-7, `variable ${v}[${i}]`)),
  );
});

test('SWA’s average is the equal running average of the snapshots: [1, 2], [4, 8], [7, 2] → [2.5, 5] → [4, 4]', () => {
  const average = new Float32Array(2);
  addSnapshot(average, [1, 2], 0);
  assert.deepEqual(Array.from(average), [1, 2]);
  addSnapshot(average, [4, 8], 1);
  assert.deepEqual(Array.from(average), [2.5, 5]);
  addSnapshot(average, [7, 2], 2);
  assert.deepEqual(Array.from(average), [4, 4]);
});

test('SWALR anneals from the rate in force at the start to learningRate in annealEpochs epochs (cos and linear)', () => {
  const cos = { startEpoch: 1, learningRate: 0.01, annealEpochs: 2, annealStrategy: 'cos' as const };
  // t = 1/2: α = (1 − cos π/2)/2 = 1/2; t = 1: α = 1.
  assert.ok(Math.abs(swaLearningRate(cos, 0.05, 1) - 0.03) < 1e-15);
  assert.equal(swaLearningRate(cos, 0.05, 2), 0.01);
  assert.equal(swaLearningRate(cos, 0.05, 7), 0.01);
  // Linear over 4 epochs: after 1, a quarter of the way.
  const linear = { ...cos, annealEpochs: 4, annealStrategy: 'linear' as const };
  assert.ok(Math.abs(swaLearningRate(linear, 0.05, 1) - (0.25 * 0.01 + 0.75 * 0.05)) < 1e-15);
  // annealEpochs 0: straight to learningRate, as PyTorch's SWALR.
  assert.equal(swaLearningRate({ ...cos, annealEpochs: 0 }, 0.05, 1), 0.01);
});

test('at the end SWA puts the average of 3 epochs in a tiny model and recomputes batch norm as a cumulative average', async () => {
  await useBackend('cpu');
  const spec = validateSpec({
    name: 'swa',
    data: { normalize: 'none' },
    model: { layers: [{ flatten: {} }, { batchNormalization: {} }, { dense: { units: 10, activation: 'softmax' } }] },
    optimizer: { sgd: { learningRate: 0.1 } },
    training: { batchSize: 2, epochs: 3, swa: { startEpoch: 1, learningRate: 0.01 } },
  });
  const built = buildModel(spec);
  // Three images, every pixel 1, 3 and 8: batches {1, 3} (mean 2, biased variance 1) and {8} (mean 8, variance 0).
  const pixels = new Uint8Array(3 * 784);
  pixels.fill(1, 0, 784);
  pixels.fill(3, 784, 1568);
  pixels.fill(8, 1568);
  const lut = Float32Array.from({ length: 256 }, (_, i) => i);
  const train = { pixels, lut, labels: Int32Array.from([0, 1, 2]), count: 3 };
  const lines: string[] = [];
  const out = Object.assign(new Console(false, true), { info: (l: string) => lines.push(l) });
  const step = createReferenceStep(built, createOptimizer(spec.optimizer));
  const run = { spec, built, step, out, data: { train } } as unknown as RunContext;
  const ctx = { built, step, epochs: 3, stepsPerEpoch: 2, stopTraining: null } as unknown as TrainingContext;
  const swa = new StochasticWeightAveraging(spec.training.swa!, run);
  const vars = built.model.trainableWeights.map((w) => w.read() as tf.Variable);
  // Epoch e ends with every trainable weight at 1, 4, 7: the average is 4.
  for (const [e, value] of [1, 4, 7].entries()) {
    for (const v of vars) v.assign(tf.fill(v.shape, value));
    swa.onEpochEnd(e + 1, {} as never, ctx);
  }
  assert.equal(swa.snapshots, 3);
  swa.onTrainEnd({ stopReason: 'epochs', epochs: 3 }, ctx);
  for (const v of vars)
    assert.ok(
      v.dataSync().every((x) => x === 4),
      `${v.name} holds the average 4`,
    );
  const bn = built.model.layers[1]!;
  const [, , movingMean, movingVariance] = bn.getWeights().map((w) => w.dataSync());
  // Reset to 0 and 1, then momentum None: batch 1 sets (2, 1), batch 2 moves halfway to (8, 0).
  assert.ok(
    movingMean!.every((x) => x === 5),
    `moving mean ${movingMean![0]}, want (2 + 8)/2`,
  );
  assert.ok(
    movingVariance!.every((x) => x === 0.5),
    `moving variance ${movingVariance![0]}, want (1 + 0)/2`,
  );
  assert.equal((bn as unknown as { momentum: number }).momentum, 0.99, 'the layer keeps its own momentum after');
  assert.deepEqual(lines, [
    'SWA: the model now holds the average of the weights at the end of epochs 1–3 (3 snapshots); batch-norm statistics recomputed over the 3 training images',
  ]);
  step.dispose();
  built.model.dispose();
});

const refusal = (training: Record<string, unknown>, optimizer: Record<string, unknown> = { sgd: {} }) =>
  specRefusal({ optimizer, training: { epochs: 5, ...training } });

test('bad SWA settings, and averages with what would replace them, are refused with the field’s path', () => {
  const swa = { startEpoch: 2, learningRate: 0.01 };
  assert.equal(
    refusal({ swa: { learningRate: 0.01 } }),
    '! training.swa.startEpoch: expected a positive integer, got nothing (spec.yaml)',
  );
  assert.equal(
    refusal({ swa: { ...swa, startEpoch: 6 } }),
    '! training.swa.startEpoch: expected at most training.epochs (5), got 6 (spec.yaml)',
  );
  assert.equal(
    refusal({ swa: { ...swa, learningRate: 0 } }),
    '! training.swa.learningRate: expected a positive number, got 0 (spec.yaml)',
  );
  assert.equal(
    refusal({ swa: { ...swa, annealEpochs: -1 } }),
    '! training.swa.annealEpochs: expected an integer ≥ 0, got -1 (spec.yaml)',
  );
  assert.equal(
    refusal({ swa: { ...swa, annealStrategy: 'step' } }),
    '! training.swa.annealStrategy: expected cos or linear, got "step" (spec.yaml)',
  );
  assert.equal(refusal({ swa: { ...swa, momentum: 0.9 } }), '! training.swa.momentum: unknown key (spec.yaml)');
  assert.equal(
    refusal({ swa }, { adam: { useEma: true } }),
    '! training.swa: SWA and optimizer.adam.useEma both average the weights: choose one (spec.yaml)',
  );
  assert.equal(
    refusal({ swa, reduceLrOnPlateau: { monitor: 'loss' } }),
    '! training.swa: SWA sets the learning rate from its start epoch: it cannot be used with training.reduceLrOnPlateau (spec.yaml)',
  );
  assert.equal(
    refusal({ earlyStopping: { monitor: 'loss', restoreBestWeights: true } }, { sgd: { useEma: true } }),
    '! training.earlyStopping.restoreBestWeights: the run ends with the EMA average of the weights: restoreBestWeights would replace it (spec.yaml)',
  );
});
