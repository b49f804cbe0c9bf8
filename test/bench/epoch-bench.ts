/**
 * Issue 11, goal 3: what an epoch's extras cost next to its training, at 20,000 images and batch 512
 * (the tutorial's model; validation on 5,000 images, TensorBoard and the checkpoint on, as `run` does).
 *
 * 1. End to end, the real CLI as a child process: `regtrain run configs/article.yaml --set
 *    data.trainLimit=20000 --set training.batchSize=512 --set training.epochs=N --json`. An epoch's
 *    wall time is the time between its `epoch` event and the one before, read here as they arrive;
 *    its training time is the event's `trainSeconds`; the extras are the rest (validation, weight
 *    statistics, penalties, history line, TensorBoard, checkpoint with its fsyncs, events). The first
 *    epoch is left out (first calls compile and allocate). Reported: the median of extras ÷ epoch
 *    over every epoch of every round, with its range.
 * 2. Which extra: the same pieces on the same model and data in this process, each timed alone
 *    (median of 7), next to the median training time of part 1.
 *
 * Run: npm run build && node dist/test/bench/epoch-bench.js [--rounds N] [--epochs N]
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initBackend } from '../../src/backend';
import { loadSpecData } from '../../src/data/dataset';
import { runSeeds } from '../../src/rng';
import { HistoryLog } from '../../src/history-log';
import { buildModel } from '../../src/model';
import { penaltyValues } from '../../src/train/penalties';
import { loadSpec, parseSetFlag } from '../../src/spec';
import { CallbackList, type TrainingContext } from '../../src/train/callbacks/callback';
import { CheckpointWriter } from '../../src/train/callbacks/checkpoint';
import { TensorBoardLogger } from '../../src/train/callbacks/tensorboard';
import { evaluateSplit } from '../../src/train/forward';
import { fit } from '../../src/train/loop';
import { createTrainStep } from '../../src/train/step';
import { weightStats } from '../../src/train/weight-stats';
import type { EpochRecord } from '../../src/runformat';
import { scratchDir } from '../helpers/scratch';

const repoRoot = path.resolve(__dirname, '../../..');
const SPEC = path.join(repoRoot, 'configs', 'article.yaml');
export const EPOCH_BENCH_SETS = ['data.trainLimit=20000', 'training.batchSize=512', 'training.tensorboard=true'];

export interface EpochTiming {
  epoch: number;
  wall: number;
  train: number;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** One `regtrain run` of `epochs` epochs; each epoch's wall time (event to event) and training time. */
export function cliEpochs(epochs: number, env: Record<string, string> = {}): Promise<EpochTiming[]> {
  return new Promise((resolve, reject) => {
    const out = scratchDir('regtrain-epoch-bench-');
    const sets = [...EPOCH_BENCH_SETS, `training.epochs=${epochs}`].flatMap((s) => ['--set', s]);
    const child = spawn(
      process.execPath,
      [path.join(repoRoot, 'bin', 'regtrain'), 'run', SPEC, ...sets, '--out', path.join(out, 'run'), '--json'],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
        env: { ...process.env, ...env },
      },
    );
    const timings: EpochTiming[] = [];
    let last = 0n;
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      const now = process.hrtime.bigint();
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const e = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if (e.event === 'training') last = now;
        if (e.event === 'epoch') {
          timings.push({ epoch: Number(e.epoch), wall: Number(now - last) / 1e9, train: Number(e.trainSeconds) });
          last = now;
        }
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      fs.rmSync(out, { recursive: true, force: true });
      if (code !== 0) reject(new Error(`regtrain run exited ${code}`));
      else resolve(timings);
    });
  });
}

export interface ExtrasResult {
  /** extras ÷ epoch wall time, one per measured epoch (epoch 1 of each round left out). */
  shares: number[];
  trainSeconds: number[];
  wallSeconds: number[];
}

export async function benchEpochExtras(opts: {
  rounds: number;
  epochs: number;
  log?: (s: string) => void;
}): Promise<ExtrasResult> {
  const r: ExtrasResult = { shares: [], trainSeconds: [], wallSeconds: [] };
  for (let round = 1; round <= opts.rounds; round++) {
    const t = await cliEpochs(opts.epochs);
    for (const e of t.slice(1)) {
      r.shares.push((e.wall - e.train) / e.wall);
      r.trainSeconds.push(e.train);
      r.wallSeconds.push(e.wall);
    }
    opts.log?.(
      `round ${round}: ${t.map((e) => `epoch ${e.epoch} ${e.wall.toFixed(3)} s (train ${e.train.toFixed(3)} s)`).join(', ')}`,
    );
  }
  return r;
}

/** Seconds one call takes, awaiting what it returns. */
async function timeOf(fn: () => unknown): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/** A training epoch alone (seconds, median of 7), and each extra alone as a share of the training epoch measured just before it (median of 7). */
export async function extrasBreakdown(): Promise<[string, number][]> {
  const spec = loadSpec(SPEC, [...EPOCH_BENCH_SETS, 'training.epochs=1'].map(parseSetFlag)).spec;
  const backend = await initBackend(spec.backend);
  const data = await loadSpecData(spec, runSeeds(spec.seed), { source: [] });
  const built = buildModel(spec);
  const step = createTrainStep(built, spec, backend);
  const dir = scratchDir('regtrain-epoch-bench-');
  try {
    const tensorboard = new TensorBoardLogger(dir);
    const callbacks: CallbackList = new CallbackList([
      tensorboard,
      new CheckpointWriter(dir, backend.name, () => callbacks),
    ]);
    await fit(built, step, { train: data.train, validation: data.validation }, new CallbackList([]), {
      epochs: 1,
      batchSize: 512,
      shuffle: true,
      seeds: runSeeds(spec.seed),
    });
    const ctx: TrainingContext = {
      built,
      step,
      epochs: 1,
      stepsPerEpoch: 1,
      stopTraining: null,
      trainSeconds: 0,
      loopState: () => ({ epoch: 1, shuffleRng: [1, 2, 3, 4], dropoutRng: [1, 2, 3, 4], stopTraining: null }),
    };
    await callbacks.trainBegin(ctx, 0);
    const logs: EpochRecord = {
      epoch: 1,
      loss: 1,
      accuracy: 0.5,
      val_loss: 1,
      val_accuracy: 0.5,
      data_loss: 1,
      penalty: 0,
      penalties: penaltyValues(built),
      lr: 0.01,
      seconds: 1,
      weights: weightStats(built),
    };
    const history = new HistoryLog(dir);
    const trainEpoch = () =>
      fit(built, step, { train: data.train, validation: null }, new CallbackList([]), {
        epochs: 1,
        batchSize: 512,
        shuffle: true,
        seeds: runSeeds(spec.seed),
      });
    const pieces: [string, () => unknown][] = [
      ['validation pass (5,000 images)', () => evaluateSplit(built, data.validation!)],
      ['penalties', () => penaltyValues(built)],
      ['weight statistics', () => weightStats(built)],
      ['history line', () => history.append(logs)],
      ['TensorBoard (scalars, histograms; its fsync in the background)', () => tensorboard.onEpochEnd(1, logs, ctx)],
      ['checkpoint (weights, states, fsyncs)', () => callbacks.callbacks[1]!.onEpochEnd!(1, logs, ctx)],
    ];
    // Alternate: a training epoch, then each extra once; shares are per round, so load changes cancel.
    const shares: number[][] = pieces.map(() => []);
    const trainTimes: number[] = [];
    for (let round = 0; round < 7; round++) {
      const t0 = process.hrtime.bigint();
      await trainEpoch();
      const train = Number(process.hrtime.bigint() - t0) / 1e9;
      trainTimes.push(train);
      for (const [i, [, fn]] of pieces.entries()) shares[i]!.push((await timeOf(fn)) / train);
    }
    const rows: [string, number][] = [
      ['training epoch (20,000 images, batch 512)', median(trainTimes)],
      ...pieces.map(([name], i): [string, number] => [name, median(shares[i]!)]),
    ];
    await callbacks.trainEnd({ stopReason: 'epochs', epochs: 1 }, ctx);
    step.dispose();
    return rows;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The report: part 1 and part 2 as Markdown. */
export async function epochExtrasReport(opts: {
  rounds: number;
  epochs: number;
  log?: (s: string) => void;
}): Promise<string> {
  const r = await benchEpochExtras(opts);
  const train = median(r.trainSeconds);
  const lines = [
    `Per-epoch extras at 20,000 images, batch 512 (\`regtrain run configs/article.yaml --set ${EPOCH_BENCH_SETS.join(' --set ')} --set training.epochs=${opts.epochs}\`, ${opts.rounds} rounds, epochs 2–${opts.epochs}; load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}):`,
    '',
    `- epoch ${median(r.wallSeconds).toFixed(3)} s, of which training ${train.toFixed(3)} s (medians);`,
    `- **extras ÷ epoch: ${(100 * median(r.shares)).toFixed(1)}%** (range ${(100 * Math.min(...r.shares)).toFixed(1)}–${(100 * Math.max(...r.shares)).toFixed(1)}%, ${r.shares.length} epochs)`,
    '',
    '| in one process, alternating | ÷ training epoch |',
    '| --- | ---: |',
  ];
  const [[, trainAlone], ...rows] = await extrasBreakdown();
  lines.push(`| training epoch: ${(1000 * trainAlone!).toFixed(0)} ms | |`);
  for (const [name, share] of rows) lines.push(`| ${name} | ${(100 * share).toFixed(1)}% |`);
  return lines.join('\n');
}

if (require.main === module && !process.env.NODE_TEST_CONTEXT) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : undefined;
  };
  epochExtrasReport({ rounds: arg('--rounds') ?? 3, epochs: arg('--epochs') ?? 4, log: (s) => console.error(s) })
    .then((report) => console.log(report))
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
}
