/**
 * The lean step's EMA and gradient clipping on tfjs-wasm run as SIMD passes over the tensors' own memory
 * (the averages on the wasm heap, the gradients clipped in place); with REGTRAIN_SIMD=off the same step
 * runs the optimizer's JS loops over the same views. Both must give the same weights and averages, bit
 * for bit, on a model whose layer sizes are not multiples of 4 (the JS tail of each pass), with kernel
 * penalties folded into the clipped gradient. Keras's formulas themselves are checked by hand in
 * test/gradient-clipping.unit.test.ts and test/weight-averaging.unit.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { installAcceleratedKernels, uninstallAcceleratedKernels } from '../src/accel/kernels';
import { wasmSimd } from '../src/accel/simd';
import { buildModel } from '../src/model';
import { validateSpec } from '../src/spec';
import { createLeanStep } from '../src/train/lean-step';
import { createOptimizer } from '../src/train/optimizers';
import { useBackend } from './helpers/backend';

const CASES: Record<string, unknown>[] = [
  { useEma: true, emaMomentum: 0.9, emaOverwriteFrequency: 3 },
  { clipnorm: 0.05 },
  { clipvalue: 0.002 },
  { globalClipnorm: 0.05 },
  { useEma: true, globalClipnorm: 0.05, momentum: 0.9 },
];

/** 6 lean steps of a 784-13-7-10 model with kernel penalties on the wasm backend: its weights and EMA averages. */
function train(sgd: Record<string, unknown>, simd: boolean) {
  const saved = process.env.REGTRAIN_SIMD;
  if (simd) delete process.env.REGTRAIN_SIMD;
  else process.env.REGTRAIN_SIMD = 'off';
  try {
    assert.equal(wasmSimd() !== null, simd, 'REGTRAIN_SIMD chooses the passes');
    const spec = validateSpec({
      name: 'extras',
      seed: 3,
      model: {
        layers: [
          { flatten: {} },
          { dense: { units: 13, activation: 'relu', kernelRegularizer: { l1: 0.001 } } },
          { dense: { units: 7, activation: 'relu', kernelRegularizer: { l2: 0.01 } } },
          { dense: { units: 10, activation: 'softmax' } },
        ],
      },
      optimizer: { sgd: { learningRate: 0.1, ...sgd } },
    });
    const built = buildModel(spec);
    const optimizer = createOptimizer(spec.optimizer);
    const step = createLeanStep(built.model, optimizer, [
      { layerIndex: 1, l1: 0.001, l2: 0 },
      { layerIndex: 2, l1: 0, l2: 0.01 },
    ]);
    assert.ok(!('unsupported' in step), JSON.stringify(step));
    const x = tf.tidy(() => tf.add(tf.mul(tf.sin(tf.mul(tf.range(0, 8 * 784), 0.37)), 0.5), 0.5).reshape([8, 28, 28]));
    const y = tf.tensor1d([0, 1, 2, 3, 4, 5, 6, 7], 'int32');
    for (let s = 0; s < 6; s++) step.run(x as tf.Tensor3D, y, s);
    const names = built.model.trainableWeights.map((w) => (w.read() as tf.Variable).name);
    const weights = built.model.getWeights().map((w) => Array.from(w.dataSync()));
    const averages = names.map((n) => Array.from(optimizer.average(n) ?? []));
    step.dispose();
    optimizer.dispose();
    built.model.dispose();
    tf.dispose([x, y]);
    return { weights, averages };
  } finally {
    if (saved === undefined) delete process.env.REGTRAIN_SIMD;
    else process.env.REGTRAIN_SIMD = saved;
  }
}

for (const sgd of CASES) {
  test(`on wasm, the lean step's SIMD passes for ${JSON.stringify(sgd)} give the JS passes' weights and averages, bit for bit`, async (t) => {
    if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
    if (!installAcceleratedKernels('wasm').installed) return t.skip('no GEMM to install here');
    try {
      const withSimd = train(sgd, true);
      const withJs = train(sgd, false);
      assert.deepEqual(withSimd.weights, withJs.weights);
      assert.deepEqual(withSimd.averages, withJs.averages);
      if (sgd.useEma)
        assert.ok(
          withSimd.averages.every((a) => a.length > 0),
          'every variable has an average',
        );
    } finally {
      uninstallAcceleratedKernels('wasm');
    }
  });
}
