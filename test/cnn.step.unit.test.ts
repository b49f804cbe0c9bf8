/**
 * The lean CNN step (src/train/cnn-step.ts): by hand on a 4×4 image through conv 2×2 (2 filters) →
 * max-pool 2×2 → dense, against the autodiff reference step on small conv models ('valid' and
 * 'same' padding, strides, relu, penalties, Adam), on both GEMMs it runs on (OpenBLAS when it loads,
 * regtrain's SIMD WebAssembly GEMM), and createTrainStep's choice of it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as tf from '../src/tf';
import { initBackend } from '../src/backend';
import { loadBlas } from '../src/accel/blas';
import { chooseWasmGemm, type WasmGemmKind } from '../src/accel/gemm';
import type { BuiltModel } from '../src/model';
import { createCnnStep } from '../src/train/cnn-step';
import { createOptimizer } from '../src/train/optimizers';
import { createReferenceStep, needsAutodiff } from '../src/train/step';
import { loadSpec, parseSetFlag } from '../src/spec';

/** The GEMMs this machine has: OpenBLAS when it loads, and the wasm GEMM. */
function gemmKinds(): Array<'openblas' | WasmGemmKind> {
  const w = chooseWasmGemm();
  return [...(loadBlas().ok ? (['openblas'] as const) : []), ...('kind' in w ? [w.kind] : [])];
}

/**
 * 4×4×1 → conv 2×2 (2 filters, linear) → max-pool 2×2 → flatten → dense `units` softmax, weights set
 * by hand (the dense kernel passes the two pooled values to classes 0 and 1). The autodiff step's
 * loss takes 10 classes.
 */
function tinyModel(units = 2, filters = 2): tf.Sequential {
  const model = tf.sequential();
  model.add(tf.layers.conv2d({ inputShape: [4, 4, 1], filters, kernelSize: 2 }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units, activation: 'softmax' }));
  // Filter 0 takes a window's top-left pixel, filter 1 its bottom-right, any others are zero; the
  // dense kernel passes pooled value j to class j.
  const k = new Float32Array(4 * filters);
  k[0 * filters + 0] = 1; // [kh 0, kw 0, ci 0, co 0]
  k[3 * filters + 1] = 1; // [kh 1, kw 1, ci 0, co 1]
  model.layers[0]!.setWeights([tf.tensor4d(k, [2, 2, 1, filters]), tf.zeros([filters])]);
  const d = new Float32Array(filters * units);
  for (let j = 0; j < filters; j++) d[j * units + j] = 1;
  model.layers[3]!.setWeights([tf.tensor2d(d, [filters, units]), tf.zeros([units])]);
  return model;
}

function builtOf(model: tf.Sequential): BuiltModel {
  return { model, penalties: [], activity: [], dropout: new Map(), spatialDropout: new Set(), denseLayers: [] };
}

const weightsOf = (model: tf.Sequential) => model.getWeights().map((w) => Array.from(w.dataSync()));

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const scale = Math.max(1, Math.abs(expected[i]!));
    assert.ok(
      Math.abs(actual[i]! - expected[i]!) <= tol * scale,
      `${what}[${i}]: ${actual[i]} vs ${expected[i]} (tolerance ${tol})`,
    );
  }
}

test('the lean CNN step gives the hand-computed loss, gradients and SGD update on a 4×4 image through conv, max-pool and dense', async () => {
  await initBackend('wasm');
  for (const kind of gemmKinds()) {
    const model = tinyModel();
    const step = createCnnStep(model, createOptimizer({ sgd: { learningRate: 0.1 } }), [], kind);
    if ('unsupported' in step) throw new Error(step.unsupported);
    // Conv outputs: filter 0 sees x[0..2][0..2], filter 1 sees x[1..3][1..3]; the pool keeps each
    // channel's top-left 2×2: filter 0 → max(1, 2, 0, 3) = 3 at (1,1); filter 1 → max(3, 1, 1, 0) = 3 at (0,0).
    const image = [1, 2, 0, 1, 0, 3, 1, 0, 2, 1, 0, 2, 1, 0, 1, 1];
    const x = tf.tensor4d(image, [1, 4, 4, 1]);
    const y = tf.tensor1d([0], 'int32');
    const r = step.run(x, y);
    // Logits [3, 3]: p = [½, ½], loss ln 2, dz = p − onehot(0) = [−½, ½].
    assert.ok(Math.abs(r.dataLoss - Math.LN2) < 1e-6, `loss ${r.dataLoss}`);
    assert.equal(r.correct, 1); // a tie: the first maximum, class 0
    const g = step.gradients();
    const [convK, convB, denseK, denseB] = model.trainableWeights.map((w) => g.get((w.read() as tf.Variable).name)!);
    // Dense: dW = h ⊗ dz with h = [3, 3]; db = dz.
    assertClose(denseK!, [-1.5, 1.5, -1.5, 1.5], 1e-6, 'dense kernel gradient');
    assertClose(denseB!, [-0.5, 0.5], 1e-6, 'dense bias gradient');
    // dh = W·dz = [−½, ½] goes to filter 0's output at (1,1) and filter 1's at (0,0):
    // dW0[kh][kw] = −½·x[1+kh][1+kw] = −½·[3, 1; 1, 0], dW1[kh][kw] = ½·x[kh][kw] = ½·[1, 2; 0, 3].
    assertClose(convK!, [-1.5, 0.5, -0.5, 1, -0.5, 0, 0, 1.5], 1e-6, 'conv kernel gradient');
    assertClose(convB!, [-0.5, 0.5], 1e-6, 'conv bias gradient');
    // SGD lr 0.1: w − 0.1·g.
    const after = weightsOf(model);
    assertClose(after[0]!, [1.15, -0.05, 0.05, -0.1, 0.05, 0, 0, 0.85], 1e-6, 'conv kernel after');
    assertClose(after[2]!, [1.15, -0.15, 0.15, 0.85], 1e-6, 'dense kernel after');
    assertClose(after[3]!, [0.05, -0.05], 1e-6, 'dense bias after');
    tf.dispose([x, y]);
    step.dispose();
    model.dispose();
  }
});

test("a max-pool window with tied maxima sends its gradient to the first (row-major), as TensorFlow and PyTorch, and as the autodiff step's kernel", async () => {
  await initBackend('wasm');
  // 2 filters: the JS max-pool; 4: the SIMD one (conv.wat, 4 channels at a time).
  for (const filters of [2, 4])
    for (const kind of gemmKinds()) {
      const model = tinyModel(10, filters);
      const ref = tinyModel(10, filters);
      const step = createCnnStep(model, createOptimizer({ sgd: { learningRate: 0.1 } }), [], kind);
      if ('unsupported' in step) throw new Error(step.unsupported);
      const refStep = createReferenceStep(builtOf(ref), createOptimizer({ sgd: { learningRate: 0.1 } }));
      // Filter 0's window x[0..1][0..1] = [2, 2; 2, 0]: three tied maxima, the first at (0,0).
      // Filter 1's window x[1..2][1..2] = [0, 2; 2, 2]: tied at (0,1), (1,0), (1,1): the first is (0,1).
      // Filters 2 and 3 (zero kernels): four tied zeros, the first at (0,0).
      const image = [2, 2, 0, 0, 2, 0, 2, 0, 0, 2, 2, 0, 0, 0, 0, 0];
      const x = tf.tensor4d(image, [1, 4, 4, 1]);
      const y = tf.tensor1d([1], 'int32');
      const r = step.run(x, y);
      const rr = refStep.run(x, y, 0);
      // Logits [2, 2, 0, …]: p0 = p1 = a = e²/(2e² + 8), the others c = 1/(2e² + 8); loss −ln a;
      // dh = dz = [a, a − 1, c, c]. Filter 0's maximum at (0,0): dW0 = a·x[kh][kw] = a·[2, 2; 2, 0].
      // Filter 1's at (0,1), whose patch is x[0..1][1..2]: dW1 = (a − 1)·x[kh][1+kw] = (a − 1)·[2, 0; 0, 2].
      // Filters 2 and 3 at (0,0): c·[2, 2; 2, 0]. (The last maxima would give a·[2, 0; 0, 2],
      // (a − 1)·[2, 0; 0, 0] and c·[0, 2; 2, 2].)
      const a = Math.exp(2) / (2 * Math.exp(2) + 8);
      const c = 1 / (2 * Math.exp(2) + 8);
      assert.ok(Math.abs(r.dataLoss + Math.log(a)) < 1e-6, `loss ${r.dataLoss}`);
      const g = step.gradients();
      const convK = g.get((model.trainableWeights[0]!.read() as tf.Variable).name)!;
      const expected = [
        [2 * a, 2 * (a - 1), 2 * c, 2 * c],
        [2 * a, 0, 2 * c, 2 * c],
        [2 * a, 0, 2 * c, 2 * c],
        [0, 2 * (a - 1), 0, 0],
      ].flatMap((row) => row.slice(0, filters));
      assertClose(convK, expected, 1e-6, `${filters} filters, ${kind}: conv kernel gradient`);
      assertClose(weightsOf(model)[0]!, weightsOf(ref)[0]!, 1e-6, 'conv kernel after, lean vs autodiff');
      assert.ok(Math.abs(r.dataLoss - rr.dataLoss) < 1e-6);
      tf.dispose([x, y]);
      step.dispose();
      refStep.dispose();
      model.dispose();
      ref.dispose();
    }
});

/** A small conv stack: reshape → conv 3×3 same relu → pool 2 → conv 3×3 stride 2 valid relu → pool 2 same → dense 8 relu → dense 10. */
function smallCnn(seed: number, l2: number): tf.Sequential {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: seed + s });
  const reg = l2 ? tf.regularizers.l2({ l2 }) : undefined;
  const model = tf.sequential();
  model.add(tf.layers.reshape({ inputShape: [12, 12], targetShape: [12, 12, 1] }));
  model.add(
    tf.layers.conv2d({
      filters: 4,
      kernelSize: 3,
      padding: 'same',
      activation: 'relu',
      kernelInitializer: init(1),
      biasInitializer: tf.initializers.constant({ value: 0.01 }),
      ...(reg ? { kernelRegularizer: reg } : {}),
    }),
  );
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(
    tf.layers.conv2d({ filters: 8, kernelSize: 3, strides: 2, activation: 'relu', kernelInitializer: init(2) }),
  );
  model.add(tf.layers.maxPooling2d({ poolSize: 2, padding: 'same' }));
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units: 8, activation: 'relu', kernelInitializer: init(3) }));
  model.add(tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: init(4) }));
  return model;
}

test("the lean CNN step follows the autodiff step to float32 rounding for 5 Adam steps ('same' and 'valid' padding, strides, relu, an L2 penalty, a nonNeg constraint, label smoothing)", async () => {
  await initBackend('wasm');
  for (const kind of gemmKinds()) {
    for (const labelSmoothing of [0, 0.1]) {
      const lean = smallCnn(7, 1e-3);
      const ref = smallCnn(7, 1e-3);
      const adam = { adam: { learningRate: 0.01 } };
      const penalties = [{ layerIndex: 1, l1: 0, l2: 1e-3 }];
      // nonNeg on the hidden dense kernel: each step's constraint assigns the variable, which the next step must start from.
      const nonNeg = (m: tf.Sequential) => [
        {
          layerIndex: 6,
          name: 'dense/kernel',
          variable: m.layers[6]!.trainableWeights[0]!.read() as tf.Variable,
          constraint: { nonNeg: {} },
        },
      ];
      const step = createCnnStep(lean, createOptimizer(adam), penalties, kind, {
        labelSmoothing,
        constraints: nonNeg(lean),
      });
      if ('unsupported' in step) throw new Error(step.unsupported);
      const built = builtOf(ref);
      const kernel = ref.layers[1]!.trainableWeights[0]!;
      built.penalties = [{ name: kernel.name, variable: kernel, l1: 0, l2: 1e-3 }];
      const refStep = createReferenceStep(built, createOptimizer(adam), { labelSmoothing, constraints: nonNeg(ref) });
      for (let s = 0; s < 5; s++) {
        const x = tf.randomUniform([6, 12, 12], 0, 1, 'float32', 100 + s);
        const y = tf.tensor1d([0, 1, 2, 3, 9, s], 'int32');
        const r = step.run(x, y);
        const rr = refStep.run(x, y, 0);
        const what = `${kind}, smoothing ${labelSmoothing}, step ${s}`;
        assertClose(
          [r.dataLoss / 6, r.penalty, r.correct],
          [rr.dataLoss, rr.penalty, rr.correct],
          1e-5,
          `${what}: loss`,
        );
        if (labelSmoothing)
          assertClose([(r.smoothedLoss - r.dataLoss) / 6], [rr.smoothing!], 1e-5, `${what}: smoothing`);
        const a = weightsOf(lean);
        const b = weightsOf(ref);
        a.forEach((w, i) => assertClose(w, b[i]!, 2e-5, `${what}: weight ${i}`));
        tf.dispose([x, y]);
      }
      step.dispose();
      refStep.dispose();
      lean.dispose();
      ref.dispose();
    }
  }
});

test('the lean CNN step refuses what it does not compute: a tanh conv, an average pool', async () => {
  await initBackend('wasm');
  const tanh = tf.sequential();
  tanh.add(tf.layers.conv2d({ inputShape: [4, 4, 1], filters: 2, kernelSize: 2, activation: 'tanh' }));
  tanh.add(tf.layers.flatten());
  tanh.add(tf.layers.dense({ units: 2, activation: 'softmax' }));
  const kind = gemmKinds()[0]!;
  assert.deepEqual(createCnnStep(tanh, createOptimizer({ sgd: { learningRate: 0.1 } }), [], kind), {
    unsupported: 'layer 0 activation tanh: need relu/linear hidden layers and a softmax Dense output',
  });
  const avg = tf.sequential();
  avg.add(tf.layers.conv2d({ inputShape: [4, 4, 1], filters: 2, kernelSize: 2 }));
  avg.add(tf.layers.averagePooling2d({ poolSize: 2 }));
  avg.add(tf.layers.flatten());
  avg.add(tf.layers.dense({ units: 2, activation: 'softmax' }));
  assert.deepEqual(createCnnStep(avg, createOptimizer({ sgd: { learningRate: 0.1 } }), [], kind), {
    unsupported:
      'layer 1 is AveragePooling2D: the lean CNN step covers Conv2D, MaxPooling2D, Flatten, Reshape and Dense',
  });
  tanh.dispose();
  avg.dispose();
});

test('configs/cnn.yaml needs no autodiff (backend auto keeps wasm for it at any batch size); an averagePooling2d layer does', () => {
  const cnn = loadSpec(path.resolve(__dirname, '../../configs/cnn.yaml')).spec;
  assert.equal(needsAutodiff(cnn), false);
  const avg = loadSpec(path.resolve(__dirname, '../../configs/cnn.yaml'), [
    parseSetFlag('model.layers.2={"averagePooling2d":{"poolSize":2}}'),
  ]).spec;
  assert.equal(needsAutodiff(avg), true);
});

test('with SGD momentum, globalClipnorm and an EMA that overwrites the weights every 2 steps, the lean CNN step follows the autodiff step for 4 steps', async () => {
  await initBackend('wasm');
  const sgd = {
    sgd: { learningRate: 0.05, momentum: 0.9, globalClipnorm: 0.5, useEma: true, emaOverwriteFrequency: 2 },
  };
  for (const kind of gemmKinds()) {
    const lean = smallCnn(3, 0);
    const ref = smallCnn(3, 0);
    const step = createCnnStep(lean, createOptimizer(sgd), [], kind);
    if ('unsupported' in step) throw new Error(step.unsupported);
    const refStep = createReferenceStep(builtOf(ref), createOptimizer(sgd));
    for (let s = 0; s < 4; s++) {
      const x = tf.randomUniform([5, 12, 12], 0, 1, 'float32', 200 + s);
      const y = tf.tensor1d([9, 8, 7, 1, s], 'int32');
      const r = step.run(x, y);
      const rr = refStep.run(x, y, 0);
      assertClose([r.dataLoss / 5], [rr.dataLoss], 1e-5, `${kind}, step ${s}: loss`);
      const b = weightsOf(ref);
      weightsOf(lean).forEach((w, i) => assertClose(w, b[i]!, 2e-5, `${kind}, step ${s}: weight ${i}`));
      tf.dispose([x, y]);
    }
    step.dispose();
    refStep.dispose();
    lean.dispose();
    ref.dispose();
  }
});
