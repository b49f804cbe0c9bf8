/**
 * A run directory's whole lifecycle in one place: created (or claimed for a resume) and locked,
 * its spec.yaml and run.json written, kept once training starts, finished with its history, model
 * and metrics (the checkpoint removed when the run completed), released, or, for a new run that
 * never trained, removed again. The files' formats are src/rundir.ts's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import { removeCheckpoint } from './checkpoint';
import { sha256 } from './fsutil';
import {
  createRunDir,
  readOrigin,
  releaseRunDir,
  saveModel,
  writeHistory,
  writeJson,
  writeMetrics,
  writeRunFile,
  ORIGIN_FILE,
  SPEC_FILE,
  type RunOrigin,
} from './rundir';
import { RUN_FORMAT_VERSION, type EpochRecord, type MetricsFile } from './runformat';
import { specToYaml, type ExperimentSpec } from './spec';

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
