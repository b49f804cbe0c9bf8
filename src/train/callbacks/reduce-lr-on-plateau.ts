import { z } from 'zod';
import type { ReduceLrOnPlateauSpec } from '../../spec/training';
import type { EpochRecord } from '../../runformat';
import { parseCallbackState, type Callback, type CallbackState, type TrainingContext } from './callback';
import { MonitorCallback } from './monitor';
import { PHASE, type CallbackDeclaration } from './declaration';

const stateSchema = z.strictObject({
  best: z.number().nullable(),
  wait: z.number().int().nonnegative(),
  cooldownCounter: z.number().int().nonnegative(),
});

/**
 * keras.callbacks.ReduceLROnPlateau: after `patience` epochs without the monitor improving by
 * more than minDelta, multiply the learning rate by `factor` (not below minLr), then wait
 * `cooldown` epochs before counting again. On a scheduled learning rate it scales the
 * schedule (Keras refuses that combination).
 */
export class ReduceLrOnPlateau extends MonitorCallback implements Callback {
  readonly name = 'reduceLrOnPlateau';
  private wait = 0;
  private cooldownCounter = 0;

  constructor(private readonly spec: NonNullable<ReduceLrOnPlateauSpec>) {
    super(spec.monitor, 'auto', spec.minDelta);
  }

  onEpochEnd(_epoch: number, logs: EpochRecord, ctx: TrainingContext): void {
    const current = this.current(logs);
    if (current === null) return;
    if (this.cooldownCounter > 0) {
      this.cooldownCounter--;
      this.wait = 0;
    }
    if (this.isImprovement(current)) {
      this.best = current;
      this.wait = 0;
    } else if (this.cooldownCounter === 0 && ++this.wait >= this.spec.patience) {
      const old = ctx.step.learningRate();
      if (old > this.spec.minLr) {
        ctx.step.setLearningRate(Math.max(old * this.spec.factor, this.spec.minLr));
        this.cooldownCounter = this.spec.cooldown;
        this.wait = 0;
      }
    }
  }

  getState(): CallbackState {
    return { json: { best: this.bestForState(), wait: this.wait, cooldownCounter: this.cooldownCounter } };
  }

  setState(state: CallbackState): void {
    const s = parseCallbackState(this.name, stateSchema, state.json);
    this.restoreBest(s.best);
    this.wait = s.wait;
    this.cooldownCounter = s.cooldownCounter;
  }
}

export const reduceLrOnPlateauDeclaration: CallbackDeclaration = {
  order: PHASE.decide + 10,
  make: ({ spec }) => (spec.training.reduceLrOnPlateau ? new ReduceLrOnPlateau(spec.training.reduceLrOnPlateau) : null),
};
