/**
 * Issue 5/11 benchmark: samples/s of the full training step (forward, backward, penalties, SGD update)
 * of the tutorial model, per backend/path, at batch 32 and 512, against PyTorch on the same machine.
 *
 * The machine is shared and noisy, so absolute rates from one run decide nothing. Each round measures
 * every regtrain path once, each measurement followed at once by one of PyTorch (1 thread, same batch
 * size, in a PyTorch process kept running: torch_bench.py --serve); a ratio is regtrain's rate over
 * the PyTorch rate measured right after it, and the report gives each ratio's median over the rounds
 * with its range (min–max). PyTorch at 2 threads is measured once per round, for reference.
 *
 * Paths: tfjs backend (wasm, cpu, tensorflow if tfjs-node loads) × GEMM under tfjs's matmul kernels
 * (OpenBLAS at 1 or 2 threads, regtrain's wasm SIMD GEMM with relaxed or plain SIMD, or tfjs's own) ×
 * step (model.fit, or the lean step of src/train/lean-step.ts).
 *
 * Run: npm run build && node dist/test/bench/train-bench.js [--quick] [--rounds N] [--no-torch]
 *      [--backends wasm,cpu] [--torch-threads 1,2] [--batches 32,128,256,512]
 * Env: REGTRAIN_BENCH_SECONDS (time per measurement, default 1), REGTRAIN_BENCH_ROUNDS (default 5).
 */
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import * as readline from 'node:readline';
import * as path from 'node:path';
import * as tf from '../../src/tf';
import { installAcceleratedKernels, uninstallAcceleratedKernels, type GemmChoice } from '../../src/accel/kernels';
import { chooseWasmGemm } from '../../src/accel/gemm';
import { gemmThreads } from '../../src/accel/gemm-pool';
import { loadBlas } from '../../src/accel/blas';
import { createLeanStep } from '../../src/train/lean-step';
import { tryTfjsNode } from '../../src/backend';
import { createOptimizer } from '../../src/train/optimizers';
import { buildTutorialModel, fakeData, TUTORIAL_PENALTIES } from './tutorial-model';

export interface PathSpec {
  backend: 'wasm' | 'cpu' | 'tensorflow';
  /** Which GEMM runs tfjs's matmuls ('none': tfjs's own kernels). */
  gemm: 'openblas' | 'wasm-relaxed-simd' | 'wasm-simd' | 'none';
  /** GEMM threads: OpenBLAS's, or the wasm GEMM's (1, or 2 with its worker: gemm-pool.ts). */
  threads?: number;
  step: 'fit' | 'lean';
}

export interface PathResult {
  spec: PathSpec;
  label: string;
  batch: number;
  /** samples/s, one per round */
  rates: number[];
  /** samples per second of this process's CPU time, one per round */
  cpuRates: number[];
  /** rate ÷ PyTorch (1 thread) of the same round, one per round */
  ratios: number[];
  /** The same per second of CPU time (this process's; PyTorch's process's), one per round */
  cpuRatios: number[];
}

export interface TorchRow {
  batch: number;
  threads: number;
  samplesPerSec: number;
  cpuSamplesPerSec?: number;
}

const SECONDS = Number(process.env.REGTRAIN_BENCH_SECONDS ?? 1);
const ROUNDS = Number(process.env.REGTRAIN_BENCH_ROUNDS ?? 5);
const SAMPLES = 512 * 16;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function pathLabel(p: PathSpec): string {
  const gemm =
    p.gemm === 'openblas'
      ? `+OpenBLAS(${p.threads ?? 1}t)`
      : p.gemm === 'wasm-relaxed-simd'
        ? `+wasm GEMM (relaxed SIMD, ${p.threads ?? 1}t)`
        : p.gemm === 'wasm-simd'
          ? `+wasm GEMM (SIMD, ${p.threads ?? 1}t)`
          : p.backend === 'tensorflow'
            ? ''
            : ' (tfjs kernels)';
  return `${p.backend}${gemm} ${p.step === 'fit' ? 'model.fit' : 'lean step'}`;
}

export async function useBackend(name: string): Promise<boolean> {
  try {
    if (name === 'wasm') {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
      wasm.setWasmPaths(path.join(dir, 'dist') + path.sep);
    }
    if (name === 'tensorflow' && !tryTfjsNode().ok) return false;
    const ok = await tf.setBackend(name);
    await tf.ready();
    return ok && tf.getBackend() === name;
  } catch {
    return false;
  }
}

/** Installs the path's GEMM; false when it is not available here. */
function installGemm(p: PathSpec): boolean {
  if (p.backend === 'tensorflow') return p.gemm === 'none';
  uninstallAcceleratedKernels(p.backend);
  const choice: GemmChoice = p.gemm === 'openblas' ? 'openblas' : p.gemm === 'none' ? 'none' : 'wasm';
  const saved = process.env.REGTRAIN_RELAXED_SIMD;
  if (p.gemm === 'wasm-simd') process.env.REGTRAIN_RELAXED_SIMD = 'off';
  try {
    const r = installAcceleratedKernels(p.backend, { gemm: choice, ...(p.threads ? { threads: p.threads } : {}) });
    if (p.gemm === 'openblas' && p.threads) {
      const b = loadBlas();
      if (b.ok) b.setThreads(p.threads);
    }
    return p.gemm === 'none' ? r.gemm === null : r.gemm === p.gemm;
  } finally {
    if (saved === undefined) delete process.env.REGTRAIN_RELAXED_SIMD;
    else process.env.REGTRAIN_RELAXED_SIMD = saved;
  }
}

/** The paths this machine can run: each backend that loads, with each GEMM that installs. */
export async function availablePaths(opts: { quick?: boolean; backends?: string[] } = {}): Promise<PathSpec[]> {
  const out: PathSpec[] = [];
  const blasOk = loadBlas().ok;
  const wasmGemm = chooseWasmGemm();
  const relaxed = 'kind' in wasmGemm && wasmGemm.kind === 'wasm-relaxed-simd';
  for (const backend of (opts.backends ?? ['tensorflow', 'wasm', 'cpu']) as PathSpec['backend'][]) {
    if (backend === 'tensorflow') {
      // TensorFlow's own kernels under the lean step's tfjs ops (what `regtrain run --backend tfjs-node` runs), and model.fit.
      if (await useBackend('tensorflow'))
        out.push({ backend, gemm: 'none', step: 'lean' }, { backend, gemm: 'none', step: 'fit' });
      continue;
    }
    if (backend === 'cpu' && opts.quick) continue;
    if (!(await useBackend(backend))) continue;
    if ('kind' in wasmGemm) {
      // The default thread count (2 on a 2-CPU machine, its worker in gemm-pool.ts), and 1 thread.
      const threads = gemmThreads();
      out.push({ backend, gemm: wasmGemm.kind, threads, step: 'lean' });
      if (backend === 'wasm' && threads > 1) out.push({ backend, gemm: wasmGemm.kind, threads: 1, step: 'lean' });
      if (relaxed && backend === 'wasm') out.push({ backend, gemm: 'wasm-simd', threads, step: 'lean' });
      if (backend === 'wasm' && !opts.quick) out.push({ backend, gemm: wasmGemm.kind, threads, step: 'fit' });
    }
    if (blasOk) {
      out.push({ backend, gemm: 'openblas', threads: 1, step: 'lean' });
      // 2 threads: what `regtrain run` uses from batch 128 up (src/train/step.ts).
      if (backend === 'wasm' || !opts.quick) out.push({ backend, gemm: 'openblas', threads: 2, step: 'lean' });
    }
    if (backend === 'wasm') {
      out.push({ backend, gemm: 'none', step: 'lean' });
      if (!opts.quick) out.push({ backend, gemm: 'none', step: 'fit' });
    }
  }
  return out;
}

/**
 * One measurement: warm-up, then as many steps as fit in ~SECONDS; samples per second of wall time
 * and per second of this process's CPU time.
 */
export async function measurePath(
  p: PathSpec,
  batch: number,
  seconds = SECONDS,
): Promise<{ rate: number; cpuRate: number } | null> {
  if (!(await useBackend(p.backend)) || !installGemm(p)) return null;
  const model = buildTutorialModel(1);
  const { x, y } = fakeData(SAMPLES, 5);
  const y2 = y.reshape([-1, 1]);
  const nBatches = Math.floor(SAMPLES / batch);
  let pos = 0;
  let runSteps: (k: number) => Promise<void>;
  let dispose = () => {};
  if (p.step === 'fit') {
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
  await runSteps(2); // warm-up (first-call setup, allocations)
  let t0 = performance.now();
  await runSteps(2);
  const perStep = (performance.now() - t0) / 2 / 1000;
  const k = Math.max(2, Math.round(seconds / perStep));
  t0 = performance.now();
  const c0 = process.cpuUsage();
  await runSteps(k);
  const rate = (k * batch) / ((performance.now() - t0) / 1000);
  const cpu = process.cpuUsage(c0);
  const cpuRate = (k * batch) / ((cpu.user + cpu.system) / 1e6);
  dispose();
  model.dispose();
  tf.dispose([x, y, y2]);
  if (p.backend !== 'tensorflow') uninstallAcceleratedKernels(p.backend);
  return { rate, cpuRate };
}

export function findTorchPython(): string | null {
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

/** A running `torch_bench.py --serve`: one PyTorch measurement per request. */
export class TorchWorker {
  private readonly lines: string[] = [];
  private waiting: ((line: string | null) => void) | null = null;
  private closed = false;

  private constructor(private readonly child: ChildProcessByStdio<Writable, Readable, null>) {
    const rl = readline.createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = null;
        w(line);
      } else this.lines.push(line);
    });
    rl.on('close', () => {
      this.closed = true;
      this.waiting?.(null);
    });
  }

  private next(): Promise<string> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.closed) return Promise.reject(new Error('the PyTorch worker exited'));
    return new Promise((resolve, reject) => {
      this.waiting = (line) => (line === null ? reject(new Error('the PyTorch worker exited')) : resolve(line));
    });
  }

  static async start(py: string): Promise<{ worker: TorchWorker; version: string }> {
    const script = path.join(__dirname, '..', '..', '..', 'test', 'bench', 'torch_bench.py');
    const worker = new TorchWorker(spawn(py, [script, '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const hello = JSON.parse(await worker.next()) as { torch: string };
    return { worker, version: String(hello.torch) };
  }

  async measure(batch: number, threads: number, seconds = SECONDS): Promise<TorchRow> {
    this.child.stdin.write(`${batch} ${threads} ${seconds}\n`);
    return JSON.parse(await this.next()) as TorchRow;
  }

  close(): void {
    this.child.stdin.end();
  }
}

export interface RoundsResult {
  results: PathResult[];
  torch: { version: string; rates: Map<string, number[]> } | { skipped: string };
  rounds: number;
}

/**
 * `rounds` rounds; in each, every path at every batch size, each measurement paired with a PyTorch
 * (1 thread) measurement of the same batch size right after it. `log` gets one line per measurement.
 */
export async function benchRounds(opts: {
  paths: PathSpec[];
  batches?: number[];
  rounds?: number;
  torch?: boolean;
  torchThreads?: number[];
  log?: (s: string) => void;
}): Promise<RoundsResult> {
  const batches = opts.batches ?? [32, 512];
  const rounds = opts.rounds ?? ROUNDS;
  const log = opts.log ?? (() => {});
  const py = opts.torch === false ? null : findTorchPython();
  const torch = py ? await TorchWorker.start(py) : null;
  const results: PathResult[] = [];
  for (const spec of opts.paths)
    for (const batch of batches)
      results.push({ spec, label: pathLabel(spec), batch, rates: [], cpuRates: [], ratios: [], cpuRatios: [] });
  const torchRates = new Map<string, number[]>();
  const torchName = (t: number) => `PyTorch ${torch?.version} (${t} thread${t > 1 ? 's' : ''})`;
  const line = (r: number, label: string, batch: number, rate: number | null) =>
    log(
      `round ${r}: ${label.padEnd(44)} batch ${String(batch).padStart(4)}: ${rate === null ? 'n/a' : Math.round(rate).toLocaleString('en-US').padStart(9)} samples/s`,
    );
  const torchMeasure = async (r: number, batch: number, threads: number): Promise<TorchRow> => {
    const row = await torch!.worker.measure(batch, threads);
    const key = `${batch}/${threads}`;
    torchRates.set(key, [...(torchRates.get(key) ?? []), row.samplesPerSec]);
    line(r, torchName(threads), batch, row.samplesPerSec);
    return row;
  };
  try {
    for (let r = 1; r <= rounds; r++) {
      for (const res of results) {
        const m = await measurePath(res.spec, res.batch);
        line(r, res.label, res.batch, m && m.rate);
        if (m === null) continue;
        res.rates.push(m.rate);
        res.cpuRates.push(m.cpuRate);
        if (!torch) continue;
        const t = await torchMeasure(r, res.batch, 1);
        res.ratios.push(m.rate / t.samplesPerSec);
        if (t.cpuSamplesPerSec) res.cpuRatios.push(m.cpuRate / t.cpuSamplesPerSec);
      }
      if (torch)
        for (const t of (opts.torchThreads ?? [1]).filter((x) => x !== 1))
          for (const b of batches) await torchMeasure(r, b, t);
    }
  } finally {
    torch?.worker.close();
  }
  return {
    results,
    torch: torch
      ? { version: torch.version, rates: torchRates }
      : {
          skipped:
            opts.torch === false ? 'not asked (--no-torch)' : 'no python3 with torch (apt-get install python3-torch)',
        },
    rounds,
  };
}

const fmtRate = (v: number | undefined) => (v === undefined ? '—' : Math.round(v).toLocaleString('en-US'));
const fmtRatio = (xs: number[]) =>
  xs.length ? `${median(xs).toFixed(2)}× (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})` : '—';

/**
 * A Markdown table: per path, median samples/s, and the median ratio to PyTorch (range) at each batch
 * size, by wall time and by CPU time (on a shared machine the second is the steadier one).
 */
export function roundsTable(r: RoundsResult, batches = [32, 512]): string {
  const lines: string[] = [];
  const cols = (f: (b: number) => string) => batches.map(f).join(' | ');
  lines.push(
    `| path | ${cols((b) => `batch ${b}`)} | ${cols((b) => `per CPU second, batch ${b}`)} | ${cols((b) => `÷ PyTorch 1t, batch ${b}`)} | ${cols((b) => `÷ PyTorch 1t by CPU time, batch ${b}`)} |`,
  );
  lines.push(`| --- | ${cols(() => '---:')} | ${cols(() => '---:')} | ${cols(() => '---:')} | ${cols(() => '---:')} |`);
  for (const label of [...new Set(r.results.map((x) => x.label))]) {
    const at = (b: number) => r.results.find((x) => x.label === label && x.batch === b);
    lines.push(
      `| ${label} | ${cols((b) => fmtRate(at(b)?.rates.length ? median(at(b)!.rates) : undefined))} | ${cols((b) => fmtRate(at(b)?.cpuRates.length ? median(at(b)!.cpuRates) : undefined))} | ${cols((b) => fmtRatio(at(b)?.ratios ?? []))} | ${cols((b) => fmtRatio(at(b)?.cpuRatios ?? []))} |`,
    );
  }
  if ('rates' in r.torch) {
    const threads = [...new Set([...r.torch.rates.keys()].map((k) => Number(k.split('/')[1])))];
    for (const t of threads) {
      const rates = r.torch.rates;
      lines.push(
        `| PyTorch ${r.torch.version} (${t} thread${t > 1 ? 's' : ''}) | ${cols((b) => fmtRate(rates.get(`${b}/${t}`) ? median(rates.get(`${b}/${t}`)!) : undefined))} | ${cols(() => '')} | ${cols(() => '')} | ${cols(() => '')} |`,
      );
    }
  }
  lines.push('');
  lines.push(
    `Ratios: regtrain's rate over PyTorch's measured right after it, median over ${r.rounds} rounds (min–max).`,
  );
  return lines.join('\n');
}

async function main(): Promise<void> {
  tf.env().set('PROD', true);
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const paths = await availablePaths({
    quick: process.argv.includes('--quick'),
    backends: arg('--backends')?.split(','),
  });
  const rounds = Number(arg('--rounds') ?? ROUNDS);
  const torchThreads = (arg('--torch-threads') ?? '1').split(',').map(Number);
  const batches = (arg('--batches') ?? '32,512').split(',').map(Number);
  const r = await benchRounds({
    paths,
    rounds,
    batches,
    torch: !process.argv.includes('--no-torch'),
    torchThreads,
    log: (s) => console.error(s),
  });
  console.log(roundsTable(r, batches));
}

// NODE_TEST_CONTEXT: `node --test dist/test/` also loads files under test/bench; don't bench then.
if (require.main === module && !process.env.NODE_TEST_CONTEXT) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
