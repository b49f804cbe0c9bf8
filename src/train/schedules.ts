/**
 * Learning-rate schedules with Keras's names, arguments and formulas
 * (keras.optimizers.schedules). `step` counts optimizer updates already applied, as Keras's
 * `optimizer.iterations` does: the first update uses the schedule's value at step 0.
 */
import type { LearningRateSpec } from '../spec';

export type Schedule = (step: number) => number;

/** initialLearningRate · decayRate^(step / decaySteps), the exponent floored when `staircase`. */
export function exponentialDecay(o: {
  initialLearningRate: number;
  decaySteps: number;
  decayRate: number;
  staircase: boolean;
}): Schedule {
  return (step) => {
    const p = step / o.decaySteps;
    return o.initialLearningRate * Math.pow(o.decayRate, o.staircase ? Math.floor(p) : p);
  };
}

/** values[0] while step ≤ boundaries[0], values[i] while boundaries[i−1] < step ≤ boundaries[i], values[n] after the last. */
export function piecewiseConstant(o: { boundaries: number[]; values: number[] }): Schedule {
  return (step) => {
    const i = o.boundaries.findIndex((b) => step <= b);
    return o.values[i === -1 ? o.values.length - 1 : i]!;
  };
}

/**
 * Keras 3's CosineDecay: an optional linear warm-up from initialLearningRate to warmupTarget
 * over warmupSteps, then a cosine from the peak down to alpha·peak over decaySteps, held there.
 * Without warmupTarget there is no warm-up and the cosine starts at initialLearningRate.
 */
export function cosineDecay(o: {
  initialLearningRate: number;
  decaySteps: number;
  alpha: number;
  warmupSteps: number;
  warmupTarget: number | null;
}): Schedule {
  const decay = (step: number, from: number) => {
    const cosine = 0.5 * (1 + Math.cos(Math.PI * (step / o.decaySteps)));
    return from * ((1 - o.alpha) * cosine + o.alpha);
  };
  return (step) => {
    if (o.warmupTarget === null) return decay(Math.min(step, o.decaySteps), o.initialLearningRate);
    const s = Math.min(step, o.decaySteps + o.warmupSteps);
    if (s < o.warmupSteps)
      return (o.warmupTarget - o.initialLearningRate) * (s / o.warmupSteps) + o.initialLearningRate;
    return decay(s - o.warmupSteps, o.warmupTarget);
  };
}

/** The spec's `learningRate`: a number (constant) or one schedule. */
export function scheduleFrom(lr: LearningRateSpec): Schedule {
  if (typeof lr === 'number') return () => lr;
  if (lr.exponentialDecay) return exponentialDecay(lr.exponentialDecay);
  if (lr.piecewiseConstant) return piecewiseConstant(lr.piecewiseConstant);
  if (lr.cosineDecay) return cosineDecay(lr.cosineDecay);
  throw new Error('learning-rate schedule without a type (the schema should have refused it)');
}
