/**
 * Gradient clipping (clipnorm, globalClipnorm, clipvalue), Keras 3's formulas, after one SGD step (lr 1)
 * on both training steps, every figure by hand.
 *
 * The model (test/helpers/hand-model.ts): flatten → dense 10 softmax, kernel 0, bias ln 2 on class 0, one
 * image with pixel 0 = 1, label 0: p_0 = 2/11, p_j = 1/11, so the gradient of kernel row 0 and of the bias is
 * g = [−9/11, 1/11, …, 1/11] (the other kernel rows 0), ‖g‖ = √90/11 for each variable, √180/11 for both.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { createLeanStep } from '../src/train/lean-step';
import { installAcceleratedKernels, uninstallAcceleratedKernels } from '../src/accel/kernels';
import { handModel, handStep } from './helpers/hand-model';
import { validateSpec } from '../src/spec';
import { createReferenceStep } from '../src/train/step';
import { createOptimizer } from '../src/train/optimizers';
import { useBackend } from './helpers/backend';
import { specRefusal } from './helpers/spec-refusal';

const specWith = (sgd: Record<string, unknown>) =>
  validateSpec({
    name: 'clipped',
    model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax' } }] },
    optimizer: { sgd: { learningRate: 1, ...sgd } },
  });

/** Each case: the optimizer's fields, and the step's change of kernel row 0 / the bias for class 0 and for another class. */
const CASES: { name: string; sgd: Record<string, unknown>; first: number; other: number; biasFirst?: number }[] = [
  // Each variable's g scaled by 0.5/‖g‖ = 5.5/√90.
  {
    name: 'clipnorm 0.5 scales each variable’s gradient to norm 0.5',
    sgd: { clipnorm: 0.5 },
    first: 4.5 / Math.sqrt(90),
    other: -0.5 / Math.sqrt(90),
  },
  // Both variables' g scaled by 0.5/(√180/11) = 5.5/√180.
  {
    name: 'globalClipnorm 0.5 scales both gradients together to global norm 0.5',
    sgd: { globalClipnorm: 0.5 },
    first: 4.5 / Math.sqrt(180),
    other: -0.5 / Math.sqrt(180),
  },
  // −9/11 clipped to −0.5; 1/11 stays.
  { name: 'clipvalue 0.5 clips each element to [−0.5, 0.5]', sgd: { clipvalue: 0.5 }, first: 0.5, other: -1 / 11 },
  // A norm under the limit: Keras's g·c/max(‖g‖, c) leaves g as it is (c = 2, exact in float32).
  {
    name: 'clipnorm 2 leaves a gradient of smaller norm as it is',
    sgd: { clipnorm: 2 },
    first: 9 / 11,
    other: -1 / 11,
  },
  // Decoupled weight decay is applied apart from the clipped gradient: bias 0 = ln 2 − ln 2·0.5 + 0.5.
  {
    name: 'weight decay is not clipped: it is applied apart from the clipped gradient',
    sgd: { clipvalue: 0.5, weightDecay: 0.5 },
    first: 0.5,
    other: -1 / 11,
    biasFirst: Math.LN2 / 2 + 0.5,
  },
];

function assertAfterOneStep(built: ReturnType<typeof handModel>['built'], c: (typeof CASES)[number], label: string) {
  const [kernel, bias] = built.model.layers[1]!.getWeights().map((w) => w.dataSync() as Float32Array);
  const near = (a: number, e: number, what: string) =>
    assert.ok(Math.abs(a - e) <= 1e-6, `${label}: ${what} = ${a}, want ${e}`);
  near(kernel![0]!, c.first, 'kernel[0][0]');
  for (let j = 1; j < 10; j++) near(kernel![j]!, c.other, `kernel[0][${j}]`);
  for (let i = 10; i < kernel!.length; i++) assert.equal(kernel![i], 0, `${label}: kernel element ${i}`);
  near(bias![0]!, c.biasFirst ?? Math.LN2 + c.first, 'bias[0]');
  for (let j = 1; j < 10; j++) near(bias![j]!, c.other, `bias[${j}]`);
}

function oneStep(c: (typeof CASES)[number], lean: boolean) {
  const spec = specWith(c.sgd);
  const { built, step, x, y } = handStep(spec, lean);
  step.run(x, y, 0);
  const weights = built.model.getWeights().map((w) => Array.from(w.dataSync()));
  tf.dispose([x, y]);
  step.dispose();
  return { built, weights };
}

for (const backend of ['cpu', 'wasm'] as const) {
  for (const c of CASES) {
    test(`${backend}: ${c.name}, on the reference step`, async (t) => {
      if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
      const { built } = oneStep(c, false);
      assertAfterOneStep(built, c, 'reference');
      built.model.dispose();
    });
    for (const gemm of [false, true]) {
      test(`${backend}${gemm ? ' + installed GEMM' : ''}: ${c.name}, on the lean step as on the reference step`, async (t) => {
        if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
        if (gemm && !installAcceleratedKernels(backend).installed) return t.skip('no GEMM to install here');
        try {
          const lean = oneStep(c, true);
          assertAfterOneStep(lean.built, c, 'lean');
          const reference = oneStep(c, false);
          lean.weights.forEach((w, i) =>
            w.forEach((v, k) =>
              assert.ok(
                Math.abs(v - reference.weights[i]![k]!) <= 1e-7,
                `weight ${i}[${k}]: lean ${v}, reference ${reference.weights[i]![k]}`,
              ),
            ),
          );
          lean.built.model.dispose();
          reference.built.model.dispose();
        } finally {
          if (gemm) uninstallAcceleratedKernels(backend);
        }
      });
    }
  }
}

test('the lean step clips the gradient with the kernel penalty’s part in it, as Keras clips the loss’s gradient', async () => {
  await useBackend('cpu');
  // Kernel row 0 starts at [1, 0, …]: the L2 penalty (l2 = 0.5) adds 2·0.5·1 = 1 to g[0][0]. The logit of class 0 is
  // 1 + ln 2, the others 0, so p_0 = 2e/(2e + 9) ≈ 0.3766 and g[0][0] = p_0 − 1 + 1 = p_0, which clipvalue 0.3 cuts to
  // 0.3: w = 1 − 0.3. Clipping the data gradient alone and adding the penalty's after would give
  // max(p_0 − 1, −0.3) + 1 = 0.7, w = 0.3.
  const spec = validateSpec({
    name: 'clipped-penalty',
    model: {
      layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax', kernelRegularizer: { l2: 0.5 } } }],
    },
    optimizer: { sgd: { learningRate: 1, clipvalue: 0.3 } },
  });
  const results: number[] = [];
  for (const lean of [true, false]) {
    const { built, image } = handModel(spec);
    const k = new Float32Array(7840);
    k[0] = 1;
    const bias = built.model.layers[1]!.getWeights()[1]!;
    built.model.layers[1]!.setWeights([tf.tensor2d(k, [784, 10]), bias]);
    const optimizer = createOptimizer(spec.optimizer);
    const penalties = [{ layerIndex: 1, l1: 0, l2: 0.5 }];
    const step = lean ? createLeanStep(built.model, optimizer, penalties) : createReferenceStep(built, optimizer);
    if ('unsupported' in step) throw new Error(step.unsupported);
    const x = tf.tensor3d(image, [1, 28, 28]);
    const y = tf.tensor1d([0], 'int32');
    step.run(x, y, 0);
    results.push(built.model.layers[1]!.getWeights()[0]!.dataSync()[0]!);
    tf.dispose([x, y]);
    step.dispose();
    built.model.dispose();
  }
  assert.ok(Math.abs(results[0]! - 0.7) <= 1e-6, `lean: kernel[0][0] = ${results[0]}, want 1 − 0.3`);
  assert.ok(Math.abs(results[1]! - 0.7) <= 1e-6, `reference: kernel[0][0] = ${results[1]}, want 1 − 0.3`);
});

const refusal = (sgd: Record<string, unknown>) => specRefusal({ optimizer: { sgd } });

test('bad clipping and EMA settings are refused with the field’s path and what is expected', () => {
  const at = 'optimizer.sgd';
  assert.equal(refusal({ clipnorm: 0 }), `! ${at}.clipnorm: expected a positive number, got 0 (spec.yaml)`);
  assert.equal(refusal({ clipvalue: -1 }), `! ${at}.clipvalue: expected a positive number, got -1 (spec.yaml)`);
  assert.equal(
    refusal({ globalClipnorm: 'big' }),
    `! ${at}.globalClipnorm: expected a positive number, got "big" (spec.yaml)`,
  );
  assert.equal(
    refusal({ clipnorm: 1, clipvalue: 0.5 }),
    `! ${at}.clipvalue: only one of clipnorm, clipvalue, globalClipnorm may be set (clipnorm is set too) (spec.yaml)`,
  );
  assert.equal(
    refusal({ clipvalue: 1, globalClipnorm: 0.5 }),
    `! ${at}.globalClipnorm: only one of clipnorm, clipvalue, globalClipnorm may be set (clipvalue is set too) (spec.yaml)`,
  );
  assert.equal(refusal({ useEma: 'yes' }), `! ${at}.useEma: expected true or false, got "yes" (spec.yaml)`);
  assert.equal(
    refusal({ useEma: true, emaMomentum: 1.5 }),
    `! ${at}.emaMomentum: expected a number in [0, 1], got 1.5 (spec.yaml)`,
  );
  assert.equal(
    refusal({ useEma: true, emaOverwriteFrequency: 0 }),
    `! ${at}.emaOverwriteFrequency: expected a positive integer, got 0 (spec.yaml)`,
  );
  assert.equal(
    refusal({ useEma: true, emaOverwriteFrequency: 2.5 }),
    `! ${at}.emaOverwriteFrequency: expected an integer, got 2.5 (spec.yaml)`,
  );
  assert.equal(refusal({ emaMomentum: 0.9 }), `! ${at}.emaMomentum: emaMomentum needs useEma: true (spec.yaml)`);
  assert.equal(
    refusal({ useEma: false, emaOverwriteFrequency: 10 }),
    `! ${at}.emaOverwriteFrequency: emaOverwriteFrequency needs useEma: true (spec.yaml)`,
  );
});
