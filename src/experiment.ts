/**
 * One experiment, end to end: spec → data → model → fit → evaluate → run directory. `run`
 * (and a study's members) call this; the command only parses its arguments and prints.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BackendChoice, BackendInfo, choiceOf, initBackend, kernelsLabel, type Kernels } from './backend';
import type { GemmChoice } from './accel/kernels';
import { Checkpoint, readCheckpoint } from './checkpoint';
import { loadSpecData, type Dataset } from './data/dataset';
import { InputError, InterruptedError } from './errors';
import { readRegularFile, sha256, UnreadableFileError } from './fsutil';
import { buildModel, modelSummary } from './model';
import {
  claimRunDir,
  readMetrics,
  readOrigin,
  releaseRunDir,
  writeJson,
  writeRunFile,
  RunOrigin,
  METRICS_FILE,
  ORIGIN_FILE,
  SPEC_FILE,
} from './rundir';
import { RunDirectory, type RecordedBackend } from './run-directory';
import { RUN_FORMAT_VERSION } from './runformat';
import { ExperimentSpec, loadSpec, MAX_SPEC_BYTES, parseSetFlag, parseSpec, specToYaml } from './spec';
import { createTrainStep, needsAutodiff } from './train/step';
import { Trainer } from './train/trainer';
import { Console } from './console';
import { trapSignals } from './signals';
import { runSeeds, type RunSeeds } from './rng';
import { shellQuote } from './shell';
import { regtrainCommand } from './invocation';

export interface ExperimentOptions {
  out?: string;
  backend?: BackendChoice;
  dataDir?: string;
  source: string[];
  /** The command that continues this run after an interruption (default: `regtrain run --resume RUN_DIR` with these options). */
  resumeCommand?: string;
}

/** `regtrain run --resume DIR`, keeping the backend, --data-dir and --source the user gave. */
export function resumeCommand(runDir: string, opts: ExperimentOptions): string {
  if (opts.resumeCommand) return opts.resumeCommand;
  return [
    `${regtrainCommand()} run --resume`,
    shellQuote(runDir),
    ...(opts.backend ? ['--backend', opts.backend] : []),
    ...(opts.dataDir ? ['--data-dir', shellQuote(opts.dataDir)] : []),
    ...opts.source.flatMap((s) => ['--source', shellQuote(s)]),
  ].join(' ');
}

/** The GEMM a resume installs to keep its run's kernels: OpenBLAS first as before, or regtrain's wasm GEMM even where OpenBLAS is now installed. */
function gemmKeeping(kernels: Kernels): GemmChoice {
  return kernels === 'wasm-simd' || kernels === 'wasm-relaxed-simd' ? 'wasm' : 'auto';
}

/** A run directory to continue, with its checkpoint (null: it stopped before its first epoch ended). */
export interface ResumeFrom {
  runDir: string;
  checkpoint: Checkpoint | null;
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
  if (fs.existsSync(path.join(runDir, METRICS_FILE))) {
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

/** Trains one experiment into a new (or, resuming, its own) run directory; returns its path. Throws typed errors. */
export async function runExperiment(
  spec: ExperimentSpec,
  opts: ExperimentOptions,
  out: Console,
  resumeFrom: ResumeFrom | null = null,
  origin: Omit<RunOrigin, 'formatVersion' | 'specSha256'> = { specFile: null, sets: [] },
): Promise<string> {
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  // Every random stream of the run, derived once from its seed.
  const seeds = runSeeds(spec.seed);
  let dir = resumeFrom ? RunDirectory.resumed(resumeFrom.runDir) : null;
  let trainer: Trainer | null = null;
  const signals = trapSignals({
    beforeNotice: () => trainer?.silence(),
    // A second Ctrl-C exits at once: release the directory on the way out (or remove it, if nothing trained yet).
    onSecond: () => dir?.close(),
  });
  try {
    const backend = await chooseBackend(spec, opts, resumeFrom ? origin.backend : undefined, out);
    const now = { name: backend.name as RecordedBackend['name'], kernels: backend.kernels };
    if (dir) dir.recordBackend(origin.backend, now);
    else dir = RunDirectory.create(spec, opts.out, origin, now);
    const checkpoint = resumeFrom?.checkpoint ?? null;
    out.event({
      event: 'start',
      runDir: dir.path,
      backend: backend.name,
      backendReason: backend.reason,
      name: spec.name,
      seed: spec.seed,
      resumedAfterEpoch: checkpoint?.body.epoch ?? null,
    });
    const data = await loadData(spec, seeds, opts, out);
    if (signals.signal()) throw interruptedBeforeTraining(signals.signal(), dir, checkpoint, opts);
    warnUnfinishedCosine(spec, data.train.count, out);
    const built = buildModel(spec, seeds);
    for (const line of modelSummary(built)) out.info(line);
    const step = createTrainStep(built, spec, backend);
    out.info(`Training step: ${step.description}`);
    const resume = resumeCommand(dir.path, opts);
    const run = { spec, dir, backend, data, built, step, out, elapsed, signal: signals.signal, resumeCommand: resume };
    trainer = new Trainer(run);
    if (checkpoint) trainer.resume(checkpoint);
    out.info(`Run directory: ${dir.path}`);
    dir.startTraining();
    await trainer.fit(seeds, signals.stopRequested).finally(() => step.dispose());
    return dir.path;
  } catch (err) {
    trainer?.silence();
    if (dir && !dir.kept) dir.close();
    out.endWith(err, dir?.kept ? dir.path : null);
    throw err;
  } finally {
    trainer?.silence();
    signals.release();
    dir?.close();
  }
}

/**
 * The backend to train on: the spec's or --backend, or, for a resume, the backend and kernels its
 * run trained on (run.json) unless --backend is given; says which and why, and warns of a change.
 */
async function chooseBackend(
  spec: ExperimentSpec,
  opts: ExperimentOptions,
  recorded: RecordedBackend | undefined,
  out: Console,
): Promise<BackendInfo> {
  const keep = recorded && !opts.backend ? recorded : undefined;
  const choice = opts.backend ?? (keep ? choiceOf(keep.name) : spec.backend);
  const backend = await initBackend(
    choice,
    keep ? { gemm: gemmKeeping(keep.kernels) } : needsAutodiff(spec) ? { autodiffBatch: spec.training.batchSize } : {},
  );
  out.info(
    `Backend: ${backend.name} — ${keep ? `the run's own (${ORIGIN_FILE}): ${kernelsLabel(backend.kernels)}` : backend.reason}`,
  );
  if (recorded && (recorded.name !== backend.name || recorded.kernels !== backend.kernels)) {
    const why = opts.backend ? `--backend ${opts.backend}` : "this process does not have the run's kernels";
    // A change of backend (or step) is also the checkpoint's warning; other kernels alone are said here.
    const rounding =
      recorded.name === backend.name
        ? ': the result matches an uninterrupted run to float32 rounding, not bit for bit'
        : '';
    out.warn(
      `the run trained on ${recorded.name} with ${kernelsLabel(recorded.kernels)} so far; it continues on ${backend.name} with ${kernelsLabel(backend.kernels)} (${why})${rounding}`,
    );
  }
  return backend;
}

/** The run's data (its validation split from the run's seeds), described in one line. */
async function loadData(
  spec: ExperimentSpec,
  seeds: RunSeeds,
  opts: ExperimentOptions,
  out: Console,
): Promise<Dataset> {
  const data = await loadSpecData(spec, seeds, opts, (p) => {
    if (p.done) out.info(`Downloaded ${p.name} (${(p.bytes / 1e6).toFixed(1)} MB) from ${p.url}`);
  });
  const valNote = data.validation
    ? spec.data.validation.holdout
      ? 'held out'
      : 'also trained on, as the tutorial'
    : 'none';
  const limitNote =
    spec.data.trainLimit === null
      ? ''
      : spec.data.validation.holdout
        ? ' (trainLimit, outside validation)'
        : ' (trainLimit, validation included)';
  out.info(
    `Data: train ${data.train.count}${limitNote}, validation ${data.validation?.count ?? 0} (${valNote}), test ${data.test.count}, ${spec.data.normalize}; ${data.source}`,
  );
  return data;
}

/** A stop signal while the data loaded: a new run leaves nothing behind, a resumed one can go on. */
function interruptedBeforeTraining(
  signal: string | null,
  dir: RunDirectory,
  checkpoint: Checkpoint | null,
  opts: ExperimentOptions,
): InterruptedError {
  const resume = dir.kept ? resumeCommand(dir.path, opts) : null;
  return new InterruptedError(
    `interrupted (${signal}) before training started${resume ? `; continue with: ${resume}` : '; nothing was kept'}`,
    { signal, lastEpoch: checkpoint?.body.epoch ?? 0, runDir: dir.kept ? dir.path : null, resume },
  );
}

/** A cosine decay longer than the run (say, training.epochs cut for a try) stops part-way down: say so before training. */
function warnUnfinishedCosine(spec: ExperimentSpec, trainCount: number, out: Console): void {
  const [kind, config] = Object.entries(spec.optimizer).find(([, o]) => o !== undefined) ?? [];
  const lr = (config as { learningRate?: unknown } | undefined)?.learningRate;
  if (typeof lr !== 'object' || lr === null || !('cosineDecay' in lr) || !lr.cosineDecay) return;
  const c = lr.cosineDecay as { decaySteps: number; warmupSteps: number };
  const perEpoch = Math.ceil(trainCount / spec.training.batchSize);
  const steps = spec.training.epochs * perEpoch;
  if (c.warmupSteps + c.decaySteps <= steps) return;
  out.warn(
    `optimizer.${kind}.learningRate.cosineDecay: warmupSteps + decaySteps = ${c.warmupSteps + c.decaySteps} steps, more than the ${steps} this run trains (${spec.training.epochs} epochs × ${perEpoch} steps): the decay stops part-way; decaySteps: ${Math.max(1, steps - c.warmupSteps)} would finish it`,
  );
}
