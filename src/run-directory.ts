/**
 * A run directory's whole lifecycle in one place: created (or claimed for a resume) and locked,
 * its spec.yaml and run.json written, kept once training starts, finished with its history, model
 * and metrics (the checkpoint removed when the run completed), released, or, for a new run that
 * never trained, removed again; and `--resume`'s checks before a run directory is continued. The
 * files' formats are src/rundir.ts's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as tf from './tf';
import type { BackendInfo } from './backend';
import { readCheckpoint, removeCheckpoint, type Checkpoint } from './checkpoint';
import type { Console } from './console';
import { InputError } from './errors';
import { readRegularFile, sha256, UnreadableFileError } from './fsutil';
import { regtrainCommand } from './invocation';
import {
  claimRunDir,
  createRunDir,
  readMetrics,
  readOrigin,
  releaseRunDir,
  saveModel,
  writeHistory,
  writeJson,
  writeMetrics,
  writeRunFile,
  METRICS_FILE,
  ORIGIN_FILE,
  SPEC_FILE,
  type RunOrigin,
} from './rundir';
import { RUN_FORMAT_VERSION, type EpochRecord, type MetricsFile } from './runformat';
import { shellQuote } from './shell';
import { loadSpec, MAX_SPEC_BYTES, parseSetFlag, parseSpec, specToYaml, type ExperimentSpec } from './spec';

export type RecordedBackend = NonNullable<RunOrigin['backend']>;

/** The nearest of `dir` and its ancestors that exists: what a run that never trained must leave as it found it. */
function nearestExisting(dir: string): string {
  let d = dir;
  while (!fs.existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  return d;
}

export class RunDirectory {
  private training = false;
  private released = false;

  /** `existedBefore`: for a new run, the nearest ancestor (or itself) that existed before it, kept if the run never trains. */
  private constructor(
    readonly path: string,
    private readonly existedBefore: string | null,
  ) {}

  /** A new run's directory (under --out, or runs/NAME-STAMP), created and locked, with its spec.yaml and run.json. */
  static create(
    spec: ExperimentSpec,
    out: string | undefined,
    origin: Omit<RunOrigin, 'formatVersion' | 'specSha256'>,
    backend: RecordedBackend,
  ): RunDirectory {
    const existedBefore = nearestExisting(out ? path.resolve(out) : path.join(process.cwd(), 'runs'));
    const dir = new RunDirectory(createRunDir({ ...(out ? { out } : {}), name: spec.name }), existedBefore);
    const specYaml = specToYaml(spec);
    writeRunFile(dir.path, SPEC_FILE, specYaml);
    writeJson(dir.path, ORIGIN_FILE, {
      formatVersion: RUN_FORMAT_VERSION,
      ...origin,
      specSha256: sha256(Buffer.from(specYaml)),
      backend,
    } satisfies RunOrigin);
    return dir;
  }

  /** The run's directory once its backend is known: `resumed` records a change of backend in run.json, else a new one is created. */
  static open(
    resumed: RunDirectory | null,
    spec: ExperimentSpec,
    out: string | undefined,
    origin: Omit<RunOrigin, 'formatVersion' | 'specSha256'>,
    backend: Pick<BackendInfo, 'name' | 'kernels'>,
  ): RunDirectory {
    const now = { name: backend.name as RecordedBackend['name'], kernels: backend.kernels };
    if (!resumed) return RunDirectory.create(spec, out, origin, now);
    resumed.recordBackend(origin.backend, now);
    return resumed;
  }

  /** A run directory `prepareResume` claimed: it is kept whatever happens. */
  static resumed(dir: string): RunDirectory {
    return new RunDirectory(dir, null);
  }

  /** run.json's backend, rewritten when a resume trains on another backend or other kernels than it records. */
  recordBackend(recorded: RecordedBackend | undefined, now: RecordedBackend): void {
    if (recorded && recorded.name === now.name && recorded.kernels === now.kernels) return;
    if (fs.existsSync(path.join(this.path, ORIGIN_FILE)))
      writeJson(this.path, ORIGIN_FILE, { ...readOrigin(this.path), backend: now } satisfies RunOrigin);
  }

  /** The point of no return: from here on the directory is kept, whatever happens. */
  startTraining(): void {
    this.training = true;
  }

  /** Whether the directory stays if the run ends now (a new run that never trained leaves nothing behind). */
  get kept(): boolean {
    return this.training || !this.existedBefore;
  }

  /** Writes a stopped run's history, model (not after a non-finite loss) and metrics; a complete run's checkpoint goes. */
  async finish(history: EpochRecord[], model: tf.LayersModel, metrics: MetricsFile): Promise<void> {
    writeHistory(this.path, history);
    if (metrics.stopReason !== 'non-finite-loss') {
      await saveModel(model, this.path, {
        status: metrics.status,
        stopReason: metrics.stopReason,
        epochsRun: metrics.epochsRun,
      });
    }
    writeMetrics(this.path, metrics);
    // A finished run needs no checkpoint: its model is saved and it cannot be resumed.
    if (metrics.status === 'complete') removeCheckpoint(this.path);
  }

  /** Ends the run's hold on the directory: a new run that never trained removes it, any other releases its lock. */
  close(): void {
    if (this.released) return;
    this.released = true;
    if (this.kept) releaseRunDir(this.path);
    else this.removeUntrained();
  }

  /**
   * A run that fails or is stopped before training leaves nothing behind (compare would warn about
   * the stub): the files it wrote, its directory and the parents it created go. An empty --out
   * directory the user made is kept, emptied of what the run put in it.
   */
  private removeUntrained(): void {
    const runDir = this.path;
    const existedBefore = this.existedBefore!;
    releaseRunDir(runDir);
    try {
      if (existedBefore === runDir) {
        for (const f of fs.readdirSync(runDir)) fs.rmSync(path.join(runDir, f), { recursive: true, force: true });
        return;
      }
      fs.rmSync(runDir, { recursive: true, force: true });
      for (
        let d = path.dirname(runDir);
        d !== existedBefore && d.startsWith(existedBefore + path.sep);
        d = path.dirname(d)
      )
        fs.rmdirSync(d);
    } catch {
      // Best effort: a parent someone else wrote into in the meantime stays.
    }
  }
}

/** A run directory to continue, with its checkpoint (null: it stopped before its first epoch ended). */
export interface ResumeFrom {
  runDir: string;
  checkpoint: Checkpoint | null;
}

/** Refuses to resume a run that ended: finished, or failed (unless `force`); `dir` as the user gave it. */
function refuseEnded(dir: string, runDir: string, force: boolean): void {
  if (!fs.existsSync(path.join(runDir, METRICS_FILE))) return;
  const { status } = readMetrics(runDir).metrics;
  if (status === 'complete')
    throw new InputError(
      `--resume ${dir}: the run already finished (a finished run keeps no checkpoint to go on from); to train it for more epochs, start a new run from its spec: ${regtrainCommand()} run ${shellQuote(path.join(dir, SPEC_FILE))} --set training.epochs=N`,
    );
  if (status === 'failed' && !force)
    throw new InputError(
      `--resume ${dir}: the run failed (non-finite loss); resuming would repeat it (--force to try anyway)`,
    );
}

/**
 * `--resume DIR`: checks that the run is unfinished and its spec unchanged (spec.yaml against
 * run.json's hash, the original spec file and --set flags against spec.yaml), claims the
 * directory and reads its checkpoint. With `force`, a changed spec file is trained with, and an
 * original spec file that no longer loads is passed over for the run directory's own spec.
 */
export function prepareResume(
  dir: string,
  file: string | undefined,
  sets: string[],
  force: boolean,
  out: Console,
): { spec: ExperimentSpec; resume: ResumeFrom; origin: Omit<RunOrigin, 'formatVersion' | 'specSha256'> } {
  const runDir = path.resolve(dir);
  if (!fs.existsSync(runDir) || !fs.statSync(runDir).isDirectory())
    throw new InputError(`--resume ${dir}: no such run directory`);
  refuseEnded(dir, runDir, force);
  let savedText: string;
  try {
    savedText = readRegularFile(path.join(runDir, SPEC_FILE), { maxBytes: MAX_SPEC_BYTES }).toString('utf8');
  } catch (err) {
    // A FIFO, a device or an oversized file is refused as it is; only a missing one may mean "just created".
    if (err instanceof UnreadableFileError && err.code !== 'ENOENT') throw err;
    // A run that another process has just created has no spec.yaml yet: say that it is busy.
    try {
      claimRunDir(runDir);
      releaseRunDir(runDir);
    } catch (err) {
      if (err instanceof InputError) throw err;
    }
    throw new InputError(`--resume ${dir}: ${SPEC_FILE} is missing; not a run directory`);
  }
  const origin = fs.existsSync(path.join(runDir, ORIGIN_FILE)) ? readOrigin(runDir) : null;
  if (origin && origin.specSha256 !== sha256(Buffer.from(savedText)) && !force) {
    throw new InputError(
      `--resume ${dir}: ${SPEC_FILE} was edited since the run started (its hash differs from ${ORIGIN_FILE}); pass --force to train with it`,
    );
  }
  let spec = parseSpec(savedText, path.join(dir, SPEC_FILE)).spec;
  const specFile = file ? path.resolve(file) : (origin?.specFile ?? null);
  const originSets = origin?.sets ?? [];
  const setsGiven = sets.length > 0;
  const setsNow = setsGiven ? sets : originSets;
  const differs = (other: ExperimentSpec) => specToYaml(other) !== specToYaml(spec);
  const setsText = `the --set flags (${sets.join(' ')}) differ from the run's (${originSets.join(' ') || 'none'})`;
  const refuse = (what: string) =>
    new InputError(`--resume ${dir}: ${what}; pass --force to continue with the changed spec`);
  let changed = false;
  if (specFile && fs.existsSync(specFile)) {
    let current: ExperimentSpec | null = null;
    try {
      current = loadSpec(specFile, setsNow.map(parseSetFlag)).spec;
    } catch (err) {
      if (!force) throw err;
      out.warn(
        `${specFile} no longer loads (${(err as Error).message.split('\n')[0]}); resuming with the run directory's own ${SPEC_FILE}`,
      );
    }
    if (current && differs(current)) {
      if (!force) {
        // Name what differs: the file (read with the run's own --set flags), the --set flags given now, or both.
        const setsChanged = setsGiven && JSON.stringify(sets) !== JSON.stringify(originSets);
        let fileChanged = true;
        if (setsChanged) {
          try {
            fileChanged = differs(loadSpec(specFile, originSets.map(parseSetFlag)).spec);
          } catch {
            fileChanged = true;
          }
        }
        const fileText = `${specFile} changed since the run started`;
        throw refuse(!setsChanged ? fileText : !fileChanged ? setsText : `${fileText}, and ${setsText}`);
      }
      spec = current;
      changed = true;
    }
  } else if (setsGiven) {
    // The spec file is gone (or was never recorded): the flags apply to the run's own spec.yaml.
    const current = parseSpec(savedText, path.join(dir, SPEC_FILE), sets.map(parseSetFlag)).spec;
    if (differs(current)) {
      if (!force) throw refuse(setsText);
      spec = current;
      changed = true;
    }
  }
  // Claim the directory before writing anything in it; runExperiment releases it from here on.
  claimRunDir(runDir);
  try {
    // Again under the lock: another process may have finished the run since the check above (two resumes of one
    // run started at once: the first trains to the end and releases the lock, then the second takes it).
    refuseEnded(dir, runDir, force);
    if (changed) {
      const specYaml = specToYaml(spec);
      writeRunFile(runDir, SPEC_FILE, specYaml);
      writeJson(runDir, ORIGIN_FILE, {
        formatVersion: RUN_FORMAT_VERSION,
        specFile,
        sets: setsNow,
        specSha256: sha256(Buffer.from(specYaml)),
        ...(origin?.backend ? { backend: origin.backend } : {}),
      } satisfies RunOrigin);
    }
    return {
      spec,
      resume: { runDir, checkpoint: readCheckpoint(runDir) },
      origin: { specFile, sets: setsNow, ...(origin?.backend ? { backend: origin.backend } : {}) },
    };
  } catch (err) {
    releaseRunDir(runDir);
    throw err;
  }
}
