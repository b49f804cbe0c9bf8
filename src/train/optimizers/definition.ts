/**
 * What an optimizer is to regtrain: a name (its key in the spec's `optimizer` section), a zod
 * schema (its fields and Keras's defaults), the slots it keeps per variable (its checkpointed
 * state) and its update over one variable. Each optimizer is one file in this folder, listed in
 * `registry.ts`; the `Optimizer` (index.ts) runs whichever one the spec names.
 */
import type { z } from 'zod';
import type { LearningRateSpec } from '../../spec/training';

export const f = Math.fround;

/** One variable's update: read `w` and `g`, write the new weights to `out` (which may be `w`). */
export interface VariableUpdate {
  name: string;
  w: Float32Array;
  g: Float32Array;
  out: Float32Array;
  /** Kernel penalty factors whose gradient is still to be added to `g` (float32 values). */
  l1: number;
  l2: number;
}

/** Σ|w| and Σw² at the weights before the update (the batch's penalty is taken there). */
export interface PenaltySums {
  abs: number;
  sq: number;
}

/** The fields every optimizer has (src/spec/training.ts declares them). */
export interface CommonConfig {
  learningRate: LearningRateSpec;
  weightDecay: number;
  excludeFromWeightDecay: string[];
  clipnorm?: number | undefined;
  clipvalue?: number | undefined;
  globalClipnorm?: number | undefined;
  useEma?: boolean | undefined;
  emaMomentum?: number | undefined;
  emaOverwriteFrequency?: number | null | undefined;
}

/** What one update of one variable receives besides the arrays: float32 values, the 1-based update count, its slots. */
export interface UpdateContext {
  lr: number;
  /** This variable's decoupled weight decay (0 when it is excluded or there is none). */
  wd: number;
  t: number;
  /** The variable's slots, in the order `slots()` names them. */
  slots: Float32Array[];
}

export interface OptimizerDefinition<Name extends string = string, Config extends CommonConfig = CommonConfig> {
  name: Name;
  schema: z.ZodType<Config>;
  /** The slot names each variable keeps with this configuration (e.g. `momentum`; `m`, `v`). */
  slots(config: Config): readonly string[];
  update(u: VariableUpdate, config: Config, ctx: UpdateContext): PenaltySums;
  /** Adam's per-step coefficients and moments, for the lean step's SIMD pass (Adam-like optimizers only). */
  adamStep?(config: Config, ctx: UpdateContext): AdamStep;
  /** True when the update is w ← w − (w·wd)·lr − lr·(g + penalty gradient), which the lean step runs as a SIMD pass. */
  isPlainSgd?(config: Config): boolean;
}

/** Adam's per-step coefficients (float32) and one variable's moments, for a SIMD pass. */
export interface AdamStep {
  lr: number;
  wd: number;
  alpha: number;
  oneMinusB1: number;
  oneMinusB2: number;
  epsilon: number;
  m: Float32Array;
  v: Float32Array;
  vhat: Float32Array | null;
}

export function defineOptimizer<Name extends string, Config extends CommonConfig>(
  d: OptimizerDefinition<Name, Config>,
): OptimizerDefinition<Name, Config> {
  return d;
}

// The prologue every update shares, per weight, rounded where tfjs's op-by-op path rounds.

/** sign(w), branch-free: a mispredicted branch per weight made these loops 3× slower. */
export const sign = (w: number): number => +(w > 0) - +(w < 0);

/** The kernel penalty's gradient added to the data gradient: g + l1·sign(w) + 2·l2·w (sign(0) = 0, as Keras). */
export const penalized = (g: number, w: number, s: number, l1: number, l2x2: number): number =>
  f(f(g + l1 * s) + f(l2x2 * w));

/** Decoupled weight decay, before the update and apart from the gradient: w − (w·wd)·lr. */
export const decayed = (w: number, wd: number, lr: number): number => (wd ? f(w - f(f(w * wd) * lr)) : w);
