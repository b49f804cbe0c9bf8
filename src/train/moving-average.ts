/**
 * Keras's EMA of the weights (useEma) as both training steps run it: after the step's updates and
 * before its constraints (Keras 3's `apply` constrains after `_backend_apply_gradients`, which
 * averages), the optimizer's averages take the new weights, and every emaOverwriteFrequency updates
 * the weights become the averages.
 */
import * as tf from '../tf';
import { emaPass, type Optimizer } from './optimizers';

/**
 * `weights`: a view of a variable's values (the lean step's of the tensor's own memory, taken when the
 * pass reads it) instead of dataSync's copy; `pass`: the average's update (the lean step's SIMD pass on
 * tfjs-wasm, the same float32 arithmetic).
 */
export function stepMovingAverage(
  optimizer: Optimizer,
  vars: readonly tf.Variable[],
  weights?: (v: tf.Variable) => Float32Array,
  pass = emaPass,
): void {
  if (!optimizer.ema) return;
  const overwrite = optimizer.updateAverages(
    vars.map((v) =>
      weights
        ? { name: v.name, size: v.size, data: () => weights(v) }
        : { name: v.name, data: v.dataSync() as Float32Array },
    ),
    pass,
  );
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
