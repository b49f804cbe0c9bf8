/**
 * The model's forward pass and the losses and counts computed from it, shared by the
 * reference training step, validation, the test evaluation and `evaluate`.
 */
import * as tf from '../tf';
import type { BuiltModel } from '../model';
import { penaltyOf } from './penalties';
import { NUM_CLASSES } from '../spec';
import { spatialNoiseShape } from '../spatial-dropout';
import { trainingNoise } from './noise';
import type { Split } from './types';
import { ChunkReader } from '../data/dataset';

/** Keras's epsilon: probabilities are clipped to [ε, 1−ε] before the log (the path without logits only). */
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
  const widest = Math.max(
    IMAGE_SIZE,
    ...built.model.layers.map((l) =>
      (l.outputShape as (number | null)[]).slice(1).reduce<number>((a, d) => a * (d ?? 1), 1),
    ),
  );
  return Math.max(1, Math.min(EVAL_CHUNK, Math.floor(EVAL_CHUNK_BYTES / (4 * widest))));
}

/** What the forward pass returns: the probabilities, and the softmax's input when the model has one. */
export interface ModelOutput {
  probs: tf.Tensor2D;
  /**
   * The output layer's pre-softmax values when it is a Dense layer with a softmax activation (every
   * model a spec builds), else null. TF-Keras computes the cross-entropy from these ("use logits
   * whenever they are available": the softmax caches them on its output as `_keras_logits`).
   */
  logits: tf.Tensor2D | null;
}

interface DenseInternals {
  getClassName(): string;
  activation?: { getClassName(): string } | null;
  kernel?: { read(): tf.Tensor } | null;
  bias?: { read(): tf.Tensor } | null;
}

/** The kernel and bias of a Dense layer with a softmax activation, or null for any other layer. */
export function softmaxDense(layer: tf.layers.Layer): { kernel: tf.Tensor2D; bias: tf.Tensor1D | null } | null {
  const d = layer as unknown as DenseInternals;
  if (d.getClassName() !== 'Dense' || d.activation?.getClassName() !== 'softmax' || !d.kernel) return null;
  return { kernel: d.kernel.read() as tf.Tensor2D, bias: d.bias ? (d.bias.read() as tf.Tensor1D) : null };
}

/**
 * The model's forward pass, layer by layer, so that training can apply what tfjs-layers
 * does not: activity regularizers (tfjs throws on them), a fresh dropout mask and noise draw per
 * batch (a seeded tfjs Dropout layer would reuse one mask for every batch), and the logits of a
 * softmax output layer.
 */
export function forward(
  built: BuiltModel,
  x: tf.Tensor,
  training: boolean,
  dropoutSeed = 0,
): ModelOutput & { activitySum: tf.Scalar } {
  let h = x;
  let logits: tf.Tensor2D | null = null;
  let activitySum: tf.Scalar = tf.scalar(0);
  const last = built.model.layers.length - 1;
  built.model.layers.forEach((layer, i) => {
    const rate = built.dropout.get(i);
    const noise = built.noise?.get(i);
    const sd = i === last && rate === undefined && h.rank === 2 ? softmaxDense(layer) : null;
    if (rate !== undefined) {
      if (training && rate > 0)
        h = tf.dropout(h, rate, built.spatialDropout.has(i) ? spatialNoiseShape(h) : undefined, dropoutSeed + i);
    } else if (noise) {
      // Noise layers, as dropout: a fresh seeded draw per batch in training, the identity at inference.
      if (training) h = trainingNoise(h, noise, dropoutSeed + i);
    } else if (sd) {
      // The ops Dense's call runs for a softmax (product, then the bias added): the same probabilities as layer.apply.
      const product = tf.fused.matMul({ a: h as tf.Tensor2D, b: sd.kernel });
      const z = (sd.bias ? tf.add(product, sd.bias) : product) as tf.Tensor2D;
      logits = z;
      h = tf.softmax(z);
    } else {
      h = layer.apply(h, { training }) as tf.Tensor;
    }
    for (const a of built.activity) if (a.layerIndex === i) activitySum = activitySum.add(penaltyOf(h, a.l1, a.l2));
  });
  return { probs: h as tf.Tensor2D, logits, activitySum };
}

/**
 * Sparse categorical cross-entropy summed over the batch, as TF-Keras computes it: from the
 * logits when there are some, −log softmax(z)_y (tf.logSoftmax; gradient softmax(z) − onehot for
 * every sample, however wrong); else on probabilities, −log clip(p_y, ε, 1−ε), whose gradient is
 * zero for a sample below p_y = ε. Soft labels (float32 [B, classes], from mixUp/cutMix) give
 * Keras's categorical cross-entropy −Σ_j t_j·log p_j the same way.
 */
export function crossEntropySum(output: ModelOutput, labels: tf.Tensor1D | tf.Tensor2D): tf.Scalar {
  const oneHot = labels.rank === 2 ? labels : tf.oneHot(labels as tf.Tensor1D, NUM_CLASSES);
  const logProbs = output.logits
    ? tf.logSoftmax(output.logits)
    : tf.log(tf.clipByValue(output.probs, EPSILON, 1 - EPSILON));
  return tf.neg(tf.sum(tf.mul(logProbs, oneHot))) as tf.Scalar;
}

/**
 * The batch's summed cross-entropy against the label-smoothed targets q = t·(1 − ls) + ls/classes
 * (t the one-hot label, or mixUp/cutMix's soft label: Keras smooths any y_true), as
 * keras.losses.CategoricalCrossentropy(label_smoothing=ls) computes it (from the logits when there
 * are some, else from the clipped probabilities): `smoothed` = Σ −Σ_k q_k log p_k, what training
 * minimizes (gradient softmax(z) − q from the logits); `data` = the unsmoothed Σ −Σ_k t_k log p_k, as crossEntropySum.
 */
export function smoothedCrossEntropySums(
  output: ModelOutput,
  labels: tf.Tensor1D | tf.Tensor2D,
  labelSmoothing: number,
): { data: tf.Scalar; smoothed: tf.Scalar } {
  const target = labels.rank === 2 ? labels : tf.oneHot(labels as tf.Tensor1D, NUM_CLASSES);
  const logProbs = output.logits
    ? tf.logSoftmax(output.logits)
    : tf.log(tf.clipByValue(output.probs, EPSILON, 1 - EPSILON));
  const smoothedTarget = tf.add(tf.mul(target, 1 - labelSmoothing), labelSmoothing / NUM_CLASSES);
  return {
    data: tf.neg(tf.sum(tf.mul(logProbs, target))) as tf.Scalar,
    smoothed: tf.neg(tf.sum(tf.mul(logProbs, smoothedTarget))) as tf.Scalar,
  };
}

/** Correct predictions; for soft labels, the class each label weighs most (Keras's categorical accuracy). */
export function correctCount(probs: tf.Tensor2D, labels: tf.Tensor1D | tf.Tensor2D): tf.Scalar {
  const classes = labels.rank === 2 ? tf.argMax(labels, 1) : labels;
  return tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), classes), 'float32'));
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
  /** The softmax outputs, count rows of NUM_CLASSES (only when asked for: the calibration measures read them). */
  probabilities?: Float32Array;
}

/**
 * Inference-mode pass over a split (dropout off, batch-norm moving statistics), with its
 * probabilities when asked. One chunk's tensors at a time: the 60,000 training images kept as
 * tensors for the pass were 188 MB of the backend's memory, which a wasm heap never gives back.
 */
export function evaluateSplit(built: BuiltModel, split: Split, opts: { probabilities?: boolean } = {}): Evaluation {
  const pass = new SplitPass(split, false);
  try {
    return pass.evaluate(built, opts);
  } finally {
    pass.dispose();
  }
}

/**
 * A split evaluated again and again (validation at every epoch's end): with `keep`, its images and
 * labels go into tensors once, on the first pass, and stay until dispose(), instead of being
 * normalized and copied into the backend anew each epoch; without, each chunk's tensors are made
 * for the chunk and disposed after it.
 */
export class SplitPass {
  private chunks: { start: number; n: number; x: tf.Tensor3D; y: tf.Tensor1D }[] | null = null;

  constructor(
    private readonly split: Split,
    private readonly keep = true,
  ) {}

  evaluate(built: BuiltModel, opts: { probabilities?: boolean } = {}): Evaluation {
    const split = this.split;
    const size = evalChunk(built);
    const starts = Array.from({ length: Math.ceil(split.count / size) }, (_, c) => c * size);
    const reader = this.keep && this.chunks ? null : new ChunkReader(split, size);
    const chunk = (start: number) => {
      const n = Math.min(size, split.count - start);
      return { start, n, ...reader!.read(start, n) };
    };
    try {
      if (this.keep) this.chunks ??= starts.map(chunk);
      return this.pass(built, starts, chunk, opts);
    } finally {
      reader?.dispose();
    }
  }

  private pass(
    built: BuiltModel,
    starts: number[],
    chunk: (start: number) => { start: number; n: number; x: tf.Tensor3D; y: tf.Tensor1D },
    opts: { probabilities?: boolean },
  ): Evaluation {
    const split = this.split;
    let ceSum = 0;
    let actSum = 0;
    let correct = 0;
    const predictions = new Int32Array(split.count);
    const probabilities = opts.probabilities ? new Float32Array(split.count * NUM_CLASSES) : undefined;
    for (const [c, from] of starts.entries()) {
      const { start, x, y } = this.chunks?.[c] ?? chunk(from);
      const [ce, act, ok, pred, probs] = tf.tidy(() => {
        const out = forward(built, x, false);
        return [
          crossEntropySum(out, y),
          out.activitySum,
          correctCount(out.probs, y),
          tf.argMax(out.probs, 1),
          probabilities ? out.probs : tf.scalar(0),
        ];
      });
      ceSum += ce.dataSync()[0]!;
      actSum += act.dataSync()[0]!;
      correct += ok.dataSync()[0]!;
      predictions.set(pred.dataSync() as Int32Array, start);
      if (probabilities) probabilities.set(probs.dataSync() as Float32Array, start * NUM_CLASSES);
      tf.dispose([ce, act, ok, pred, probs]);
      if (!this.chunks) tf.dispose([x, y]);
    }
    const count = split.count;
    return {
      dataLoss: ceSum / count,
      activityPenalty: actSum / count,
      correct,
      count,
      accuracy: count ? correct / count : 0,
      predictions,
      ...(probabilities ? { probabilities } : {}),
    };
  }

  dispose(): void {
    for (const c of this.chunks ?? []) tf.dispose([c.x, c.y]);
    this.chunks = null;
  }
}
