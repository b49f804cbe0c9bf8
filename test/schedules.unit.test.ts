import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cosineDecay, exponentialDecay, piecewiseConstant } from '../src/train/schedules';
import { ReduceLrOnPlateau } from '../src/train/callbacks/reduce-lr-on-plateau';
import { createOptimizer } from '../src/train/optimizers';
import type { TrainingContext } from '../src/train/callbacks/callback';
import type { EpochRecord } from '../src/runformat';
import type { TrainStep } from '../src/train/types';

const close = (got: number, want: number, what: string) =>
  assert.ok(Math.abs(got - want) <= 1e-12 + 1e-9 * Math.abs(want), `${what}: ${got}, expected ${want}`);

test('exponentialDecay is initialLearningRate·decayRate^(step/decaySteps), floored with staircase', () => {
  const smooth = exponentialDecay({ initialLearningRate: 0.1, decaySteps: 10, decayRate: 0.5, staircase: false });
  close(smooth(0), 0.1, 'step 0');
  close(smooth(5), 0.1 * Math.SQRT1_2, 'step 5: 0.1·0.5^0.5');
  close(smooth(20), 0.025, 'step 20: 0.1·0.5²');
  const stairs = exponentialDecay({ initialLearningRate: 0.1, decaySteps: 10, decayRate: 0.5, staircase: true });
  close(stairs(9), 0.1, 'staircase step 9');
  close(stairs(15), 0.05, 'staircase step 15: 0.1·0.5^1');
});

test('piecewiseConstant takes values[i] while step ≤ boundaries[i] and the last value after', () => {
  const lr = piecewiseConstant({ boundaries: [10, 20], values: [1, 0.5, 0.1] });
  assert.deepEqual([0, 10, 11, 20, 21, 1000].map(lr), [1, 1, 0.5, 0.5, 0.1, 0.1]);
});

test('cosineDecay falls from the initial rate to alpha·initial over decaySteps, then holds', () => {
  const lr = cosineDecay({ initialLearningRate: 0.1, decaySteps: 100, alpha: 0.1, warmupSteps: 0, warmupTarget: null });
  close(lr(0), 0.1, 'step 0');
  close(lr(50), 0.1 * (0.9 * 0.5 + 0.1), 'step 50: 0.1·((1−α)·½(1 + cos π/2) + α)');
  close(lr(100), 0.01, 'step 100');
  close(lr(150), 0.01, 'step 150 (held)');
});

test('cosineDecay with warm-up rises linearly to warmupTarget, then decays from it', () => {
  const lr = cosineDecay({ initialLearningRate: 0, decaySteps: 100, alpha: 0, warmupSteps: 10, warmupTarget: 0.1 });
  close(lr(0), 0, 'step 0');
  close(lr(5), 0.05, 'step 5: halfway up');
  close(lr(10), 0.1, 'step 10: the peak');
  close(lr(60), 0.05, 'step 60: ½(1 + cos(π·50/100))·0.1');
  close(lr(110), 0, 'step 110: the end');
});

test('an optimizer counts its updates for the schedule: the first update uses step 0', () => {
  const opt = createOptimizer({ sgd: { learningRate: { piecewiseConstant: { boundaries: [1], values: [1, 0.5] } } } });
  const lrs: number[] = [];
  for (let i = 0; i < 3; i++) {
    lrs.push(opt.learningRate());
    opt.endStep();
  }
  assert.deepEqual(lrs, [1, 1, 0.5]);
});

test('ReduceLROnPlateau follows Keras on a hand-written val_loss sequence', () => {
  // factor 0.5, patience 2, cooldown 1, minLr 0.01, starting at 0.1:
  // e1 1.0 best · e2 0.9 best · e3 0.95 wait 1 · e4 0.92 wait 2 → 0.05, cooldown 1 · e5 0.91 cooldown ends, wait 1
  // e6 0.93 wait 2 → 0.025 · e7 0.94 cooldown ends, wait 1 · e8 0.95 → 0.0125 · e9 0.96 wait 1 · e10 0.97 → max(0.00625, 0.01)
  // e11 0.98 wait 1 · e12 0.99 wait 2, but the rate is at minLr: unchanged.
  const opt = createOptimizer({ sgd: { learningRate: 0.1 } });
  const step = {
    learningRate: () => opt.learningRate(),
    setLearningRate: (lr: number) => opt.setLearningRate(lr),
  } as unknown as TrainStep;
  const ctx = { step, epochs: 12, stopTraining: null } as unknown as TrainingContext;
  const cb = new ReduceLrOnPlateau({
    monitor: 'val_loss',
    factor: 0.5,
    patience: 2,
    minDelta: 0,
    cooldown: 1,
    minLr: 0.01,
  });
  const lrs = [1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99].map((val_loss, i) => {
    cb.onEpochEnd(i + 1, { val_loss } as EpochRecord, ctx);
    return opt.learningRate();
  });
  lrs.forEach((lr, i) =>
    close(lr, [0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125, 0.01, 0.01, 0.01][i]!, `after epoch ${i + 1}`),
  );
  // Its state carries on: a fresh callback given the state continues the same way.
  const again = new ReduceLrOnPlateau({
    monitor: 'val_loss',
    factor: 0.5,
    patience: 2,
    minDelta: 0,
    cooldown: 1,
    minLr: 0.01,
  });
  again.setState(cb.getState());
  assert.deepEqual(again.getState(), cb.getState());
});

test('ReduceLROnPlateau on a schedule scales the schedule', () => {
  const opt = createOptimizer({
    sgd: { learningRate: { exponentialDecay: { initialLearningRate: 0.1, decaySteps: 1, decayRate: 0.5 } } },
  });
  opt.endStep(); // schedule now 0.05
  opt.setLearningRate(0.005);
  close(opt.learningRate(), 0.005, 'the cut rate now');
  opt.endStep();
  close(opt.learningRate(), 0.0025, 'the schedule goes on, scaled by 0.1');
});
