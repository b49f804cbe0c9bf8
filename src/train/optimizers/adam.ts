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
import type { Simd } from '../../accel/simd';
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

/** One variable's update on a heap a SIMD pass reaches: byte addresses of its weights, gradient and output. */
export interface HeapUpdate {
  name: string;
  w: number;
  g: number;
  out: number;
  size: number;
  l1: number;
  l2: number;
}

/**
 * Adam's update of one variable whose weights, gradient, output and moments are in `heap` (the whole
 * memory simd.wat runs on, from address 0): simd.wat's pass over the multiple of 4, adamPass over the
 * rest (none when the size is a multiple of 4). `sums`: 16 bytes of that memory where the pass leaves
 * its two float64 penalty sums. Used by the dense and the CNN lean steps.
 */
export function adamOnHeap(
  simd: Pick<Simd, 'adam'>,
  heap: Float32Array,
  u: HeapUpdate,
  a: AdamStep,
  sums: Float64Array,
): PenaltySums {
  const n4 = u.size & ~3;
  const vhat = a.vhat;
  simd.adam(
    u.w,
    u.g,
    u.out,
    a.m.byteOffset,
    a.v.byteOffset,
    vhat ? vhat.byteOffset : 0,
    vhat ? 1 : 0,
    n4,
    u.l1,
    f(2 * u.l2),
    a.lr,
    a.wd,
    a.alpha,
    a.oneMinusB1,
    a.oneMinusB2,
    a.epsilon,
    sums.byteOffset,
  );
  const abs = sums[0]!;
  const sq = sums[1]!;
  if (n4 === u.size) return { abs, sq };
  const tail = (at: number) => heap.subarray((at >>> 2) + n4, (at >>> 2) + u.size);
  const t = adamPass({ name: u.name, w: tail(u.w), g: tail(u.g), out: tail(u.out), l1: u.l1, l2: u.l2 }, a, n4);
  return { abs: abs + t.abs, sq: sq + t.sq };
}
