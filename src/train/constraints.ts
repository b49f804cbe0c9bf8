/**
 * Weight constraints (keras.constraints), applied to a weight right after each optimizer update,
 * as Keras's optimizer does (`v.assign(v.constraint(v))`), on both training steps. Keras's formulas,
 * with its epsilon 1e-7, in float32 through tfjs ops:
 * - maxNorm:    w · clip(‖w‖, 0, maxValue) / (ε + ‖w‖)
 * - unitNorm:   w / (ε + ‖w‖)
 * - nonNeg:     w · (w ≥ 0)
 * - minMaxNorm: w · (rate·clip(‖w‖, minValue, maxValue) + (1 − rate)·‖w‖) / (ε + ‖w‖)
 * where ‖w‖ = sqrt(Σ w²) over `axis` (kept as a dimension): for a Dense kernel (inputs × units) axis 0
 * is each unit's incoming weights.
 */
import * as tf from '../tf';
import type { BuiltModel } from '../model';
import type { ExperimentSpec } from '../spec';
import type { ConstraintSpec } from '../spec/layers';

/** Keras's backend.epsilon(). */
export const CONSTRAINT_EPSILON = 1e-7;

/** One constrained weight: e.g. "dense_1/kernel" with its constraint. */
export interface ConstraintTerm {
  /** The layer's index in the model. */
  layerIndex: number;
  /** e.g. "dense_1/kernel". */
  name: string;
  variable: tf.Variable;
  constraint: ConstraintSpec;
}

/** `w` constrained (a new tensor; the caller disposes it). */
export function constrained(w: tf.Tensor, c: ConstraintSpec): tf.Tensor {
  return tf.tidy(() => {
    if (c.nonNeg) return tf.mul(w, tf.cast(tf.greaterEqual(w, 0), w.dtype));
    const config = c.maxNorm ?? c.unitNorm ?? c.minMaxNorm!;
    const axis = typeof config.axis === 'number' ? [config.axis] : config.axis;
    const norms = tf.sqrt(tf.sum(tf.square(w), axis, true));
    const denominator = tf.add(norms, CONSTRAINT_EPSILON);
    if (c.unitNorm) return tf.div(w, denominator);
    if (c.maxNorm) return tf.mul(w, tf.div(tf.clipByValue(norms, 0, c.maxNorm.maxValue), denominator));
    const m = c.minMaxNorm!;
    const desired = tf.add(tf.mul(m.rate, tf.clipByValue(norms, m.minValue, m.maxValue)), tf.mul(1 - m.rate, norms));
    return tf.mul(w, tf.div(desired, denominator));
  });
}

/** Applies every term's constraint to its variable, in place. */
export function applyConstraints(terms: readonly ConstraintTerm[]): void {
  for (const t of terms) {
    const next = constrained(t.variable, t.constraint);
    t.variable.assign(next);
    next.dispose();
  }
}

interface WeightedLayer {
  kernel?: { read(): tf.Tensor } | null;
  bias?: { read(): tf.Tensor } | null;
}

/** The spec's kernel and bias constraints bound to the built model's variables (one model layer per spec layer). */
export function constraintTerms(built: BuiltModel, spec: ExperimentSpec): ConstraintTerm[] {
  const terms: ConstraintTerm[] = [];
  spec.model.layers.forEach((l, i) => {
    const w = l.dense ?? l.conv2d;
    if (!w) return;
    const layer = built.model.layers[i]!;
    const weights = layer as unknown as WeightedLayer;
    if (w.kernelConstraint && weights.kernel)
      terms.push({
        layerIndex: i,
        name: `${layer.name}/kernel`,
        variable: weights.kernel.read() as tf.Variable,
        constraint: w.kernelConstraint,
      });
    if (w.biasConstraint && weights.bias)
      terms.push({
        layerIndex: i,
        name: `${layer.name}/bias`,
        variable: weights.bias.read() as tf.Variable,
        constraint: w.biasConstraint,
      });
  });
  return terms;
}

/** `maxNorm(maxValue=2, axis=0)`, `nonNeg`: as the model summary names a constraint. */
export function fmtConstraint(c: ConstraintSpec): string {
  const [kind, config] = Object.entries(c).find(([, v]) => v !== undefined)!;
  const args = Object.entries(config as Record<string, unknown>).map(
    ([k, v]) => `${k}=${Array.isArray(v) ? `[${v.join(', ')}]` : String(v)}`,
  );
  return args.length ? `${kind}(${args.join(', ')})` : kind;
}
