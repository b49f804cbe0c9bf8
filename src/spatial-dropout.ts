/**
 * Keras's SpatialDropout2D, which tfjs-layers 4.22 lacks (it has SpatialDropout1D only): in
 * training it zeroes whole channels of a height×width×channels map, one draw per image and
 * channel, and scales the rest by 1/(1 − rate); at inference it is the identity. Registered
 * for serialization, so a saved model.json naming it loads again.
 *
 * regtrain's training step does not call this layer's training branch: src/train/forward.ts draws
 * a fresh seeded mask per batch with the same noise shape (as it does for Dropout).
 */
import * as tf from './tf';

export interface SpatialDropout2DArgs {
  rate: number;
  name?: string;
  inputShape?: number[];
}

export class SpatialDropout2D extends tf.layers.Layer {
  static readonly className = 'SpatialDropout2D';
  readonly rate: number;

  constructor(args: SpatialDropout2DArgs) {
    super(args);
    this.rate = args.rate;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: { training?: boolean }): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0]! : inputs;
    if (!kwargs.training || this.rate === 0) return x;
    return tf.tidy(() => tf.dropout(x, this.rate, spatialNoiseShape(x)));
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), rate: this.rate };
  }
}
tf.serialization.registerClass(SpatialDropout2D);

/** One mask value per image and channel: [batch, 1, 1, channels]. */
export function spatialNoiseShape(x: tf.Tensor): number[] {
  return [x.shape[0]!, 1, 1, x.shape[3]!];
}
