/**
 * Dropout on the lean (hand-written) step, in process, on the cpu backend, on wasm through tfjs's ops and
 * on wasm with regtrain's GEMM called directly (the step's three ways to run):
 *
 * - the mask generator is tf.dropout's multiplier, bit for bit (so the lean step drops what the reference
 *   step drops);
 * - one step of a 2-unit model against its forward and backward pass by hand, for masks that keep one
 *   hidden unit and drop the other;
 * - the lean step and the autodiff step agree over 4 batches on a model with input and hidden dropout;
 * - rate 0 is the model without the layer, bit for bit; inference does not drop anything;
 * - the path choice: such a model trains on the lean step, and `needsAutodiff` says so.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { installAcceleratedKernels, uninstallAcceleratedKernels } from '../src/accel/kernels';
import { buildModel } from '../src/model';
import { validateSpec, type ExperimentSpec } from '../src/spec';
import { forward } from '../src/train/forward';
import { createLeanStep, dropoutMultiplier } from '../src/train/lean-step';
import { createOptimizer } from '../src/train/optimizers';
import { createReferenceStep, createTrainStep, needsAutodiff } from '../src/train/step';
import { initBackend } from '../src/backend';
import { useBackend } from './helpers/backend';

const spec = (layers: unknown[], sgd: Record<string, unknown> = { learningRate: 1 }): ExperimentSpec =>
  validateSpec({ name: 'dropout', seed: 7, model: { layers }, optimizer: { sgd } });

/** Eight images with a smooth pattern in [0, 1], and eight labels. */
const batch = () => ({
  x: tf.tidy(() =>
    tf.add(tf.mul(tf.sin(tf.mul(tf.range(0, 8 * 784), 0.37)), 0.5), 0.5).reshape<tf.Tensor3D>([8, 28, 28]),
  ),
  y: tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], 'int32'),
});

const weightsOf = (model: tf.Sequential) => model.getWeights().map((w) => Array.from(w.dataSync()));

/** The step's three ways to run: cpu; wasm through tfjs's ops; wasm with the installed GEMM (runDirect). */
const WAYS = [
  { name: 'cpu', backend: 'cpu', gemm: false },
  { name: 'wasm', backend: 'wasm', gemm: false },
  { name: 'wasm + installed GEMM', backend: 'wasm', gemm: true },
] as const;

async function onWay(
  t: { skip(why: string): void },
  way: (typeof WAYS)[number],
  body: () => void | Promise<void>,
): Promise<void> {
  if (!(await useBackend(way.backend))) return t.skip(`${way.backend} backend unavailable`);
  if (way.gemm && !installAcceleratedKernels(way.backend).installed) return t.skip('no GEMM to install here');
  try {
    await body();
  } finally {
    if (way.gemm) uninstallAcceleratedKernels(way.backend);
  }
}

describe('the dropout mask', () => {
  test('is tf.dropout’s multiplier bit for bit: rate 0.2 keeps a value ×1.25 or drops it, about a fifth dropped', async () => {
    await useBackend('cpu');
    const n = 10_000;
    const m = dropoutMultiplier(n, 0.2, 77);
    const ref = tf.tidy(() => tf.dropout(tf.ones([n]), 0.2, undefined, 77).dataSync());
    assert.deepEqual(Array.from(m), Array.from(ref));
    assert.ok(
      m.every((v) => v === 0 || v === 1.25),
      'every multiplier is 0 or 1.25',
    );
    // A fifth of 10,000 dropped: standard error √(0.16/10,000) = 0.004; ±4 of them.
    const dropped = m.filter((v) => v === 0).length / n;
    assert.ok(Math.abs(dropped - 0.2) <= 0.016, `dropped ${dropped}`);
    // Another seed draws another mask; the same seed the same one.
    assert.notDeepEqual(Array.from(dropoutMultiplier(n, 0.2, 78)), Array.from(m));
    assert.deepEqual(Array.from(dropoutMultiplier(n, 0.2, 77)), Array.from(m));
  });
});

/**
 * flatten → dense(2, relu) → dropout(0.5) → dense(10, softmax), SGD lr 1, one image whose only non-zero
 * pixel is the first, at 1, label 0. Kernel 1: row 0 = [1, 2], else 0, bias 0: hidden h = [1, 2], both
 * units active. Dropout multiplier m (0 or 2 each): d = [m₀, 2m₁]. Kernel 2 = the 2×10 identity's first
 * two rows, bias 0: logits z = [d₀, d₁, 0, …, 0], S = e^d₀ + e^d₁ + 8, p = softmax(z), loss log S − d₀,
 * δ = p − onehot(0). Gradients: kernel 2 row i = dᵢ·δ, bias 2 = δ; through kernel 2 and the mask, the
 * hidden gradient is gᵢ = δᵢ·mᵢ (relu passes it: h > 0); kernel 1 row 0 = g, bias 1 = g, other rows 0.
 */
function handCase(m: [number, number]) {
  const d = [m[0], 2 * m[1]] as const;
  const S = Math.exp(d[0]) + Math.exp(d[1]) + 8;
  const p = [Math.exp(d[0]) / S, Math.exp(d[1]) / S, ...Array<number>(8).fill(1 / S)];
  const delta = p.map((v, j) => v - (j === 0 ? 1 : 0));
  const g = [delta[0]! * m[0], delta[1]! * m[1]];
  const k1 = new Float32Array(784 * 2);
  k1[0] = 1;
  k1[1] = 2;
  const k2 = new Float32Array(20);
  k2[0] = 1;
  k2[11] = 1;
  const k1After = Array.from(k1);
  k1After[0] = 1 - g[0]!;
  k1After[1] = 2 - g[1]!;
  const k2After = Array.from(k2, (v, i) => v - d[Math.floor(i / 10)]! * delta[i % 10]!);
  return {
    loss: Math.log(S) - d[0],
    initial: { k1, k2 },
    after: [k1After, g.map((v) => -v), k2After, delta.map((v) => -v)],
  };
}

describe('one lean step with dropout, by hand', () => {
  const DROPOUT_LAYER = 2;
  // Seeds whose masks keep one unit and drop the other (the dropout layer draws with seed + its index).
  const seedFor = (want: [number, number]): number => {
    for (let s = 0; s < 1000; s++) {
      const m = dropoutMultiplier(2, 0.5, s + DROPOUT_LAYER);
      if (m[0] === want[0] && m[1] === want[1]) return s;
    }
    throw new Error(`no seed below 1000 draws ${want}`);
  };
  for (const way of WAYS) {
    for (const mask of [
      [2, 0],
      [0, 2],
    ] as [number, number][]) {
      test(`${way.name}: mask [${mask}] gives the hand-computed loss and updates; the dropped unit's weights do not move`, async (t) => {
        await onWay(t, way, () => {
          const seed = seedFor(mask);
          const s = spec([
            { flatten: {} },
            { dense: { units: 2, activation: 'relu' } },
            { dropout: { rate: 0.5 } },
            { dense: { units: 10, activation: 'softmax' } },
          ]);
          const built = buildModel(s);
          const hand = handCase(mask);
          built.model.layers[1]!.setWeights([tf.tensor2d(hand.initial.k1, [784, 2]), tf.zeros([2])]);
          built.model.layers[3]!.setWeights([tf.tensor2d(hand.initial.k2, [2, 10]), tf.zeros([10])]);
          const step = createLeanStep(built.model, createOptimizer(s.optimizer), []);
          assert.ok(!('unsupported' in step), JSON.stringify(step));
          const image = new Float32Array(784);
          image[0] = 1;
          const x = tf.tensor3d(image, [1, 28, 28]);
          const y = tf.tensor1d([0], 'int32');
          const r = step.run(x, y, seed);
          assert.ok(Math.abs(r.dataLoss - hand.loss) <= 1e-6, `loss ${r.dataLoss}, by hand ${hand.loss}`);
          weightsOf(built.model).forEach((w, i) =>
            w.forEach((v, k) =>
              assert.ok(
                Math.abs(v - hand.after[i]![k]!) <= 1e-6,
                `weight ${i}[${k}]: ${v}, by hand ${hand.after[i]![k]}`,
              ),
            ),
          );
          step.dispose();
          built.model.dispose();
          tf.dispose([x, y]);
        });
      });
    }
  }
});

const DROPOUT_MODEL = [
  { flatten: {} },
  { dropout: { rate: 0.1 } },
  { dense: { units: 32, activation: 'relu' } },
  { dropout: { rate: 0.3 } },
  { dense: { units: 16, activation: 'relu' } },
  { dropout: { rate: 0.2 } },
  { dense: { units: 10, activation: 'softmax' } },
];

describe('the lean step and the autodiff step with dropout', () => {
  for (const way of WAYS) {
    test(`${way.name}: input and hidden dropout drop the same units on both steps: the same losses and weights to float32 rounding over 4 batches`, async (t) => {
      await onWay(t, way, () => {
        const s = spec(DROPOUT_MODEL, { learningRate: 0.1 });
        const [a, b] = [buildModel(s), buildModel(s)];
        const initial = a.model.getWeights().map((w) => w.clone());
        b.model.setWeights(initial);
        const lean = createLeanStep(a.model, createOptimizer(s.optimizer), []);
        assert.ok(!('unsupported' in lean), JSON.stringify(lean));
        const ref = createReferenceStep(b, createOptimizer(s.optimizer));
        const { x, y } = batch();
        for (const seed of [11, 12, 13, 14]) {
          const l = lean.run(x, y, seed);
          const r = ref.run(x, y, seed);
          assert.ok(Math.abs(l.dataLoss / l.batchSize - r.dataLoss) <= 1e-5 * r.dataLoss, `seed ${seed}`);
        }
        const wb = weightsOf(b.model);
        weightsOf(a.model).forEach((w, i) =>
          w.forEach((v, k) => assert.ok(Math.abs(v - wb[i]![k]!) <= 1e-5, `weight ${i}[${k}]: ${v} vs ${wb[i]![k]}`)),
        );
        // Dropout acted: the same model without it takes other steps from the same weights.
        const plainSpec = spec(
          DROPOUT_MODEL.filter((l) => !('dropout' in l)),
          { learningRate: 0.1 },
        );
        const plain = buildModel(plainSpec);
        plain.model.setWeights(initial);
        const plainStep = createLeanStep(plain.model, createOptimizer(s.optimizer), []);
        assert.ok(!('unsupported' in plainStep));
        for (const seed of [11, 12, 13, 14]) plainStep.run(x, y, seed);
        assert.notDeepEqual(weightsOf(plain.model)[0], weightsOf(a.model)[0]);
        tf.dispose([x, y, ...initial]);
        lean.dispose();
        ref.dispose();
        plainStep.dispose();
        for (const m of [a, b, plain]) m.model.dispose();
      });
    });
  }

  test('rate 0 trains exactly as the model without the layer, bit for bit (3 lean steps)', async () => {
    await useBackend('cpu');
    const zero = spec(DROPOUT_MODEL.map((l) => ('dropout' in l ? { dropout: { rate: 0 } } : l)));
    const none = spec(DROPOUT_MODEL.filter((l) => !('dropout' in l)));
    const [a, b] = [buildModel(zero), buildModel(none)];
    b.model.setWeights(a.model.getWeights());
    const sa = createLeanStep(a.model, createOptimizer(zero.optimizer), []);
    const sb = createLeanStep(b.model, createOptimizer(zero.optimizer), []);
    assert.ok(!('unsupported' in sa) && !('unsupported' in sb));
    const { x, y } = batch();
    for (const seed of [1, 2, 3]) assert.equal(sa.run(x, y, seed).dataLoss, sb.run(x, y, seed).dataLoss);
    assert.deepEqual(weightsOf(a.model), weightsOf(b.model));
    tf.dispose([x, y]);
    a.model.dispose();
    b.model.dispose();
  });

  test('inference drops nothing: after lean steps with dropout, the probabilities are those of the same weights without the layers, bit for bit', async () => {
    await useBackend('cpu');
    const s = spec(DROPOUT_MODEL, { learningRate: 0.1 });
    const withDropout = buildModel(s);
    const step = createLeanStep(withDropout.model, createOptimizer(s.optimizer), []);
    assert.ok(!('unsupported' in step));
    const { x, y } = batch();
    for (const seed of [5, 6]) step.run(x, y, seed);
    const without = buildModel(spec(DROPOUT_MODEL.filter((l) => !('dropout' in l))));
    without.model.setWeights(withDropout.model.getWeights());
    const [a, b] = tf.tidy(() => [
      forward(withDropout, x, false).probs.dataSync(),
      forward(without, x, false).probs.dataSync(),
    ]);
    assert.deepEqual(Array.from(a), Array.from(b));
    tf.dispose([x, y]);
    withDropout.model.dispose();
    without.model.dispose();
  });
});

describe('the path choice', () => {
  test('a Flatten + Dense model with dropout on its input and hidden layers trains on the lean step, as needsAutodiff predicts', async (t) => {
    const s = spec(DROPOUT_MODEL);
    assert.equal(needsAutodiff(s), false);
    const backend = await initBackend('wasm');
    if (!backend.gemm.kind) return t.skip(`the lean step needs fast matmul kernels: ${backend.gemm.reason}`);
    const built = buildModel(s);
    const step = createTrainStep(built, s, backend);
    assert.equal(step.path, 'lean', step.description);
    step.dispose();
    built.model.dispose();
  });
});
