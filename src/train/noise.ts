/**
 * The training-time noise of Keras's GaussianNoise, GaussianDropout and AlphaDropout layers (Keras
 * 3's formulas, keras/src/layers/regularization), drawn from a seed the training step takes from
 * the run's dropout stream, a fresh one per batch as for dropout masks (so a resumed run draws the
 * same noise). At inference the three layers are the identity: forward() does not call this.
 */
import * as tf from '../tf';

export type NoiseSpec =
  | { kind: 'gaussianNoise'; stddev: number }
  | { kind: 'gaussianDropout'; rate: number }
  | { kind: 'alphaDropout'; rate: number };

/** SELU's constants (Klambauer et al. 2017), as Keras writes them. */
const SELU_ALPHA = 1.6732632423543772848170429916717;
const SELU_SCALE = 1.0507009873554804934193349852946;

/**
 * AlphaDropout's affine map: dropped values are set to α' = −α·λ (SELU's negative saturation), then
 * everything becomes a·x + b with a = ((1 − rate)·(1 + rate·α'²))^−½ and b = −a·α'·rate, which keeps a
 * standard-normal input's mean 0 and variance 1.
 */
export function alphaDropoutConstants(rate: number): { alphaP: number; a: number; b: number } {
  const alphaP = -SELU_ALPHA * SELU_SCALE;
  const a = ((1 - rate) * (1 + rate * alphaP ** 2)) ** -0.5;
  return { alphaP, a, b: -a * alphaP * rate };
}

/** The layer's training output for `x`; the identity when the layer's stddev or rate is 0 (Keras's `if training and rate > 0`). */
export function trainingNoise(x: tf.Tensor, noise: NoiseSpec, seed: number): tf.Tensor {
  return tf.tidy(() => {
    if (noise.kind === 'gaussianNoise') {
      if (noise.stddev === 0) return x;
      return tf.add(x, tf.randomNormal(x.shape, 0, noise.stddev, 'float32', seed));
    }
    if (noise.rate === 0) return x;
    if (noise.kind === 'gaussianDropout')
      return tf.mul(x, tf.randomNormal(x.shape, 1, Math.sqrt(noise.rate / (1 - noise.rate)), 'float32', seed));
    const { alphaP, a, b } = alphaDropoutConstants(noise.rate);
    const kept = tf.cast(tf.greaterEqual(tf.randomUniform(x.shape, 0, 1, 'float32', seed), noise.rate), 'float32');
    const dropped = tf.add(tf.mul(x, kept), tf.mul(tf.sub(1, kept), alphaP));
    return tf.add(tf.mul(dropped, a), b);
  });
}
