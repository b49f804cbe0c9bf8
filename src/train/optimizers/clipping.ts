/**
 * Gradient clipping, as Keras 3's base optimizer applies it (keras/src/optimizers/base_optimizer.py:
 * `_clip_gradients`, `_clip_by_norm`, `clip_by_global_norm`, `global_norm`) to one step's gradients,
 * before decoupled weight decay and the update, each operation rounded to float32 (sums of squares
 * are accumulated in float64, then rounded: a float32 backend's reduction order is its own).
 *
 * The gradient clipped is the loss's: data loss + penalties, since Keras adds the regularization
 * losses to the loss before taking the gradient. Both training steps clip here: the reference step's
 * autodiff gradient already holds the penalty's part; the lean step's does not, so `clipGradients`
 * folds l1·sign(w) + 2·l2·w in first, with the same rounding as the update would.
 */
import { CLIP_FIELDS } from '../../spec/training';
import { f, penalized, sign, type CommonConfig } from './definition';

export interface Clipping {
  kind: (typeof CLIP_FIELDS)[number];
  value: number;
}

/** The one clipping option an optimizer's configuration sets, or null. */
export function clippingOf(c: CommonConfig): Clipping | null {
  for (const kind of CLIP_FIELDS) {
    const value = c[kind];
    if (value !== undefined) return { kind, value };
  }
  return null;
}

/** One variable's gradient of a step: `g` is rewritten in place; `w` are the weights it was taken at. */
export interface StepGradient {
  w: Float32Array;
  g: Float32Array;
  /** Kernel penalty factors whose gradient is still to be added to `g` (0 when it holds it already). */
  l1: number;
  l2: number;
}

/**
 * The passes clipGradients makes over a gradient: JS loops by default; the lean step on tfjs-wasm gives
 * SIMD ones over the tensors' own memory (the same float32 arithmetic; the float64 sum of squares is
 * added in another order, so its rounding to float32 may differ in the last bit, rarely).
 */
export interface ClipPasses {
  /** Folds the penalty gradient still missing (l1, l2) into `x.g`; then, with `sum`, returns Σg² in float64, unrounded. */
  foldAndSumSquares(x: StepGradient, sum: boolean): number;
  /** g ← min(max(g, −c), c). */
  clamp(g: Float32Array, c: number): void;
  /** g ← (g·c)/d, each operation rounded to float32. */
  scaleDivide(g: Float32Array, c: number, d: number): void;
  /** g ← g·s, rounded to float32. */
  scale(g: Float32Array, s: number): void;
}

export const jsClipPasses: ClipPasses = {
  foldAndSumSquares(x, sum) {
    if (x.l1 || x.l2) foldPenalty(x);
    if (!sum) return 0;
    let s = 0;
    for (let i = 0; i < x.g.length; i++) s += x.g[i]! * x.g[i]!;
    return s;
  },
  clamp(g, c) {
    for (let i = 0; i < g.length; i++) g[i] = Math.min(Math.max(g[i]!, -c), c);
  },
  scaleDivide(g, c, d) {
    for (let i = 0; i < g.length; i++) g[i] = f(f(g[i]! * c) / d);
  },
  scale(g, s) {
    for (let i = 0; i < g.length; i++) g[i] = f(g[i]! * s);
  },
};

/**
 * Clips one step's gradients in place (after folding in any penalty gradient still missing): the
 * update that follows takes them with l1 = l2 = 0.
 */
export function clipGradients(grads: readonly StepGradient[], clip: Clipping, passes = jsClipPasses): void {
  // Σg² per variable, rounded to float32 (a float32 backend's reduction order is its own).
  const sums = grads.map((x) => f(passes.foldAndSumSquares(x, clip.kind !== 'clipvalue')));
  const c = f(clip.value);
  if (clip.kind === 'clipvalue') {
    // ops.clip(g, −v, v)
    for (const { g } of grads) passes.clamp(g, c);
  } else if (clip.kind === 'clipnorm') {
    // values·clipnorm / max(‖values‖, clipnorm), per variable; ‖0‖ = 0.
    grads.forEach(({ g }, i) => {
      const l2sum = sums[i]!;
      const norm = l2sum > 0 ? f(Math.sqrt(l2sum)) : l2sum;
      passes.scaleDivide(g, c, Math.max(norm, c));
    });
  } else {
    // scale = clipnorm·min(1/‖all‖, 1/clipnorm) + (‖all‖ − ‖all‖): NaN when the norm is not finite.
    let total = 0;
    for (const s of sums) total += s;
    const norm = f(Math.sqrt(f(total)));
    const scale = f(f(c * Math.min(f(1 / norm), f(1 / c))) + (norm - norm));
    for (const { g } of grads) passes.scale(g, scale);
  }
}

function foldPenalty({ w, g, l1, l2 }: StepGradient): void {
  const l2x2 = f(2 * l2);
  for (let i = 0; i < g.length; i++) g[i] = penalized(g[i]!, w[i]!, sign(w[i]!), l1, l2x2);
}
