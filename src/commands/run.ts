import * as path from 'node:path';
import { Command } from 'commander';
import { SingleBar } from 'cli-progress';
import * as tf from '@tensorflow/tfjs';
import { BackendChoice, BackendInfo, initBackend } from '../backend';
import { loadDataset, type Dataset } from '../data/dataset';
import { FailureError, InterruptedError } from '../errors';
import { packageVersion } from '../fsutil';
import { buildModel, modelSummary, parameterCounts, weightHistograms, weightStats, BuiltModel } from '../model';
import { createRunDir, releaseRunDir, saveModel, writeHistory, writeMetrics, writeRunFile, SPEC_FILE } from '../rundir';
import { EpochRecord, MetricsFile, RUN_FORMAT_VERSION } from '../runformat';
import { ExperimentSpec, loadSpec, parseSetFlag, specToYaml } from '../spec';
import { createTrainStep } from '../step';
import { evaluateSplit, train, TrainResult, weightPenalty } from '../train';
import { addDataOptions, backendOption, collect, Console, fmtSeconds, trapSignals } from './common';

export interface RunOptions {
  set: string[];
  out?: string;
  backend?: BackendChoice;
  json?: boolean;
  quiet?: boolean;
  dataDir?: string;
  source: string[];
}

export function runCommand(): Command {
  const cmd = new Command('run')
    .description('train the model a spec describes, report per epoch, evaluate on the test set and save a run directory')
    .argument('<spec>', 'experiment spec (YAML)')
    .option('--set <path=value>', 'override a spec field, e.g. --set training.epochs=3 (repeatable)', collect, [])
    .option('--out <dir>', 'the run directory to create (default: runs/<name>-<UTC timestamp>)')
    .addOption(backendOption())
    .option('--json', 'stdout carries only JSON lines (one event per line); human text goes to stderr')
    .option('-q, --quiet', 'print only the final result');
  return addDataOptions(cmd).action(async (file: string, opts: RunOptions) => {
    await runSpecFile(file, opts);
  });
}

export async function runSpecFile(file: string, opts: RunOptions): Promise<string> {
  const loaded = loadSpec(file, opts.set.map(parseSetFlag));
  return runExperiment(loaded.spec, opts);
}

function epochLine(r: EpochRecord, epochs: number): string {
  const parts = [`Epoch ${r.epoch}/${epochs}`, fmtSeconds(r.seconds), `loss: ${r.loss.toFixed(4)}`, `accuracy: ${r.accuracy.toFixed(4)}`];
  if (r.val_loss !== null) parts.push(`val_loss: ${r.val_loss.toFixed(4)}`);
  if (r.val_accuracy !== null) parts.push(`val_accuracy: ${r.val_accuracy.toFixed(4)}`);
  if (r.penalty > 0) parts.push(`penalty: ${r.penalty.toFixed(4)}`);
  return parts.join(' - ');
}

/** Trains one experiment into a new run directory; returns its path. Throws typed errors. */
export async function runExperiment(spec: ExperimentSpec, opts: RunOptions): Promise<string> {
  const out = new Console(!!opts.json, !!opts.quiet);
  const started = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - started) / 1e9;
  const signals = trapSignals();
  const history: EpochRecord[] = [];
  let runDir: string | undefined;
  try {
    const backend = await initBackend(opts.backend ?? spec.backend);
    out.info(`Backend: ${backend.name} — ${backend.reason}`);
    runDir = createRunDir({ ...(opts.out ? { out: opts.out } : {}), name: spec.name });
    writeRunFile(runDir, SPEC_FILE, specToYaml(spec));
    out.event({ event: 'start', runDir, backend: backend.name, backendReason: backend.reason, name: spec.name, seed: spec.seed });

    const data = await loadDataset({
      ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
      ...(opts.source.length ? { sources: opts.source } : {}),
      normalize: spec.data.normalize,
      validation: spec.data.validation,
      trainLimit: spec.data.trainLimit,
      testLimit: spec.data.testLimit,
      seed: spec.seed,
      onProgress: (p) => {
        if (p.done) out.info(`Downloaded ${p.name} (${(p.bytes / 1e6).toFixed(1)} MB) from ${p.url}`);
      },
    });
    if (signals.signal()) throw new InterruptedError(`${signals.signal()}: stopped before training; ${runDir} holds only the spec`);
    const valNote = data.validation ? (spec.data.validation.holdout ? 'held out' : 'also trained on, as the tutorial') : 'none';
    out.info(`Data: ${data.source}; train ${data.train.count}, validation ${data.validation?.count ?? 0} (${valNote}), test ${data.test.count}; normalize ${spec.data.normalize}`);

    const built = buildModel(spec);
    for (const line of modelSummary(built)) out.info(line);
    const step = createTrainStep(built, spec, backend);
    out.info(`Training step: ${step.description}`);
    out.info(`Run directory: ${runDir}`);

    const bar = process.stderr.isTTY && !opts.quiet ? new SingleBar({ format: ' {bar} {value}/{total} steps | {rate} steps/s | ETA {eta_formatted} | loss {loss}', stream: process.stderr, clearOnComplete: true, hideCursor: true }) : null;
    let barStarted = 0;
    const result: TrainResult = await train(
      built,
      step,
      { train: data.train, validation: data.validation },
      { training: spec.training, seed: spec.seed, shouldStop: signals.stopRequested },
      {
        onEpochStart: (_epoch, _epochs, steps) => {
          bar?.start(steps, 0, { loss: '-', rate: '-' });
          barStarted = Date.now();
        },
        onBatch: (s, steps, loss) => {
          if (bar && (s % 10 === 0 || s === steps)) bar.update(s, { loss: loss.toFixed(4), rate: ((s * 1000) / Math.max(1, Date.now() - barStarted)).toFixed(0) });
        },
        onEpochEnd: (r) => {
          bar?.stop();
          history.push(r);
          writeHistory(runDir!, history);
          out.info(epochLine(r, spec.training.epochs));
          const { weights: _w, penalties, ...rest } = r;
          out.event({ event: 'epoch', ...rest, penalties, weights: r.weights });
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
    finalWeights: weightStats(built),
    histograms: weightHistograms(built),
    parameters: parameterCounts(built.model),
  };
  if (result.stopReason !== 'non-finite-loss') {
    await saveModel(built.model, runDir, { status: metrics.status, stopReason: result.stopReason, epochsRun: metrics.epochsRun });
  }
  writeMetrics(runDir, metrics);

  if (result.stopReason === 'interrupted') {
    throw new InterruptedError(`${signal ?? 'signal'}: training stopped after ${result.history.length} complete epoch(s); history and the model so far (marked incomplete) are saved in ${runDir}`);
  }
  if (result.stopReason === 'non-finite-loss') {
    const at = result.nonFinite!;
    throw new FailureError(`the loss became NaN or infinite at epoch ${at.epoch}, step ${at.step}: training stopped; try a smaller learning rate or smaller penalties (history so far is in ${runDir})`);
  }
  if (result.stopReason === 'early-stopping') out.info(`Early stopping after epoch ${result.history.length}${result.bestEpoch ? `; best epoch ${result.bestEpoch}` : ''}`);
  else if (result.bestEpoch) out.info(`Restored the weights of epoch ${result.bestEpoch} (best ${spec.training.earlyStopping?.monitor})`);
  out.result(`Test: loss: ${test!.loss.toFixed(4)} - accuracy: ${test!.accuracy.toFixed(4)} (${test!.count} images)`);
  out.result(`Done in ${fmtSeconds(elapsed())}; run directory: ${displayPath(runDir)}`);
  out.event({ event: 'test', loss: test!.loss, accuracy: test!.accuracy, count: test!.count, train_accuracy: trainEval!.accuracy });
  out.event({ event: 'done', runDir, seconds: elapsed(), epochs: result.history.length, stopReason: result.stopReason });
  return runDir;
}

/** Relative to the current directory when inside it, else absolute. */
function displayPath(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : p;
}
