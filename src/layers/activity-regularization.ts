/**
 * Keras's ActivityRegularization layer, which tfjs-layers 4.22 lacks: the identity, whose input's
 * penalty l1·Σ|x| + l2·Σx² joins the loss. The penalty is not computed here (tfjs-layers throws on
 * activity regularizers): regtrain's forward pass adds it for the layer's index
 * (src/train/forward.ts), as it does for a dense layer's activityRegularizer. Registered for
 * serialization, so a saved model.json naming it loads again.
 */
import * as tf from '../tf';

export interface ActivityRegularizationArgs {
  l1: number;
  l2: number;
  name?: string;
  inputShape?: number[];
}

export class ActivityRegularization extends tf.layers.Layer {
  static readonly className = 'ActivityRegularization';
  readonly l1: number;
  readonly l2: number;

  constructor(args: ActivityRegularizationArgs) {
    super(args);
    this.l1 = args.l1;
    this.l2 = args.l2;
  }

  override computeOutputShape(inputShape: tf.Shape | tf.Shape[]): tf.Shape | tf.Shape[] {
    return inputShape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return Array.isArray(inputs) ? inputs[0]! : inputs;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), l1: this.l1, l2: this.l2 };
  }
}
tf.serialization.registerClass(ActivityRegularization);
