import type { EpochRecord } from '../../runformat';
import { HistoryLog } from '../../history-log';
import { z } from 'zod';
import { parseCallbackState, type Callback, type CallbackState } from './callback';
import { PHASE, type CallbackDeclaration } from './declaration';

const stateSchema = z.strictObject({ epochs: z.number().int().nonnegative(), chain: z.string().nullable() });

/** keras.callbacks.History: every epoch's logs, kept in memory and appended to history.jsonl when a run directory is given. */
export class History implements Callback {
  readonly name = 'history';
  records: EpochRecord[] = [];
  private readonly log: HistoryLog | null;

  constructor(runDir: string | null) {
    this.log = runDir ? new HistoryLog(runDir) : null;
  }

  onEpochEnd(_epoch: number, logs: EpochRecord): void {
    this.records.push(logs);
    this.log?.append(logs);
  }

  getState(): CallbackState {
    return { json: { epochs: this.records.length, chain: this.log?.chain ?? null } };
  }

  setState(state: CallbackState): void {
    const s = parseCallbackState(this.name, stateSchema, state.json);
    if (!this.log || s.chain === null)
      throw new Error('history: restoring needs the run directory the history was logged to');
    this.records = this.log.restore(s.epochs, s.chain);
  }
}

/** First: every later callback sees the epoch recorded. */
export const historyDeclaration: CallbackDeclaration = {
  order: PHASE.record,
  make: (run) => new History(run.dir.path),
};
