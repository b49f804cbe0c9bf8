/**
 * The penalty math of the training side: Keras's L1/L2 (elastic-net) penalty of a tensor with
 * Keras's gradient, and the model's kernel and bias penalties at its current weights. The model
 * (src/model.ts) only records which tensors carry which factors; both training steps, the loop's
 * reporting and evaluation compute the penalties here.
 */
import * as tf from '../tf';
import type { BuiltModel, PenaltyTerm } from '../model';
import type { OrthogonalSpec } from '../spec/layers';

/** sign(w) by comparisons: tfjs-wasm's Sign kernel returns 0 for |w| ≤ 1e-7. */
export function exactSign(w: tf.Tensor): tf.Tensor {
  return tf.sub(tf.cast(tf.greater(w, 0), 'float32'), tf.cast(tf.less(w, 0), 'float32'));
}

/**
 * Σ|w| with Keras's gradient sign(w), 0 at w = 0 (tfjs's Abs gradient gives −1 there, and
 * tfjs-wasm's Sign is 0 for tiny weights, which would stop L1 from pulling them to zero).
 */
const absSum = tf.customGrad(((w: tf.Tensor, save: (t: tf.Tensor[]) => void) => {
  save([w]);
  return {
    value: tf.sum(tf.abs(w)) as tf.Scalar,
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, exactSign(saved[0]!)),
  };
}) as unknown as Parameters<typeof tf.customGrad>[0]) as unknown as (w: tf.Tensor) => tf.Scalar;

/** Keras's penalty of one tensor: l1·Σ|w| + l2·Σw² (no ½). Call inside tf.tidy or a gradient closure. */
export function penaltyOf(w: tf.Tensor, l1: number, l2: number): tf.Scalar {
  let p: tf.Scalar = tf.scalar(0);
  if (l1 > 0) p = p.add(absSum(w).mul(l1));
  if (l2 > 0) p = p.add(tf.square(w).sum().mul(l2));
  return p;
}

/** keras.ops.normalize's ε: a row or column of zeros stays zeros instead of 0/0. */
const NORMALIZE_EPSILON = 1e-7;

/**
 * Keras 3's OrthogonalRegularizer of a rank-2 kernel: its rows (mode rows) or columns (mode columns)
 * L2-normalized (v/√max(Σv², ε)), the absolute dot products of every distinct pair summed (each pair
 * twice, in the Gram matrix without its diagonal), times factor·½, over the number of pairs
 * size·(size − 1)/2. Gradients through tfjs autodiff (abs's at 0 is 0 there too: off-diagonal entries are rarely exactly 0).
 */
export function orthogonalPenalty(w: tf.Tensor, { factor, mode }: OrthogonalSpec): tf.Scalar {
  if (w.rank !== 2)
    throw new Error(`the orthogonal regularizer needs a rank-2 kernel, got shape [${w.shape.join(', ')}]`);
  const axis = mode === 'rows' ? 1 : 0;
  const unit = tf.mul(w, tf.rsqrt(tf.maximum(tf.sum(tf.square(w), axis, true), NORMALIZE_EPSILON)));
  const gram = mode === 'rows' ? tf.matMul(unit, unit, false, true) : tf.matMul(unit, unit, true, false);
  const size = gram.shape[0]!;
  const offDiagonal = tf.mul(gram, tf.sub(1, tf.eye(size)));
  const pairs = (size * (size - 1)) / 2;
  return tf.mul(tf.sum(tf.abs(offDiagonal)), (factor * 0.5) / pairs) as tf.Scalar;
}

/** A kernel or bias penalty term's value at `w`: its l1/l2 part, or its orthogonal one. */
export function termPenalty(w: tf.Tensor, t: Pick<PenaltyTerm, 'l1' | 'l2' | 'orthogonal'>): tf.Scalar {
  return t.orthogonal ? orthogonalPenalty(w, t.orthogonal) : penaltyOf(w, t.l1, t.l2);
}

/** Each kernel/bias penalty's current value, by name (end-of-epoch reporting). */
export function penaltyValues(built: BuiltModel): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of built.penalties) {
    const v = tf.tidy(() => termPenalty(t.variable.read(), t));
    out[t.name] = v.dataSync()[0]!;
    v.dispose();
  }
  return out;
}

/** Kernel and bias penalties at the current weights. */
export function weightPenalty(built: BuiltModel): number {
  return Object.values(penaltyValues(built)).reduce((a, b) => a + b, 0);
}
