/**
 * The math of stochastic weight averaging (training.swa; PyTorch's torch.optim.swa_utils), apart
 * from the callback that runs it (./callbacks/weight-averaging.ts): AveragedModel's equal running
 * average, SWALR's learning rate, and update_bn's batch-norm pass.
 */
import * as tf from '../tf';
import { gatherBatch, type Split } from '../data/dataset';
import type { BuiltModel } from '../model';
import type { SwaSpec } from '../spec/training';
import { forward } from './forward';

const f = Math.fround;
const IMAGE_SIZE = 28 * 28;

/**
 * AveragedModel.update_parameters with its default avg_fn: the first snapshot is copied, the n-th
 * (n ≥ 2) moves the average by (w − average)/n, in float32.
 */
export function addSnapshot(average: Float32Array, w: ArrayLike<number>, snapshotsBefore: number): void {
  if (snapshotsBefore === 0) {
    average.set(w);
    return;
  }
  const n = snapshotsBefore + 1;
  for (let i = 0; i < average.length; i++) average[i] = f(average[i]! + f(f(w[i]! - average[i]!) / n));
}

/**
 * SWALR's learning rate `k` epochs after startEpoch (k ≥ 1): swa_lr·α + lr₀·(1 − α), α = anneal(t),
 * t = min(1, k/max(1, annealEpochs)); anneal "cos" (1 − cos πt)/2 or "linear" t; lr₀ the learning
 * rate in force when SWA started. (PyTorch recovers lr₀ from the previous epoch's rate at each step:
 * the same value but for float64 rounding.)
 */
export function swaLearningRate(swa: SwaSpec, startLearningRate: number, k: number): number {
  const t = Math.max(0, Math.min(1, k / Math.max(1, swa.annealEpochs)));
  const alpha = swa.annealStrategy === 'cos' ? (1 - Math.cos(Math.PI * t)) / 2 : t;
  return swa.learningRate * alpha + startLearningRate * (1 - alpha);
}

interface BatchNormInternals {
  momentum: number;
  movingMean: { read(): tf.Tensor; write(t: tf.Tensor): void };
  movingVariance: { read(): tf.Tensor; write(t: tf.Tensor): void };
}

/**
 * update_bn: each batch-norm layer's moving mean and variance reset (0 and 1), then one pass over
 * the training images in order, in batches, in training mode (batch statistics; dropout on, as
 * PyTorch's model.train(), with the batch's index as its seed), with momentum None: the n-th batch
 * moves the statistics by 1/n of the way, a cumulative average over batches. tfjs's layer keeps the
 * batch's biased variance (as Keras), PyTorch the unbiased one. No augmentation. Returns the images
 * passed (0 when the model has no batch norm: nothing to do).
 */
export function updateBatchNorm(built: BuiltModel, train: Split, batchSize: number): number {
  const layers = built.model.layers.filter((l) => l.getClassName() === 'BatchNormalization');
  if (layers.length === 0) return 0;
  const bns = layers as unknown as BatchNormInternals[];
  const momenta = bns.map((b) => b.momentum);
  for (const b of bns) {
    for (const [v, value] of [
      [b.movingMean, 0],
      [b.movingVariance, 1],
    ] as const) {
      const t = tf.fill(v.read().shape, value);
      v.write(t);
      t.dispose();
    }
  }
  const order = Int32Array.from({ length: train.count }, (_, i) => i);
  const xBuf = new Float32Array(batchSize * IMAGE_SIZE);
  const yBuf = new Int32Array(batchSize);
  try {
    for (let start = 0, n = 1; start < train.count; start += batchSize, n++) {
      const b = Math.min(batchSize, train.count - start);
      gatherBatch(train, order, start, b, xBuf, yBuf);
      // tfjs's layer moves its statistics by (1 − momentum) of the way.
      for (const bn of bns) bn.momentum = 1 - 1 / n;
      tf.tidy(() => {
        const x = tf.tensor3d(xBuf.subarray(0, b * IMAGE_SIZE), [b, 28, 28]);
        forward(built, x, true, n);
      });
    }
  } finally {
    bns.forEach((b, i) => (b.momentum = momenta[i]!));
  }
  return train.count;
}
