/**
 * The tutorial model (issue 5): Flatten(28×28) → Dense 200 relu (L1 0.01) → Dense 100 relu (L2 0.001)
 * → Dense 50 relu (L1 0.01 + L2 0.01) → Dense 10 softmax; SGD lr 0.01; sparse categorical CE.
 * Shared by test/bench/train-bench.ts and test/accel.unit.test.ts.
 */
import * as tf from '../../src/tf';
import type { Penalty } from '../../src/train/lean-step';

export const TUTORIAL_PENALTIES: Penalty[] = [
  { layerIndex: 1, l1: 0.01, l2: 0 },
  { layerIndex: 2, l1: 0, l2: 0.001 },
  { layerIndex: 3, l1: 0.01, l2: 0.01 },
];

export function buildTutorialModel(
  seed = 42,
  opts: { learningRate?: number; momentum?: number; nesterov?: boolean } = {},
): tf.Sequential {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: seed + s });
  const model = tf.sequential();
  model.add(tf.layers.flatten({ inputShape: [28, 28] }));
  model.add(
    tf.layers.dense({
      units: 200,
      activation: 'relu',
      kernelInitializer: init(1),
      kernelRegularizer: tf.regularizers.l1({ l1: 0.01 }),
    }),
  );
  model.add(
    tf.layers.dense({
      units: 100,
      activation: 'relu',
      kernelInitializer: init(2),
      kernelRegularizer: tf.regularizers.l2({ l2: 0.001 }),
    }),
  );
  model.add(
    tf.layers.dense({
      units: 50,
      activation: 'relu',
      kernelInitializer: init(3),
      kernelRegularizer: tf.regularizers.l1l2({ l1: 0.01, l2: 0.01 }),
    }),
  );
  model.add(tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: init(4) }));
  const lr = opts.learningRate ?? 0.01;
  const m = opts.momentum ?? 0;
  model.compile({
    optimizer: m > 0 ? tf.train.momentum(lr, m, opts.nesterov ?? false) : tf.train.sgd(lr),
    loss: 'sparseCategoricalCrossentropy',
    metrics: ['accuracy'],
  });
  return model;
}

/** Deterministic Fashion-MNIST-shaped batch: pixels in [0,1), labels 0..9. */
export function fakeData(n: number, seed = 7): { x: tf.Tensor3D; y: tf.Tensor1D } {
  let s = seed >>> 0 || 1;
  const rnd = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
  const xs = new Float32Array(n * 784);
  for (let i = 0; i < xs.length; i++) xs[i] = rnd();
  const ys = new Float32Array(n);
  for (let i = 0; i < n; i++) ys[i] = Math.floor(rnd() * 10);
  return { x: tf.tensor3d(xs, [n, 28, 28]), y: tf.tensor1d(ys, 'float32') };
}
