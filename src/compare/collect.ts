import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../errors';
import { readRegularFile, UnreadableFileError } from '../fsutil';
import { readHistory, readMetrics, readStudy, HISTORY_JSON, METRICS_FILE, SPEC_FILE, STUDY_FILE } from '../rundir';
import type { EpochRecord, MetricsFile, StudyFile } from '../runformat';
import { parsePlainYaml, MAX_SPEC_BYTES } from '../spec';

/**
 * `compare`, step 1: reads run and study directories, skipping broken or unfinished runs with a
 * reason (never failing on them).
 */

export interface RunData {
  dir: string;
  metrics: MetricsFile;
  history: EpochRecord[] | null;
  /** The resolved spec.yaml as a plain object, or null when missing/unreadable. */
  spec: Record<string, unknown> | null;
  study: { dir: string; file: StudyFile; member: StudyFile['members'][number] } | null;
}

export interface Skipped {
  dir: string;
  reason: string;
}

export interface Collected {
  runs: RunData[];
  skipped: Skipped[];
  /** Non-fatal problems with runs that were kept (e.g. an unreadable history.json). */
  warnings: string[];
  studies: { dir: string; file: StudyFile }[];
}

const RUN_FILES = ['metrics.json', 'history.json', 'spec.yaml', 'model.json'];

const finite = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
/** What a reader's InputError says after the file name (the reason names the file already). */
const reasonOf = (err: unknown, dir: string): string => {
  if (!(err instanceof InputError)) throw err;
  const msg = err.message.split('\n')[0]!;
  return msg.startsWith(dir) ? msg.slice(dir.length).replace(/^[\\/]/, '') : msg;
};

function looksLikeRun(dir: string): boolean {
  return RUN_FILES.some((f) => fs.existsSync(path.join(dir, f)));
}

function subdirs(dir: string): string[] {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
      .map((e) => path.join(dir, e.name))
      .sort();
  } catch {
    return [];
  }
}

/** Reads one run directory; returns a reason instead when it cannot be compared. */
export function readRun(dir: string): { run?: RunData; reason?: string; warnings: string[] } {
  const warnings: string[] = [];
  if (!fs.existsSync(path.join(dir, METRICS_FILE)))
    return { reason: 'no metrics.json (the run did not finish, or this is not a run directory)', warnings };
  let metrics: MetricsFile;
  try {
    const read = readMetrics(dir);
    metrics = read.metrics;
    warnings.push(...read.warnings);
  } catch (err) {
    return { reason: reasonOf(err, dir), warnings };
  }
  if (metrics.status !== 'complete')
    return { reason: `the run is ${metrics.status} (${metrics.stopReason})`, warnings };
  if (!metrics.test || finite(metrics.test.accuracy) === null || finite(metrics.test.loss) === null)
    return { reason: 'metrics.json has no test accuracy/loss', warnings };

  let history: EpochRecord[] | null = null;
  try {
    history = readHistory(dir).epochs;
  } catch (err) {
    const why = fs.existsSync(path.join(dir, HISTORY_JSON)) ? reasonOf(err, dir) : 'history.json missing';
    warnings.push(`${dir}: ${why}; its curves and best validation accuracy are left out`);
  }

  let spec: Record<string, unknown> | null = null;
  const specFile = path.join(dir, SPEC_FILE);
  try {
    const parsed = parsePlainYaml(readRegularFile(specFile, { maxBytes: MAX_SPEC_BYTES }).toString('utf8'), specFile);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed))
      spec = parsed as Record<string, unknown>;
    else warnings.push(`${dir}: spec.yaml is not a map; grouped by name only`);
  } catch (err) {
    warnings.push(
      `${dir}: ${err instanceof UnreadableFileError && err.code === 'ENOENT' ? 'spec.yaml missing' : reasonOf(err, dir)}; grouped by name only`,
    );
  }
  return { run: { dir, metrics, history, spec, study: null }, warnings };
}

function readStudyFile(dir: string): { study: StudyFile | null; problem: string | null } {
  if (!fs.existsSync(path.join(dir, STUDY_FILE))) return { study: null, problem: null };
  try {
    return { study: readStudy(dir), problem: null };
  } catch (err) {
    return { study: null, problem: reasonOf(err, dir) };
  }
}

/** Expands the arguments (run dirs, study dirs, folders of runs) and reads every run. */
export function collectRuns(args: string[]): Collected {
  const out: Collected = { runs: [], skipped: [], warnings: [], studies: [] };
  const seen = new Set<string>();
  const add = (dir: string, study: RunData['study']) => {
    const abs = path.resolve(dir);
    if (seen.has(abs)) return;
    seen.add(abs);
    const r = readRun(dir);
    out.warnings.push(...r.warnings);
    if (r.run) out.runs.push({ ...r.run, study });
    else out.skipped.push({ dir, reason: r.reason! });
  };
  for (const arg of args) {
    if (!fs.existsSync(arg)) {
      out.skipped.push({ dir: arg, reason: 'no such directory' });
      continue;
    }
    if (!fs.statSync(arg).isDirectory()) {
      out.skipped.push({ dir: arg, reason: 'not a directory' });
      continue;
    }
    if (looksLikeRun(arg)) {
      add(arg, null);
      continue;
    }
    const { study, problem } = readStudyFile(arg);
    if (study) {
      out.studies.push({ dir: arg, file: study });
      for (const member of study.members) {
        // runDir comes from a file: it must stay inside the study directory.
        const rel = member.runDir ?? path.join('runs', member.name);
        const runDir = path.join(arg, rel);
        if (path.isAbsolute(rel) || path.relative(arg, runDir).startsWith('..')) {
          out.skipped.push({ dir: runDir, reason: 'study.json names a run directory outside the study' });
          continue;
        }
        if (!fs.existsSync(runDir)) out.skipped.push({ dir: runDir, reason: 'not run yet' });
        else add(runDir, { dir: arg, file: study, member });
      }
      // Runs someone put there by hand still count.
      for (const d of subdirs(path.join(arg, 'runs'))) if (looksLikeRun(d)) add(d, null);
      continue;
    }
    // A folder of runs (e.g. runs/), or a study whose study.json is lost.
    const candidates = [...subdirs(arg), ...subdirs(path.join(arg, 'runs'))].filter(looksLikeRun);
    if (problem) out.warnings.push(`${arg}: ${problem}; its runs are compared without variant names`);
    if (candidates.length === 0)
      out.skipped.push({ dir: arg, reason: 'not a run directory, a study directory or a folder of runs' });
    for (const d of candidates) add(d, null);
  }
  return out;
}
