/**
 * Keras's EMA of the weights (useEma) as both training steps run it: after the step's updates and
 * before its constraints (Keras 3's `apply` constrains after `_backend_apply_gradients`, which
 * averages), the optimizer's averages take the new weights, and every emaOverwriteFrequency updates
 * the weights become the averages.
 */
import * as tf from '@tensorflow/tfjs';
import type { Optimizer } from './optimizers';

export function stepMovingAverage(optimizer: Optimizer, vars: readonly tf.Variable[]): void {
  if (!optimizer.ema) return;
  const overwrite = optimizer.updateAverages(vars.map((v) => ({ name: v.name, data: v.dataSync() as Float32Array })));
  if (overwrite) assignAverages(optimizer, vars);
}

/** Keras's `_overwrite_model_variables_with_average_value`: each variable becomes its average (none before the first update). */
export function assignAverages(optimizer: Optimizer, vars: readonly tf.Variable[]): void {
  for (const v of vars) {
    const average = optimizer.average(v.name);
    if (!average) continue;
    const t = tf.tensor(average, v.shape);
    v.assign(t);
    t.dispose();
  }
}
