/**
 * The penalty math of the training side: Keras's L1/L2 (elastic-net) penalty of a tensor with
 * Keras's gradient, and the model's kernel and bias penalties at its current weights. The model
 * (src/model.ts) only records which tensors carry which factors; both training steps, the loop's
 * reporting and evaluation compute the penalties here.
 */
import * as tf from '@tensorflow/tfjs';
import type { BuiltModel } from '../model';

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

/** Each kernel/bias penalty's current value, by name (end-of-epoch reporting). */
export function penaltyValues(built: BuiltModel): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of built.penalties) {
    const v = tf.tidy(() => penaltyOf(t.variable.read(), t.l1, t.l2));
    out[t.name] = v.dataSync()[0]!;
    v.dispose();
  }
  return out;
}

/** Kernel and bias penalties at the current weights. */
export function weightPenalty(built: BuiltModel): number {
  return Object.values(penaltyValues(built)).reduce((a, b) => a + b, 0);
}
