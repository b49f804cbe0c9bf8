import * as tf from '../../src/tf';
import { buildModel } from '../../src/model';
import type { ExperimentSpec } from '../../src/spec';
import { createLeanStep } from '../../src/train/lean-step';
import { createOptimizer } from '../../src/train/optimizers';
import { createReferenceStep } from '../../src/train/step';

/**
 * A flatten → dense(10, softmax) spec's model set up for by-hand gradients: zero kernel, bias ln 2 on
 * class 0 (so p = 2/11 there and 1/11 elsewhere), and an image whose only non-zero pixel is the first, at 1.
 */
export function handModel(spec: ExperimentSpec) {
  const built = buildModel(spec);
  const bias = new Float32Array(10);
  bias[0] = Math.LN2;
  built.model.layers[1]!.setWeights([tf.zeros([784, 10]), tf.tensor1d(bias)]);
  const image = new Float32Array(784);
  image[0] = 1;
  return { built, image };
}

/**
 * handModel's model with a training step (the lean step or the reference step) and the one-image
 * batch of class 0 it trains on; the caller disposes x and y.
 */
export function handStep(spec: ExperimentSpec, lean: boolean) {
  const { built, image } = handModel(spec);
  const optimizer = createOptimizer(spec.optimizer);
  const step = lean ? createLeanStep(built.model, optimizer, []) : createReferenceStep(built, optimizer);
  if ('unsupported' in step) throw new Error(step.unsupported);
  const x = tf.tensor3d(image, [1, 28, 28]);
  const y = tf.tensor1d([0], 'int32');
  return { built, optimizer, step, x, y };
}
