/**
 * SGD (keras.optimizers.SGD; Keras 3's sgd.py): w ← w − lr·g; with momentum v ← m·v − lr·g,
 * then w ← w + v (Nesterov: w ← w + m·v − lr·g). Keras's defaults: lr 0.01, no momentum, no
 * weight decay.
 */
import { z } from 'zod';
import { float32BelowOne } from '../../spec/float32';
import {
  baseOptimizerFields,
  bool,
  checkBaseOptimizer,
  withEmaDefaults,
  excludeFromWeightDecay,
  learningRate,
  num,
  weightDecay,
} from '../../spec/training';
import { decayed, defineOptimizer, f, penalized, sign, type PenaltySums } from './definition';

const schema = z
  .strictObject({
    learningRate: learningRate(0.01),
    momentum: num('a number in [0, 1)')
      .min(0, { error: 'expected a number in [0, 1)' })
      .lt(1, { error: 'expected a number in [0, 1)' })
      .superRefine(float32BelowOne)
      .default(0),
    nesterov: bool().default(false),
    weightDecay: weightDecay(0),
    excludeFromWeightDecay: excludeFromWeightDecay(),
    ...baseOptimizerFields,
  })
  .superRefine(checkBaseOptimizer)
  .transform(withEmaDefaults);

export const sgd = defineOptimizer({
  name: 'sgd',
  schema,
  slots: (c) => (c.momentum > 0 ? ['momentum'] : []),
  isPlainSgd: (c) => c.momentum === 0,
  update(u, c, { lr, wd, slots }) {
    const l2x2 = f(2 * u.l2);
    if (c.momentum === 0) return sgdPass(u.w, u.g, u.out, u.l1, l2x2, lr, wd);
    return sgdMomentumPass(u.w, u.g, slots[0]!, u.out, u.l1, l2x2, lr, wd, f(c.momentum), c.nesterov);
  },
});

function sgdPass(
  W: Float32Array,
  G: Float32Array,
  D: Float32Array,
  l1: number,
  l2x2: number,
  lr: number,
  wd: number,
): PenaltySums {
  let abs = 0;
  let sq = 0;
  for (let i = 0; i < W.length; i++) {
    const w = W[i]!;
    const s = sign(w);
    abs += s * w;
    sq += w * w;
    const g = penalized(G[i]!, w, s, l1, l2x2);
    D[i] = decayed(w, wd, lr) - f(lr * g);
  }
  return { abs, sq };
}

function sgdMomentumPass(
  W: Float32Array,
  G: Float32Array,
  V: Float32Array,
  D: Float32Array,
  l1: number,
  l2x2: number,
  lr: number,
  wd: number,
  m: number,
  nesterov: boolean,
): PenaltySums {
  let abs = 0;
  let sq = 0;
  for (let i = 0; i < W.length; i++) {
    const w = W[i]!;
    const s = sign(w);
    abs += s * w;
    sq += w * w;
    const g = penalized(G[i]!, w, s, l1, l2x2);
    const lrg = f(lr * g);
    const v = f(f(m * V[i]!) - lrg);
    V[i] = v;
    D[i] = decayed(w, wd, lr) + (nesterov ? f(f(m * v) - lrg) : v);
  }
  return { abs, sq };
}
