/**
 * Hyperparameters are written in decimal (float64) but used in float32, the precision of the
 * weights and of every update (src/train/optimizers.ts, the wasm kernels, tfjs). A value that
 * float32 turns into something else validates as written and then trains as another value:
 * β₂ 0.99999999 is 1 (so 1 − β₂ is 0 and Adam never updates), a learning rate of 1e-50 is 0,
 * ε 1e-50 is 0 (0/0 for every weight whose gradient is 0). These refinements refuse such
 * values at the field, saying what float32 makes of them.
 */
import { z } from 'zod';

const f = Math.fround;
/** The smallest normal float32; below it values are subnormal, and TensorFlow's CPU kernels (tfjs-node) flush them to 0. */
export const FLOAT32_MIN_NORMAL = 2 ** -126;
/** The largest float32 below 1. */
export const FLOAT32_BELOW_ONE = f(1 - 2 ** -24);
/** The largest finite float32. */
export const FLOAT32_MAX = f(3.4028234663852886e38);

/** How a float32 value reads in messages: the shortest decimal that float32 rounds back to it. */
function show32(x: number): string {
  if (x === 0 || !Number.isFinite(x)) return String(x);
  for (let p = 1; p <= 9; p++) {
    const s = x.toPrecision(p);
    if (f(Number(s)) === x) return String(Number(s));
  }
  return String(x);
}

const IN_F32 = 'in float32 (the precision training uses)';

/**
 * A factor used as a float32 multiplier (learning rates, ε, decay and penalty factors): a positive
 * value must stay a finite, normal float32. `zeroAllowed`: the field takes 0 (the message offers it).
 */
export function float32Factor(zeroAllowed: boolean): (x: number, ctx: z.RefinementCtx) => void {
  return (x, ctx) => {
    if (!(x > 0) || !Number.isFinite(x)) return;
    const y = f(x);
    const instead = `use ${zeroAllowed ? '0 or ' : ''}at least ${show32(FLOAT32_MIN_NORMAL)}`;
    if (y === Infinity)
      ctx.addIssue({
        code: 'custom',
        message: `${x} is Infinity ${IN_F32}; the largest float32 is ${show32(FLOAT32_MAX)}`,
      });
    else if (y === 0) ctx.addIssue({ code: 'custom', message: `${x} is 0 ${IN_F32}; ${instead}` });
    else if (y < FLOAT32_MIN_NORMAL)
      ctx.addIssue({
        code: 'custom',
        message: `${x} is subnormal ${IN_F32}, and tfjs-node flushes it to 0; ${instead}`,
      });
  };
}

/**
 * A value below 1 whose complement 1 − x is used (β₁, β₂, momentum, dropout rates, batch-norm
 * momentum, ReduceLROnPlateau's factor): float32 must keep it below 1, and a positive one a
 * normal float32.
 */
export function float32BelowOne(x: number, ctx: z.RefinementCtx): void {
  if (!Number.isFinite(x) || x >= 1) return;
  if (f(x) >= 1)
    ctx.addIssue({
      code: 'custom',
      message: `${x} is 1 ${IN_F32}, so 1 − it is 0; use at most ${show32(FLOAT32_BELOW_ONE)}`,
    });
  else float32Factor(true)(x, ctx);
}
