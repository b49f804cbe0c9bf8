/**
 * The noise and normalization layers and the orthogonal regularizer (issue 22, item 4), in process on
 * the cpu backend, against hand-computed numbers:
 *
 * - gaussianNoise, gaussianDropout, alphaDropout: the identity at inference (the forward pass's
 *   probabilities are those of the same model without the layer, bit for bit); in training, on
 *   200,000 values with a fixed seed, Keras's distributions: x + N(0, stddev²); x·N(1, rate/(1 − rate));
 *   AlphaDropout keeps a standard-normal input's mean 0 and variance 1. Tolerances: about 4 standard
 *   errors (the mean of n draws of variance σ² has standard error σ/√n = σ/447; a sample variance
 *   has relative standard error √(2/n) = 0.32%).
 * - layerNormalization on a 2×3 input, forward and gradient by hand (epsilon 2, chosen so that the
 *   square roots are whole).
 * - activityRegularization: its penalty and gradient by hand through the forward pass, and the
 *   training step reporting it as the penalty.
 * - the orthogonal regularizer on a 3×2 kernel in both modes.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { initBackend } from '../src/backend';
import { buildModel, modelSummary } from '../src/model';
import { validateSpec, type ExperimentSpec } from '../src/spec';
import { forward } from '../src/train/forward';
import { alphaDropoutConstants, trainingNoise } from '../src/train/noise';
import { penaltyValues } from '../src/train/penalties';
import { createReferenceStep } from '../src/train/step';
import { createLeanStep } from '../src/train/lean-step';
import { createOptimizer } from '../src/train/optimizers';
import { layerShapes } from '../src/spec/layers';
import { estimateMemory } from '../src/spec/memory';

before(async () => {
  await initBackend('cpu');
});

const N = 200_000;
const SEED = 4242;

/** Mean and (population) variance of a tensor's values, in float64. */
function moments(t: tf.Tensor): { mean: number; variance: number } {
  const v = t.dataSync();
  let s = 0;
  for (const x of v) s += x;
  const mean = s / v.length;
  let q = 0;
  for (const x of v) q += (x - mean) ** 2;
  return { mean, variance: q / v.length };
}

function assertNear(actual: number, expected: number, tol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what} = ${actual}, expected ${expected} ± ${tol}`);
}

const spec = (layers: unknown[]): ExperimentSpec => validateSpec({ name: 'layers', seed: 7, model: { layers } });

/** Eight images with a smooth pattern in [0, 1]. */
const images = () =>
  tf.tidy(() => tf.add(tf.mul(tf.sin(tf.mul(tf.range(0, 8 * 784), 0.37)), 0.5), 0.5).reshape([8, 28, 28]));

describe('the noise layers', () => {
  for (const layer of [
    { gaussianNoise: { stddev: 1 } },
    { gaussianDropout: { rate: 0.5 } },
    { alphaDropout: { rate: 0.5 } },
  ]) {
    const type = Object.keys(layer)[0]!;
    test(`${type} is the identity at inference: the model's probabilities are those of the model without it, bit for bit`, () => {
      const withNoise = buildModel(spec([{ flatten: {} }, layer, { dense: { units: 10, activation: 'softmax' } }]));
      const without = buildModel(spec([{ flatten: {} }, { dense: { units: 10, activation: 'softmax' } }]));
      const x = images();
      const [a, b, trained] = tf.tidy(() => [
        forward(withNoise, x, false).probs.dataSync(),
        forward(without, x, false).probs.dataSync(),
        forward(withNoise, x, true, 99).probs.dataSync(),
      ]);
      assert.deepEqual(Array.from(a), Array.from(b));
      // The same layer in training does change them (the check above is not vacuous).
      assert.notDeepEqual(Array.from(trained), Array.from(b));
      tf.dispose(x);
    });
  }

  test('gaussianNoise adds N(0, stddev²) in training: stddev 0.5 on 200,000 twos gives mean 2 and variance 0.25', () => {
    const x = tf.fill([N], 2);
    const y = trainingNoise(x, { kind: 'gaussianNoise', stddev: 0.5 }, SEED);
    const m = moments(y);
    assertNear(m.mean, 2, 0.005, 'mean'); // standard error 0.5/447 = 0.0011
    assertNear(m.variance, 0.25, 0.004, 'variance'); // standard error 0.25·0.0032 = 0.0008
    tf.dispose([x, y]);
  });

  test('gaussianDropout multiplies by N(1, rate/(1 − rate)) in training: rate 0.2 on 200,000 threes gives mean 3 and variance 9·0.25', () => {
    const x = tf.fill([N], 3);
    const y = trainingNoise(x, { kind: 'gaussianDropout', rate: 0.2 }, SEED);
    const m = moments(y);
    assertNear(m.mean, 3, 0.006, 'mean'); // standard error 1.5/447 = 0.0034
    assertNear(m.variance, 2.25, 0.03, 'variance'); // standard error 2.25·0.0032 = 0.0071
    tf.dispose([x, y]);
  });

  test("alphaDropout's affine map for rate 0.1 is Keras's: α' = −1.7580993, a = 0.9212845, b = 0.1619710", () => {
    const { alphaP, a, b } = alphaDropoutConstants(0.1);
    // α' = −α·λ = −1.6732632·1.0507010; a = (0.9·(1 + 0.1·α'²))^−½ = (0.9·1.3090913)^−½; b = −a·α'·0.1.
    assertNear(alphaP, -1.7580993408, 1e-9, "α'");
    assertNear(a, 0.9212845161, 1e-9, 'a');
    assertNear(b, 0.1619709701, 1e-9, 'b');
  });

  test('alphaDropout keeps a standard-normal input at mean 0 and variance 1, and sets a tenth of the values to a·α′ + b', () => {
    const x = tf.randomNormal([N], 0, 1, 'float32', 1);
    const y = trainingNoise(x, { kind: 'alphaDropout', rate: 0.1 }, SEED);
    const before = moments(x);
    const m = moments(y);
    // Compared with the input's own sample moments: the layer's effect, not the draw's.
    assertNear(m.mean, before.mean, 0.01, 'mean');
    assertNear(m.variance, before.variance, 0.015, 'variance');
    assertNear(m.mean, 0, 0.012, 'mean');
    assertNear(m.variance, 1, 0.02, 'variance');
    // Dropped values become a·α′ + b = 0.9212845·(−1.7580993) + 0.1619710 = −1.4577387.
    const v = y.dataSync();
    let dropped = 0;
    for (const e of v) if (Math.abs(e - -1.4577387) < 1e-6) dropped++;
    assertNear(dropped / N, 0.1, 0.003, 'dropped fraction'); // standard error √(0.09/n) = 0.00067
    tf.dispose([x, y]);
  });

  test('the same seed draws the same noise and another seed other noise (a resumed run draws what the whole run did)', () => {
    const x = tf.zeros([1000]);
    for (const noise of [
      { kind: 'gaussianNoise', stddev: 0.3 },
      { kind: 'gaussianDropout', rate: 0.3 },
      { kind: 'alphaDropout', rate: 0.3 },
    ] as const) {
      const input = noise.kind === 'gaussianDropout' ? tf.onesLike(x) : x;
      const [a, b, c] = [SEED, SEED, SEED + 1].map((s) => trainingNoise(input, noise, s));
      assert.deepEqual(Array.from(a!.dataSync()), Array.from(b!.dataSync()), noise.kind);
      assert.notDeepEqual(Array.from(a!.dataSync()), Array.from(c!.dataSync()), noise.kind);
      tf.dispose([a!, b!, c!]);
      if (input !== x) input.dispose();
    }
    x.dispose();
  });

  test('rate 0 and stddev 0 are the identity in training too, as Keras', () => {
    const x = tf.tensor1d([1, -2, 3]);
    for (const noise of [
      { kind: 'gaussianNoise', stddev: 0 },
      { kind: 'gaussianDropout', rate: 0 },
      { kind: 'alphaDropout', rate: 0 },
    ] as const)
      assert.deepEqual(Array.from(trainingNoise(x, noise, SEED).dataSync()), [1, -2, 3], noise.kind);
    x.dispose();
  });
});

describe('layerNormalization on a 2×3 input, by hand', () => {
  /*
   * x = [[0, 0, 3], [3, 0, 9]], epsilon 2, gamma [1, 2, 3], beta [0, 0, 0.5], over the last axis.
   *   row 1: mean 1, deviations [−1, −1, 2], variance 6/3 = 2,  σ = √(2 + 2) = 2, x̂ = [−0.5, −0.5, 1]
   *   row 2: mean 4, deviations [−1, −4, 5], variance 42/3 = 14, σ = √(14 + 2) = 4, x̂ = [−0.25, −1, 1.25]
   *   y = x̂·gamma + beta = [[−0.5, −1, 3.5], [−0.25, −2, 4.25]]
   * Loss L = y₁₁ + y₂₃ (upstream gradient G = [[1, 0, 0], [0, 0, 1]]):
   *   dL/dbeta = Σ_rows G = [1, 0, 1];  dL/dgamma = Σ_rows G·x̂ = [−0.5, 0, 1.25]
   *   dL/dx per row = (g − mean(g) − x̂·mean(g·x̂))/σ with g = G·gamma:
   *     row 1: g = [1, 0, 0], mean 1/3, mean(g·x̂) = −1/6: ([1, 0, 0] − 1/3 + x̂/6)/2 = [7/24, −5/24, −1/12]
   *     row 2: g = [0, 0, 3], mean 1, mean(g·x̂) = 1.25: ([0, 0, 3] − 1 − 1.25·x̂)/4 = [−0.171875, 0.0625, 0.109375]
   */
  const built = () =>
    buildModel(
      spec([
        { flatten: {} },
        { dense: { units: 3 } },
        { layerNormalization: { epsilon: 2 } },
        { dense: { units: 10, activation: 'softmax' } },
      ]),
    );
  const setUp = () => {
    const b = built();
    const layer = b.model.layers[2]!;
    const [gamma, beta] = [tf.tensor1d([1, 2, 3]), tf.tensor1d([0, 0, 0.5])];
    layer.setWeights([gamma, beta]);
    tf.dispose([gamma, beta]);
    return layer;
  };
  const X = [
    [0, 0, 3],
    [3, 0, 9],
  ];

  test('the layer the spec builds normalizes each row and scales and shifts it: [[−0.5, −1, 3.5], [−0.25, −2, 4.25]]', () => {
    const layer = setUp();
    assert.deepEqual(
      layer.getWeights().map((w) => w.shape),
      [[3], [3]],
    );
    const y = tf.tidy(() => (layer.apply(tf.tensor2d(X), { training: true }) as tf.Tensor).arraySync() as number[][]);
    const expected = [
      [-0.5, -1, 3.5],
      [-0.25, -2, 4.25],
    ];
    y.forEach((row, i) => row.forEach((v, j) => assertNear(v, expected[i]![j]!, 1e-6, `y[${i}][${j}]`)));
  });

  test('its gradients are the hand-derived ones for x, gamma and beta', () => {
    const layer = setUp();
    const G = tf.tensor2d([
      [1, 0, 0],
      [0, 0, 1],
    ]);
    const x = tf.tensor2d(X);
    const [gamma, beta] = layer.trainableWeights.map((w) => w.read() as tf.Variable);
    const dx = tf.grad((input: tf.Tensor) => tf.sum(tf.mul(layer.apply(input) as tf.Tensor, G)))(x);
    const { grads } = tf.variableGrads(
      () => tf.sum(tf.mul(layer.apply(x) as tf.Tensor, G)) as tf.Scalar,
      [gamma!, beta!],
    );
    const close = (t: tf.Tensor, expected: number[], what: string) =>
      Array.from(t.dataSync()).forEach((v, i) => assertNear(v, expected[i]!, 1e-6, `${what}[${i}]`));
    close(dx, [7 / 24, -5 / 24, -1 / 12, -0.171875, 0.0625, 0.109375], 'dL/dx');
    close(grads[gamma!.name]!, [-0.5, 0, 1.25], 'dL/dgamma');
    close(grads[beta!.name]!, [1, 0, 1], 'dL/dbeta');
    tf.dispose([G, x, dx, ...Object.values(grads)]);
  });

  test('center: false and scale: false leave out beta and gamma, and axis [1, 2] normalizes each 28×28 image', () => {
    const b = buildModel(
      spec([
        { layerNormalization: { scale: false, axis: [1, 2] } },
        { flatten: {} },
        { layerNormalization: { center: false } },
        { dense: { units: 10, activation: 'softmax' } },
      ]),
    );
    const weights = (i: number) =>
      b.model.layers[i]!.weights.map((w) => [w.name.split('/').pop()!.replace(/_\d+$/, ''), w.shape]);
    assert.deepEqual(weights(0), [['beta', [28, 28]]]);
    assert.deepEqual(weights(2), [['gamma', [784]]]);
    const x = images();
    const h = tf.tidy(() => (b.model.layers[0]!.apply(x) as tf.Tensor).reshape([8, 784]));
    // beta 0, no gamma: each image's 784 values have mean 0 and variance v/(v + 0.001).
    const row = moments(h.slice([0, 0], [1, 784]));
    const v = moments(x.slice([0, 0, 0], [1, 28, 28])).variance;
    assertNear(row.mean, 0, 1e-6, 'mean');
    assertNear(row.variance, v / (v + 0.001), 1e-5, 'variance');
    tf.dispose([x, h]);
  });
});

describe('activityRegularization, by hand', () => {
  /*
   * dense(3) maps pixel 0 to [1, −2, 0] and pixel 1 to [0, 3, −1] (the other rows of its kernel 0, no bias);
   * image 1 has pixel 0 = 1, image 2 pixel 1 = 1, so the layer's input is h = [[1, −2, 0], [0, 3, −1]].
   *   Σ|h| = 7, Σh² = 15; with l1 0.1 and l2 0.05 the batch's sum is 0.1·7 + 0.05·15 = 1.45, per sample 0.725.
   *   dΣ/dh = l1·sign(h) + 2·l2·h = [[0.2, −0.3, 0], [0, 0.4, −0.2]]; dΣ/dkernel = xᵀ·that: those two rows
   *   in the kernel's rows 0 and 1.
   */
  const setUp = () => {
    const built = buildModel(
      spec([
        { flatten: {} },
        { dense: { units: 3, useBias: false } },
        { activityRegularization: { l1: 0.1, l2: 0.05 } },
        { dense: { units: 10, activation: 'softmax' } },
      ]),
    );
    const k = new Float32Array(784 * 3);
    k.set([1, -2, 0, 0, 3, -1]);
    const kernel = tf.tensor2d(k, [784, 3]);
    built.model.layers[1]!.setWeights([kernel]);
    kernel.dispose();
    const px = new Float32Array(2 * 784);
    px[0] = 1;
    px[784 + 1] = 1;
    return { built, x: tf.tensor3d(px, [2, 28, 28]) };
  };

  test('the forward pass adds l1·Σ|h| + l2·Σh² of its input = 1.45 for the batch, and its gradient reaches the kernel', () => {
    const { built, x } = setUp();
    const kernel = built.model.layers[1]!.trainableWeights[0]!.read() as tf.Variable;
    const { value, grads } = tf.variableGrads(() => forward(built, x, true).activitySum, [kernel]);
    assertNear(value.dataSync()[0]!, 1.45, 1e-6, 'activity sum');
    const g = grads[kernel.name]!.dataSync();
    const expected = [0.2, -0.3, 0, 0, 0.4, -0.2];
    expected.forEach((e, i) => assertNear(g[i]!, e, 1e-7, `gradient[${i}]`));
    assert.ok(
      g.subarray(6).every((v) => v === 0),
      'the kernel rows of pixels no image lights get no gradient',
    );
    tf.dispose([x, value, ...Object.values(grads)]);
  });

  test('the training step reports it as the penalty, per sample (1.45 / 2 = 0.725), and the summary lists it', () => {
    const { built, x } = setUp();
    const step = createReferenceStep(built, createOptimizer({ sgd: { learningRate: 0.01 } }));
    const y = tf.tensor1d([0, 1], 'int32');
    const r = step.run(x, y, 1);
    assertNear(r.penalty, 0.725, 1e-6, 'penalty');
    assert.match(
      modelSummary(built).join('\n'),
      /^activity_regularization \(ActivityRegularization\) .* activity L1L2\(l1=0\.1, l2=0\.05\)$/m,
    );
    tf.dispose([x, y]);
    step.dispose();
  });
});

describe('the orthogonal regularizer on a 3×2 kernel, by hand', () => {
  /*
   * W = [[3, 4], [0, 0], [4, 3]], factor 0.5; penalty = factor·½·Σ|off-diagonal Gram entries| / pairs.
   * rows: L2-normalized [0.6, 0.8], [0, 0] (a zero row stays zero: Keras's normalize divides by
   *   √max(Σv², ε)), [0.8, 0.6]; the pairs' dot products 0, 0.96, 0: the Gram matrix's off-diagonal
   *   sum is 2·0.96 = 1.92, over 3 pairs: 0.5·0.5·1.92/3 = 0.16.
   * columns: [3, 0, 4]/5 and [4, 0, 3]/5, dot product 24/25 = 0.96; off-diagonal sum 1.92, over 1 pair:
   *   0.5·0.5·1.92 = 0.48.
   */
  for (const [mode, expected] of [
    ['rows', 0.16],
    ['columns', 0.48],
  ] as const) {
    test(`in ${mode} mode it is ${expected}, the penalty the training step reports`, () => {
      const built = buildModel(
        spec([
          { flatten: {} },
          { dense: { units: 3 } },
          { dense: { units: 2, kernelRegularizer: { orthogonal: { factor: 0.5, mode } } } },
          { dense: { units: 10, activation: 'softmax' } },
        ]),
      );
      const layer = built.model.layers[2]!;
      const [, bias] = layer.getWeights();
      const kernel = tf.tensor2d([
        [3, 4],
        [0, 0],
        [4, 3],
      ]);
      layer.setWeights([kernel, bias!]);
      kernel.dispose();
      assertNear(penaltyValues(built)['dense_1/kernel']!, expected, 1e-6, 'penalty');
      const step = createReferenceStep(built, createOptimizer({ sgd: { learningRate: 0.01 } }));
      const x = tf.zeros([2, 28, 28]);
      const y = tf.tensor1d([0, 1], 'int32');
      assertNear(step.run(x, y, 1).penalty, expected, 1e-6, 'step penalty');
      assert.match(
        modelSummary(built).join('\n'),
        new RegExp(`^dense_1 \\(Dense\\) .* kernel Orthogonal\\(factor=0\\.5, mode=${mode}\\)$`, 'm'),
      );
      tf.dispose([x, y]);
      step.dispose();
    });
  }

  test("the bare name means Keras 3's defaults, factor 0.01 and mode rows", () => {
    const s = spec([{ flatten: {} }, { dense: { units: 10, activation: 'softmax', kernelRegularizer: 'orthogonal' } }]);
    assert.deepEqual(s.model.layers[1]!.dense!.kernelRegularizer, {
      l1: 0,
      l2: 0,
      orthogonal: { factor: 0.01, mode: 'rows' },
    });
  });
});

describe("the new fields' bad values are refused with the field's path", () => {
  /** The spec's error for `layer` placed between a flatten and the softmax output (layer 1). */
  const refusal = (layer: unknown, first: unknown[] = [{ flatten: {} }]): string => {
    try {
      validateSpec({
        name: 'x',
        model: { layers: [...first, layer, { flatten: {} }, { dense: { units: 10, activation: 'softmax' } }] },
      });
    } catch (err) {
      return (err as Error).message;
    }
    assert.fail(`${JSON.stringify(layer)} validated`);
  };
  const L = 'model.layers.1';
  const cases: [unknown, string][] = [
    [{ gaussianNoise: {} }, `${L}.gaussianNoise.stddev: expected a number from 0 to 1, got nothing`],
    [{ gaussianNoise: { stddev: -0.1 } }, `${L}.gaussianNoise.stddev: expected a number from 0 to 1, got -0.1`],
    [{ gaussianNoise: { stddev: 1.5 } }, `${L}.gaussianNoise.stddev: expected a number from 0 to 1, got 1.5`],
    [{ gaussianNoise: { stddev: 0.1, seed: 3 } }, `${L}.gaussianNoise.seed: unknown key`],
    [{ gaussianDropout: {} }, `${L}.gaussianDropout.rate: expected a rate in [0, 1), got nothing`],
    [{ gaussianDropout: { rate: 1 } }, `${L}.gaussianDropout.rate: expected a rate in [0, 1), got 1`],
    [{ alphaDropout: { rate: -0.5 } }, `${L}.alphaDropout.rate: expected a rate in [0, 1), got -0.5`],
    [
      { alphaDropout: { rate: 0.99999999 } },
      `${L}.alphaDropout.rate: 0.99999999 is 1 in float32 (the precision training uses), so 1 − it is 0; use at most 0.99999994`,
    ],
    [
      { layerNormalization: { axis: 0 } },
      `${L}.layerNormalization.axis: expected axis 1 or -1 (the layer's input is 784 per image, axis 0 the batch), got 0`,
    ],
    [
      { layerNormalization: { axis: -2 } },
      `${L}.layerNormalization.axis: expected axis 1 or -1 (the layer's input is 784 per image, axis 0 the batch), got -2`,
    ],
    [{ layerNormalization: { axis: [1, -1] } }, `${L}.layerNormalization.axis: axis -1 is axis 1 again`],
    [
      { layerNormalization: { axis: 1.5 } },
      `${L}.layerNormalization.axis: expected an axis (an integer) or a non-empty list of them`,
    ],
    [{ layerNormalization: { axis: [] } }, `${L}.layerNormalization.axis: expected at least one axis, got a list`],
    [{ layerNormalization: { epsilon: 0 } }, `${L}.layerNormalization.epsilon: expected a positive number, got 0`],
    [{ layerNormalization: { center: 'yes' } }, `${L}.layerNormalization.center: expected true or false, got "yes"`],
    [{ layerNormalization: { scale: 1 } }, `${L}.layerNormalization.scale: expected true or false, got 1`],
    [{ activityRegularization: { l1: -1 } }, `${L}.activityRegularization.l1: expected a finite number ≥ 0, got -1`],
    [{ activityRegularization: { l2: 'x' } }, `${L}.activityRegularization.l2: expected a finite number ≥ 0, got "x"`],
    [
      { dense: { units: 4, kernelRegularizer: { orthogonal: { factor: -1 } } } },
      `${L}.dense.kernelRegularizer.orthogonal.factor: expected a finite number ≥ 0, got -1`,
    ],
    [
      { dense: { units: 4, kernelRegularizer: { orthogonal: { mode: 'diagonal' } } } },
      `${L}.dense.kernelRegularizer.orthogonal.mode: expected one of rows, columns, got "diagonal"`,
    ],
    [
      { dense: { units: 4, kernelRegularizer: { orthogonal: {}, l2: 0.01 } } },
      `${L}.dense.kernelRegularizer: expected either {l1, l2} or orthogonal, not both (Keras takes one regularizer per weight)`,
    ],
    [
      { dense: { units: 1, kernelRegularizer: { orthogonal: { mode: 'columns' } } } },
      `${L}.dense.kernelRegularizer.orthogonal.mode: the kernel (784×1) has 1 column: orthogonality needs at least 2 columns`,
    ],
    [
      { dense: { units: 4, biasRegularizer: 'orthogonal' } },
      `${L}.dense.biasRegularizer: expected {l1, l2} or one of l1, l2, l1l2, got "orthogonal"`,
    ],
  ];
  for (const [layer, message] of cases)
    test(`${JSON.stringify(layer)} is refused: ${message}`, () => {
      assert.equal(refusal(layer), `! ${message} ((spec))`);
    });

  test('the orthogonal regularizer on a conv2d kernel is refused: Keras takes rank-2 kernels only', () => {
    assert.equal(
      refusal({ conv2d: { filters: 2, kernelSize: 3, kernelRegularizer: 'orthogonal' } }, [
        { reshape: { targetShape: [28, 28, 1] } },
      ]),
      '! model.layers.1.conv2d.kernelRegularizer.orthogonal: the orthogonal regularizer needs a 2-dimensional kernel (a dense layer); a conv2d kernel has 4 ((spec))',
    );
  });
});

describe("the spec's shape rules and memory estimate count layerNormalization's parameters", () => {
  const layers = (ln: Record<string, unknown>) => [
    { reshape: { targetShape: [28, 28, 1] } },
    { conv2d: { filters: 3, kernelSize: 3 } },
    { layerNormalization: ln },
    { flatten: {} },
    { dense: { units: 10, activation: 'softmax' } },
  ];
  for (const [ln, params] of [
    [{}, 6], // the 3 channels: gamma and beta
    [{ axis: [1, 2] }, 2 * 26 * 26],
    [{ axis: [-3, -2, -1], center: false }, 26 * 26 * 3],
    [{ scale: false, center: false }, 0],
  ] as const) {
    test(`layerNormalization ${JSON.stringify(ln)} on a 26×26×3 map has ${params} parameters, as the model built from it`, () => {
      const s = spec(layers(ln));
      const { shapes } = layerShapes(s.model.layers);
      assert.equal(shapes[2]!.params, params);
      assert.equal(buildModel(s).model.layers[2]!.countParams(), params);
    });
  }

  test("the memory estimate's fixed part grows by the layer's parameters, their gradients (plain SGD: no slots)", () => {
    const base = spec(layers({ scale: false, center: false }));
    const full = spec(layers({ axis: [1, 2] }));
    const fixed = (s: ExperimentSpec) => estimateMemory(s, layerShapes(s.model.layers).shapes).fixed;
    assert.equal(fixed(full) - fixed(base), 2 * (2 * 26 * 26));
  });
});

describe('a noise layer on the input, on the lean step', () => {
  for (const noise of [
    { gaussianNoise: { stddev: 0.3 } },
    { gaussianDropout: { rate: 0.3 } },
    { alphaDropout: { rate: 0.3 } },
  ]) {
    const type = Object.keys(noise)[0]!;
    test(`${type} right after the flatten trains as on the autodiff step: the same losses and weights to float32 rounding over 3 batches`, () => {
      const s = spec([
        { flatten: {} },
        noise,
        { dense: { units: 8, activation: 'relu' } },
        { dense: { units: 10, activation: 'softmax' } },
      ]);
      const [a, b] = [buildModel(s), buildModel(s)];
      const lean = createLeanStep(a.model, createOptimizer({ sgd: { learningRate: 0.1 } }), [], {
        inputNoise: { layerIndex: 1, noise: a.noise!.get(1)! },
      });
      assert.ok(!('unsupported' in lean), JSON.stringify(lean));
      const ref = createReferenceStep(b, createOptimizer({ sgd: { learningRate: 0.1 } }));
      const x = images();
      const y = tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], 'int32');
      for (const seed of [11, 12, 13]) {
        const l = lean.run(x as tf.Tensor3D, y, seed);
        const r = ref.run(x, y, seed);
        assertNear(l.dataLoss / l.batchSize, r.dataLoss, 1e-5 * r.dataLoss, `loss with seed ${seed}`);
      }
      const wa = a.model.getWeights().map((w) => Array.from(w.dataSync()));
      const wb = b.model.getWeights().map((w) => Array.from(w.dataSync()));
      wa.forEach((w, i) => w.forEach((v, j) => assertNear(v, wb[i]![j]!, 1e-5, `weight ${i}[${j}]`)));
      // The noise reached the step: without it the same batches give other weights.
      const plain = buildModel(
        spec([
          { flatten: {} },
          { dense: { units: 8, activation: 'relu' } },
          { dense: { units: 10, activation: 'softmax' } },
        ]),
      );
      const plainStep = createReferenceStep(plain, createOptimizer({ sgd: { learningRate: 0.1 } }));
      for (const seed of [11, 12, 13]) plainStep.run(x, y, seed);
      assert.notDeepEqual(Array.from(plain.model.getWeights()[0]!.dataSync()), wa[0]);
      tf.dispose([x, y]);
      lean.dispose();
      ref.dispose();
      plainStep.dispose();
    });
  }
});
