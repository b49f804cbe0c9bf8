import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { FailureError } from '../../errors';
import { saveModel } from '../../rundir';
import type { EpochRecord } from '../../runformat';
import type { CheckpointSpec } from '../../spec/training';
import { parseCallbackState, type Callback, type CallbackState, type TrainingContext } from './callback';
import { MonitorCallback } from './monitor';
import { PHASE, type CallbackDeclaration } from './declaration';

export const BEST_DIR = 'best';
export const BEST_INFO_FILE = 'best.json';

/** What RUN_DIR/best/best.json says of the model beside it. */
export const bestInfoSchema = z.strictObject({
  epoch: z.number().int().positive(),
  monitor: z.string(),
  value: z.number(),
  mode: z.enum(['min', 'max']),
});
export type BestInfo = z.infer<typeof bestInfoSchema>;

const stateSchema = z.strictObject({ best: z.number().nullable(), bestEpoch: z.number().int().nonnegative() });

/**
 * keras.callbacks.ModelCheckpoint(save_best_only=True): whenever the monitor improves on its
 * best so far, the model is saved to RUN_DIR/best/ with best.json (the epoch and the value).
 * The new directory is written beside the old one and swapped in by rename, so best/ always
 * holds one whole model.
 */
export class BestModel extends MonitorCallback implements Callback {
  readonly name = 'bestModel';
  private bestEpoch = 0;

  constructor(
    private readonly runDir: string,
    private readonly spec: NonNullable<CheckpointSpec['saveBest']>,
  ) {
    // Keras's ModelCheckpoint saves on any strict improvement: no minDelta.
    super(spec.monitor, spec.mode, 0);
  }

  async onEpochEnd(epoch: number, logs: EpochRecord, ctx: TrainingContext): Promise<void> {
    const current = this.current(logs);
    if (current === null || !Number.isFinite(current) || !this.isImprovement(current)) return;
    this.best = current;
    this.bestEpoch = epoch;
    const info: BestInfo = { epoch, monitor: this.spec.monitor, value: current, mode: this.mode };
    const target = path.join(this.runDir, BEST_DIR);
    const fresh = `${target}.new`;
    const old = `${target}.old`;
    try {
      fs.rmSync(fresh, { recursive: true, force: true });
      fs.mkdirSync(fresh);
      await saveModel(ctx.built.model, fresh, { status: 'best', epoch, monitor: this.spec.monitor, value: current });
      fs.writeFileSync(path.join(fresh, BEST_INFO_FILE), JSON.stringify(info, null, 2) + '\n');
      fs.rmSync(old, { recursive: true, force: true });
      if (fs.existsSync(target)) fs.renameSync(target, old);
      fs.renameSync(fresh, target);
      fs.rmSync(old, { recursive: true, force: true });
    } catch (err) {
      if (err instanceof FailureError) throw err;
      throw new FailureError(`${target}: cannot save the best model (${(err as Error).message})`);
    }
  }

  getState(): CallbackState {
    return { json: { best: this.bestForState(), bestEpoch: this.bestEpoch } };
  }

  setState(state: CallbackState): void {
    const s = parseCallbackState(this.name, stateSchema, state.json);
    this.restoreBest(s.best);
    this.bestEpoch = s.bestEpoch;
  }
}

export const bestModelDeclaration: CallbackDeclaration = {
  order: PHASE.decide + 20,
  make: ({ spec, dir }) =>
    spec.training.checkpoint.saveBest ? new BestModel(dir.path, spec.training.checkpoint.saveBest) : null,
};
