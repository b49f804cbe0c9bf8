import type { EarlyStoppingSpec } from '../../spec/training';
import { monitorMode } from '../../spec/training';
import type { EpochRecord } from '../../runformat';
import { restore, snapshot } from '../weights';
import type { Callback, CallbackState, TrainEndLogs, TrainingContext } from './callback';

/**
 * keras.callbacks.EarlyStopping: stop once `patience` epochs passed without the monitor
 * improving by more than minDelta. With restoreBestWeights the best epoch's weights are
 * restored at the end whether or not training stopped early (Keras 2 only did after an early
 * stop). Training is not "stopped early" at the last epoch: it ended with its epochs.
 */
export class EarlyStopping implements Callback {
  readonly name = 'earlyStopping';
  private readonly mode: 'min' | 'max';
  private best: number;
  /** The monitor's best epoch so far (0: none yet). */
  bestEpoch = 0;
  private wait = 0;
  private bestWeights: Float32Array[] | null = null;

  constructor(private readonly spec: NonNullable<EarlyStoppingSpec>) {
    this.mode = monitorMode(spec.monitor);
    this.best = this.mode === 'max' ? -Infinity : Infinity;
  }

  onEpochEnd(epoch: number, logs: EpochRecord, ctx: TrainingContext): void {
    const current = logs[this.spec.monitor];
    if (current === null || current === undefined) return;
    const improved = this.mode === 'min' ? current < this.best - this.spec.minDelta : current > this.best + this.spec.minDelta;
    if (improved) {
      this.best = current;
      this.bestEpoch = epoch;
      this.wait = 0;
      if (this.spec.restoreBestWeights) this.bestWeights = snapshot(ctx.built.model);
    } else if (++this.wait >= this.spec.patience && epoch < ctx.epochs) {
      ctx.stopTraining = 'early-stopping';
    }
  }

  onTrainEnd(logs: TrainEndLogs, ctx: TrainingContext): void {
    if (this.bestWeights && (logs.stopReason === 'epochs' || logs.stopReason === 'early-stopping')) restore(ctx.built.model, this.bestWeights);
  }

  /** Whether the model ends with the best epoch's weights. */
  restoresBest(): boolean {
    return this.bestWeights !== null;
  }

  getState(): CallbackState {
    return {
      // JSON has no Infinity: null stands for "no best yet".
      json: { best: Number.isFinite(this.best) ? this.best : null, bestEpoch: this.bestEpoch, wait: this.wait },
      arrays: (this.bestWeights ?? []).map((data, i) => ({ name: `best/${i}`, data })),
    };
  }

  setState(state: CallbackState): void {
    const s = state.json as { best: number | null; bestEpoch: number; wait: number };
    this.best = s.best ?? (this.mode === 'max' ? -Infinity : Infinity);
    this.bestEpoch = s.bestEpoch;
    this.wait = s.wait;
    this.bestWeights = state.arrays?.length ? state.arrays.map((a) => a.data) : null;
  }
}
