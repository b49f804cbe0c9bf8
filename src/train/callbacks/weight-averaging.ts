/**
 * The run's weight averages at the end of training, as callbacks (the loop stays unaware of them):
 *
 * - `MovingAverageEnd` (optimizer.*.useEma): Keras's fit ends with `finalize_variable_values`, the
 *   optimizer's moving averages written over the trainable weights, so the final evaluation and the
 *   saved model use them. During training the model holds the raw weights (validation sees those),
 *   unless emaOverwriteFrequency overwrote them, as in Keras. The averages are optimizer state
 *   (src/train/optimizers/index.ts), so this callback keeps none: the EMA is the optimizer's in Keras,
 *   and each optimizer stays one file because the steps run it for all of them.
 * - `StochasticWeightAveraging` (training.swa, regtrain's own; PyTorch's swa_utils): an epoch-level
 *   procedure (snapshots at epochs' ends, a learning rate per epoch, a pass over the data at the end),
 *   so a callback, with the average and its count in the checkpoint (its own state).
 *
 * Both act only when training completed (its epochs, or early stopping), as Keras finalizes only
 * when fit returns: an interrupted run keeps its raw weights and resumes from its checkpoint.
 */
import * as tf from '../../tf';
import { z } from 'zod';
import type { EpochRecord } from '../../runformat';
import type { SwaSpec } from '../../spec/training';
import type { MovingAverageConfig } from '../optimizers';
import { assignAverages } from '../moving-average';
import { addSnapshot, swaLearningRate, updateBatchNorm } from '../weight-averaging';
import {
  parseCallbackState,
  type Callback,
  type CallbackState,
  type TrainEndLogs,
  type TrainingContext,
} from './callback';
import { PHASE, type CallbackDeclaration, type RunContext } from './declaration';
import { withThousands } from '../../thousands';

/** What metrics.json records of the final weights' average (src/runformat.ts). */
export type WeightAveragingRecord =
  | { kind: 'ema'; momentum: number; overwriteFrequency: number | null; updates: number }
  | {
      kind: 'swa';
      startEpoch: number;
      snapshots: number;
      learningRate: number;
      batchNormImages: number;
    };

export interface WeightAverager extends Callback {
  /** What the final weights are, once training ended (null: the run did not end with an average). */
  readonly record: WeightAveragingRecord | null;
}

const complete = (logs: TrainEndLogs) => logs.stopReason === 'epochs' || logs.stopReason === 'early-stopping';
const trainable = (ctx: TrainingContext) => ctx.built.model.trainableWeights.map((w) => w.read() as tf.Variable);

export class MovingAverageEnd implements WeightAverager {
  readonly name = 'movingAverage';
  record: WeightAveragingRecord | null = null;

  constructor(
    private readonly ema: MovingAverageConfig,
    private readonly run: RunContext,
  ) {}

  onTrainEnd(logs: TrainEndLogs, ctx: TrainingContext): void {
    const updates = ctx.step.optimizer.iterations;
    if (!complete(logs) || updates === 0) return;
    assignAverages(ctx.step.optimizer, trainable(ctx));
    this.record = {
      kind: 'ema',
      momentum: this.ema.momentum,
      overwriteFrequency: this.ema.overwriteFrequency,
      updates,
    };
    this.run.out.info(
      `EMA: the model now holds the moving average of its weights (momentum ${this.ema.momentum}, ${withThousands(updates)} updates)`,
    );
  }
}

const swaStateSchema = z.strictObject({
  snapshots: z.number().int().nonnegative(),
  startLearningRate: z.number().positive().nullable(),
});

export class StochasticWeightAveraging implements WeightAverager {
  readonly name = 'swa';
  record: WeightAveragingRecord | null = null;
  /** Epochs averaged so far (AveragedModel's n_averaged). */
  snapshots = 0;
  /** The learning rate in force at the end of epoch startEpoch, SWALR's starting point. */
  private startLearningRate: number | null = null;
  private average: Float32Array[] | null = null;

  constructor(
    private readonly swa: SwaSpec,
    private readonly run: RunContext,
  ) {}

  /** From the epoch after startEpoch: SWALR's rate, fixed for the whole epoch. */
  onEpochBegin(epoch: number, ctx: TrainingContext): void {
    if (epoch > this.swa.startEpoch && this.startLearningRate !== null)
      ctx.step.optimizer.fixLearningRate(
        swaLearningRate(this.swa, this.startLearningRate, epoch - this.swa.startEpoch),
      );
  }

  onEpochEnd(epoch: number, _logs: EpochRecord, ctx: TrainingContext): void {
    if (epoch < this.swa.startEpoch) return;
    if (epoch === this.swa.startEpoch) this.startLearningRate = ctx.step.learningRate();
    const weights = trainable(ctx);
    this.average ??= weights.map((w) => new Float32Array(w.size));
    weights.forEach((w, i) => addSnapshot(this.average![i]!, w.dataSync(), this.snapshots));
    this.snapshots++;
  }

  onTrainEnd(logs: TrainEndLogs, ctx: TrainingContext): void {
    if (!complete(logs)) return;
    const { out, data, spec } = this.run;
    if (this.snapshots === 0 || !this.average) {
      out.info(`SWA: training ended before epoch ${this.swa.startEpoch}: no average, the model keeps its last weights`);
      return;
    }
    trainable(ctx).forEach((v, i) => {
      const t = tf.tensor(this.average![i]!, v.shape);
      v.assign(t);
      t.dispose();
    });
    const images = updateBatchNorm(ctx.built, data.train, spec.training.batchSize);
    const last = this.swa.startEpoch + this.snapshots - 1;
    this.record = {
      kind: 'swa',
      startEpoch: this.swa.startEpoch,
      snapshots: this.snapshots,
      learningRate: this.swa.learningRate,
      batchNormImages: images,
    };
    const epochs = this.snapshots === 1 ? `epoch ${last}` : `epochs ${this.swa.startEpoch}–${last}`;
    out.info(
      `SWA: the model now holds the average of the weights at the end of ${epochs} (${this.snapshots} snapshot${this.snapshots === 1 ? '' : 's'})${images ? `; batch-norm statistics recomputed over the ${withThousands(images)} training images` : ''}`,
    );
  }

  getState(): CallbackState {
    return {
      json: { snapshots: this.snapshots, startLearningRate: this.startLearningRate },
      arrays: (this.average ?? []).map((data, i) => ({ name: `average/${i}`, data })),
    };
  }

  setState(state: CallbackState): void {
    const s = parseCallbackState(this.name, swaStateSchema, state.json);
    this.snapshots = s.snapshots;
    this.startLearningRate = s.startLearningRate;
    this.average = state.arrays?.length ? state.arrays.map((a) => a.data.slice()) : null;
  }
}

/**
 * First in the list: its snapshot is of the epoch's trained weights before any callback decides, and
 * at the end the average is in the model before the final evaluation (and before early stopping's
 * restore, as Keras finalizes before on_train_end; the spec refuses restoreBestWeights with an average).
 */
export const weightAveragingDeclaration: CallbackDeclaration = {
  order: PHASE.record + 10,
  make: (run) => {
    const ema = run.step.optimizer.ema;
    if (ema) return new MovingAverageEnd(ema, run);
    return run.spec.training.swa ? new StochasticWeightAveraging(run.spec.training.swa, run) : null;
  },
};
