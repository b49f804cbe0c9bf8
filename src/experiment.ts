/**
 * One experiment, end to end: spec → data → model → fit → evaluate → run directory. `run`
 * (and a study's members) call this; the command only parses its arguments and prints.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { BackendChoice, BackendInfo, choiceOf, initBackend, kernelsLabel, type Kernels } from './backend';
import type { GemmChoice } from './accel/kernels';
import { Checkpoint, readCheckpoint, removeCheckpoint } from './checkpoint';
import { loadSpecData, type Dataset } from './data/dataset';
import { FailureError, InputError, InterruptedError } from './errors';
import { packageVersion, readRegularFile, sha256, UnreadableFileError } from './fsutil';
import { buildModel, BuiltModel, modelSummary, parameterCounts } from './model';
import { weightHistograms, weightStats } from './train/weight-stats';
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
  RunOrigin,
  METRICS_FILE,
  ORIGIN_FILE,
  SPEC_FILE,
} from './rundir';
import { confusionOf, EpochRecord, MetricsFile, RUN_FORMAT_VERSION } from './runformat';
import { ExperimentSpec, loadSpec, MAX_SPEC_BYTES, parseSetFlag, parseSpec, specToYaml } from './spec';
import { BestModel } from './train/callbacks/best-model';
import { Callback, CallbackList } from './train/callbacks/callback';
import { CheckpointWriter, restoreCheckpoint } from './train/callbacks/checkpoint';
import { EarlyStopping } from './train/callbacks/early-stopping';
import { EpochLines, epochLine, fmtDuration, fmtLogValue } from './train/callbacks/epoch-lines';
import { History } from './train/callbacks/history';
import { JsonEvents } from './train/callbacks/json-events';
import { Heartbeat, ProgressBar } from './train/callbacks/progress-bar';
import { ReduceLrOnPlateau } from './train/callbacks/reduce-lr-on-plateau';
import { TensorBoardLogger } from './train/callbacks/tensorboard';
import { evaluateSplit } from './train/forward';
import { weightPenalty } from './train/penalties';
import { fit, FitResult } from './train/loop';
import { createTrainStep, needsAutodiff } from './train/step';
import { Console } from './console';
import { trapSignals } from './signals';
import { runSeeds } from './rng';
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

/** The nearest of `dir` and its ancestors that exists: what a run that never trained must leave as it found it. */
function nearestExisting(dir: string): string {
  let d = dir;
  while (!fs.existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  return d;
}

/**
 * A run that fails or is stopped before training leaves nothing behind (compare would warn about
 * the stub): the files it wrote, its directory and the parents it created go. An empty --out
 * directory the user made is kept, emptied of what the run put in it.
 */
function removeUntrainedRunDir(runDir: string, existedBefore: string): void {
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

type RecordedBackend = NonNullable<RunOrigin['backend']>;

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
  let runDir: string | undefined = resumeFrom?.runDir;
  /** For a new run directory: the nearest ancestor (or itself) that existed before it, kept if the run never trains. */
  let existedBefore: string | null = null;
  let training = false;
  let bar: ProgressBar | null = null;
  const signals = trapSignals({
    beforeNotice: () => bar?.silence(),
    // A second Ctrl-C exits at once: release the directory on the way out (or remove it, if nothing trained yet).
    onSecond: () => {
      if (runDir && existedBefore && !training) removeUntrainedRunDir(runDir, existedBefore);
      else if (runDir) releaseRunDir(runDir);
    },
  });
  // Every random stream of the run, derived once from its seed.
  const seeds = runSeeds(spec.seed);
  try {
    // A resume keeps the backend and kernels its run trained on (run.json) unless --backend is given.
    const recorded = resumeFrom ? origin.backend : undefined;
    const keep = recorded && !opts.backend ? recorded : undefined;
    const choice = opts.backend ?? (keep ? choiceOf(keep.name) : spec.backend);
    const backend = await initBackend(
      choice,
      keep
        ? { gemm: gemmKeeping(keep.kernels) }
        : needsAutodiff(spec)
          ? { autodiffBatch: spec.training.batchSize }
          : {},
    );
    const now = { name: backend.name as RecordedBackend['name'], kernels: backend.kernels };
    out.info(
      `Backend: ${backend.name} — ${keep ? `the run's own (${ORIGIN_FILE}): ${kernelsLabel(backend.kernels)}` : backend.reason}`,
    );
    if (recorded && (recorded.name !== now.name || recorded.kernels !== now.kernels)) {
      const why = opts.backend ? `--backend ${opts.backend}` : "this process does not have the run's kernels";
      // A change of backend (or step) is also the checkpoint's warning below; other kernels alone are said here.
      const rounding =
        recorded.name === now.name
          ? ': the result matches an uninterrupted run to float32 rounding, not bit for bit'
          : '';
      out.warn(
        `the run trained on ${recorded.name} with ${kernelsLabel(recorded.kernels)} so far; it continues on ${now.name} with ${kernelsLabel(now.kernels)} (${why})${rounding}`,
      );
    }
    if (
      runDir &&
      (!recorded || recorded.name !== now.name || recorded.kernels !== now.kernels) &&
      fs.existsSync(path.join(runDir, ORIGIN_FILE))
    ) {
      writeJson(runDir, ORIGIN_FILE, { ...readOrigin(runDir), backend: now } satisfies RunOrigin);
    }
    if (!runDir) {
      existedBefore = nearestExisting(opts.out ? path.resolve(opts.out) : path.join(process.cwd(), 'runs'));
      runDir = createRunDir({ ...(opts.out ? { out: opts.out } : {}), name: spec.name });
      const specYaml = specToYaml(spec);
      writeRunFile(runDir, SPEC_FILE, specYaml);
      writeJson(runDir, ORIGIN_FILE, {
        formatVersion: RUN_FORMAT_VERSION,
        ...origin,
        specSha256: sha256(Buffer.from(specYaml)),
        backend: now,
      } satisfies RunOrigin);
    }
    const checkpoint = resumeFrom?.checkpoint ?? null;
    out.event({
      event: 'start',
      runDir,
      backend: backend.name,
      backendReason: backend.reason,
      name: spec.name,
      seed: spec.seed,
      resumedAfterEpoch: checkpoint?.body.epoch ?? null,
    });

    const data = await loadSpecData(spec, seeds, opts, (p) => {
      if (p.done) out.info(`Downloaded ${p.name} (${(p.bytes / 1e6).toFixed(1)} MB) from ${p.url}`);
    });
    if (signals.signal()) {
      const resume = existedBefore ? null : resumeCommand(runDir, opts);
      throw new InterruptedError(
        `interrupted (${signals.signal()}) before training started${resume ? `; continue with: ${resume}` : '; nothing was kept'}`,
        {
          signal: signals.signal(),
          lastEpoch: checkpoint?.body.epoch ?? 0,
          runDir: existedBefore ? null : runDir,
          resume,
        },
      );
    }
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

    warnUnfinishedCosine(spec, data.train.count, out);
    const built = buildModel(spec, seeds);
    for (const line of modelSummary(built)) out.info(line);
    const step = createTrainStep(built, spec, backend);
    out.info(`Training step: ${step.description}`);

    const dir = runDir;
    const history = new History(dir);
    const earlyStopping = spec.training.earlyStopping ? new EarlyStopping(spec.training.earlyStopping) : null;
    const own: Callback[] = [history];
    if (earlyStopping) own.push(earlyStopping);
    if (spec.training.reduceLrOnPlateau) own.push(new ReduceLrOnPlateau(spec.training.reduceLrOnPlateau));
    if (spec.training.checkpoint.saveBest) own.push(new BestModel(dir, spec.training.checkpoint.saveBest));
    if (spec.training.tensorboard) own.push(new TensorBoardLogger(dir));
    // The checkpoint records the decisions of the callbacks before it; the ones after only report.
    own.push(new CheckpointWriter(dir, backend.name, () => callbacks));
    bar = process.stderr.isTTY && !out.quiet ? new ProgressBar() : null;
    const presentation: Callback[] = [
      ...(bar ? [bar] : []),
      ...(process.stderr.isTTY && out.quiet ? [new Heartbeat((line) => process.stderr.write(line + '\n'))] : []),
      new EpochLines((line) => out.info(line)),
      new JsonEvents(
        (e) => out.event(e),
        () => ({ seconds: elapsed(), step: step.description, blas: backend.blas, gemm: backend.gemm }),
      ),
    ];
    const callbacks = new CallbackList([...own, ...presentation]);

    let resumeState;
    if (checkpoint) {
      resumeState = restoreCheckpoint(checkpoint, dir, built, step, callbacks);
      if (checkpoint.body.trainingPath !== step.path || checkpoint.body.backend !== backend.name) {
        out.warn(
          `the checkpoint was written on ${checkpoint.body.backend} (${checkpoint.body.trainingPath} step), this run trains on ${backend.name} (${step.path} step): the result matches an uninterrupted run to float32 rounding, not bit for bit`,
        );
      }
      out.info(`Resuming after epoch ${checkpoint.body.epoch} of ${spec.training.epochs}`);
      history.records.forEach((r, i) =>
        out.info(epochLine(r, spec.training.epochs, i === 0 || r.lr !== history.records[i - 1]!.lr)),
      );
    }
    out.info(`Run directory: ${dir}`);

    // The point of no return: from here on the run directory is kept, whatever happens.
    training = true;
    const result = await fit(built, step, { train: data.train, validation: data.validation }, callbacks, {
      epochs: spec.training.epochs,
      batchSize: spec.training.batchSize,
      shuffle: spec.training.shuffle,
      seeds,
      shouldStop: signals.stopRequested,
      ...(resumeState ? { resume: resumeState } : {}),
    });
    bar?.stop();
    step.dispose();
    return await finish(
      spec,
      built,
      data,
      backend,
      result,
      history.records,
      earlyStopping,
      dir,
      out,
      elapsed,
      signals.signal(),
      resumeCommand(dir, opts),
    );
  } catch (err) {
    bar?.stop();
    const kept = runDir && (training || !existedBefore) ? runDir : null;
    if (runDir && !kept && existedBefore) {
      removeUntrainedRunDir(runDir, existedBefore);
      runDir = undefined;
    }
    out.endWith(err, kept);
    throw err;
  } finally {
    bar?.stop();
    signals.release();
    if (runDir) releaseRunDir(runDir);
  }
}

async function finish(
  spec: ExperimentSpec,
  built: BuiltModel,
  data: Dataset,
  backend: BackendInfo,
  result: FitResult,
  history: EpochRecord[],
  earlyStopping: EarlyStopping | null,
  runDir: string,
  out: Console,
  elapsed: () => number,
  signal: string | null,
  resume: string,
): Promise<string> {
  const complete = result.stopReason === 'epochs' || result.stopReason === 'early-stopping';
  writeHistory(runDir, history);
  let test: MetricsFile['test'] = null;
  let trainEval: MetricsFile['trainEval'] = null;
  let confusion: MetricsFile['confusion'];
  if (complete) {
    const penalty = weightPenalty(built);
    const t = evaluateSplit(built, data.test);
    test = { loss: t.dataLoss + t.activityPenalty + penalty, accuracy: t.accuracy, count: t.count };
    confusion = confusionOf(data.test.labels, t.predictions, data.classNames);
    const tr = evaluateSplit(built, data.train);
    trainEval = { loss: tr.dataLoss + tr.activityPenalty + penalty, accuracy: tr.accuracy, count: tr.count };
  }
  const bestEpoch = earlyStopping?.bestEpoch || null;
  const metrics: MetricsFile = {
    formatVersion: RUN_FORMAT_VERSION,
    regtrainVersion: packageVersion(),
    status: complete ? 'complete' : result.stopReason === 'interrupted' ? 'incomplete' : 'failed',
    stopReason: result.stopReason,
    name: spec.name,
    seed: spec.seed,
    backend: { name: backend.name, reason: backend.reason },
    versions: { regtrain: packageVersion(), tfjs: tf.version.tfjs, node: process.versions.node },
    dataset: {
      source: data.source,
      sha256: data.sha256,
      normalization: data.normalization,
      sizes: { train: data.train.count, validation: data.validation?.count ?? 0, test: data.test.count },
    },
    epochsRun: history.length,
    bestEpoch,
    test,
    trainEval,
    ...(confusion ? { confusion } : {}),
    seconds: { total: elapsed(), perEpoch: history.map((e) => e.seconds) },
    peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
    finalWeights: weightStats(built),
    histograms: weightHistograms(built),
    parameters: parameterCounts(built.model),
  };
  if (result.stopReason !== 'non-finite-loss') {
    await saveModel(built.model, runDir, {
      status: metrics.status,
      stopReason: result.stopReason,
      epochsRun: metrics.epochsRun,
    });
  }
  writeMetrics(runDir, metrics);
  // A finished run needs no checkpoint: its model is saved and it cannot be resumed.
  if (complete) removeCheckpoint(runDir);

  if (result.stopReason === 'interrupted') {
    const k = history.length;
    const where =
      k > 0
        ? `after epoch ${k} of ${spec.training.epochs}; the history and the model so far are saved in ${runDir}`
        : `in epoch 1 of ${spec.training.epochs}, before any epoch was saved`;
    throw new InterruptedError(`interrupted (${signal ?? 'signal'}) ${where}; continue with: ${resume}`, {
      signal,
      lastEpoch: k,
      runDir,
      resume,
    });
  }
  if (result.stopReason === 'non-finite-loss') {
    const at = result.nonFinite!;
    throw new FailureError(
      `the ${at.step === null ? 'validation loss' : 'loss'} became NaN or infinite at epoch ${at.epoch}${at.step === null ? '' : `, step ${at.step}`}: training stopped; try a smaller learning rate or smaller penalties (history so far is in ${runDir})`,
    );
  }
  if (result.stopReason === 'early-stopping')
    out.info(`Early stopping after epoch ${history.length}${bestEpoch ? `; best epoch ${bestEpoch}` : ''}`);
  else if (bestEpoch && earlyStopping?.restoresBest())
    out.info(`Restored the weights of epoch ${bestEpoch} (best ${spec.training.earlyStopping?.monitor})`);
  out.result(`Test: loss: ${fmtLogValue(test!.loss)} - accuracy: ${test!.accuracy.toFixed(4)} (${test!.count} images)`);
  out.result(`Done in ${fmtDuration(elapsed())}; run directory: ${runDir}`);
  out.event({
    event: 'test',
    loss: test!.loss,
    accuracy: test!.accuracy,
    count: test!.count,
    train_accuracy: trainEval!.accuracy,
  });
  out.end({
    event: 'done',
    runDir,
    seconds: elapsed(),
    epochs: history.length,
    stopReason: result.stopReason,
    peakRssMB: metrics.peakRssMB,
  });
  return runDir;
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
