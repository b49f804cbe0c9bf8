/**
 * The model's forward pass and the losses and counts computed from it, shared by the
 * reference training step, validation, the test evaluation and `evaluate`.
 */
import * as tf from '@tensorflow/tfjs';
import { BuiltModel, penaltyOf, penaltyValues } from '../model';
import { NUM_CLASSES } from '../spec';
import { spatialNoiseShape } from '../spatial-dropout';
import type { Split } from './types';

/** Keras's epsilon: probabilities are clipped to [ε, 1−ε] before the log. */
export const EPSILON = 1e-7;
const IMAGE_SIZE = 28 * 28;
/**
 * Inference runs in chunks of up to 5,000 images: one GEMM per layer for the default 5,000
 * validation images (2,000-image chunks spent a third of the pass in per-call overhead), 16 MB of
 * input per chunk. Wide layers (a conv's feature maps) shrink the chunk so that no layer's output
 * for one chunk passes 64 MB: 5,000 images of 26×26×16 would be 216 MB a layer.
 */
const EVAL_CHUNK = 5000;
const EVAL_CHUNK_BYTES = 64 * 1024 * 1024;

/** Images per inference chunk for this model: EVAL_CHUNK, or fewer when a layer's output is wide. */
export function evalChunk(built: BuiltModel): number {
  const widest = Math.max(IMAGE_SIZE, ...built.model.layers.map((l) => (l.outputShape as (number | null)[]).slice(1).reduce<number>((a, d) => a * (d ?? 1), 1)));
  return Math.max(1, Math.min(EVAL_CHUNK, Math.floor(EVAL_CHUNK_BYTES / (4 * widest))));
}

/**
 * The model's forward pass, layer by layer, so that training can apply what tfjs-layers
 * does not: activity regularizers (tfjs throws on them) and a fresh dropout mask per batch
 * (a seeded tfjs Dropout layer would reuse one mask for every batch).
 */
export function forward(built: BuiltModel, x: tf.Tensor, training: boolean, dropoutSeed = 0): { probs: tf.Tensor2D; activitySum: tf.Scalar } {
  let h = x;
  let activitySum: tf.Scalar = tf.scalar(0);
  built.model.layers.forEach((layer, i) => {
    const rate = built.dropout.get(i);
    if (rate !== undefined) {
      if (training && rate > 0) h = tf.dropout(h, rate, built.spatialDropout.has(i) ? spatialNoiseShape(h) : undefined, dropoutSeed + i);
    } else {
      h = layer.apply(h, { training }) as tf.Tensor;
    }
    for (const a of built.activity) if (a.layerIndex === i) activitySum = activitySum.add(penaltyOf(h, a.l1, a.l2));
  });
  return { probs: h as tf.Tensor2D, activitySum };
}

/** Sparse categorical cross-entropy on probabilities, summed over the batch (Keras: −log clip(p_y, ε, 1−ε)). */
export function crossEntropySum(probs: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const oneHot = tf.oneHot(labels, NUM_CLASSES);
  return tf.neg(tf.sum(tf.mul(tf.log(tf.clipByValue(probs, EPSILON, 1 - EPSILON)), oneHot))) as tf.Scalar;
}

export function correctCount(probs: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), labels), 'float32'));
}

export interface Evaluation {
  /** Mean cross-entropy. */
  dataLoss: number;
  /** Mean activity penalty per sample (zero without activity regularizers). */
  activityPenalty: number;
  correct: number;
  count: number;
  accuracy: number;
  predictions: Int32Array;
}

/** Inference-mode pass over a split (dropout off, batch-norm moving statistics). */
export function evaluateSplit(built: BuiltModel, split: Split): Evaluation {
  const pass = new SplitPass(split);
  try {
    return pass.evaluate(built);
  } finally {
    pass.dispose();
  }
}

/**
 * A split evaluated again and again (validation at every epoch's end): its images and labels go
 * into tensors once, on the first pass, and stay until dispose(), instead of being copied into the
 * backend anew each epoch.
 */
export class SplitPass {
  private chunks: { start: number; n: number; x: tf.Tensor3D; y: tf.Tensor1D }[] | null = null;

  constructor(private readonly split: Split) {}

  evaluate(built: BuiltModel): Evaluation {
    const split = this.split;
    const size = evalChunk(built);
    this.chunks ??= Array.from({ length: Math.ceil(split.count / size) }, (_, c) => {
      const start = c * size;
      const n = Math.min(size, split.count - start);
      return {
        start,
        n,
        x: tf.tensor3d(split.images.subarray(start * IMAGE_SIZE, (start + n) * IMAGE_SIZE), [n, 28, 28]),
        y: tf.tensor1d(split.labels.subarray(start, start + n), 'int32'),
      };
    });
    let ceSum = 0;
    let actSum = 0;
    let correct = 0;
    const predictions = new Int32Array(split.count);
    for (const { start, x, y } of this.chunks) {
      const [ce, act, ok, pred] = tf.tidy(() => {
        const { probs, activitySum } = forward(built, x, false);
        return [crossEntropySum(probs, y), activitySum, correctCount(probs, y), tf.argMax(probs, 1)];
      });
      ceSum += ce.dataSync()[0]!;
      actSum += act.dataSync()[0]!;
      correct += ok.dataSync()[0]!;
      predictions.set(pred.dataSync() as Int32Array, start);
      tf.dispose([ce, act, ok, pred]);
    }
    const count = split.count;
    return { dataLoss: ceSum / count, activityPenalty: actSum / count, correct, count, accuracy: count ? correct / count : 0, predictions };
  }

  dispose(): void {
    for (const c of this.chunks ?? []) tf.dispose([c.x, c.y]);
    this.chunks = null;
  }
}

/** Kernel and bias penalties at the current weights. */
export function weightPenalty(built: BuiltModel): number {
  return Object.values(penaltyValues(built)).reduce((a, b) => a + b, 0);
}
