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
 * Clips one step's gradients in place (after folding in any penalty gradient still missing): the
 * update that follows takes them with l1 = l2 = 0.
 */
export function clipGradients(grads: readonly StepGradient[], clip: Clipping): void {
  for (const x of grads) if (x.l1 || x.l2) foldPenalty(x);
  const c = f(clip.value);
  if (clip.kind === 'clipvalue') {
    // ops.clip(g, −v, v)
    for (const { g } of grads) for (let i = 0; i < g.length; i++) g[i] = Math.min(Math.max(g[i]!, -c), c);
  } else if (clip.kind === 'clipnorm') {
    // values·clipnorm / max(‖values‖, clipnorm), per variable; ‖0‖ = 0.
    for (const { g } of grads) {
      const l2sum = sumOfSquares(g);
      const norm = l2sum > 0 ? f(Math.sqrt(l2sum)) : l2sum;
      const d = Math.max(norm, c);
      for (let i = 0; i < g.length; i++) g[i] = f(f(g[i]! * c) / d);
    }
  } else {
    // scale = clipnorm·min(1/‖all‖, 1/clipnorm) + (‖all‖ − ‖all‖): NaN when the norm is not finite.
    let total = 0;
    for (const { g } of grads) total += sumOfSquares(g);
    const norm = f(Math.sqrt(f(total)));
    const scale = f(f(c * Math.min(f(1 / norm), f(1 / c))) + (norm - norm));
    for (const { g } of grads) for (let i = 0; i < g.length; i++) g[i] = f(g[i]! * scale);
  }
}

/** Σg², rounded to float32. */
function sumOfSquares(g: Float32Array): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return f(s);
}

function foldPenalty({ w, g, l1, l2 }: StepGradient): void {
  const l2x2 = f(2 * l2);
  for (let i = 0; i < g.length; i++) g[i] = penalized(g[i]!, w[i]!, sign(w[i]!), l1, l2x2);
}
