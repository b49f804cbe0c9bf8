import { SingleBar } from 'cli-progress';
import type { Callback, BatchLogs, TrainingContext } from './callback';
import { PHASE, type CallbackDeclaration } from './declaration';
import { stderr } from '../../output';

/** A reader's remaining time: `about 40s left`, `about 3 min left`, `about 1h05m left`. */
export function fmtTimeLeft(seconds: number): string {
  const s = Math.max(1, Math.round(seconds));
  if (s < 90) return `about ${s}s left`;
  if (s < 3570) return `about ${Math.round(s / 60)} min left`;
  const m = Math.round(s / 60);
  return `about ${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m left`;
}

/**
 * The whole run's pace in this session (a resumed run restarts it): the time so far over the
 * steps so far, validation and the epochs' ends included, times the steps still to go.
 * Early stopping may end sooner; the estimate does not guess that.
 */
export class RunPace {
  private sessionStart = 0;
  private epochsDone = 0;
  epoch = 0;

  trainBegin(): void {
    this.sessionStart = Date.now();
    this.epochsDone = 0;
  }
  epochBegin(epoch: number): void {
    this.epoch = epoch;
  }
  epochEnd(): void {
    this.epochsDone++;
  }

  /** Seconds left after `batch` steps of the current epoch, or null before the first step. */
  secondsLeft(batch: number, ctx: TrainingContext): number | null {
    const done = this.epochsDone * ctx.stepsPerEpoch + batch;
    if (done === 0 || this.sessionStart === 0) return null;
    const toGo = (ctx.epochs - this.epoch) * ctx.stepsPerEpoch + (ctx.stepsPerEpoch - batch);
    return ((Date.now() - this.sessionStart) / 1000 / done) * toGo;
  }
}

/** A progress bar over each epoch's steps, with the run's remaining time, on a terminal only (Keras's verbose=1 bar). */
export class ProgressBar implements Callback {
  readonly name = 'progressBar';
  private readonly bar: SingleBar;
  private readonly pace = new RunPace();
  private startedAt = 0;
  private running = false;
  private silenced = false;

  constructor(stream: NodeJS.WriteStream = stderr()) {
    this.bar = new SingleBar({
      format: ' {bar} {value}/{total} steps | {rate} steps/s | loss {loss} | epoch {epoch} | {left}',
      barsize: 20,
      stream,
      clearOnComplete: true,
      hideCursor: true,
    });
  }

  onTrainBegin(): void {
    this.pace.trainBegin();
  }

  onEpochBegin(epoch: number, ctx: TrainingContext): void {
    this.pace.epochBegin(epoch);
    if (this.silenced) return;
    this.bar.start(ctx.stepsPerEpoch, 0, { loss: '-', rate: '-', epoch: `${epoch}/${ctx.epochs}`, left: '…' });
    this.startedAt = Date.now();
    this.running = true;
  }

  onBatchEnd(batch: number, logs: BatchLogs, ctx: TrainingContext): void {
    if (batch % 10 === 0 || batch === ctx.stepsPerEpoch) {
      const left = this.pace.secondsLeft(batch, ctx);
      this.bar.update(batch, {
        loss: logs.loss.toFixed(4),
        rate: ((batch * 1000) / Math.max(1, Date.now() - this.startedAt)).toFixed(0),
        left: left === null ? '…' : fmtTimeLeft(left),
      });
    }
  }

  onEpochEnd(): void {
    this.pace.epochEnd();
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

/**
 * With --quiet on a terminal: one line now and then (at an epoch's end, at most once a minute)
 * saying where the run is, so that minutes of silence do not look like a hang.
 */
export class Heartbeat implements Callback {
  readonly name = 'heartbeat';
  private readonly pace = new RunPace();
  private last = 0;

  constructor(
    private readonly print: (line: string) => void,
    private readonly everyMs = 60_000,
  ) {}

  onTrainBegin(): void {
    this.pace.trainBegin();
    this.last = Date.now();
  }
  onEpochBegin(epoch: number): void {
    this.pace.epochBegin(epoch);
  }
  onEpochEnd(epoch: number, _logs: unknown, ctx: TrainingContext): void {
    const left = this.pace.secondsLeft(ctx.stepsPerEpoch, ctx);
    this.pace.epochEnd();
    if (Date.now() - this.last < this.everyMs || epoch === ctx.epochs) return;
    this.last = Date.now();
    this.print(`epoch ${epoch}/${ctx.epochs} done${left === null ? '' : `, ${fmtTimeLeft(left)}`}`);
  }
}

/** On a terminal, the bar (or, with --quiet, the heartbeat). */
export const progressBarDeclaration: CallbackDeclaration = {
  order: PHASE.present,
  make: ({ out }) => (stderr().isTTY && !out.quiet ? new ProgressBar() : null),
};

export const heartbeatDeclaration: CallbackDeclaration = {
  order: PHASE.present + 1,
  make: ({ out }) => (stderr().isTTY && out.quiet ? new Heartbeat((line) => stderr().write(line + '\n')) : null),
};
