import { SingleBar } from 'cli-progress';
import type { Callback, BatchLogs, TrainingContext } from './callback';

/** A progress bar over each epoch's steps, on a terminal only (Keras's verbose=1 bar). */
export class ProgressBar implements Callback {
  readonly name = 'progressBar';
  private readonly bar: SingleBar;
  private startedAt = 0;
  private running = false;
  private silenced = false;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.bar = new SingleBar({ format: ' {bar} {value}/{total} steps | {rate} steps/s | ETA {eta_formatted} | loss {loss}', stream, clearOnComplete: true, hideCursor: true });
  }

  onEpochBegin(_epoch: number, ctx: TrainingContext): void {
    if (this.silenced) return;
    this.bar.start(ctx.stepsPerEpoch, 0, { loss: '-', rate: '-' });
    this.startedAt = Date.now();
    this.running = true;
  }

  onBatchEnd(batch: number, logs: BatchLogs, ctx: TrainingContext): void {
    if (batch % 10 === 0 || batch === ctx.stepsPerEpoch)
      this.bar.update(batch, { loss: logs.loss.toFixed(4), rate: ((batch * 1000) / Math.max(1, Date.now() - this.startedAt)).toFixed(0) });
  }

  onEpochEnd(): void {
    this.stop();
  }

  onTrainEnd(): void {
    this.stop();
  }

  /** Stops and clears the bar for good: after a stop signal, nothing may be drawn over the notices that follow. */
  silence(): void {
    this.silenced = true;
    this.stop();
  }

  /** Stops and clears the bar. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.bar.stop();
  }
}
