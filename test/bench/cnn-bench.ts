/**
 * Issue 14 benchmark: samples/s of a training step of the small CNN of configs/cnn.yaml
 * (reshape 28×28×1 → conv2d 16 3×3 relu → maxPool 2 → conv2d 32 3×3 relu → maxPool 2 → flatten →
 * dense 64 relu → dense 10 softmax; Adam 0.001; batch 64) on tfjs-wasm, against the same model in
 * PyTorch 1.13 (1 thread; test/bench/torch_cnn.py).
 *
 * The step is the reference step's (src/train/step.ts): tf.variableGrads over the cross-entropy of
 * the model's softmax, then regtrain's Adam on each variable. Paths: tfjs-wasm's own kernels (plus
 * the filter gradient it lacks, regtrain's direct loop), and with regtrain's kernels installed
 * (GEMM matmuls and the im2col conv gradients of src/accel/conv.ts) with OpenBLAS when it loads
 * and without any native library.
 *
 * The lean CNN step (src/train/cnn-step.ts, what `regtrain run` trains the CNN with when regtrain's
 * GEMM is there: hand-written forward and backward, no tfjs op a step) runs on the same two GEMMs
 * (OpenBLAS, one thread; the SIMD WebAssembly GEMM, one thread), with the same Adam.
 *
 * Each path's GFLOP/s (trainingFlopsPerSample: 4.05 MFLOP a sample) is printed next to the dense
 * step's on the same GEMM (the tutorial's lean step, batch 512, 1 thread), measured right after it:
 * issue 23's goal 2 is the CNN at ≥ 0.5× that rate.
 *
 * Rounds as in train-bench.ts: each regtrain measurement is followed at once by a PyTorch one of the
 * same batch size (a `torch_cnn.py --serve` process kept running); the report gives the median ratio
 * over the rounds with its range.
 *
 * Run: npm run build && node dist/test/bench/cnn-bench.js [--rounds N] [--no-torch] [--profile] [--batch 64]
 * --profile prints where a step's time goes, per tfjs kernel, for each path.
 */
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import * as tf from '../../src/tf';
import { installAcceleratedKernels, uninstallAcceleratedKernels, type GemmChoice } from '../../src/accel/kernels';
import { loadBlas } from '../../src/accel/blas';
import { registerWasmConvKernels } from '../../src/accel/conv';
import { createOptimizer } from '../../src/train/optimizers';
import { crossEntropySum, forward } from '../../src/train/forward';
import { buildTutorialModel, fakeData } from './tutorial-model';
import { chooseWasmGemm } from '../../src/accel/gemm';
import { cnnProfile, createCnnStep } from '../../src/train/cnn-step';
import { findTorchPython, measurePath, median, useBackend, type PathSpec } from './train-bench';

const SECONDS = Number(process.env.REGTRAIN_BENCH_SECONDS ?? 1);
const SAMPLES = 64 * 32;

export interface CnnPath {
  label: string;
  /** Which GEMM runs the matmuls and the im2col conv gradients; 'none' = tfjs-wasm's own kernels. */
  gemm: GemmChoice;
  /** tfjs-node's TensorFlow kernels instead of wasm (gemm is then 'none'). */
  tensorflow?: boolean;
  /** The lean CNN step (src/train/cnn-step.ts) on `gemm`, instead of the autodiff step. */
  lean?: boolean;
}

export function buildCnn(seed = 42): tf.Sequential {
  const init = (s: number) => tf.initializers.glorotUniform({ seed: seed + s });
  const model = tf.sequential();
  model.add(tf.layers.reshape({ targetShape: [28, 28, 1], inputShape: [28, 28] }));
  model.add(tf.layers.conv2d({ filters: 16, kernelSize: 3, activation: 'relu', kernelInitializer: init(1) }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.conv2d({ filters: 32, kernelSize: 3, activation: 'relu', kernelInitializer: init(2) }));
  model.add(tf.layers.maxPooling2d({ poolSize: 2 }));
  model.add(tf.layers.flatten());
  model.add(tf.layers.dense({ units: 64, activation: 'relu', kernelInitializer: init(3) }));
  model.add(tf.layers.dense({ units: 10, activation: 'softmax', kernelInitializer: init(4) }));
  return model;
}

/**
 * Multiply-adds ×2 of one training sample through a Conv2D/Dense stack: the forward products, the
 * same again for the weight gradients, and the input gradients of every layer but the first (its
 * input needs none). configs/cnn.yaml's CNN: 1.41 MFLOP forward, 4.05 MFLOP a training sample;
 * pooling, activations and the optimizer (a few kFLOP) are left out, as in PyTorch's own counts.
 */
export function trainingFlopsPerSample(model: tf.LayersModel): number {
  let forward = 0;
  let inputGrads = 0;
  let first = true;
  for (const layer of model.layers) {
    const w = layer.getWeights()[0];
    if (!w || (layer.getClassName() !== 'Conv2D' && layer.getClassName() !== 'Dense')) continue;
    const out = layer.outputShape as number[];
    const positions = out.slice(1, -1).reduce((a, b) => a * b, 1);
    const flops = 2 * positions * w.size;
    forward += flops;
    if (!first) inputGrads += flops;
    first = false;
  }
  return 2 * forward + inputGrads;
}

/** The tutorial's dense step (784-200-100-50-10): 0.78 MFLOP a training sample. */
const DENSE_BATCH = 512;

/** The dense step on the same GEMM as a CNN path (the lean step, 1 thread, batch 512), or null for tfjs's kernels. */
export function densePathOf(p: CnnPath): PathSpec | null {
  if (p.tensorflow || p.gemm === 'none' || p.gemm === 'auto') return null;
  if (p.gemm === 'openblas') return { backend: 'wasm', gemm: 'openblas', threads: 1, step: 'lean' };
  const w = chooseWasmGemm();
  return 'kind' in w ? { backend: 'wasm', gemm: w.kind, threads: 1, step: 'lean' } : null;
}

/** The reference step (src/train/step.ts) on a plain tfjs model: autodiff, then regtrain's Adam. */
export function cnnStep(model: tf.Sequential): { run(x: tf.Tensor, y: tf.Tensor1D): number; dispose(): void } {
  // The forward pass the reference step runs (the loss from the softmax's logits); no penalties or dropout here.
  const built = {
    model,
    penalties: [],
    activity: [],
    dropout: new Map<number, number>(),
    spatialDropout: new Set<number>(),
    denseLayers: [],
  };
  const optimizer = createOptimizer({ adam: { learningRate: 0.001 } });
  const vars = model.trainableWeights.map((w) => w.read() as tf.Variable);
  return {
    run(x, y) {
      const lr = optimizer.learningRate();
      const batch = x.shape[0]!;
      const { value, grads } = tf.variableGrads(
        () => crossEntropySum(forward(built, x, true), y).div(batch) as tf.Scalar,
        vars,
      );
      const loss = value.dataSync()[0]!;
      value.dispose();
      for (const v of vars) {
        const out = new Float32Array(v.size);
        optimizer.update(
          {
            name: v.name,
            w: v.dataSync() as Float32Array,
            g: grads[v.name]!.dataSync() as Float32Array,
            out,
            l1: 0,
            l2: 0,
          },
          lr,
        );
        const next = tf.tensor(out, v.shape);
        v.assign(next);
        next.dispose();
      }
      tf.dispose(Object.values(grads));
      optimizer.endStep();
      return loss;
    },
    dispose() {},
  };
}

/** The lean CNN step on a path's GEMM (one thread), with the same Adam as cnnStep. */
export function leanCnnStep(
  model: tf.Sequential,
  p: CnnPath,
): { run(x: tf.Tensor, y: tf.Tensor1D): number; dispose(): void } {
  let kind: 'openblas' | 'wasm-simd' | 'wasm-relaxed-simd';
  if (p.gemm === 'openblas') {
    const blas = loadBlas();
    if (!blas.ok) throw new Error(blas.reason);
    blas.setThreads(1);
    kind = 'openblas';
  } else {
    const w = chooseWasmGemm();
    if (!('kind' in w)) throw new Error(w.reason);
    kind = w.kind;
  }
  const step = createCnnStep(model, createOptimizer({ adam: { learningRate: 0.001 } }), [], kind, { threads: 1 });
  if ('unsupported' in step) throw new Error(step.unsupported);
  return {
    run(x, y) {
      const r = step.run(x, y);
      return r.dataLoss / r.batchSize;
    },
    dispose: () => step.dispose(),
  };
}

/** A running `torch_cnn.py --serve`: one PyTorch measurement per request line "BATCH THREADS SECONDS". */
async function startTorch(py: string): Promise<{
  version: string;
  measure(batch: number, threads: number): Promise<{ samplesPerSec: number; cpuSamplesPerSec?: number }>;
  close(): void;
}> {
  const child = spawn(py, [path.join(__dirname, '..', '..', '..', 'test', 'bench', 'torch_cnn.py'), '--serve'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const r = await lines.next();
    if (r.done) throw new Error('the PyTorch worker exited');
    return JSON.parse(r.value) as Record<string, unknown>;
  };
  const hello = await next();
  return {
    version: String(hello.torch),
    async measure(batch, threads) {
      child.stdin.write(`${batch} ${threads} ${SECONDS}\n`);
      return (await next()) as { samplesPerSec: number; cpuSamplesPerSec?: number };
    },
    close: () => child.stdin.end(),
  };
}

/** Fashion-MNIST-shaped random images and int32 labels. */
function cnnData(n: number): { x: tf.Tensor3D; y: tf.Tensor1D } {
  const { x, y } = fakeData(n, 5);
  const yi = y.cast('int32') as tf.Tensor1D;
  y.dispose();
  return { x, y: yi };
}

/** The paths this machine can run (tfjs-node's when it loads). */
export async function cnnPaths(): Promise<CnnPath[]> {
  const out: CnnPath[] = [{ label: "wasm, tfjs's kernels", gemm: 'none' }];
  if (loadBlas().ok) {
    out.push({ label: 'autodiff, wasm + regtrain kernels (OpenBLAS)', gemm: 'openblas' });
    out.push({ label: 'lean CNN step (OpenBLAS)', gemm: 'openblas', lean: true });
  }
  out.push({ label: 'autodiff, wasm + regtrain kernels (no native library)', gemm: 'wasm' });
  if ('kind' in chooseWasmGemm())
    out.push({ label: 'lean CNN step (SIMD wasm GEMM, no native library)', gemm: 'wasm', lean: true });
  if (await useBackend('tensorflow'))
    out.push({ label: 'tfjs-node (TensorFlow 1.15 kernels)', gemm: 'none', tensorflow: true });
  return out;
}

async function usePath(p: CnnPath): Promise<void> {
  if (p.tensorflow) {
    if (!(await useBackend('tensorflow'))) throw new Error('tfjs-node does not load here');
    return;
  }
  if (!(await useBackend('wasm'))) throw new Error('the wasm backend does not load here');
  registerWasmConvKernels();
  uninstallAcceleratedKernels('wasm');
  // The lean step calls its GEMM itself; the kernels go in all the same, as `regtrain run` installs
  // them (the batches' slices: tfjs-wasm's own Slice copies the whole input, 6 MB a step here).
  if (p.gemm !== 'none') installAcceleratedKernels('wasm', { gemm: p.gemm, threads: 1 });
}

/** Runs `fn` with every kernel of the wasm backend timed by CPU time (the machine is shared); returns ms per kernel name, summed. */
export function timeKernels(fn: () => void): Map<string, { ms: number; calls: number }> {
  const times = new Map<string, { ms: number; calls: number }>();
  const wrapped: tf.KernelConfig[] = [];
  for (const k of tf.getKernelsForBackend('wasm')) {
    wrapped.push(k);
    tf.unregisterKernel(k.kernelName, 'wasm');
    tf.registerKernel({
      ...k,
      kernelFunc: (args) => {
        const c0 = process.cpuUsage();
        const r = k.kernelFunc(args);
        const c = process.cpuUsage(c0);
        const e = times.get(k.kernelName) ?? { ms: 0, calls: 0 };
        e.ms += (c.user + c.system) / 1000;
        e.calls++;
        times.set(k.kernelName, e);
        return r;
      },
    });
  }
  try {
    fn();
  } finally {
    for (const k of wrapped) {
      tf.unregisterKernel(k.kernelName, 'wasm');
      tf.registerKernel(k);
    }
  }
  return times;
}

/** One measurement: warm-up, then steps for ~`seconds`; samples per second (wall) and per CPU second. */
export async function measureCnn(
  p: CnnPath,
  batch: number,
  seconds = SECONDS,
): Promise<{ rate: number; cpuRate: number }> {
  await usePath(p);
  const model = buildCnn(1);
  const step = p.lean ? leanCnnStep(model, p) : cnnStep(model);
  const { x, y } = cnnData(SAMPLES);
  const nBatches = Math.floor(SAMPLES / batch);
  let pos = 0;
  const runSteps = (k: number) => {
    for (let i = 0; i < k; i++) {
      const xs = x.slice(pos * batch, batch);
      const ys = y.slice(pos * batch, batch);
      step.run(xs, ys);
      tf.dispose([xs, ys]);
      pos = (pos + 1) % nBatches;
    }
  };
  runSteps(2);
  let t0 = performance.now();
  runSteps(2);
  const k = Math.max(2, Math.round(seconds / ((performance.now() - t0) / 2 / 1000)));
  t0 = performance.now();
  const c0 = process.cpuUsage();
  runSteps(k);
  const rate = (k * batch) / ((performance.now() - t0) / 1000);
  const cpu = process.cpuUsage(c0);
  step.dispose();
  model.dispose();
  tf.dispose([x, y]);
  uninstallAcceleratedKernels('wasm');
  return { rate, cpuRate: (k * batch) / ((cpu.user + cpu.system) / 1e6) };
}

/** Where a step's time goes on a path: ms per step per kernel (median over `steps` is not needed: sums over them). */
export async function profileCnn(p: CnnPath, batch: number, steps = 10): Promise<string> {
  await usePath(p);
  const model = buildCnn(1);
  const step = p.lean ? leanCnnStep(model, p) : cnnStep(model);
  const { x, y } = cnnData(batch * 2);
  const xs = x.slice(0, batch);
  const ys = y.slice(0, batch);
  step.run(xs, ys);
  const c0 = process.cpuUsage();
  // The lean step: its own phases (cnnProfile); the autodiff step: tfjs's kernels.
  cnnProfile.ms.clear();
  cnnProfile.on = !!p.lean;
  const kernels = timeKernels(() => {
    for (let i = 0; i < steps; i++) step.run(xs, ys);
  });
  cnnProfile.on = false;
  const times = p.lean ? new Map([...cnnProfile.ms].map(([phase, ms]) => [phase, { ms, calls: steps }])) : kernels;
  const cpu = process.cpuUsage(c0);
  const total = (cpu.user + cpu.system) / 1000 / steps;
  const rows = [...times.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const inKernels = rows.reduce((s, [, v]) => s + v.ms, 0) / steps;
  const lines = [
    `### ${p.label}, batch ${batch}: ${total.toFixed(2)} ms of CPU time per step, ${inKernels.toFixed(2)} ms in ${p.lean ? 'its phases' : 'kernels'}`,
    '',
    `| ${p.lean ? 'phase' : 'kernel'} | CPU ms/step | calls/step | share |`,
    '| --- | ---: | ---: | ---: |',
  ];
  for (const [name, v] of rows.slice(0, 20))
    lines.push(
      `| ${name} | ${(v.ms / steps).toFixed(2)} | ${v.calls / steps} | ${((100 * v.ms) / steps / total).toFixed(0)}% |`,
    );
  tf.dispose([x, y, xs, ys]);
  model.dispose();
  uninstallAcceleratedKernels('wasm');
  return lines.join('\n');
}

export interface CnnRounds {
  results: Array<{
    path: CnnPath;
    rates: number[];
    /** Samples per CPU second (the machine may be loaded: CPU time is what the step itself costs). */
    cpuRates: number[];
    ratios: number[];
    cpuRatios: number[];
    /** The dense step's GFLOP/s on the same GEMM, measured right after (none for tfjs's kernels). */
    denseGflops: number[];
    /** This path's GFLOP/s over the dense step's, per round. */
    ofDense: number[];
    /** The same by CPU time (GFLOP per CPU second of each). */
    cpuOfDense: number[];
  }>;
  /** FLOPs of one CNN training sample and of one dense-step sample. */
  flops: { cnn: number; dense: number };
  torch: { version: string; rates: number[] } | { skipped: string };
  rounds: number;
  batch: number;
}

/** `rounds` rounds; in each, every path once, each followed by one PyTorch (1 thread) measurement. */
export async function cnnRounds(
  opts: { rounds?: number; batch?: number; torch?: boolean; log?: (s: string) => void } = {},
): Promise<CnnRounds> {
  const rounds = opts.rounds ?? 5;
  const batch = opts.batch ?? 64;
  const log = opts.log ?? (() => {});
  const py = opts.torch === false ? null : findTorchPython();
  const torch = py ? await startTorch(py) : null;
  const results = (await cnnPaths()).map((p) => ({
    path: p,
    rates: [] as number[],
    cpuRates: [] as number[],
    ratios: [] as number[],
    cpuRatios: [] as number[],
    denseGflops: [] as number[],
    ofDense: [] as number[],
    cpuOfDense: [] as number[],
  }));
  const cnnModel = buildCnn(1);
  const flops = { cnn: trainingFlopsPerSample(cnnModel), dense: 0 };
  cnnModel.dispose();
  const dense = buildTutorialModel(1);
  flops.dense = trainingFlopsPerSample(dense);
  dense.dispose();
  const torchRates: number[] = [];
  const line = (r: number, label: string, rate: number) =>
    log(
      `round ${r}: ${label.padEnd(48)} batch ${batch}: ${Math.round(rate).toLocaleString('en-US').padStart(7)} samples/s`,
    );
  try {
    for (let r = 1; r <= rounds; r++) {
      for (const res of results) {
        const m = await measureCnn(res.path, batch);
        line(r, res.path.label, m.rate);
        res.rates.push(m.rate);
        res.cpuRates.push(m.cpuRate);
        const dp = densePathOf(res.path);
        const d = dp ? await measurePath(dp, DENSE_BATCH) : null;
        if (d) {
          const gf = (d.rate * flops.dense) / 1e9;
          log(`round ${r}: dense step, same GEMM, batch ${DENSE_BATCH}: ${gf.toFixed(1)} GFLOP/s`);
          res.denseGflops.push(gf);
          res.ofDense.push((m.rate * flops.cnn) / 1e9 / gf);
          res.cpuOfDense.push((m.cpuRate * flops.cnn) / (d.cpuRate * flops.dense));
        }
        if (!torch) continue;
        const t = await torch.measure(batch, 1);
        line(r, `PyTorch ${torch.version} (1 thread)`, t.samplesPerSec);
        torchRates.push(t.samplesPerSec);
        res.ratios.push(m.rate / t.samplesPerSec);
        if (t.cpuSamplesPerSec) res.cpuRatios.push(m.cpuRate / t.cpuSamplesPerSec);
      }
    }
  } finally {
    torch?.close();
  }
  return {
    results,
    torch: torch
      ? { version: torch.version, rates: torchRates }
      : { skipped: opts.torch === false ? 'not asked (--no-torch)' : 'no python3 with torch' },
    flops,
    rounds,
    batch,
  };
}

const fmtRate = (xs: number[]) => (xs.length ? Math.round(median(xs)).toLocaleString('en-US') : '—');
const fmtRatio = (xs: number[]) =>
  xs.length ? `${median(xs).toFixed(2)}× (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})` : '—';

export function cnnTable(r: CnnRounds): string {
  const gf = (rate: number) => ((rate * r.flops.cnn) / 1e9).toFixed(1);
  const lines = [
    `| CNN training step, batch ${r.batch} | samples/s (median) | GFLOP/s | samples per CPU s | GFLOP per CPU s | dense step on the same GEMM, GFLOP/s | **÷ dense GFLOP/s** | ÷ dense, by CPU time | ÷ PyTorch 1t | ÷ PyTorch 1t by CPU time |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const x of r.results)
    lines.push(
      `| ${x.path.label} | ${fmtRate(x.rates)} | ${x.rates.length ? gf(median(x.rates)) : '—'} | ${fmtRate(x.cpuRates)} | ${x.cpuRates.length ? gf(median(x.cpuRates)) : '—'} | ${x.denseGflops.length ? median(x.denseGflops).toFixed(1) : '—'} | ${fmtRatio(x.ofDense)} | ${fmtRatio(x.cpuOfDense)} | ${fmtRatio(x.ratios)} | ${fmtRatio(x.cpuRatios)} |`,
    );
  if ('rates' in r.torch)
    lines.push(
      `| PyTorch ${r.torch.version} (1 thread) | ${fmtRate(r.torch.rates)} | ${gf(median(r.torch.rates))} | | | | | | | |`,
    );
  else lines.push(`| PyTorch | skipped: ${r.torch.skipped} | | | | | | | | |`);
  lines.push(
    '',
    `GFLOP/s: ${(r.flops.cnn / 1e6).toFixed(2)} MFLOP a CNN training sample (convolutions and dense layers: forward, weight and input gradients), ${(r.flops.dense / 1e6).toFixed(2)} MFLOP a dense-step sample (the tutorial's model, lean step, 1 thread, batch ${DENSE_BATCH}, measured right after each CNN path). Ratios: median over ${r.rounds} rounds of each round's own ratio (min–max); PyTorch measured right after regtrain. Load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} at the end.`,
  );
  return lines.join('\n');
}

/** The CNN section of `npm run bench`. */
export async function cnnSection(opts: {
  rounds?: number;
  torch?: boolean;
  profile?: boolean;
  batch?: number;
  log?: (s: string) => void;
}): Promise<string> {
  const out: string[] = [];
  if (opts.profile)
    for (const p of (await cnnPaths()).filter((c) => !c.tensorflow))
      out.push(await profileCnn(p, opts.batch ?? 64), '');
  out.push(cnnTable(await cnnRounds(opts)));
  return out.join('\n');
}

async function main(): Promise<void> {
  tf.env().set('PROD', true);
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const batch = Number(arg('--batch') ?? 64);
  if (process.argv.includes('--profile-only')) {
    for (const p of (await cnnPaths()).filter((c) => !c.tensorflow)) console.log(await profileCnn(p, batch), '\n');
    return;
  }
  console.log(
    await cnnSection({
      rounds: Number(arg('--rounds') ?? 5),
      torch: !process.argv.includes('--no-torch'),
      profile: process.argv.includes('--profile'),
      batch,
      log: (s) => console.error(s),
    }),
  );
}

if (require.main === module && !process.env.NODE_TEST_CONTEXT) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
