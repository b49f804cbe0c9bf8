/**
 * Callbacks, shaped like tfjs-layers' (base_callbacks.ts) and Keras's (keras/callbacks/):
 * the loop calls every hook in list order; a callback stops training by setting
 * `ctx.stopTraining` (Keras's `model.stop_training`). Unlike Keras, each callback can save and
 * restore its own state, so that a checkpoint (the loop's, the optimizer's and every
 * callback's state) resumes training bit for bit.
 */
import type { z } from 'zod';
import { InputError } from '../../errors';
import type { BuiltModel } from '../../model';
import type { EpochRecord } from '../../runformat';
import type { LoopState, TrainStep } from '../types';

/** Why training ended. */
export type StopReason = NonNullable<LoopState['stopTraining']>;

/** A callback's saved state: JSON plus named float arrays (weights), which go to the checkpoint's binary file. */
export interface CallbackState {
  json: unknown;
  arrays?: { name: string; data: Float32Array }[];
}

/** What the loop shares with its callbacks. */
export interface TrainingContext {
  readonly built: BuiltModel;
  readonly step: TrainStep;
  readonly epochs: number;
  readonly stepsPerEpoch: number;
  /** Set by a callback to end training after the current epoch, with the reason recorded. */
  stopTraining: StopReason | null;
  /** Seconds the current epoch spent in its training steps, without validation and the epoch's-end work. */
  trainSeconds: number;
  /** The loop's own state now (for checkpoints). */
  loopState(): LoopState;
}

export interface BatchLogs {
  /** Running mean of the epoch's loss (data loss + penalty) so far. */
  loss: number;
}

export interface TrainEndLogs {
  stopReason: StopReason;
  /** Completed epochs. */
  epochs: number;
  /** Where the loss became non-finite; `step` null: the validation loss at the epoch's end. */
  nonFinite?: { epoch: number; step: number | null };
}

export interface Callback {
  /** Names the callback's state in a checkpoint; unique within a list. */
  readonly name: string;
  onTrainBegin?(ctx: TrainingContext, resumedAfterEpoch: number): void | Promise<void>;
  onEpochBegin?(epoch: number, ctx: TrainingContext): void | Promise<void>;
  /** `batch` is 1-based within the epoch. */
  onBatchEnd?(batch: number, logs: BatchLogs, ctx: TrainingContext): void;
  onEpochEnd?(epoch: number, logs: EpochRecord, ctx: TrainingContext): void | Promise<void>;
  onTrainEnd?(logs: TrainEndLogs, ctx: TrainingContext): void | Promise<void>;
  /** State to checkpoint; a callback without state leaves both out. */
  getState?(): CallbackState;
  setState?(state: CallbackState): void;
  /** Stops drawing for good: a stop signal's notices, or the run's end, follow. */
  silence?(): void;
}

/** Calls every callback's hook in order, awaiting each. */
export class CallbackList {
  constructor(readonly callbacks: Callback[]) {
    const names = new Set<string>();
    for (const c of callbacks) {
      if (names.has(c.name)) throw new Error(`two callbacks named ${c.name}`);
      names.add(c.name);
    }
  }

  async trainBegin(ctx: TrainingContext, resumedAfterEpoch: number): Promise<void> {
    for (const c of this.callbacks) await c.onTrainBegin?.(ctx, resumedAfterEpoch);
  }
  async epochBegin(epoch: number, ctx: TrainingContext): Promise<void> {
    for (const c of this.callbacks) await c.onEpochBegin?.(epoch, ctx);
  }
  batchEnd(batch: number, logs: BatchLogs, ctx: TrainingContext): void {
    for (const c of this.callbacks) c.onBatchEnd?.(batch, logs, ctx);
  }
  async epochEnd(epoch: number, logs: EpochRecord, ctx: TrainingContext): Promise<void> {
    for (const c of this.callbacks) await c.onEpochEnd?.(epoch, logs, ctx);
  }
  async trainEnd(logs: TrainEndLogs, ctx: TrainingContext): Promise<void> {
    for (const c of this.callbacks) await c.onTrainEnd?.(logs, ctx);
  }

  /** Every stateful callback's state, by name. */
  states(): Record<string, CallbackState> {
    const out: Record<string, CallbackState> = {};
    for (const c of this.callbacks) if (c.getState) out[c.name] = c.getState();
    return out;
  }

  /** Gives each stateful callback its saved state; a missing one is an error (the checkpoint is not of this configuration). */
  setStates(states: Record<string, CallbackState>): void {
    for (const c of this.callbacks) {
      if (!c.setState) continue;
      const s = states[c.name];
      if (!s) throw new MissingStateError(c.name);
      c.setState(s);
    }
  }
}

export class MissingStateError extends Error {
  constructor(readonly callback: string) {
    super(`no state for the ${callback} callback`);
  }
}

/** A callback's checkpointed state, checked against its schema: damage is an InputError naming the field, as checkpoint.ts words it. */
export function parseCallbackState<S extends z.ZodType>(callback: string, schema: S, json: unknown): z.infer<S> {
  const parsed = schema.safeParse(json);
  if (parsed.success) return parsed.data;
  const at = parsed.error.issues[0]?.path.join('.');
  throw new InputError(`damaged (callbacks.${callback}${at ? `.${at}` : ''} is invalid)`);
}
