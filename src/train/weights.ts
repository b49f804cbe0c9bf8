import * as tf from '../tf';

/** Copies of all model weights (trainable and batch-norm statistics), in model.weights order. */
export function snapshot(model: tf.LayersModel): Float32Array[] {
  return model.weights.map((w) => (w.read().dataSync() as Float32Array).slice());
}

export function restore(model: tf.LayersModel, weights: Float32Array[]): void {
  const tensors = model.weights.map((w, i) => tf.tensor(weights[i]!, w.shape as number[]));
  model.setWeights(tensors);
  tf.dispose(tensors);
}
