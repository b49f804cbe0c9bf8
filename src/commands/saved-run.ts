/** A finished run's directory as evaluate and predict open it: its metrics, best model, spec and model. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as tf from '../tf';
import { InputError } from '../errors';
import { bindSpec, type BuiltModel } from '../model';
import { readRegularFile, UnreadableFileError } from '../fsutil';
import { readMetrics, SPEC_FILE } from '../rundir';
import type { MetricsFile } from '../runformat';
import { parseSpec, MAX_SPEC_BYTES, type ExperimentSpec, type Override } from '../spec';
import type { Console } from '../console';
import { BEST_DIR, BEST_INFO_FILE, BestInfo, bestInfoSchema } from '../train/callbacks/best-model';

/** best.json is one small object (epoch, monitor, value): anything larger is not one of ours. */
const MAX_BEST_INFO_BYTES = 64 * 1024;

/** RUN_DIR/best/best.json, checked; a run without a best model is refused with the way to get one. */
export function readBestInfo(dir: string): BestInfo {
  const file = path.join(dir, BEST_DIR, BEST_INFO_FILE);
  let text: string;
  try {
    text = readRegularFile(file, { maxBytes: MAX_BEST_INFO_BYTES }).toString('utf8');
  } catch (err) {
    if (err instanceof UnreadableFileError && err.code === 'ENOENT')
      throw new InputError(
        `${dir}: has no best model (train with training.checkpoint.saveBest, e.g. --set 'training.checkpoint.saveBest={monitor: val_loss}')`,
      );
    throw err;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new InputError(`${file}: not valid JSON (truncated or corrupt)`);
  }
  const parsed = bestInfoSchema.safeParse(raw);
  if (!parsed.success)
    throw new InputError(`${file}: damaged (${parsed.error.issues[0]!.path.join('.') || 'content'} is invalid)`);
  return parsed.data;
}

/**
 * The run directory `dir`'s metrics (their warnings printed) and, with `useBest`, its best model's
 * info. A run that did not finish is refused for `command` (`hint` is appended to the refusal),
 * unless its best model is used.
 */
export function openFinishedRun(
  dir: string,
  command: string,
  useBest: boolean,
  out: Console,
  hint: (metrics: MetricsFile) => string = () => '',
): { metrics: MetricsFile; best: BestInfo | null } {
  if (!fs.existsSync(dir)) throw new InputError(`${dir}: not a run directory (no such directory)`);
  if (!fs.statSync(dir).isDirectory()) throw new InputError(`${dir}: not a run directory (not a directory)`);
  const { metrics, warnings } = readMetrics(dir);
  for (const w of warnings) out.warn(w);
  const best = useBest ? readBestInfo(dir) : null;
  if (metrics.status !== 'complete' && !best)
    throw new InputError(
      `${dir}: the run is ${metrics.status} (${metrics.stopReason}); ${command} needs a finished run${hint(metrics)}`,
    );
  return { metrics, best };
}

/** RUN_DIR/spec.yaml, with `sets` applied as --set would. */
export function readRunSpec(dir: string, sets: Override[] = []): ExperimentSpec {
  const specFile = path.join(dir, SPEC_FILE);
  let specText: string;
  try {
    specText = readRegularFile(specFile, { maxBytes: MAX_SPEC_BYTES }).toString('utf8');
  } catch (err) {
    if (err instanceof UnreadableFileError && err.code === 'ENOENT')
      throw new InputError(`${specFile}: missing (not a complete run directory)`);
    throw err;
  }
  return parseSpec(specText, specFile, sets).spec;
}

/** The run's loaded model bound to its spec; a model.json that does not fit spec.yaml is refused. */
export function bindRunModel(dir: string, model: tf.LayersModel, spec: ExperimentSpec): BuiltModel {
  try {
    return bindSpec(model, spec);
  } catch (err) {
    throw new InputError(`${dir}: model.json does not match spec.yaml (${(err as Error).message})`);
  }
}
