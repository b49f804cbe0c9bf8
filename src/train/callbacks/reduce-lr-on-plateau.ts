import type { ReduceLrOnPlateauSpec } from '../../spec/training';
import { monitorMode } from '../../spec/training';
import type { EpochRecord } from '../../runformat';
import type { Callback, CallbackState, TrainingContext } from './callback';

/**
 * keras.callbacks.ReduceLROnPlateau: after `patience` epochs without the monitor improving by
 * more than minDelta, multiply the learning rate by `factor` (not below minLr), then wait
 * `cooldown` epochs before counting again. On a scheduled learning rate it scales the
 * schedule (Keras refuses that combination).
 */
export class ReduceLrOnPlateau implements Callback {
  readonly name = 'reduceLrOnPlateau';
  private readonly mode: 'min' | 'max';
  private best: number;
  private wait = 0;
  private cooldownCounter = 0;

  constructor(private readonly spec: NonNullable<ReduceLrOnPlateauSpec>) {
    this.mode = monitorMode(spec.monitor);
    this.best = this.mode === 'max' ? -Infinity : Infinity;
  }

  onEpochEnd(_epoch: number, logs: EpochRecord, ctx: TrainingContext): void {
    const current = logs[this.spec.monitor];
    if (current === null || current === undefined) return;
    if (this.cooldownCounter > 0) {
      this.cooldownCounter--;
      this.wait = 0;
    }
    const improved = this.mode === 'min' ? current < this.best - this.spec.minDelta : current > this.best + this.spec.minDelta;
    if (improved) {
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
    return { json: { best: Number.isFinite(this.best) ? this.best : null, wait: this.wait, cooldownCounter: this.cooldownCounter } };
  }

  setState(state: CallbackState): void {
    const s = state.json as { best: number | null; wait: number; cooldownCounter: number };
    this.best = s.best ?? (this.mode === 'max' ? -Infinity : Infinity);
    this.wait = s.wait;
    this.cooldownCounter = s.cooldownCounter;
  }
}
