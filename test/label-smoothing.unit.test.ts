/**
 * training.labelSmoothing, as keras.losses.CategoricalCrossentropy(label_smoothing=ls): targets
 * q = onehot·(1 − ls) + ls/10, loss −Σ q_k log p_k from the logits, gradient softmax(z) − q.
 *
 * The model: flatten → dense 10 softmax, kernel 0, bias ln 2 on class 0 and 0 elsewhere, one image
 * whose first pixel is 1, label 0, ls = 0.1. Then z = bias and by hand:
 *   p_0 = 2/11, p_j = 1/11 (j ≠ 0); q_0 = 0.9 + 0.01 = 0.91, q_j = 0.01;
 *   data loss (plain) = −ln(2/11) = ln 5.5 = 1.7047480922;
 *   smoothed loss = −0.91·ln(2/11) − 9·0.01·ln(1/11) = ln 11 − 0.91·ln 2 = 1.7670289... (smoothing = 0.09·ln 2 = 0.0623832463);
 *   gradient dz_0 = 2/11 − 0.91 = −0.7281818, dz_j = 1/11 − 0.01 = 0.0809091 (bias and kernel row 0; other rows 0).
 * One SGD step at lr 1 moves bias_0 to ln 2 + 0.7281818 = 1.4213290, bias_j to −0.0809091, kernel[0][j] to −dz_j.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { createLeanStep } from '../src/train/lean-step';
import { installAcceleratedKernels, uninstallAcceleratedKernels } from '../src/accel/kernels';
import { modelSummary } from '../src/model';
import { handModel } from './helpers/hand-model';
import { SpecError, validateSpec } from '../src/spec';
import { createReferenceStep } from '../src/train/step';
import { createOptimizer } from '../src/train/optimizers';
import { epochLine } from '../src/train/callbacks/epoch-lines';
import { useBackend } from './helpers/backend';

const LS = 0.1;
const DATA_LOSS = Math.log(5.5);
const SMOOTHED_LOSS = Math.log(11) - 0.91 * Math.log(2);
const GRADIENT = Array.from({ length: 10 }, (_, j) => (j === 0 ? 2 / 11 - 0.91 : 1 / 11 - 0.01));

const SPEC = validateSpec({
  name: 'smoothed',
  model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax' } }] },
  optimizer: { sgd: { learningRate: 1 } },
  training: { labelSmoothing: LS },
});

function assertMovedBySmoothedGradient(built: ReturnType<typeof handModel>['built'], label: string) {
  const [kernel, bias] = built.model.layers[1]!.getWeights().map((w) => w.dataSync() as Float32Array);
  for (let j = 0; j < 10; j++) {
    const start = j === 0 ? Math.LN2 : 0;
    assert.ok(
      Math.abs(bias![j]! - (start - GRADIENT[j]!)) <= 1e-6,
      `${label}: bias ${j} = ${bias![j]}, want ${start - GRADIENT[j]!}`,
    );
    assert.ok(
      Math.abs(kernel![j]! + GRADIENT[j]!) <= 1e-6,
      `${label}: kernel[0][${j}] = ${kernel![j]}, want ${-GRADIENT[j]!}`,
    );
  }
  for (let i = 10; i < kernel!.length; i++) assert.equal(kernel![i], 0, `${label}: kernel element ${i}`);
}

test('the hand-computed figures hold together: smoothed − plain = 0.09·ln 2', () => {
  assert.ok(Math.abs(SMOOTHED_LOSS - DATA_LOSS - 0.09 * Math.LN2) < 1e-12);
  assert.ok(Math.abs(DATA_LOSS - 1.7047480922384253) < 1e-12);
});

for (const backend of ['cpu', 'wasm'] as const) {
  test(`${backend}: the reference step minimizes the label-smoothed loss, gradient p − q, and reports the plain loss and the smoothing apart`, async (t) => {
    if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
    const { built, image } = handModel(SPEC);
    const step = createReferenceStep(built, createOptimizer(SPEC.optimizer), { labelSmoothing: LS });
    const x = tf.tensor3d(image, [1, 28, 28]);
    const y = tf.tensor1d([0], 'int32');
    const r = step.run(x, y, 0);
    assert.ok(Math.abs(r.dataLoss - DATA_LOSS) <= 1e-6, `data loss ${r.dataLoss}, want ${DATA_LOSS}`);
    assert.ok(Math.abs(r.smoothing! - 0.09 * Math.LN2) <= 1e-6, `smoothing ${r.smoothing}, want ${0.09 * Math.LN2}`);
    assert.equal(r.correct, 1);
    assertMovedBySmoothedGradient(built, 'reference');
    step.dispose();
    tf.dispose([x, y]);
    built.model.dispose();
  });

  for (const gemm of [false, true]) {
    test(`${backend}${gemm ? ' + installed GEMM' : ''}: the lean step gives the label-smoothed loss and gradient by hand`, async (t) => {
      if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
      if (gemm && !installAcceleratedKernels(backend).installed) return t.skip('no GEMM to install here');
      try {
        const { built, image } = handModel(SPEC);
        const step = createLeanStep(built.model, createOptimizer(SPEC.optimizer), [], { labelSmoothing: LS });
        if ('unsupported' in step) throw new Error(step.unsupported);
        const x = tf.tensor3d(image, [1, 28, 28]);
        const y = tf.tensor1d([0], 'int32');
        const r = step.run(x, y);
        assert.ok(Math.abs(r.dataLoss - DATA_LOSS) <= 1e-6, `data loss ${r.dataLoss}, want ${DATA_LOSS}`);
        assert.ok(
          Math.abs(r.smoothedLoss - SMOOTHED_LOSS) <= 1e-6,
          `smoothed ${r.smoothedLoss}, want ${SMOOTHED_LOSS}`,
        );
        assertMovedBySmoothedGradient(built, 'lean');
        step.dispose();
        tf.dispose([x, y]);
        built.model.dispose();
      } finally {
        if (gemm) uninstallAcceleratedKernels(backend);
      }
    });
  }
}

test('labelSmoothing outside [0, 1) or not a number is refused with its path and the range', () => {
  for (const bad of [-0.1, 1, 1.5, 'a lot']) {
    assert.throws(
      () =>
        validateSpec(
          {
            name: 'x',
            model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax' } }] },
            optimizer: { sgd: { learningRate: 0.01 } },
            training: { labelSmoothing: bad },
          },
          'spec.yaml',
        ),
      (err: unknown) => {
        assert.ok(err instanceof SpecError);
        assert.equal(
          err.message,
          typeof bad === 'number'
            ? `! training.labelSmoothing: expected a number ≥ 0 and < 1, got ${bad} (spec.yaml)`
            : `! training.labelSmoothing: expected a number from 0 to 1 (1 excluded), got "a lot" (spec.yaml)`,
        );
        return true;
      },
    );
  }
});

test('a spec without labelSmoothing resolves without it (trains on the plain loss); the summary names the smoothing when set', () => {
  const plain = validateSpec({
    name: 'x',
    model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax' } }] },
    optimizer: { sgd: { learningRate: 0.01 } },
  });
  assert.equal('labelSmoothing' in plain.training, false);
  const { built } = handModel(SPEC);
  assert.equal(
    modelSummary(built, SPEC.training).at(-1),
    'Loss: sparse categorical cross-entropy with label smoothing 0.1 (targets onehot·0.9 + 0.1/10)',
  );
  built.model.dispose();
});

test('the epoch line shows the smoothing part of the loss apart, between val_accuracy and the penalty', () => {
  const line = epochLine(
    {
      epoch: 2,
      loss: 0.6,
      accuracy: 0.8,
      val_loss: 0.55,
      val_accuracy: 0.81,
      data_loss: 0.5,
      smoothing: 0.08,
      penalty: 0.02,
      penalties: {},
      seconds: 1.3,
      weights: [],
    },
    3,
    false,
  );
  assert.equal(
    line,
    'Epoch 2/3 - 1.3s - loss: 0.6000 - accuracy: 0.8000 - val_loss: 0.5500 - val_accuracy: 0.8100 - smoothing: 0.0800 - penalty: 0.0200',
  );
});
