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
 */
export class TensorBoardLogger implements Callback {
  readonly name = 'tensorboard';
  private writer: TensorBoardWriter | null = null;

  constructor(private readonly runDir: string) {}

  onTrainBegin(_ctx: TrainingContext, resumedAfterEpoch: number): void {
    this.writer = TensorBoardWriter.open(path.join(this.runDir, TENSORBOARD_DIR), { startStep: resumedAfterEpoch + 1 });
  }

  onEpochEnd(epoch: number, logs: EpochRecord, ctx: TrainingContext): void {
    const w = this.writer;
    if (!w) return;
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
    w.flush();
  }

  onTrainEnd(): void {
    this.writer?.close();
    this.writer = null;
  }
}
