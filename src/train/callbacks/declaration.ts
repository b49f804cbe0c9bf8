/**
 * How a run's callbacks are made: each callback file declares when the spec asks for it (`make`,
 * null when it does not) and where it sits (`order`); the trainer (src/train/trainer.ts) makes
 * every declared callback and sorts them by order. The phases, in the order the loop calls them:
 * record what happened, decide (stop, change the learning rate, keep the best model), log, write
 * the checkpoint (which records the decisions before it), present (bar, lines, events), finish
 * (evaluate again and write the run's files).
 */
import type { BackendInfo } from '../../backend';
import type { Console } from '../../console';
import type { Dataset } from '../../data/dataset';
import type { BuiltModel } from '../../model';
import type { RunDirectory } from '../../run-directory';
import type { ExperimentSpec } from '../../spec';
import type { TrainStep } from '../types';
import type { Callback, CallbackList } from './callback';

export const PHASE = { record: 0, decide: 100, log: 200, checkpoint: 300, present: 400, finish: 500 } as const;

/** What a callback may be made from: the run being trained. */
export interface RunContext {
  readonly spec: ExperimentSpec;
  readonly dir: RunDirectory;
  readonly backend: BackendInfo;
  readonly data: Dataset;
  readonly built: BuiltModel;
  readonly step: TrainStep;
  readonly out: Console;
  /** Seconds since the run started. */
  readonly elapsed: () => number;
  /** The stop signal received, if any. */
  readonly signal: () => string | null;
  /** The command that continues this run. */
  readonly resumeCommand: string;
  /** The run's callbacks, once all are made. */
  readonly callbacks: () => CallbackList;
}

export interface CallbackDeclaration {
  /** Where the callback sits in the list: a PHASE plus an offset within it. */
  order: number;
  make(run: RunContext): Callback | null;
}
