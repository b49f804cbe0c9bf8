import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { SingleBar } from 'cli-progress';
import * as tf from '@tensorflow/tfjs';
import { BackendChoice, BackendInfo, initBackend } from '../backend';
import { type Dataset } from '../data/dataset';
import { FailureError, InputError, InterruptedError } from '../errors';
import { packageVersion, sha256 } from '../fsutil';
import { buildModel, modelSummary, parameterCounts, weightHistograms, weightStats, BuiltModel } from '../model';
import {
  claimRunDir,
  createRunDir,
  readCheckpoint,
  readJsonFile,
  releaseRunDir,
  saveModel,
  writeCheckpoint,
  writeHistory,
  writeJson,
  writeMetrics,
  writeRunFile,
  CheckpointTensor,
  RunOrigin,
  CHECKPOINT_FILE,
  METRICS_FILE,
  ORIGIN_FILE,
  SPEC_FILE,
} from '../rundir';
import { EpochRecord, MetricsFile, RUN_FORMAT_VERSION } from '../runformat';
import { ExperimentSpec, loadSpec, parseSetFlag, parseSpec, specToYaml } from '../spec';
import { createTrainStep } from '../step';
import { isStudy, runStudy } from '../study';
import { evaluateSplit, restore, snapshot, train, TrainResult, TrainState, TrainStep, weightPenalty } from '../train';
import { addDataOptions, backendOption, collect, Console, fmtSeconds, loadSpecData, trapSignals } from './common';

export interface RunOptions {
  set: string[];
  out?: string;
  backend?: BackendChoice;
  json?: boolean;
  quiet?: boolean;
  dataDir?: string;
  source: string[];
  resume?: string;
  force?: boolean;
  jobs?: string;
  dryRun?: boolean;
}

/** What a resumed run continues from. */
interface ResumeFrom {
  runDir: string;
  checkpoint: { epoch: number; state: TrainState; tensors: CheckpointTensor[] } | null;
}

export function runCommand(): Command {
  const cmd = new Command('run')
    .description('train the model a spec describes, report per epoch, evaluate on the test set and save a run directory')
    .argument('[spec]', 'experiment spec (YAML); optional with --resume')
    .option('--set <path=value>', 'override a spec field, e.g. --set training.epochs=3 (repeatable)', collect, [])
    .option('--out <dir>', 'the run directory to create (default: runs/<name>-<UTC timestamp>)')
    .addOption(backendOption())
    .option('--json', 'stdout carries only JSON lines (one event per line); human text goes to stderr')
    .option('-q, --quiet', 'print only the final result')
    .option('--resume <run-dir>', 'continue an interrupted or crashed run from its last checkpoint')
    .option('--force', 'with --resume: accept a spec that changed since the run started (and a failed run)')
    .option('--jobs <n>', 'study specs (variants/sweep/repeats): members trained at once, each in its own process', '1')
    .option('--dry-run', 'study specs: list the members and their commands without training');
  return addDataOptions(cmd).action(async (file: string | undefined, opts: RunOptions) => {
    await runSpecFile(file, opts);
  });
}

export async function runSpecFile(file: string | undefined, opts: RunOptions): Promise<string> {
  if (opts.resume) return resumeRun(opts.resume, file, opts);
  if (!file) throw new InputError('run: missing the spec file (or --resume RUN_DIR)');
  const loaded = loadSpec(file, opts.set.map(parseSetFlag));
  if (isStudy(loaded.raw)) {
    const jobs = Number(opts.jobs ?? '1');
    if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64) throw new InputError(`--jobs ${opts.jobs}: expected an integer from 1 to 64`);
    const extraArgs = [
      ...(opts.backend ? ['--backend', opts.backend] : []),
      ...(opts.dataDir ? ['--data-dir', path.resolve(opts.dataDir)] : []),
      ...opts.source.flatMap((s) => ['--source', /^[a-z]+:\/\//i.test(s) ? s : path.resolve(s)]),
      ...(opts.quiet ? ['-q'] : []),
    ];
    const results = await runStudy(loaded, { ...(opts.out ? { out: opts.out } : {}), jobs, json: !!opts.json, dryRun: !!opts.dryRun, specFile: file, sets: opts.set, extraArgs });
    return results[0] ? path.dirname(path.dirname(results[0].runDir)) : '';
  }
  if (opts.dryRun) throw new InputError('--dry-run: the spec has no variants, sweep or repeats (it is a single run)');
  return runExperiment(loaded.spec, opts, null, { specFile: path.resolve(file), sets: opts.set });
}

/**
 * `--resume DIR`: checks the run is unfinished and its spec unchanged, then continues from
 * the last checkpoint (or from the start when it stopped before its first epoch ended).
 */
async function resumeRun(dir: string, file: string | undefined, opts: RunOptions): Promise<string> {
  const runDir = path.resolve(dir);
  if (!fs.existsSync(runDir) || !fs.statSync(runDir).isDirectory()) throw new InputError(`--resume ${dir}: no such run directory`);
  if (fs.existsSync(path.join(runDir, METRICS_FILE))) {
    const status = readJsonFile<{ status?: string }>(runDir, METRICS_FILE).status;
    if (status === 'complete') throw new InputError(`--resume ${dir}: the run already finished; start a new run instead`);
    if (status === 'failed' && !opts.force) throw new InputError(`--resume ${dir}: the run failed (non-finite loss); resuming would repeat it (--force to try anyway)`);
  }
  let savedText: string;
  try {
    savedText = fs.readFileSync(path.join(runDir, SPEC_FILE), 'utf8');
  } catch {
    throw new InputError(`--resume ${dir}: ${SPEC_FILE} is missing; not a run directory`);
  }
  let spec = parseSpec(savedText, path.join(dir, SPEC_FILE)).spec;
  const origin = fs.existsSync(path.join(runDir, ORIGIN_FILE)) ? readJsonFile<RunOrigin>(runDir, ORIGIN_FILE) : null;
  const specFile = file ? path.resolve(file) : origin?.specFile;
  const sets = opts.set.length ? opts.set : (origin?.sets ?? []);
  let changed = false;
  if (specFile && fs.existsSync(specFile)) {
    const current = loadSpec(specFile, sets.map(parseSetFlag)).spec;
    if (specToYaml(current) !== specToYaml(spec)) {
      if (!opts.force) throw new InputError(`--resume ${dir}: ${specFile} changed since the run started; pass --force to continue with the changed spec`);
      spec = current;
      changed = true;
    }
  }
  // Claim the directory before writing anything in it; runExperiment releases it from here on.
  claimRunDir(runDir);
  let resume: ResumeFrom['checkpoint'] = null;
  try {
    if (changed) {
      const specYaml = specToYaml(spec);
      writeRunFile(runDir, SPEC_FILE, specYaml);
      writeJson(runDir, ORIGIN_FILE, { formatVersion: RUN_FORMAT_VERSION, specFile: specFile ?? null, sets, specSha256: sha256(Buffer.from(specYaml)) } satisfies RunOrigin);
    }
    const checkpoint = readCheckpoint<Omit<TrainState, 'bestWeights'>>(runDir);
    if (checkpoint) {
      const best = checkpoint.tensors.filter((t) => t.group === 'best').map((t) => t.data as Float32Array);
      resume = { epoch: checkpoint.epoch, state: { ...checkpoint.state, bestWeights: best.length ? best : null }, tensors: checkpoint.tensors };
    }
  } catch (err) {
    releaseRunDir(runDir);
    throw err;
  }
  return runExperiment(spec, opts, { runDir, checkpoint: resume }, { specFile: specFile ?? null, sets });
}

/** Model weights, optimizer state and the best epoch's weights, as one checkpoint. */
async function checkpointTensors(built: BuiltModel, step: TrainStep, state: TrainState): Promise<CheckpointTensor[]> {
  const weights = snapshot(built.model).map((data, i): CheckpointTensor => ({ group: 'weights', name: built.model.weights[i]!.name, shape: built.model.weights[i]!.shape as number[], dtype: 'float32', data }));
  const opt = await step.optimizerWeights();
  const optimizer = opt.map(({ name, tensor }): CheckpointTensor => {
    const dtype = tensor.dtype === 'int32' ? 'int32' : 'float32';
    return { group: 'optimizer', name, shape: tensor.shape, dtype, data: (tensor.dataSync() as Float32Array | Int32Array).slice() };
  });
  tf.dispose(opt.map((t) => t.tensor));
  const best = (state.bestWeights ?? []).map((data, i): CheckpointTensor => ({ group: 'best', name: built.model.weights[i]!.name, shape: built.model.weights[i]!.shape as number[], dtype: 'float32', data }));
  return [...weights, ...optimizer, ...best];
}

async function restoreCheckpoint(built: BuiltModel, step: TrainStep, tensors: CheckpointTensor[], runDir: string): Promise<void> {
  const weights = tensors.filter((t) => t.group === 'weights');
  const names = built.model.weights.map((w) => w.name);
  if (weights.length !== names.length || weights.some((t, i) => t.name !== names[i] || t.data.length !== built.model.weights[i]!.shape.reduce((a: number, b) => a * (b ?? 1), 1))) {
    throw new InputError(`${path.join(runDir, CHECKPOINT_FILE)}: its weights do not fit the spec's model`);
  }
  restore(built.model, weights.map((t) => t.data as Float32Array));
  const opt = tensors.filter((t) => t.group === 'optimizer').map((t) => ({ name: t.name, tensor: tf.tensor(t.data, t.shape, t.dtype) }));
  try {
    await step.setOptimizerWeights(opt);
  } catch (err) {
    if (err instanceof InputError) throw new InputError(`${path.join(runDir, CHECKPOINT_FILE)}: ${err.message}`);
    throw err;
  } finally {
    tf.dispose(opt.map((t) => t.tensor));
  }
}

function epochLine(r: EpochRecord, epochs: number): string {
  const parts = [`Epoch ${r.epoch}/${epochs}`, fmtSeconds(r.seconds), `loss: ${r.loss.toFixed(4)}`, `accuracy: ${r.accuracy.toFixed(4)}`];
  if (r.val_loss !== null) parts.push(`val_loss: ${r.val_loss.toFixed(4)}`);
  if (r.val_accuracy !== null) parts.push(`val_accuracy: ${r.val_accuracy.toFixed(4)}`);
  if (r.penalty > 0) parts.push(`penalty: ${r.penalty.toFixed(4)}`);
  return parts.join(' - ');
}

/** Trains one experiment into a new run directory; returns its path. Throws typed errors. */
export async function runExperiment(spec: ExperimentSpec, opts: RunOptions, resumeFrom: ResumeFrom | null = null, origin: Omit<RunOrigin, 'formatVersion' | 'specSha256'> = { specFile: null, sets: [] }): Promise<string> {
  const out = new Console(!!opts.json, !!opts.quiet);
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  // A second Ctrl-C exits at once: release the directory on the way out.
  const signals = trapSignals(() => {
    if (runDir) releaseRunDir(runDir);
  });
  const resumeState = resumeFrom?.checkpoint?.state;
  const history: EpochRecord[] = resumeState ? [...resumeState.history] : [];
  let runDir: string | undefined;
  try {
    const backend = await initBackend(opts.backend ?? spec.backend);
    out.info(`Backend: ${backend.name} — ${backend.reason}`);
    if (resumeFrom) {
      runDir = resumeFrom.runDir;
    } else {
      runDir = createRunDir({ ...(opts.out ? { out: opts.out } : {}), name: spec.name });
      const specYaml = specToYaml(spec);
      writeRunFile(runDir, SPEC_FILE, specYaml);
      writeJson(runDir, ORIGIN_FILE, { formatVersion: RUN_FORMAT_VERSION, ...origin, specSha256: sha256(Buffer.from(specYaml)) } satisfies RunOrigin);
    }
    out.event({ event: 'start', runDir, backend: backend.name, backendReason: backend.reason, name: spec.name, seed: spec.seed, resumedAfterEpoch: resumeState?.epoch ?? null });

    const data = await loadSpecData(spec, opts, (p) => {
      if (p.done) out.info(`Downloaded ${p.name} (${(p.bytes / 1e6).toFixed(1)} MB) from ${p.url}`);
    });
    if (signals.signal()) throw new InterruptedError(`${signals.signal()}: stopped before training; ${runDir} holds only the spec`);
    const valNote = data.validation ? (spec.data.validation.holdout ? 'held out' : 'also trained on, as the tutorial') : 'none';
    out.info(`Data: ${data.source}; train ${data.train.count}, validation ${data.validation?.count ?? 0} (${valNote}), test ${data.test.count}; normalize ${spec.data.normalize}`);

    const built = buildModel(spec);
    for (const line of modelSummary(built)) out.info(line);
    const step = createTrainStep(built, spec, backend);
    out.info(`Training step: ${step.description}`);
    if (resumeFrom?.checkpoint) {
      await restoreCheckpoint(built, step, resumeFrom.checkpoint.tensors, runDir);
      out.info(`Resuming after epoch ${resumeFrom.checkpoint.epoch} of ${spec.training.epochs}`);
      for (const r of history) out.info(epochLine(r, spec.training.epochs));
    }
    out.info(`Run directory: ${runDir}`);

    const bar = process.stderr.isTTY && !opts.quiet ? new SingleBar({ format: ' {bar} {value}/{total} steps | {rate} steps/s | ETA {eta_formatted} | loss {loss}', stream: process.stderr, clearOnComplete: true, hideCursor: true }) : null;
    let barStarted = 0;
    const result: TrainResult = await train(
      built,
      step,
      { train: data.train, validation: data.validation },
      { training: spec.training, seed: spec.seed, shouldStop: signals.stopRequested, ...(resumeState ? { resume: resumeState } : {}) },
      {
        onEpochStart: (epoch, epochs, steps) => {
          if (epoch === (resumeState?.epoch ?? 0) + 1) out.event({ event: 'training', epochs, steps, seconds: elapsed(), step: step.description, blas: backend.blas });
          bar?.start(steps, 0, { loss: '-', rate: '-' });
          barStarted = Date.now();
        },
        onBatch: (s, steps, loss) => {
          if (bar && (s % 10 === 0 || s === steps)) bar.update(s, { loss: loss.toFixed(4), rate: ((s * 1000) / Math.max(1, Date.now() - barStarted)).toFixed(0) });
        },
        onEpochEnd: async (r, state) => {
          bar?.stop();
          history.push(r);
          writeHistory(runDir!, history);
          const { bestWeights: _b, ...plain } = state;
          writeCheckpoint(runDir!, state.epoch, plain, await checkpointTensors(built, step, state));
          out.info(epochLine(r, spec.training.epochs));
          out.event({ event: 'epoch', ...r });
        },
      },
    );
    bar?.stop();
    step.dispose();
    return await finish(spec, built, data, backend, result, runDir, out, elapsed, signals.signal());
  } finally {
    signals.release();
    if (runDir) releaseRunDir(runDir);
  }

}

async function finish(spec: ExperimentSpec, built: BuiltModel, data: Dataset, backend: BackendInfo, result: TrainResult, runDir: string, out: Console, elapsed: () => number, signal: string | null): Promise<string> {
  const complete = result.stopReason === 'epochs' || result.stopReason === 'early-stopping';
  writeHistory(runDir, result.history);
  let test: MetricsFile['test'] = null;
  let trainEval: MetricsFile['trainEval'] = null;
  if (complete) {
    const penalty = weightPenalty(built);
    const t = evaluateSplit(built, data.test);
    test = { loss: t.dataLoss + t.activityPenalty + penalty, accuracy: t.accuracy, count: t.count };
    const tr = evaluateSplit(built, data.train);
    trainEval = { loss: tr.dataLoss + tr.activityPenalty + penalty, accuracy: tr.accuracy, count: tr.count };
  }
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
    epochsRun: result.history.length,
    bestEpoch: result.bestEpoch,
    test,
    trainEval,
    seconds: { total: elapsed(), perEpoch: result.history.map((e) => e.seconds) },
    peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
    finalWeights: weightStats(built),
    histograms: weightHistograms(built),
    parameters: parameterCounts(built.model),
  };
  if (result.stopReason !== 'non-finite-loss') {
    await saveModel(built.model, runDir, { status: metrics.status, stopReason: result.stopReason, epochsRun: metrics.epochsRun });
  }
  writeMetrics(runDir, metrics);
  if (complete) {
    // A finished run needs no checkpoint: its model is saved and it cannot be resumed.
    for (const f of fs.readdirSync(runDir)) if (f === CHECKPOINT_FILE || /^checkpoint-\d+\.bin$/.test(f)) fs.rmSync(path.join(runDir, f), { force: true });
  }

  if (result.stopReason === 'interrupted') {
    throw new InterruptedError(`${signal ?? 'signal'}: training stopped after ${result.history.length} complete epoch(s); history and the model so far (marked incomplete) are saved in ${runDir}`);
  }
  if (result.stopReason === 'non-finite-loss') {
    const at = result.nonFinite!;
    throw new FailureError(`the ${at.step === null ? 'validation loss' : 'loss'} became NaN or infinite at epoch ${at.epoch}${at.step === null ? '' : `, step ${at.step}`}: training stopped; try a smaller learning rate or smaller penalties (history so far is in ${runDir})`);
  }
  if (result.stopReason === 'early-stopping') out.info(`Early stopping after epoch ${result.history.length}${result.bestEpoch ? `; best epoch ${result.bestEpoch}` : ''}`);
  else if (result.bestEpoch && spec.training.earlyStopping?.restoreBestWeights) out.info(`Restored the weights of epoch ${result.bestEpoch} (best ${spec.training.earlyStopping?.monitor})`);
  out.result(`Test: loss: ${test!.loss.toFixed(4)} - accuracy: ${test!.accuracy.toFixed(4)} (${test!.count} images)`);
  out.result(`Done in ${fmtSeconds(elapsed())}; run directory: ${displayPath(runDir)}`);
  out.event({ event: 'test', loss: test!.loss, accuracy: test!.accuracy, count: test!.count, train_accuracy: trainEval!.accuracy });
  out.event({ event: 'done', runDir, seconds: elapsed(), epochs: result.history.length, stopReason: result.stopReason, peakRssMB: metrics.peakRssMB });
  return runDir;
}

/** Relative to the current directory when inside it, else absolute. */
function displayPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}
