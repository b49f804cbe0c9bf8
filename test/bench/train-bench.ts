/**
 * Issue 5 benchmark: samples/s of the full training step (forward, backward, penalties, SGD update)
 * of the tutorial model, per backend/path, at batch 32 and 512, against PyTorch on the same machine.
 *
 * Paths: tfjs backend (cpu, wasm, tensorflow if tfjs-node loads) × kernels (plain, +BLAS via
 * src/accel/kernels.ts) × step (model.fit, lean step from src/accel/step.ts). Each row: warm-up,
 * then `repeats` timed runs of ~`seconds` each; the median is reported. The very slow plain-cpu
 * model.fit path gets fewer steps.
 *
 * Run: npx tsc -p tsconfig.json && node dist/test/bench/train-bench.js [--quick] [--no-torch]
 * Env: REGTRAIN_BENCH_SECONDS (default 0.6), REGTRAIN_BENCH_REPEATS (default 3).
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { installAcceleratedKernels, uninstallAcceleratedKernels } from '../../src/accel/kernels';
import { loadBlas } from '../../src/accel/blas';
import { createLeanStep } from '../../src/accel/step';
import { createOptimizer } from '../../src/train/optimizers';
import { buildTutorialModel, fakeData, TUTORIAL_PENALTIES } from './tutorial-model';

export interface BenchRow {
  backend: string;
  blas: boolean;
  threads: number | null;
  step: 'fit' | 'lean';
  batch: number;
  samplesPerSec: number;
  /** steps per timed repeat */
  steps: number;
}

export interface TorchRow {
  batch: number;
  threads: number;
  samplesPerSec: number;
}

const SECONDS = Number(process.env.REGTRAIN_BENCH_SECONDS ?? 0.6);
const REPEATS = Number(process.env.REGTRAIN_BENCH_REPEATS ?? 3);
const SAMPLES = 512 * 16;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function useBackend(name: string): Promise<boolean> {
  try {
    if (name === 'wasm') {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
      wasm.setWasmPaths(path.join(dir, 'dist') + path.sep);
    }
    const ok = await tf.setBackend(name);
    await tf.ready();
    return ok && tf.getBackend() === name;
  } catch {
    return false;
  }
}

/** Time `runSteps(k)` (k training steps of `batch` samples): warm-up, size k to ~SECONDS, median of REPEATS. */
async function timeSteps(batch: number, runSteps: (k: number) => Promise<void>, maxSteps: number): Promise<{ rate: number; steps: number }> {
  await runSteps(2); // warm-up (first-call setup, allocations)
  let t0 = performance.now();
  await runSteps(2);
  const perStep = (performance.now() - t0) / 2 / 1000;
  const k = Math.max(2, Math.min(maxSteps, Math.round(SECONDS / perStep)));
  const rates: number[] = [];
  for (let r = 0; r < REPEATS; r++) {
    t0 = performance.now();
    await runSteps(k);
    rates.push((k * batch) / ((performance.now() - t0) / 1000));
  }
  return { rate: median(rates), steps: k };
}

async function benchPath(backend: string, blas: boolean, step: 'fit' | 'lean', batch: number, threads: number | null): Promise<BenchRow | null> {
  if (blas) {
    const r = installAcceleratedKernels(backend, threads ? { threads } : {});
    if (!r.installed) return null;
    if (threads) {
      const b = loadBlas();
      if (b.ok) b.setThreads(threads);
    }
  } else {
    uninstallAcceleratedKernels(backend);
  }
  const model = buildTutorialModel(1);
  const { x, y } = fakeData(SAMPLES, 5);
  const y2 = y.reshape([-1, 1]);
  const nBatches = Math.floor(SAMPLES / batch);
  let pos = 0;
  let runSteps: (k: number) => Promise<void>;
  let dispose = () => {};
  if (step === 'fit') {
    runSteps = async (k) => {
      // One fit call over k batches (the data it slices from is a contiguous window of the set).
      let left = k;
      while (left > 0) {
        const n = Math.min(left, nBatches - pos);
        const xs = x.slice(pos * batch, n * batch);
        const ys = y2.slice(pos * batch, n * batch);
        await model.fit(xs, ys, { batchSize: batch, epochs: 1, shuffle: false, verbose: 0 });
        xs.dispose();
        ys.dispose();
        pos = (pos + n) % nBatches;
        left -= n;
      }
    };
  } else {
    const lean = createLeanStep(model, createOptimizer({ sgd: {} }), TUTORIAL_PENALTIES);
    if ('unsupported' in lean) throw new Error(lean.unsupported);
    dispose = () => lean.dispose();
    runSteps = async (k) => {
      for (let i = 0; i < k; i++) {
        const xs = x.slice(pos * batch, batch);
        const ys = y.slice(pos * batch, batch);
        lean.run(xs, ys);
        xs.dispose();
        ys.dispose();
        pos = (pos + 1) % nBatches;
      }
    };
  }
  // Plain cpu model.fit runs ~400 samples/s: cap its steps so the whole bench stays short.
  const slow = backend === 'cpu' && !blas;
  const maxSteps = slow ? Math.max(2, Math.round(1500 / batch)) : 100000;
  const { rate, steps } = await timeSteps(batch, runSteps, maxSteps);
  dispose();
  model.dispose();
  x.dispose();
  y.dispose();
  y2.dispose();
  return { backend, blas, threads: blas ? (threads ?? (loadBlas() as { getThreads?: () => number }).getThreads?.() ?? null) : null, step, batch, samplesPerSec: rate, steps };
}

function findTorchPython(): string | null {
  for (const py of ['python3', '/usr/bin/python3']) {
    try {
      execFileSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60000 });
      return py;
    } catch {
      /* next */
    }
  }
  return null;
}

export function benchTorch(batches: number[], threads: number[]): { rows: TorchRow[]; version: string } | { skipped: string } {
  const py = findTorchPython();
  if (!py) return { skipped: "no python3 with torch (apt-get install python3-torch libopenblas0-pthread)" };
  const script = path.join(__dirname, '..', '..', '..', 'test', 'bench', 'torch_bench.py');
  try {
    const out = execFileSync(py, [script, '--batches', batches.join(','), '--threads', threads.join(','), '--seconds', String(Math.max(1, SECONDS)), '--repeats', String(REPEATS)], {
      encoding: 'utf8',
      timeout: 180000,
    });
    const j = JSON.parse(out.trim().split('\n').pop()!);
    return { rows: j.rows as TorchRow[], version: String(j.torch) };
  } catch (e) {
    return { skipped: `torch bench failed: ${(e as Error).message.split('\n')[0]}` };
  }
}

export async function benchTraining(opts: { quick?: boolean; torch?: boolean; batches?: number[]; backends?: string[] } = {}): Promise<{ rows: BenchRow[]; torch: ReturnType<typeof benchTorch> | null }> {
  const batches = opts.batches ?? [32, 512];
  const rows: BenchRow[] = [];
  const log = (r: BenchRow | null) => {
    if (!r) return;
    rows.push(r);
    console.error(`  ${label(r).padEnd(34)} batch ${String(r.batch).padStart(4)}: ${Math.round(r.samplesPerSec).toLocaleString('en-US').padStart(9)} samples/s`);
  };
  const blasOk = loadBlas().ok;
  let hasNode = false;
  try {
    require('@tensorflow/tfjs-node');
    hasNode = true;
  } catch {
    /* not installed: expected here */
  }
  if (hasNode && (await useBackend('tensorflow'))) {
    for (const b of batches) log(await benchPath('tensorflow', false, 'fit', b, null));
  }
  for (const backend of opts.backends ?? ['cpu', 'wasm']) {
    if (!(await useBackend(backend))) continue;
    for (const b of batches) {
      if (!opts.quick || backend === 'wasm') log(await benchPath(backend, false, 'fit', b, null));
      log(await benchPath(backend, false, 'lean', b, null));
      if (blasOk) {
        log(await benchPath(backend, true, 'fit', b, null));
        for (const th of opts.quick ? [2] : [1, 2]) log(await benchPath(backend, true, 'lean', b, th));
      }
    }
    uninstallAcceleratedKernels(backend);
  }
  const torch = opts.torch === false ? null : benchTorch(batches, [1, 2]);
  return { rows, torch };
}

function label(r: BenchRow): string {
  return `${r.backend}${r.blas ? `+BLAS(${r.threads}t)` : ''} ${r.step === 'fit' ? 'model.fit' : 'lean step'}`;
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const torchOn = !process.argv.includes('--no-torch');
  console.error(`tfjs ${tf.version.tfjs}, node ${process.version}; BLAS: ${(() => { const b = loadBlas(); return b.ok ? `${b.library} ${b.config}` : b.reason; })()}`);
  const t0 = performance.now();
  const bi = process.argv.indexOf('--backends');
  const backends = bi > 0 ? process.argv[bi + 1].split(',') : undefined;
  const { rows, torch } = await benchTraining({ quick, torch: torchOn, backends });
  const best = (b: number, t: number) => (torch && 'rows' in torch ? torch.rows.find((r) => r.batch === b && r.threads === t)?.samplesPerSec : undefined);
  console.log('\n| path | batch 32 | batch 512 | vs torch 1t (32 / 512) |');
  console.log('| --- | ---: | ---: | ---: |');
  const labels = [...new Set(rows.map(label))];
  const fmt = (v?: number) => (v == null ? '—' : Math.round(v).toLocaleString('en-US'));
  for (const l of labels) {
    const r32 = rows.find((r) => label(r) === l && r.batch === 32)?.samplesPerSec;
    const r512 = rows.find((r) => label(r) === l && r.batch === 512)?.samplesPerSec;
    const t32 = best(32, 1);
    const t512 = best(512, 1);
    const ratio = (a?: number, b?: number) => (a && b ? (a / b).toFixed(2) + '×' : '—');
    console.log(`| ${l} | ${fmt(r32)} | ${fmt(r512)} | ${ratio(r32, t32)} / ${ratio(r512, t512)} |`);
  }
  if (torch && 'rows' in torch) {
    for (const t of [1, 2]) console.log(`| PyTorch ${torch.version} (${t} thread${t > 1 ? 's' : ''}) | ${fmt(best(32, t))} | ${fmt(best(512, t))} | |`);
  } else if (torch) {
    console.log(`PyTorch: skipped (${torch.skipped})`);
  }
  console.log(`\n(${((performance.now() - t0) / 1000).toFixed(0)} s; median of ${REPEATS} × ~${SECONDS}s; random Fashion-MNIST-shaped data)`);
  console.log(JSON.stringify({ rows, torch }));
}

// NODE_TEST_CONTEXT: `node --test dist/test/` also loads files under test/bench; don't bench then.
if (require.main === module && !process.env.NODE_TEST_CONTEXT) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
