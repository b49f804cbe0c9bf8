import { Checkpoint, CHECKPOINT_FILE, NamedArray, writeCheckpoint } from '../../checkpoint';
import { InputError } from '../../errors';
import type { BuiltModel } from '../../model';
import type { EpochRecord } from '../../runformat';
import { restore, snapshot } from '../weights';
import type { LoopState, TrainStep } from '../types';
import { Callback, CallbackList, CallbackState, MissingStateError, TrainingContext } from './callback';
import { PHASE, type CallbackDeclaration } from './declaration';

/**
 * A checkpoint names the weights (and the optimizer slots named after them: dense/kernel/momentum) as model.json
 * does: dense/kernel. tfjs gives a variable a suffix when the process built a model before (dense/kernel_1), so
 * in a process that trains twice (tests, a program using regtrain's modules) the names in memory differ from the
 * saved ones; `save` and `load` map between them. In one CLI run they are the same.
 */
function savedNames(built: BuiltModel): { save: (name: string) => string; load: (name: string) => string } {
  const pairs = built.model.weights.map((w) => [w.name, (w as { originalName?: string }).originalName ?? w.name]);
  const rename = (from: 0 | 1, to: 0 | 1) => (name: string) => {
    const p = pairs.find((p) => name === p[from] || name.startsWith(`${p[from]}/`));
    return p ? p[to] + name.slice(p[from]!.length) : name;
  };
  return { save: rename(0, 1), load: rename(1, 0) };
}

/**
 * Writes a checkpoint at every epoch's end: the union of the loop's state, the optimizer's and
 * every other callback's, with the model's weights. Put it after the callbacks whose decisions
 * it must record (early stopping, learning-rate changes) and before those that only report.
 */
export class CheckpointWriter implements Callback {
  readonly name = 'checkpoint';

  constructor(
    private readonly runDir: string,
    private readonly backend: string,
    private readonly callbacks: () => CallbackList,
  ) {}

  async onEpochEnd(epoch: number, _logs: EpochRecord, ctx: TrainingContext): Promise<void> {
    const { save } = savedNames(ctx.built);
    const arrays: NamedArray[] = snapshot(ctx.built.model).map((data, i) => ({
      group: 'weights',
      name: save(ctx.built.model.weights[i]!.name),
      data,
    }));
    const { slots, ...optimizer } = ctx.step.optimizerState();
    for (const s of slots) arrays.push({ group: 'optimizer', name: save(s.name), data: s.data });
    const callbacks: Record<string, unknown> = {};
    for (const [name, state] of Object.entries(this.callbacks().states())) {
      callbacks[name] = state.json;
      for (const a of state.arrays ?? []) arrays.push({ group: `callback:${name}`, name: a.name, data: a.data });
    }
    await writeCheckpoint(
      this.runDir,
      { epoch, backend: this.backend, trainingPath: ctx.step.path, loop: ctx.loopState(), optimizer, callbacks },
      arrays,
    );
  }
}

/**
 * Puts a checkpoint back: the model's weights, the optimizer's state and every callback's;
 * returns the loop's state. Anything that does not fit the spec's model and configuration is
 * an InputError naming the checkpoint.
 */
export function restoreCheckpoint(
  cp: Checkpoint,
  runDir: string,
  built: BuiltModel,
  step: TrainStep,
  callbacks: CallbackList,
): LoopState {
  const where = `${runDir}/${CHECKPOINT_FILE}`;
  const { save, load } = savedNames(built);
  const weights = cp.arrays.filter((a) => a.group === 'weights');
  const model = built.model.weights;
  const sizeOf = (i: number) => model[i]!.shape.reduce((a: number, b) => a * (b ?? 1), 1);
  if (
    weights.length !== model.length ||
    weights.some((w, i) => w.name !== save(model[i]!.name) || w.data.length !== sizeOf(i))
  ) {
    throw new InputError(`${where}: its weights do not fit the spec's model`);
  }
  restore(
    built.model,
    weights.map((w) => w.data),
  );
  try {
    step.setOptimizerState({
      ...cp.body.optimizer,
      slots: cp.arrays.filter((a) => a.group === 'optimizer').map((a) => ({ name: load(a.name), data: a.data })),
    });
    const states: Record<string, CallbackState> = {};
    for (const [name, json] of Object.entries(cp.body.callbacks)) {
      states[name] = {
        json,
        arrays: cp.arrays.filter((a) => a.group === `callback:${name}`).map((a) => ({ name: a.name, data: a.data })),
      };
    }
    callbacks.setStates(states);
  } catch (err) {
    if (err instanceof InputError) throw new InputError(`${where}: ${err.message}`);
    if (err instanceof MissingStateError)
      throw new InputError(
        `${where}: holds no state for ${err.callback}; it was written with another training configuration`,
      );
    throw err;
  }
  return cp.body.loop;
}

/** After the callbacks that decide, so that it records their decisions; the ones after it only report. */
export const checkpointDeclaration: CallbackDeclaration = {
  order: PHASE.checkpoint,
  make: ({ dir, backend, callbacks }) => new CheckpointWriter(dir.path, backend.name, callbacks),
};
