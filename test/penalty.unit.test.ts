/**
 * Regularization penalties on a hand-set 2×2 kernel, with hand-computed numbers.
 *
 *   W = [[1, -2], [0.5, 0]]      Σ|w| = 1 + 2 + 0.5 + 0 = 3.5      Σw² = 1 + 4 + 0.25 + 0 = 5.25
 *
 *   form                     l1     l2      penalty = l1·Σ|w| + l2·Σw²
 *   {l1: 0.01}               0.01   0       0.035
 *   {l2: 0.001}              0      0.001   0.00525
 *   {l1: 0.01, l2: 0.01}     0.01   0.01    0.035 + 0.0525 = 0.0875
 *   l1   (shorthand, 0.01)   0.01   0       0.035
 *   l2   (shorthand, 0.01)   0      0.01    0.0525
 *   l1l2 (shorthand, 0.01)   0.01   0.01    0.0875
 *
 * The penalty's gradient is l1·sign(w) + 2·l2·w, so one plain-SGD step with learning rate
 * 0.1 moves the kernel by 0.1·(that) more than the same step without the regularizer:
 *
 *   sign(W) = [[1, -1], [1, 0]]   (for the three nonzero entries; the zero entry is tested apart:
 *                                  Keras, and regtrain, differentiate |w| at 0 as sign(0) = 0)
 *   {l1: 0.01}:   0.001·sign(W)                  = [[0.001, -0.001], [0.001, 0]]
 *   {l2: 0.001}:  0.0002·W                       = [[0.0002, -0.0004], [0.0001, 0]]
 *   {l1l2 0.01}:  0.001·sign(W) + 0.002·W        = [[0.003, -0.005], [0.002, 0]]
 *   l2 0.01:      0.002·W                        = [[0.002, -0.004], [0.001, 0]]
 *
 * Tolerances: penalties are float32 sums of numbers ≤ 4, compared with a relative 1e-6;
 * kernel entries are float32 values of magnitude ≤ 2 (ulp 2.4e-7) after one update, so
 * differences of two updated kernels are compared with an absolute 1e-6.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { initBackend } from '../src/backend';
import { buildModel, type BuiltModel } from '../src/model';
import { penaltyOf, penaltyValues } from '../src/train/penalties';
import { validateSpec, type ExperimentSpec } from '../src/spec';
import { createReferenceStep } from '../src/train/step';
import { crossEntropySum, forward } from '../src/train/forward';
import { createOptimizer } from '../src/train/optimizers';

const KERNEL = [
  [1, -2],
  [0.5, 0],
];
const SUM_ABS = 3.5;
const SUM_SQ = 5.25;
const LR = 0.1;
const SGD = () => createOptimizer({ sgd: { learningRate: LR } });
const PENALTY_RTOL = 1e-6;
const WEIGHT_ATOL = 1e-6;

interface Form {
  label: string;
  regularizer: unknown;
  l1: number;
  l2: number;
  /** Hand value of l1·Σ|w| + l2·Σw² on KERNEL. */
  penalty: number;
  /** Hand value of LR·(l1·sign(w) + 2·l2·w) on KERNEL; only the nonzero entries are compared. */
  update: number[][];
}

const FORMS: Form[] = [
  {
    label: '{l1: 0.01}',
    regularizer: { l1: 0.01 },
    l1: 0.01,
    l2: 0,
    penalty: 0.035,
    update: [
      [0.001, -0.001],
      [0.001, 0],
    ],
  },
  {
    label: '{l2: 0.001}',
    regularizer: { l2: 0.001 },
    l1: 0,
    l2: 0.001,
    penalty: 0.00525,
    update: [
      [0.0002, -0.0004],
      [0.0001, 0],
    ],
  },
  {
    label: '{l1: 0.01, l2: 0.01}',
    regularizer: { l1: 0.01, l2: 0.01 },
    l1: 0.01,
    l2: 0.01,
    penalty: 0.0875,
    update: [
      [0.003, -0.005],
      [0.002, 0],
    ],
  },
  {
    label: 'l1',
    regularizer: 'l1',
    l1: 0.01,
    l2: 0,
    penalty: 0.035,
    update: [
      [0.001, -0.001],
      [0.001, 0],
    ],
  },
  {
    label: 'l2',
    regularizer: 'l2',
    l1: 0,
    l2: 0.01,
    penalty: 0.0525,
    update: [
      [0.002, -0.004],
      [0.001, 0],
    ],
  },
  {
    label: 'l1l2',
    regularizer: 'l1l2',
    l1: 0.01,
    l2: 0.01,
    penalty: 0.0875,
    update: [
      [0.003, -0.005],
      [0.002, 0],
    ],
  },
];

/** flatten → dense(2) → dense(2, the regularized 2×2 kernel) → dense(10, softmax). */
function specWith(regularizer: unknown): ExperimentSpec {
  return validateSpec({
    name: 'penalty',
    seed: 7,
    model: {
      layers: [
        { flatten: {} },
        { dense: { units: 2, activation: 'tanh' } },
        {
          dense: { units: 2, activation: 'tanh', ...(regularizer === null ? {} : { kernelRegularizer: regularizer }) },
        },
        { dense: { units: 10, activation: 'softmax' } },
      ],
    },
  });
}

/** Builds the model and sets the 2×2 kernel (layer 2) to KERNEL, keeping its bias. */
function buildWithKernel(regularizer: unknown): BuiltModel {
  const built = buildModel(specWith(regularizer));
  const layer = built.model.layers[2]!;
  const [, bias] = layer.getWeights();
  const kernel = tf.tensor2d(KERNEL);
  layer.setWeights([kernel, bias!]);
  kernel.dispose();
  return built;
}

const kernelOf = (built: BuiltModel): number[][] => built.model.layers[2]!.getWeights()[0]!.arraySync() as number[][];

/** A fixed batch of 4 images with a smooth pattern (values in [0, 1]) and labels 0..3. */
function batch(): { x: tf.Tensor3D; y: tf.Tensor1D } {
  const n = 4;
  const data = new Float32Array(n * 28 * 28);
  for (let i = 0; i < data.length; i++) data[i] = 0.5 + 0.5 * Math.sin(i * 0.37);
  return { x: tf.tensor3d(data, [n, 28, 28]), y: tf.tensor1d([0, 1, 2, 3], 'int32') };
}

function assertClose2d(actual: number[][], expected: number[][], atol: number, what: string): void {
  actual.forEach((row, i) =>
    row.forEach((v, j) => {
      assert.ok(
        Math.abs(v - expected[i]![j]!) <= atol,
        `${what}[${i}][${j}] = ${v}, expected ${expected[i]![j]} (±${atol})`,
      );
    }),
  );
}

const assertRelClose = (actual: number, expected: number, what: string) =>
  assert.ok(
    Math.abs(actual - expected) <= PENALTY_RTOL * Math.abs(expected),
    `${what} = ${actual}, expected ${expected} (relative ±${PENALTY_RTOL})`,
  );

before(async () => {
  await initBackend('cpu');
});

describe('the hand-computed sums', () => {
  test('Σ|w| = 3.5 and Σw² = 5.25 for the kernel [[1, -2], [0.5, 0]]', () => {
    assert.equal(
      tf.tidy(() => tf.abs(tf.tensor2d(KERNEL)).sum().arraySync()),
      SUM_ABS,
    );
    assert.equal(
      tf.tidy(() => tf.square(tf.tensor2d(KERNEL)).sum().arraySync()),
      SUM_SQ,
    );
  });
});

for (const form of FORMS) {
  describe(`kernelRegularizer ${form.label}`, () => {
    test(`resolves to l1 = ${form.l1}, l2 = ${form.l2}`, () => {
      assert.deepEqual(specWith(form.regularizer).model.layers[2]!.dense!.kernelRegularizer, {
        l1: form.l1,
        l2: form.l2,
      });
    });

    test(`penaltyOf gives ${form.penalty} on the hand kernel`, () => {
      const p = tf.tidy(() => penaltyOf(tf.tensor2d(KERNEL), form.l1, form.l2).arraySync());
      assertRelClose(p, form.penalty, 'penaltyOf');
    });

    test(`penaltyValues reports ${form.penalty} for dense_1/kernel and nothing else`, () => {
      const built = buildWithKernel(form.regularizer);
      const values = penaltyValues(built);
      assert.deepEqual(Object.keys(values), ['dense_1/kernel']);
      assertRelClose(values['dense_1/kernel']!, form.penalty, 'penaltyValues');
      assert.deepEqual(
        built.penalties.map((t) => ({ name: t.name, l1: t.l1, l2: t.l2 })),
        [{ name: 'dense_1/kernel', l1: form.l1, l2: form.l2 }],
      );
      built.model.dispose();
    });

    test(`one reference step reports penalty ${form.penalty} and moves the kernel by lr·(dataGrad + l1·sign(w) + 2·l2·w)`, () => {
      const reg = buildWithKernel(form.regularizer);
      const plain = buildWithKernel(null);
      assert.equal(plain.penalties.length, 0);
      const { x, y } = batch();

      // The data gradient at the starting weights, computed independently of the step.
      const kernelVar = reg.model.layers[2]!.trainableWeights[0]!.read() as tf.Variable;
      const dataGrad = tf.tidy(() => {
        const { grads } = tf.variableGrads(
          () => crossEntropySum(forward(reg, x, true), y).div(x.shape[0]) as tf.Scalar,
          [kernelVar],
        );
        return grads[kernelVar.name]!.arraySync() as number[][];
      });

      const regStep = createReferenceStep(reg, SGD());
      const plainStep = createReferenceStep(plain, SGD());
      const r = regStep.run(x, y, 0);
      const p = plainStep.run(x, y, 0);
      assertRelClose(r.penalty, form.penalty, 'step penalty');
      assert.equal(p.penalty, 0);
      // Same weights before the step: the data loss does not depend on the regularizer.
      assert.equal(r.dataLoss, p.dataLoss);

      const after = kernelOf(reg);
      const afterPlain = kernelOf(plain);
      // Nonzero entries: sign(w) is unambiguous. Entry [1][1] (w = 0) is checked separately below.
      const nonzero = (m: number[][]) => [m[0]![0]!, m[0]![1]!, m[1]![0]!];
      const expectedAfter = KERNEL.map((row, i) => row.map((w, j) => w - LR * dataGrad[i]![j]! - form.update[i]![j]!));
      assertClose2d([nonzero(after)], [nonzero(expectedAfter)], WEIGHT_ATOL, 'w − lr·(dataGrad + penaltyGrad)');
      const diff = afterPlain.map((row, i) => row.map((v, j) => v - after[i]![j]!));
      assertClose2d([nonzero(diff)], [nonzero(form.update)], WEIGHT_ATOL, 'plain − regularized');
      assertClose2d([[afterPlain[1]![1]!]], [[-LR * dataGrad[1]![1]!]], WEIGHT_ATOL, 'plain update of the zero weight');

      tf.dispose([x, y]);
      regStep.dispose();
      plainStep.dispose();
      reg.model.dispose();
      plain.model.dispose();
    });
  });
}

describe('a weight that is exactly zero', () => {
  // Keras/TensorFlow differentiate |w| as sign(w), so an L1 penalty leaves a zero weight where
  // the data gradient puts it. tfjs 4.22 differentiates tf.abs as step(w, −1), −1 at w = 0;
  // regtrain computes Σ|w| as Σ w·sign(w) so that its gradient is Keras's.
  test('is left where the data gradient puts it by an L1 penalty (Keras: sign(0) = 0)', () => {
    const reg = buildWithKernel({ l1: 0.01 });
    const plain = buildWithKernel(null);
    const { x, y } = batch();
    const regStep = createReferenceStep(reg, SGD());
    const plainStep = createReferenceStep(plain, SGD());
    regStep.run(x, y, 0);
    plainStep.run(x, y, 0);
    const extra = kernelOf(reg)[1]![1]! - kernelOf(plain)[1]![1]!;
    tf.dispose([x, y]);
    regStep.dispose();
    plainStep.dispose();
    reg.model.dispose();
    plain.model.dispose();
    // With tfjs's abs gradient this would be lr·l1 = 0.1·0.01 = +0.001.
    assert.ok(Math.abs(extra) <= WEIGHT_ATOL, `the L1 term moved w = 0 by ${extra}, expected 0 (±${WEIGHT_ATOL})`);
  });

  test('gets an L1 gradient of 0 from penaltyOf (and ±l1 elsewhere)', () => {
    const g = tf.tidy(
      () =>
        tf
          .grad((w: tf.Tensor) => penaltyOf(w, 0.01, 0))(tf.tensor1d([-1, 0, 2]))
          .arraySync() as number[],
    );
    assert.deepEqual(
      g.map((v) => Math.round(v * 1e6) / 1e6 + 0),
      [-0.01, 0, 0.01],
    );
  });

  test('gets no L2 gradient (2·l2·0 = 0)', () => {
    const g = tf.tidy(
      () =>
        tf
          .grad((w: tf.Tensor) => penaltyOf(w, 0, 0.01))(tf.tensor1d([-1, 0, 2]))
          .arraySync() as number[],
    );
    assert.deepEqual(
      g.map((v) => Math.round(v * 1e6) / 1e6),
      [-0.02, 0, 0.04],
    );
  });
});

describe('penalties of other tensors', () => {
  test('a biasRegularizer penalizes the bias as its own named term', () => {
    const spec = validateSpec({
      name: 'bias',
      model: {
        layers: [
          { flatten: {} },
          { dense: { units: 10, activation: 'softmax', biasRegularizer: { l2: 0.5 }, biasInitializer: 'ones' } },
        ],
      },
    });
    const built = buildModel(spec);
    // bias = ten ones: 0.5·Σb² = 0.5·10 = 5.
    assert.deepEqual(penaltyValues(built), { 'dense/bias': 5 });
    built.model.dispose();
  });

  test('a model without regularizers has no penalty terms', () => {
    const built = buildWithKernel(null);
    assert.deepEqual(penaltyValues(built), {});
    built.model.dispose();
  });
});
