import { z } from 'zod';
import type { EarlyStoppingSpec } from '../../spec/training';
import type { EpochRecord } from '../../runformat';
import { restore, snapshot } from '../weights';
import {
  parseCallbackState,
  type Callback,
  type CallbackState,
  type TrainEndLogs,
  type TrainingContext,
} from './callback';
import { MonitorCallback } from './monitor';
import { PHASE, type CallbackDeclaration } from './declaration';

const stateSchema = z.strictObject({
  best: z.number().nullable(),
  bestEpoch: z.number().int().nonnegative(),
  wait: z.number().int().nonnegative(),
});

/**
 * keras.callbacks.EarlyStopping: stop once `patience` epochs passed without the monitor
 * improving by more than minDelta. With restoreBestWeights the best epoch's weights are
 * restored at the end whether or not training stopped early (Keras 2 only did after an early
 * stop). Training is not "stopped early" at the last epoch: it ended with its epochs.
 */
export class EarlyStopping extends MonitorCallback implements Callback {
  readonly name = 'earlyStopping';
  /** The monitor's best epoch so far (0: none yet). */
  bestEpoch = 0;
  private wait = 0;
  private bestWeights: Float32Array[] | null = null;

  constructor(private readonly spec: NonNullable<EarlyStoppingSpec>) {
    super(spec.monitor, 'auto', spec.minDelta);
  }

  onEpochEnd(epoch: number, logs: EpochRecord, ctx: TrainingContext): void {
    const current = this.current(logs);
    if (current === null) return;
    if (this.isImprovement(current)) {
      this.best = current;
      this.bestEpoch = epoch;
      this.wait = 0;
      if (this.spec.restoreBestWeights) this.bestWeights = snapshot(ctx.built.model);
    } else if (++this.wait >= this.spec.patience && epoch < ctx.epochs) {
      ctx.stopTraining = 'early-stopping';
    }
  }

  onTrainEnd(logs: TrainEndLogs, ctx: TrainingContext): void {
    if (this.bestWeights && (logs.stopReason === 'epochs' || logs.stopReason === 'early-stopping'))
      restore(ctx.built.model, this.bestWeights);
  }

  /** Whether the model ends with the best epoch's weights. */
  restoresBest(): boolean {
    return this.bestWeights !== null;
  }

  getState(): CallbackState {
    return {
      json: { best: this.bestForState(), bestEpoch: this.bestEpoch, wait: this.wait },
      arrays: (this.bestWeights ?? []).map((data, i) => ({ name: `best/${i}`, data })),
    };
  }

  setState(state: CallbackState): void {
    const s = parseCallbackState(this.name, stateSchema, state.json);
    this.restoreBest(s.best);
    this.bestEpoch = s.bestEpoch;
    this.wait = s.wait;
    this.bestWeights = state.arrays?.length ? state.arrays.map((a) => a.data) : null;
  }
}

export const earlyStoppingDeclaration: CallbackDeclaration = {
  order: PHASE.decide,
  make: ({ spec }) => (spec.training.earlyStopping ? new EarlyStopping(spec.training.earlyStopping) : null),
};
