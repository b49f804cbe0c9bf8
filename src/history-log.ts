/**
 * history.jsonl: one epoch record per line, appended as each epoch ends (O(1) per epoch,
 * never rewritten), each line chained into a running SHA-256 that the checkpoint keeps, so a
 * resume takes exactly the epochs the checkpoint saw and knows they were not altered.
 * history.json and history.csv, for readers, are written from it when the run ends.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FailureError, InputError } from './errors';
import { readFirstLines, UnreadableFileError } from './fsutil';
import { EpochRecordSchema, type EpochRecord } from './runformat';

/** One epoch's record with every histogram is a few KiB; a line longer than this is not one of ours. */
const MAX_EPOCH_LINE_BYTES = 4 * 1024 * 1024;

export const HISTORY_LOG = 'history.jsonl';
/** The chain's value before the first epoch. */
export const EMPTY_CHAIN = '0'.repeat(64);

const link = (chain: string, line: string) => crypto.createHash('sha256').update(chain).update(line).digest('hex');
/** JSON has no Infinity or NaN: a non-finite number is written as null, as the JSON events do. */
const toLine = (r: EpochRecord) =>
  JSON.stringify(r, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v));

export class HistoryLog {
  readonly file: string;
  chain = EMPTY_CHAIN;

  constructor(dir: string) {
    this.file = path.join(dir, HISTORY_LOG);
  }

  append(record: EpochRecord): void {
    const line = toLine(record);
    try {
      fs.appendFileSync(this.file, line + '\n');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new FailureError(
        `${this.file}: cannot write (${e.code === 'ENOSPC' ? 'no space left on device' : e.message}); files written before are intact`,
      );
    }
    this.chain = link(this.chain, line);
  }

  /**
   * The first `epochs` records, checked against the chain a checkpoint recorded; the file is cut
   * back to them (a crash may have left later epochs or half a line).
   */
  restore(epochs: number, chain: string): EpochRecord[] {
    let lines: string[] = [];
    try {
      const st = fs.lstatSync(this.file);
      if (!st.isFile()) throw new Error('not a regular file');
      // Only as far as the checkpoint needs: later epochs (or a huge file) are never read.
      lines = readFirstLines(this.file, epochs, epochs * MAX_EPOCH_LINE_BYTES);
    } catch (err) {
      if (epochs > 0)
        throw new InputError(
          `${this.file}: unreadable (${err instanceof UnreadableFileError ? err.reason : (err as Error).message}); the checkpoint needs its first ${epochs} epoch(s)`,
        );
    }
    const records: EpochRecord[] = [];
    let c = EMPTY_CHAIN;
    let bytes = 0;
    for (const line of lines) {
      c = link(c, line);
      bytes += Buffer.byteLength(line) + 1;
      let parsed;
      try {
        parsed = EpochRecordSchema.safeParse(JSON.parse(line));
      } catch {
        break;
      }
      if (!parsed.success) break;
      records.push(parsed.data);
    }
    if (records.length !== epochs || c !== chain)
      throw new InputError(
        `${this.file}: does not hold the ${epochs} epoch(s) the checkpoint recorded (damaged or edited)`,
      );
    if (fs.existsSync(this.file)) fs.truncateSync(this.file, bytes);
    this.chain = c;
    return records;
  }
}
