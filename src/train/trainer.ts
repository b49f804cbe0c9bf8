/**
 * The trainer a spec describes: the run's callbacks, each made from its declaration (the spec
 * says which exist, their `order` where they sit), and `fit` over the run's data, resumed from a
 * checkpoint when there is one.
 */
import type { Checkpoint } from '../checkpoint';
import type { RunSeeds } from '../rng';
import { createTrainStep } from './step';
import { bestModelDeclaration } from './callbacks/best-model';
import { CallbackList } from './callbacks/callback';
import { checkpointDeclaration, restoreCheckpoint } from './callbacks/checkpoint';
import type { CallbackDeclaration, RunContext } from './callbacks/declaration';
import { earlyStoppingDeclaration } from './callbacks/early-stopping';
import { epochLine, epochLinesDeclaration } from './callbacks/epoch-lines';
import { finalEvaluationDeclaration } from './callbacks/final-evaluation';
import { History, historyDeclaration } from './callbacks/history';
import { jsonEventsDeclaration } from './callbacks/json-events';
import { heartbeatDeclaration, progressBarDeclaration } from './callbacks/progress-bar';
import { reduceLrOnPlateauDeclaration } from './callbacks/reduce-lr-on-plateau';
import { tensorBoardDeclaration } from './callbacks/tensorboard';
import { weightAveragingDeclaration } from './callbacks/weight-averaging';
import { fit, type FitResult } from './loop';
import type { LoopState } from './types';

/** Every callback a run can have; which it has and in what order follow from their declarations. */
const DECLARED: CallbackDeclaration[] = [
  historyDeclaration,
  weightAveragingDeclaration,
  earlyStoppingDeclaration,
  reduceLrOnPlateauDeclaration,
  bestModelDeclaration,
  tensorBoardDeclaration,
  checkpointDeclaration,
  progressBarDeclaration,
  heartbeatDeclaration,
  epochLinesDeclaration,
  jsonEventsDeclaration,
  finalEvaluationDeclaration,
];

export class Trainer {
  readonly callbacks: CallbackList;
  private resumeState: LoopState | undefined;

  /**
   * The trainer of a run whose model is built: its training step made (and named), its callbacks
   * made from the spec, restored from the checkpoint when there is one. The run directory is
   * kept from here on.
   */
  static start(run: Omit<RunContext, 'callbacks' | 'step'>, checkpoint: Checkpoint | null): Trainer {
    const step = createTrainStep(run.built, run.spec, run.backend);
    run.out.info(`Training step: ${step.description}`);
    const trainer = new Trainer({ ...run, step });
    if (checkpoint) trainer.resume(checkpoint);
    run.out.info(`Run directory: ${run.dir.path}`);
    run.dir.startTraining();
    return trainer;
  }

  constructor(private readonly run: Omit<RunContext, 'callbacks'>) {
    const context: RunContext = { ...run, callbacks: () => this.callbacks };
    this.callbacks = new CallbackList(
      [...DECLARED]
        .sort((a, b) => a.order - b.order)
        .map((d) => d.make(context))
        .filter((c) => c !== null),
    );
  }

  /** Restores the model, the optimizer and every callback from the checkpoint, and shows the epochs so far. */
  resume(checkpoint: Checkpoint): void {
    const { spec, dir, built, step, backend, out } = this.run;
    this.resumeState = restoreCheckpoint(checkpoint, dir.path, built, step, this.callbacks);
    if (checkpoint.body.trainingPath !== step.path || checkpoint.body.backend !== backend.name) {
      out.warn(
        `the checkpoint was written on ${checkpoint.body.backend} (${checkpoint.body.trainingPath} step), this run trains on ${backend.name} (${step.path} step): the result matches an uninterrupted run to float32 rounding, not bit for bit`,
      );
    }
    out.info(`Resuming after epoch ${checkpoint.body.epoch} of ${spec.training.epochs}`);
    const records = this.callbacks.callbacks.find((c): c is History => c instanceof History)!.records;
    records.forEach((r, i) => out.info(epochLine(r, spec.training.epochs, i === 0 || r.lr !== records[i - 1]!.lr)));
  }

  /** Trains to the end (the final evaluation callback writes the run's files and says how it ended), then frees the step. */
  fit(seeds: RunSeeds, shouldStop: () => boolean): Promise<FitResult> {
    const { spec, built, step, data } = this.run;
    return fit(built, step, { train: data.train, validation: data.validation }, this.callbacks, {
      epochs: spec.training.epochs,
      batchSize: spec.training.batchSize,
      shuffle: spec.training.shuffle,
      seeds,
      augmentation: spec.data.augmentation,
      shouldStop,
      ...(this.resumeState ? { resume: this.resumeState } : {}),
    }).finally(() => step.dispose());
  }

  /** Stops every drawing callback for good (a stop signal's notice, or an error, follows). */
  silence(): void {
    for (const c of this.callbacks.callbacks) c.silence?.();
  }
}
