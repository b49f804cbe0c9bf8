/**
 * Issue 25: the cross-entropy and its gradient come from the softmax's logits, as TF-Keras computes
 * them, in both training steps and in evaluation; a sample the model puts below p = 1e-7 on its true
 * class gets the full gradient p − onehot (the clipped-probability form gave it none).
 *
 * The model: flatten → dense 10 softmax, kernel 0, bias 0 except −20 on the true class (3), and one
 * image whose first pixel is 1 (the rest 0). Then z = bias, and by hand:
 *   p_3 = e⁻²⁰/(9 + e⁻²⁰) = 2.2901706e-10 (below 1e-7), p_j = 1/(9 + e⁻²⁰) = 0.11111111 for j ≠ 3;
 *   loss = −log p_3 = 20 + log(9 + e⁻²⁰) = 22.1972246 (the clipped form would say −log 1e-7 = 16.118);
 *   gradient of the bias and of the kernel's first row = p − onehot; of the other kernel rows 0.
 * One SGD step at lr 1 then moves bias_3 from −20 to −19.0000000002 (−19 in float32) and every other
 * bias from 0 to −0.11111111.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { createLeanStep } from '../src/train/lean-step';
import { installAcceleratedKernels, uninstallAcceleratedKernels } from '../src/accel/kernels';
import { buildModel } from '../src/model';
import { validateSpec } from '../src/spec';
import { evaluateSplit } from '../src/train/forward';
import { createReferenceStep } from '../src/train/step';
import { createOptimizer } from '../src/train/optimizers';
import { useBackend } from './helpers/backend';

const TRUE_CLASS = 3;
const P_TRUE = Math.exp(-20) / (9 + Math.exp(-20));
const P_OTHER = 1 / (9 + Math.exp(-20));
const LOSS = 20 + Math.log(9 + Math.exp(-20));

const SPEC = validateSpec({
  name: 'confidently-wrong',
  model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax' } }] },
  optimizer: { sgd: { learningRate: 1 } },
});

function confidentlyWrongModel() {
  const built = buildModel(SPEC);
  const bias = new Float32Array(10);
  bias[TRUE_CLASS] = -20;
  built.model.layers[1]!.setWeights([tf.zeros([784, 10]), tf.tensor1d(bias)]);
  const image = new Float32Array(784);
  image[0] = 1;
  return { built, image };
}

/** p − onehot, the gradient TF-Keras gives every sample (bias and the first kernel row here). */
const FULL_GRADIENT = Array.from({ length: 10 }, (_, j) => (j === TRUE_CLASS ? P_TRUE - 1 : P_OTHER));

function assertMovedByFullGradient(kernel: Float32Array, bias: Float32Array, label: string) {
  for (let j = 0; j < 10; j++) {
    const start = j === TRUE_CLASS ? -20 : 0;
    assert.ok(
      Math.abs(bias[j]! - (start - FULL_GRADIENT[j]!)) <= 2e-6,
      `${label}: bias ${j} = ${bias[j]}, want ${start - FULL_GRADIENT[j]!}`,
    );
    assert.ok(
      Math.abs(kernel[j]! + FULL_GRADIENT[j]!) <= 1e-7,
      `${label}: kernel[0][${j}] = ${kernel[j]}, want ${-FULL_GRADIENT[j]!}`,
    );
  }
  // Rows 1..783 saw a zero input: no gradient.
  for (let i = 10; i < kernel.length; i++) assert.equal(kernel[i], 0, `${label}: kernel element ${i}`);
}

for (const backend of ['cpu', 'wasm'] as const) {
  test(`${backend}: the reference step gives a sample at p = 2.3e-10 on its true class the loss 22.197 and the full gradient p − onehot`, async (t) => {
    if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
    const { built, image } = confidentlyWrongModel();
    const step = createReferenceStep(built, createOptimizer(SPEC.optimizer));
    const x = tf.tensor3d(image, [1, 28, 28]);
    const y = tf.tensor1d([TRUE_CLASS], 'int32');
    const r = step.run(x, y, 0);
    assert.ok(Math.abs(r.dataLoss - LOSS) <= 1e-5, `loss ${r.dataLoss}, want ${LOSS}`);
    assert.equal(r.correct, 0);
    const [kernel, bias] = built.model.layers[1]!.getWeights().map((w) => w.dataSync() as Float32Array);
    assertMovedByFullGradient(kernel!, bias!, 'reference');
    step.dispose();
    tf.dispose([x, y]);
    built.model.dispose();
  });

  for (const gemm of [false, true]) {
    test(`${backend}${gemm ? ' + installed GEMM' : ''}: the lean step gives the same sample the same loss and gradient as the reference step`, async (t) => {
      if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
      if (gemm && !installAcceleratedKernels(backend).installed) return t.skip('no GEMM to install here');
      try {
        const ref = confidentlyWrongModel();
        const lean = confidentlyWrongModel();
        const refStep = createReferenceStep(ref.built, createOptimizer(SPEC.optimizer));
        const step = createLeanStep(lean.built.model, createOptimizer(SPEC.optimizer), []);
        if ('unsupported' in step) throw new Error(step.unsupported);
        const x = tf.tensor3d(lean.image, [1, 28, 28]);
        const y = tf.tensor1d([TRUE_CLASS], 'int32');
        const refR = refStep.run(x, y, 0);
        const r = step.run(x, y);
        assert.ok(Math.abs(r.dataLoss - LOSS) <= 1e-5, `loss ${r.dataLoss}, want ${LOSS}`);
        assert.ok(Math.abs(r.dataLoss - refR.dataLoss) <= 4e-6, `lean ${r.dataLoss} vs reference ${refR.dataLoss}`);
        const [kernel, bias] = lean.built.model.layers[1]!.getWeights().map((w) => w.dataSync() as Float32Array);
        assertMovedByFullGradient(kernel!, bias!, 'lean');
        const [refKernel, refBias] = ref.built.model.layers[1]!.getWeights().map((w) => w.dataSync() as Float32Array);
        // Float32 rounding apart: the lean step's p − onehot is computed in float64, autodiff's in float32.
        for (let j = 0; j < 10; j++) {
          assert.ok(
            Math.abs(bias![j]! - refBias![j]!) <= 2e-6,
            `bias ${j}: lean ${bias![j]} vs reference ${refBias![j]}`,
          );
          assert.ok(
            Math.abs(kernel![j]! - refKernel![j]!) <= 1e-7,
            `kernel ${j}: lean ${kernel![j]} vs reference ${refKernel![j]}`,
          );
        }
        step.dispose();
        refStep.dispose();
        tf.dispose([x, y]);
        ref.built.model.dispose();
        lean.built.model.dispose();
      } finally {
        if (gemm) uninstallAcceleratedKernels(backend);
      }
    });
  }
}

test('evaluation reports the same sample at its unclipped loss 22.197, from the logits', async () => {
  await useBackend('cpu');
  const { built, image } = confidentlyWrongModel();
  const e = evaluateSplit(built, {
    pixels: Uint8Array.from(image),
    lut: Float32Array.from({ length: 256 }, (_, v) => v),
    labels: new Int32Array([TRUE_CLASS]),
    count: 1,
  });
  assert.ok(Math.abs(e.dataLoss - LOSS) <= 1e-5, `loss ${e.dataLoss}, want ${LOSS}`);
  assert.equal(e.correct, 0);
  built.model.dispose();
});
