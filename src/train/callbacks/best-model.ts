import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { FailureError } from '../../errors';
import { saveModel } from '../../rundir';
import type { EpochRecord } from '../../runformat';
import { monitorMode, type CheckpointSpec } from '../../spec/training';
import type { Callback, CallbackState, TrainingContext } from './callback';

export const BEST_DIR = 'best';
export const BEST_INFO_FILE = 'best.json';

/** What RUN_DIR/best/best.json says of the model beside it. */
export const bestInfoSchema = z.strictObject({ epoch: z.number().int().positive(), monitor: z.string(), value: z.number(), mode: z.enum(['min', 'max']) });
export type BestInfo = z.infer<typeof bestInfoSchema>;

/**
 * keras.callbacks.ModelCheckpoint(save_best_only=True): whenever the monitor improves on its
 * best so far, the model is saved to RUN_DIR/best/ with best.json (the epoch and the value).
 * The new directory is written beside the old one and swapped in by rename, so best/ always
 * holds one whole model.
 */
export class BestModel implements Callback {
  readonly name = 'bestModel';
  private readonly mode: 'min' | 'max';
  private best: number;
  private bestEpoch = 0;

  constructor(
    private readonly runDir: string,
    private readonly spec: NonNullable<CheckpointSpec['saveBest']>,
  ) {
    this.mode = monitorMode(spec.monitor, spec.mode);
    this.best = this.mode === 'max' ? -Infinity : Infinity;
  }

  async onEpochEnd(epoch: number, logs: EpochRecord, ctx: TrainingContext): Promise<void> {
    const current = logs[this.spec.monitor];
    if (current === null || current === undefined || !Number.isFinite(current)) return;
    if (!(this.mode === 'min' ? current < this.best : current > this.best)) return;
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
    return { json: { best: Number.isFinite(this.best) ? this.best : null, bestEpoch: this.bestEpoch } };
  }

  setState(state: CallbackState): void {
    const s = state.json as { best: number | null; bestEpoch: number };
    this.best = s.best ?? (this.mode === 'max' ? -Infinity : Infinity);
    this.bestEpoch = s.bestEpoch;
  }
}
