/**
 * One experiment, end to end: spec → data → model → fit → evaluate → run directory. `run`
 * (and a study's members) call this; the command only parses its arguments and prints.
 */
import { BackendChoice, BackendInfo, choiceOf, initBackend, kernelsLabel, type Kernels } from './backend';
import type { GemmChoice } from './accel/kernels';
import type { Checkpoint } from './checkpoint';
import { loadSpecData, type Dataset } from './data/dataset';
import { InterruptedError } from './errors';
import { buildModel, modelSummary, type BuiltModel } from './model';
import { RunOrigin, ORIGIN_FILE } from './rundir';
import { RunDirectory, type RecordedBackend, type ResumeFrom } from './run-directory';
import { ExperimentSpec } from './spec';
import { needsAutodiff } from './train/step';
import { optimizerSummary } from './train/optimizers/summary';
import { constraintTerms } from './train/constraints';
import { Trainer } from './train/trainer';
import { Console } from './console';
import { trapSignals } from './signals';
import { runSeeds, type RunSeeds } from './rng';
import { resumeCommand } from './invocation';

export interface ExperimentOptions {
  out?: string;
  backend?: BackendChoice;
  dataDir?: string;
  source: string[];
  /** The command that continues this run after an interruption (default: `regtrain run --resume RUN_DIR` with these options). */
  resumeCommand?: string;
}

/** The GEMM a resume installs to keep its run's kernels: OpenBLAS first as before, or regtrain's wasm GEMM even where OpenBLAS is now installed. */
function gemmKeeping(kernels: Kernels): GemmChoice {
  return kernels === 'wasm-simd' || kernels === 'wasm-relaxed-simd' ? 'wasm' : 'auto';
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
    dir = RunDirectory.open(dir, spec, opts.out, origin, backend);
    const checkpoint = resumeFrom?.checkpoint ?? null;
    out.event(startEvent(spec, dir, backend, checkpoint));
    const data = await loadData(spec, seeds, opts, out);
    if (signals.signal()) throw interruptedBeforeTraining(signals.signal(), dir, checkpoint, opts);
    warnUnfinishedCosine(spec, data.train.count, out);
    const built = buildModel(spec, seeds);
    for (const line of [...modelSummary(built, summaryExtras(spec, built)), ...optimizerSummary(spec)]) out.info(line);
    const resume = resumeCommand(dir.path, opts);
    const run = { spec, dir, backend, data, built, out, elapsed, signal: signals.signal, resumeCommand: resume };
    trainer = Trainer.start(run, checkpoint);
    await trainer.fit(seeds, signals.stopRequested);
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

/** The `start` event (--json): where the run writes, on what backend, and after which epoch a resume goes on. */
function startEvent(
  spec: ExperimentSpec,
  dir: RunDirectory,
  backend: BackendInfo,
  checkpoint: Checkpoint | null,
): Record<string, unknown> {
  return {
    event: 'start',
    runDir: dir.path,
    backend: backend.name,
    backendReason: backend.reason,
    name: spec.name,
    seed: spec.seed,
    resumedAfterEpoch: checkpoint?.body.epoch ?? null,
  };
}

/** What the model summary says besides the layers: the spec's augmentation, label smoothing and weight constraints. */
function summaryExtras(spec: ExperimentSpec, built: BuiltModel) {
  return {
    augmentation: spec.data.augmentation,
    labelSmoothing: spec.training.labelSmoothing,
    constraints: constraintTerms(built, spec),
  };
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
