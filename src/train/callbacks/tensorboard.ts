import * as path from 'node:path';
import type { EpochRecord } from '../../runformat';
import { TensorBoardWriter } from '../tensorboard/writer';
import type { Callback, TrainingContext } from './callback';

export const TENSORBOARD_DIR = 'tensorboard';

/**
 * TensorBoard event files in RUN_DIR/tensorboard/ (keras.callbacks.TensorBoard, without
 * tfjs-node): per epoch, the scalars of the epoch's logs (loss, accuracy, val_loss,
 * val_accuracy, data_loss, penalty, each penalty term as `penalty/<weight>/<kind>`, lr) and a
 * histogram of every weight tensor as `weights/<name>`, at step = the epoch (1-based, as the
 * epoch lines count). A resumed run opens a new file starting at its next epoch, so TensorBoard
 * drops what the killed run had logged past its checkpoint.
 *
 * Each record is written at once (a killed process loses none); the fsync that makes an epoch's
 * records survive a power loss runs in the background while the next epoch trains, and is awaited
 * before the next epoch's records and before closing: a power loss may cost the last epoch's
 * points, never the checkpoint's consistency (the checkpoint is written with its own fsyncs).
 */
export class TensorBoardLogger implements Callback {
  readonly name = 'tensorboard';
  private writer: TensorBoardWriter | null = null;
  /** The last epoch's fsync, running in the background. */
  private syncing: Promise<void> | null = null;

  constructor(private readonly runDir: string) {}

  onTrainBegin(_ctx: TrainingContext, resumedAfterEpoch: number): void {
    this.writer = TensorBoardWriter.open(path.join(this.runDir, TENSORBOARD_DIR), { startStep: resumedAfterEpoch + 1 });
  }

  async onEpochEnd(epoch: number, logs: EpochRecord, ctx: TrainingContext): Promise<void> {
    const w = this.writer;
    if (!w) return;
    await this.settle();
    const scalars: [string, number | null | undefined][] = [
      ['loss', logs.loss],
      ['accuracy', logs.accuracy],
      ['val_loss', logs.val_loss],
      ['val_accuracy', logs.val_accuracy],
      ['data_loss', logs.data_loss],
      ['penalty', logs.penalty],
      ...Object.entries(logs.penalties).map(([name, v]): [string, number] => [`penalty/${name}`, v]),
      ['lr', logs.lr],
    ];
    for (const [tag, value] of scalars) if (value !== null && value !== undefined) w.scalar(tag, value, epoch);
    for (const v of ctx.built.model.weights) w.histogram(`weights/${v.name}`, v.read().dataSync() as Float32Array, epoch);
    const syncing = w.flushInBackground();
    // Handled here so that a failure waits for settle() instead of ending the process.
    syncing.catch(() => undefined);
    this.syncing = syncing;
  }

  async onTrainEnd(): Promise<void> {
    try {
      await this.settle();
    } finally {
      this.writer?.close();
      this.writer = null;
    }
  }

  /** Waits for the background fsync, throwing its failure. */
  private async settle(): Promise<void> {
    const syncing = this.syncing;
    this.syncing = null;
    await syncing;
  }
}
