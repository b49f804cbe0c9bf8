import * as path from 'node:path';
import type { EpochRecord } from '../../runformat';
import { TensorBoardWriter } from '../tensorboard/writer';
import type { Callback, TrainingContext } from './callback';
import { PHASE, type CallbackDeclaration } from './declaration';

export const TENSORBOARD_DIR = 'tensorboard';

/**
 * TensorBoard event files in RUN_DIR/tensorboard/, laid out as keras.callbacks.TensorBoard lays
 * them out (without tfjs-node): a `train/` and a `validation/` run with the same tags, so that
 * TensorBoard draws each metric's train and validation curves on one chart. Per epoch, at step =
 * the epoch (1-based, as the epoch lines count):
 *
 *   train/       epoch_loss, epoch_accuracy, epoch_data_loss, epoch_penalty (means over the
 *                epoch's steps, as the epoch line's), epoch_learning_rate, each penalty term at
 *                the epoch's end as `penalty_at_epoch_end/<weight>/<kind>`, and a histogram of
 *                every weight tensor as `weights/<name>`
 *   validation/  epoch_loss, epoch_accuracy (when the spec has a validation set)
 *
 * A resumed run opens new files starting at its next epoch, so TensorBoard drops what the killed
 * run had logged past its checkpoint.
 *
 * Each record is written at once (a killed process loses none); the fsync that makes an epoch's
 * records survive a power loss runs in the background while the next epoch trains, and is awaited
 * before the next epoch's records and before closing: a power loss may cost the last epoch's
 * points, never the checkpoint's consistency (the checkpoint is written with its own fsyncs).
 */
export class TensorBoardLogger implements Callback {
  readonly name = 'tensorboard';
  private train: TensorBoardWriter | null = null;
  private validation: TensorBoardWriter | null = null;
  private startStep = 1;
  /** The last epoch's fsyncs, running in the background. */
  private syncing: Promise<unknown> | null = null;

  constructor(private readonly runDir: string) {}

  onTrainBegin(_ctx: TrainingContext, resumedAfterEpoch: number): void {
    this.startStep = resumedAfterEpoch + 1;
    this.train = TensorBoardWriter.open(path.join(this.runDir, TENSORBOARD_DIR, 'train'), {
      startStep: this.startStep,
    });
  }

  async onEpochEnd(epoch: number, logs: EpochRecord, ctx: TrainingContext): Promise<void> {
    const w = this.train;
    if (!w) return;
    await this.settle();
    const scalars: [string, number | null | undefined][] = [
      ['epoch_loss', logs.loss],
      ['epoch_accuracy', logs.accuracy],
      ['epoch_data_loss', logs.data_loss],
      ['epoch_penalty', logs.penalty],
      ['epoch_smoothing', logs.smoothing],
      ['epoch_learning_rate', logs.lr],
      ...Object.entries(logs.penalties).map(([name, v]): [string, number] => [`penalty_at_epoch_end/${name}`, v]),
    ];
    for (const [tag, value] of scalars) if (value !== null && value !== undefined) w.scalar(tag, value, epoch);
    for (const v of ctx.built.model.weights)
      w.histogram(`weights/${v.name}`, v.read().dataSync() as Float32Array, epoch);
    const syncs = [w.flushInBackground()];
    if (logs.val_loss !== null) {
      this.validation ??= TensorBoardWriter.open(path.join(this.runDir, TENSORBOARD_DIR, 'validation'), {
        startStep: this.startStep,
      });
      this.validation.scalar('epoch_loss', logs.val_loss, epoch);
      if (logs.val_accuracy !== null) this.validation.scalar('epoch_accuracy', logs.val_accuracy, epoch);
      syncs.push(this.validation.flushInBackground());
    }
    const syncing = Promise.all(syncs);
    // Handled here so that a failure waits for settle() instead of ending the process.
    syncing.catch(() => undefined);
    this.syncing = syncing;
  }

  async onTrainEnd(): Promise<void> {
    try {
      await this.settle();
    } finally {
      this.train?.close();
      this.validation?.close();
      this.train = null;
      this.validation = null;
    }
  }

  /** Waits for the background fsync, throwing its failure. */
  private async settle(): Promise<void> {
    const syncing = this.syncing;
    this.syncing = null;
    await syncing;
  }
}

export const tensorBoardDeclaration: CallbackDeclaration = {
  order: PHASE.log,
  make: ({ spec, dir }) => (spec.training.tensorboard ? new TensorBoardLogger(dir.path) : null),
};
