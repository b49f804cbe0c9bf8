/**
 * Issue 23, goal 1: a run's epoch against the step alone and against PyTorch's own epoch loop, at
 * batch 32 and 512, in alternating rounds (the machine is shared: only ratios of neighbours count).
 *
 * Each round, per batch size, three measurements back to back:
 * 1. the real CLI as a child process, `regtrain run configs/article.yaml --set data.trainLimit=20000
 *    --set training.batchSize=B --set training.epochs=E --json`: per epoch (the first left out: first
 *    calls compile and allocate) its training rate 20,000 / `trainSeconds`, and its whole epoch
 *    (`seconds`: training, validation on 5,000 images, penalties and weight statistics);
 * 2. the step alone on the same path the run reports (test/bench/train-bench.ts measurePath: the lean
 *    step on in-memory batches, same GEMM and thread count), samples/s;
 * 3. PyTorch's epoch loop on the same images (test/bench/torch_epoch.py: DataLoader with shuffling,
 *    validation on the same 5,000 images), 1 thread.
 * Reported: run ÷ step (training rates) over the run's epochs 2–4 and, apart, over epochs 5–E (in a new process
 * V8 still compiles the per-batch code during the first ~10 epochs, and on two BLAS threads each compile stalls
 * a product: epoch-stalls.ts), and run ÷ PyTorch (whole epochs, 2–E), median over the rounds with the range.
 *
 * --cpu: the run's and the step's rates per CPU second instead of per wall second (the run through
 * epoch-cpu-clock.js, the step bench's own CPU rate), for a loaded machine, where wall time also
 * counts other processes' turns on the cores (PyTorch, timed by the wall clock, is left out).
 *
 * Run: npm run build && node dist/test/bench/epoch-step.js [--rounds N] [--epochs N] [--no-torch]
 *   [--batches 32,512] [--cpu]
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '../../src/tf';
import { resolveDataDir } from '../../src/data/fetch';
import { findTorchPython, measurePath, median, type PathSpec } from './train-bench';
import { scratchDir } from '../helpers/scratch';

const repoRoot = path.resolve(__dirname, '../../..');
const SPEC = path.join(repoRoot, 'configs', 'article.yaml');
const TRAIN = 20000;

export interface CliEpochs {
  /** The run's training step, as its `training` event names it. */
  step: string;
  backend: string;
  /** Per epoch after the first: training seconds and whole-epoch seconds. */
  epochs: { train: number; seconds: number }[];
}

/**
 * One `regtrain run` at this batch size; each epoch's training and whole-epoch seconds (CPU seconds
 * with `cpu`: see epoch-cpu-clock.ts).
 */
export function cliRun(batch: number, epochs: number, cpu = false): Promise<CliEpochs> {
  return new Promise((resolve, reject) => {
    const out = scratchDir('regtrain-epoch-step-');
    const sets = [`data.trainLimit=${TRAIN}`, `training.batchSize=${batch}`, `training.epochs=${epochs}`];
    const child = spawn(
      process.execPath,
      [
        ...(cpu ? ['-r', path.join(__dirname, 'epoch-cpu-clock.js')] : []),
        path.join(repoRoot, 'bin', 'regtrain'),
        'run',
        SPEC,
        ...sets.flatMap((s) => ['--set', s]),
        '--out',
        path.join(out, 'run'),
        '--json',
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const r: CliEpochs = { step: '', backend: '', epochs: [] };
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const e = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if (e.event === 'start') r.backend = String(e.backend);
        if (e.event === 'training') r.step = String(e.step);
        if (e.event === 'epoch' && Number(e.epoch) > 1)
          r.epochs.push({ train: Number(e.trainSeconds), seconds: Number(e.seconds) });
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      fs.rmSync(out, { recursive: true, force: true });
      if (code !== 0) reject(new Error(`regtrain run exited ${code}`));
      else resolve(r);
    });
  });
}

/** The step-bench path that runs what the run's `training` event describes, or null when none does. */
export function pathOfRun(backend: string, step: string): PathSpec | null {
  if (backend !== 'wasm' || !step.startsWith('lean step')) return null;
  const blas = /OpenBLAS matmuls \((\d+) thread/.exec(step);
  if (blas) return { backend: 'wasm', gemm: 'openblas', threads: Number(blas[1]), step: 'lean' };
  if (step.includes('relaxed-SIMD WebAssembly')) return { backend: 'wasm', gemm: 'wasm-relaxed-simd', step: 'lean' };
  if (step.includes('SIMD WebAssembly')) return { backend: 'wasm', gemm: 'wasm-simd', step: 'lean' };
  return null;
}

function torchEpochs(py: string, batch: number, epochs: number): { train: number; seconds: number }[] {
  const out = execFileSync(
    py,
    [
      path.join(repoRoot, 'test', 'bench', 'torch_epoch.py'),
      '--data',
      resolveDataDir(undefined, process.env),
      '--train',
      String(TRAIN),
      '--batch',
      String(batch),
      '--epochs',
      String(epochs),
      '--threads',
      '1',
    ],
    { encoding: 'utf8', timeout: 3600 * 1000 },
  );
  const j = JSON.parse(out.trim().split('\n').pop()!) as { epochs: { trainSeconds: number; seconds: number }[] };
  return j.epochs.slice(1).map((e) => ({ train: e.trainSeconds, seconds: e.seconds }));
}

interface BatchResult {
  batch: number;
  step: string;
  runTrainRates: number[];
  stepRates: number[];
  torchEpochRates: number[];
  /** run training rate (epochs 2–4) ÷ step rate, per round */
  vsStep: number[];
  /** run training rate over epochs 5–E (with E ≥ 5) ÷ step rate, per round */
  laterVsStep: number[];
  /** run whole-epoch rate ÷ PyTorch whole-epoch rate, per round */
  vsTorch: number[];
  /** run training rate ÷ PyTorch training rate, per round */
  trainVsTorch: number[];
}

const rangeOf = (xs: number[]) =>
  xs.length ? `${median(xs).toFixed(2)}× (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})` : '—';
const rate = (xs: number[]) => (xs.length ? Math.round(median(xs)).toLocaleString('en-US') : '—');

export async function epochStepReport(opts: {
  rounds: number;
  epochs: number;
  torch: boolean;
  batches?: number[];
  /** Rates per CPU second (the run's and the step's); PyTorch is left out. */
  cpu?: boolean;
  log?: (s: string) => void;
}): Promise<string> {
  const cpu = opts.cpu ?? false;
  const log = opts.log ?? (() => {});
  // PyTorch's loop is timed by the wall clock only: no run ÷ PyTorch in CPU time.
  const py = opts.torch && !(opts.cpu ?? false) ? findTorchPython() : null;
  const results: BatchResult[] = (opts.batches ?? [32, 512]).map((batch) => ({
    batch,
    step: '',
    runTrainRates: [],
    stepRates: [],
    torchEpochRates: [],
    vsStep: [],
    laterVsStep: [],
    vsTorch: [],
    trainVsTorch: [],
  }));
  const unit = cpu ? 'CPU s' : 's';
  for (let round = 1; round <= opts.rounds; round++) {
    for (const res of results) {
      const run = await cliRun(res.batch, opts.epochs, cpu);
      res.step = run.step;
      // Epochs 2–4 (the array starts at epoch 2), and the later ones apart: V8 is still compiling the per-batch code
      // with TurboFan in a new process's first ~10 epochs, and on two BLAS threads each compile stalls a product
      // (epoch-stalls.ts).
      const runTrain = TRAIN / median(run.epochs.slice(0, 3).map((e) => e.train));
      const later = run.epochs.slice(3);
      const runTrainLater = later.length ? TRAIN / median(later.map((e) => e.train)) : null;
      const runEpoch = TRAIN / median(run.epochs.map((e) => e.seconds));
      res.runTrainRates.push(runTrain);
      const p = pathOfRun(run.backend, run.step);
      const m = p ? await measurePath(p, res.batch) : null;
      const stepRate = m ? (cpu ? m.cpuRate : m.rate) : null;
      if (stepRate) {
        res.stepRates.push(stepRate);
        res.vsStep.push(runTrain / stepRate);
        if (runTrainLater) res.laterVsStep.push(runTrainLater / stepRate);
      }
      let line = `round ${round} batch ${res.batch}: run trains ${Math.round(runTrain)}/${unit}${runTrainLater ? ` (epochs 5–${opts.epochs}: ${Math.round(runTrainLater)})` : ''} (epoch ${Math.round(runEpoch)}/${unit}), step alone ${stepRate ? Math.round(stepRate) : 'n/a'}/${unit}`;
      if (py) {
        const t = torchEpochs(py, res.batch, opts.epochs);
        const torchEpoch = TRAIN / median(t.map((e) => e.seconds));
        const torchTrain = TRAIN / median(t.map((e) => e.train));
        res.torchEpochRates.push(torchEpoch);
        res.vsTorch.push(runEpoch / torchEpoch);
        res.trainVsTorch.push(runTrain / torchTrain);
        line += `, PyTorch epoch ${Math.round(torchEpoch)}/s (training ${Math.round(torchTrain)}/s)`;
      }
      log(`${line}; load average ${os.loadavg()[0]!.toFixed(1)}`);
    }
  }
  const lines = [
    `A run's epoch against the step alone and PyTorch's epoch loop${cpu ? ' in CPU time (samples per CPU second of the process, all threads)' : ''} (\`regtrain run configs/article.yaml --set data.trainLimit=${TRAIN} --set training.batchSize=B --set training.epochs=${opts.epochs}\`, epochs 2–${opts.epochs}; test/bench/torch_epoch.py; ${opts.rounds} rounds; load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}):`,
    '',
    `| batch | run trains, samples/${unit} | step alone, samples/${unit} | **run ÷ step** (epochs 2–4) | run ÷ step, epochs 5–${opts.epochs} | PyTorch epoch (DataLoader + validation), samples/s | **run epoch ÷ PyTorch epoch** | run training ÷ PyTorch training | step |`,
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const r of results)
    lines.push(
      `| ${r.batch} | ${rate(r.runTrainRates)} | ${rate(r.stepRates)} | ${rangeOf(r.vsStep)} | ${rangeOf(r.laterVsStep)} | ${rate(r.torchEpochRates)} | ${rangeOf(r.vsTorch)} | ${rangeOf(r.trainVsTorch)} | ${r.step} |`,
    );
  lines.push('', 'Ratios: median over the rounds of each round’s own ratio (min–max).');
  return lines.join('\n');
}

if (require.main === module && !process.env.NODE_TEST_CONTEXT) {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  tf.env().set('PROD', true);
  epochStepReport({
    rounds: Number(arg('--rounds') ?? 3),
    epochs: Number(arg('--epochs') ?? 8),
    torch: !process.argv.includes('--no-torch'),
    cpu: process.argv.includes('--cpu'),
    ...(arg('--batches') ? { batches: arg('--batches')!.split(',').map(Number) } : {}),
    log: (s) => console.error(s),
  })
    .then((report) => console.log(report))
    .catch((err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    });
}
