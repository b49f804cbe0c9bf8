/**
 * Adam (keras.optimizers.Adam; Keras 3's adam.py): m ← m + (g − m)(1 − β₁); v ← v + (g² − v)(1 − β₂)
 * (AMSGrad: v̂ ← max(v̂, v)); α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ); w ← w − m·α/(√v + ε), t the 1-based
 * update count. Keras's defaults: lr 0.001, β₁ 0.9, β₂ 0.999, ε 1e-7 (Keras's, not PyTorch's 1e-8).
 * `adamLike` also makes AdamW (adamw.ts), which differs only in its default weight decay.
 */
import { z } from 'zod';
import {
  baseOptimizerFields,
  bool,
  checkBaseOptimizer,
  withEmaDefaults,
  excludeFromWeightDecay,
  learningRate,
  positive,
  unitOpen,
  weightDecay,
} from '../../spec/training';
import {
  decayed,
  defineOptimizer,
  f,
  penalized,
  sign,
  type AdamStep,
  type PenaltySums,
  type UpdateContext,
  type VariableUpdate,
} from './definition';

const adamSchema = (defaultWeightDecay: number) =>
  z
    .strictObject({
      learningRate: learningRate(0.001),
      beta1: unitOpen().default(0.9),
      beta2: unitOpen().default(0.999),
      epsilon: positive().default(1e-7),
      amsgrad: bool().default(false),
      excludeFromWeightDecay: excludeFromWeightDecay(),
      weightDecay: weightDecay(defaultWeightDecay),
      ...baseOptimizerFields,
    })
    .superRefine(checkBaseOptimizer)
    .transform(withEmaDefaults);
type AdamConfig = z.infer<ReturnType<typeof adamSchema>>;

/** Keras computes these in float32: β^t, then α = lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ). */
function adamStep(c: AdamConfig, { lr, wd, t, slots }: UpdateContext): AdamStep {
  const b1t = f(Math.pow(f(c.beta1), t));
  const b2t = f(Math.pow(f(c.beta2), t));
  const [m, v, vhat] = slots;
  return {
    lr,
    wd,
    alpha: f(f(lr * f(Math.sqrt(f(1 - b2t)))) / f(1 - b1t)),
    oneMinusB1: f(1 - f(c.beta1)),
    oneMinusB2: f(1 - f(c.beta2)),
    epsilon: f(c.epsilon),
    m: m!,
    v: v!,
    vhat: vhat ?? null,
  };
}

export const adamLike = <Name extends string>(name: Name, defaultWeightDecay: number) =>
  defineOptimizer({
    name,
    schema: adamSchema(defaultWeightDecay),
    slots: (c) => (c.amsgrad ? ['m', 'v', 'vhat'] : ['m', 'v']),
    adamStep,
    update: (u, c, ctx) => adamPass(u, adamStep(c, ctx)),
  });

export const adam = adamLike('adam', 0);

/** Adam's update over one variable (or, for a SIMD pass's tail, a slice: `offset` into the moments). */
export function adamPass(u: VariableUpdate, a: AdamStep, offset = 0): PenaltySums {
  const { w: W, g: G, out: D, l1 } = u;
  const l2x2 = f(2 * u.l2);
  const { lr, wd, alpha, oneMinusB1, oneMinusB2, epsilon: eps } = a;
  const M = a.m.subarray(offset, offset + W.length);
  const V = a.v.subarray(offset, offset + W.length);
  const VHat = a.vhat?.subarray(offset, offset + W.length) ?? null;
  let abs = 0;
  let sq = 0;
  for (let i = 0; i < W.length; i++) {
    const w = W[i]!;
    const s = sign(w);
    abs += s * w;
    sq += w * w;
    const g = penalized(G[i]!, w, s, l1, l2x2);
    const m = f(M[i]! + f(f(g - M[i]!) * oneMinusB1));
    let v = f(V[i]! + f(f(f(g * g) - V[i]!) * oneMinusB2));
    M[i] = m;
    V[i] = v;
    if (VHat) {
      v = Math.max(VHat[i]!, v);
      VHat[i] = v;
    }
    D[i] = decayed(w, wd, lr) - f(f(m * alpha) / f(f(Math.sqrt(v)) + eps));
  }
  return { abs, sq };
}
