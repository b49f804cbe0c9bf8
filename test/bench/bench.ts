/**
 * `npm run bench`: regtrain's speed on this machine, against PyTorch, in one report.
 *
 * 1. The machine, BLAS and versions (node, tfjs, torch; which wasm GEMM build runs).
 * 2. Data: loading + normalizing all 70,000 images from a warm cache.
 * 3. The tool itself: `regtrain run configs/article.yaml` for 2 epochs as a child process —
 *    time from process start to the first training step, the end-to-end throughput of epoch 2
 *    (all 60,000 images, validation included), and the process's peak RSS.
 * 4. The training step alone, per backend/path, at batch 32 and 512, alternating with PyTorch in
 *    rounds (test/bench/train-bench.ts): median ratio to PyTorch (1 thread) with its range.
 * 5. A run's epoch against the step alone and against PyTorch's own epoch loop (DataLoader, shuffling,
 *    validation) at batch 32 and 512 (test/bench/epoch-step.ts), then the per-epoch extras at 20,000
 *    images and batch 512 (test/bench/epoch-bench.ts): extras ÷ epoch, and each extra's share (skip
 *    both with --no-epoch).
 * 6. The CNN of configs/cnn.yaml, training step against PyTorch (test/bench/cnn-bench.ts; skip
 *    with --no-cnn).
 * 7. With --tutorial: the 60-epoch tutorial end to end, `regtrain run configs/article.yaml` (with
 *    OpenBLAS when it loads, with REGTRAIN_BLAS=off, and on tfjs-node when it loads) against the same training in PyTorch
 *    (test/bench/torch_tutorial.py). Takes a long while (tens of minutes on a busy 2-core box).
 * Where tfjs-node loads (`npm run setup:tfjs-node`), its rows join 3, 4, 6 and 7, and the header names its TensorFlow.
 *
 * Options: --quick (fewer paths), --no-torch, --rounds N (default 5), --tutorial or --tutorial-only
 * (just 1 and 7) [--tutorial-epochs N] [--tutorial-rounds N, default 1], --cnn (just 1 and 6), --no-cnn, --no-epoch.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';
import * as tf from '../../src/tf';
import { loadBlas } from '../../src/accel/blas';
import { chooseWasmGemm } from '../../src/accel/gemm';
import { resolveDataDir } from '../../src/data/fetch';
import { benchDataLoad } from './data-bench';
import { epochExtrasReport } from './epoch-bench';
import { epochStepReport } from './epoch-step';
import { availablePaths, benchRounds, findTorchPython, median, roundsTable, useBackend } from './train-bench';
import { cnnSection } from './cnn-bench';
import { scratchDir } from '../helpers/scratch';

const repoRoot = path.resolve(__dirname, '../../..');

interface ToolRun {
  startupSeconds: number;
  totalSeconds: number;
  epochSeconds: number[];
  samplesPerEpoch: number;
  peakRssMB: number;
  backend: string;
  step: string;
  testAccuracy: number;
}

/** Runs the real CLI and reads its --json events. */
function toolRun(args: string[], env: Record<string, string> = {}): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const out = scratchDir('regtrain-bench-');
    const t0 = process.hrtime.bigint();
    const child = spawn(
      process.execPath,
      [
        path.join(repoRoot, 'bin', 'regtrain'),
        'run',
        path.join(repoRoot, 'configs', 'article.yaml'),
        ...args,
        '--out',
        path.join(out, 'run'),
        '--json',
      ],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
        env: { ...process.env, ...env },
      },
    );
    let buf = '';
    const result: Partial<ToolRun> = { epochSeconds: [] };
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const e = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
        buf = buf.slice(nl + 1);
        if (e.event === 'start') result.backend = String(e.backend);
        if (e.event === 'training') {
          result.startupSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
          result.step = String(e.step);
        }
        if (e.event === 'epoch') result.epochSeconds!.push(Number(e.seconds));
        if (e.event === 'test') result.testAccuracy = Number(e.accuracy);
        if (e.event === 'done') result.peakRssMB = Number(e.peakRssMB);
      }
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      fs.rmSync(out, { recursive: true, force: true });
      if (code !== 0) reject(new Error(`regtrain run exited ${code}`));
      else
        resolve({
          ...(result as ToolRun),
          totalSeconds: Number(process.hrtime.bigint() - t0) / 1e9,
          samplesPerEpoch: 60000,
        });
    });
  });
}

const fmt = (v: number | undefined) => (v === undefined ? '—' : Math.round(v).toLocaleString('en-US'));

/** TensorFlow's version under tfjs-node when it loads here (its rows are then in the tables), else null. */
async function tensorflowVersion(): Promise<string | null> {
  if (!(await useBackend('tensorflow'))) return null;
  return (tf.backend() as unknown as { binding: { TF_Version: string } }).binding.TF_Version;
}

function torchVersion(py: string | null): string {
  if (!py) return 'not installed';
  try {
    return execFileSync(py, ['-c', 'import torch; print(torch.__version__)'], {
      encoding: 'utf8',
      timeout: 60000,
    }).trim();
  } catch {
    return 'not loadable';
  }
}

/** One finished tutorial run of one path: its wall time, epochs and test accuracy. */
interface TutorialResult {
  total: number;
  perEpoch: number[];
  acc: number;
  step: string;
}

/**
 * The 60-epoch tutorial end to end, in `rounds` rounds: each round runs every path once (regtrain with
 * OpenBLAS, without a native library, on tfjs-node where it loads, and PyTorch on one thread), PyTorch
 * first in every other round so neither side always runs on the fresher machine; then each regtrain
 * path's time ÷ PyTorch's in the same round, median with range.
 */
async function tutorialEndToEnd(
  epochs: number,
  py: string | null,
  tensorflow: string | null,
  rounds = 1,
): Promise<void> {
  console.log(
    `\n## The tutorial end to end: ${epochs} epochs, batch 32, 60,000 images + 5,000 validation each epoch, then the test set (${rounds} round${rounds === 1 ? '' : 's'})\n`,
  );
  console.log('| round | run | total s | s per epoch (median) | test accuracy | step |');
  console.log('| ---: | --- | ---: | ---: | ---: | --- |');
  const set = ['--set', `training.epochs=${epochs}`];
  const tool = async (args: string[], env: Record<string, string> = {}): Promise<TutorialResult> => {
    const r = await toolRun([...set, ...args], env);
    return { total: r.totalSeconds, perEpoch: r.epochSeconds, acc: r.testAccuracy, step: `${r.backend}: ${r.step}` };
  };
  const paths: { name: string; run: () => Promise<TutorialResult> }[] = [];
  if (loadBlas().ok) paths.push({ name: 'regtrain + OpenBLAS', run: () => tool([]) });
  paths.push({ name: 'regtrain, REGTRAIN_BLAS=off', run: () => tool([], { REGTRAIN_BLAS: 'off' }) });
  if (tensorflow)
    paths.push({
      name: `regtrain --backend tfjs-node (TensorFlow ${tensorflow})`,
      run: () => tool(['--backend', 'tfjs-node']),
    });
  const torchName = 'PyTorch, 1 thread';
  if (py) paths.push({ name: torchName, run: () => Promise.resolve(torchTutorial(py, epochs)) });
  const times = new Map<string, number[]>(paths.map((p) => [p.name, []]));
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? paths : [...paths].reverse();
    for (const p of order) {
      const r = await p.run();
      times.get(p.name)!.push(r.total);
      const sorted = [...r.perEpoch].sort((a, b) => a - b);
      console.log(
        `| ${round} | ${p.name} | ${r.total.toFixed(0)} | ${sorted[sorted.length >> 1]?.toFixed(2) ?? '—'} | ${r.acc.toFixed(4)} | ${r.step} |`,
      );
    }
  }
  if (!py) return void console.log('| | PyTorch | skipped: no python3 with torch | | | |');
  const torchTimes = times.get(torchName)!;
  console.log("\n| run | total ÷ PyTorch's in the same round: median (range) | per round |");
  console.log('| --- | ---: | --- |');
  for (const p of paths.filter((x) => x.name !== torchName)) {
    const ratios = times.get(p.name)!.map((t, i) => t / torchTimes[i]!);
    console.log(
      `| ${p.name} | **${median(ratios).toFixed(2)}×** (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}) | ${ratios.map((x) => x.toFixed(2)).join(', ')} |`,
    );
  }
}

/** torch_tutorial.py on one thread, timed from outside (its start-up included, as regtrain's). */
function torchTutorial(py: string, epochs: number): TutorialResult {
  const script = path.join(repoRoot, 'test', 'bench', 'torch_tutorial.py');
  const t0 = performance.now();
  const out = execFileSync(
    py,
    [script, '--data', resolveDataDir(undefined, process.env), '--epochs', String(epochs), '--threads', '1'],
    { encoding: 'utf8', timeout: 6 * 3600 * 1000 },
  );
  const j = JSON.parse(out.trim().split('\n').pop()!) as {
    torch: string;
    epochSeconds: number[];
    testAccuracy: number;
  };
  return {
    total: (performance.now() - t0) / 1000,
    perEpoch: j.epochSeconds,
    acc: j.testAccuracy,
    step: `autograd + torch.optim.SGD (PyTorch ${j.torch})`,
  };
}

async function main(): Promise<void> {
  tf.env().set('PROD', true); // no tfjs console hints in the table
  const quick = process.argv.includes('--quick');
  const torch = !process.argv.includes('--no-torch');
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const blas = loadBlas();
  const py = torch ? findTorchPython() : null;
  const wasmGemm = chooseWasmGemm();
  console.log(
    `# regtrain bench — ${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, load average ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  console.log(
    `node ${process.version} (V8 ${process.versions.v8}), tfjs ${tf.version.tfjs}, PyTorch ${torchVersion(py)}`,
  );
  console.log(`BLAS: ${blas.ok ? `${blas.library} (${blas.config})` : blas.reason}`);
  console.log(`wasm GEMM: ${'kind' in wasmGemm ? wasmGemm.kind : wasmGemm.reason}`);
  const tensorflow = await tensorflowVersion();
  console.log(
    `tfjs-node: ${tensorflow ? `loads, TensorFlow ${tensorflow} (the wrong version: tfjs-node 4.22 is built for 2.9.1; \`npm run setup:tfjs-node\` installs 1.15, the only one on the npm registry)` : 'does not load here (no tfjs-node rows)'}\n`,
  );

  if (process.argv.includes('--tutorial-only'))
    return tutorialEndToEnd(
      Number(arg('--tutorial-epochs') ?? 60),
      py,
      tensorflow,
      Number(arg('--tutorial-rounds') ?? 1),
    );
  const cnn = async () =>
    console.log(
      `\n## The CNN of configs/cnn.yaml, training step (test/bench/cnn-bench.ts)\n\n${await cnnSection({ rounds: Number(arg('--rounds') ?? 5), torch, log: (s) => console.error(s) })}`,
    );
  if (process.argv.includes('--cnn')) return cnn();

  const data = await benchDataLoad();
  console.log(`Data load, 70,000 images from a warm cache (median of 5): ${data.seconds.toFixed(3)} s`);

  // Epoch 2 of the tutorial (validation on 5,000 images included), as the tool runs it.
  const tool = await toolRun(['--set', 'training.epochs=2']);
  const e2 = tool.epochSeconds[1]!;
  console.log(
    `regtrain run, process start → first training step: ${tool.startupSeconds.toFixed(2)} s (backend ${tool.backend}; ${tool.step})`,
  );
  console.log(
    `regtrain run, tutorial epoch (60,000 images + 5,000 validation): ${e2.toFixed(2)} s = ${fmt(tool.samplesPerEpoch / e2)} samples/s; 60 epochs ≈ ${((60 * e2) / 60).toFixed(1)} min`,
  );
  console.log(`regtrain run, peak RSS: ${tool.peakRssMB} MiB (issue 23's target: ≤ 300 MiB)`);
  if (tensorflow) {
    const t = await toolRun(['--set', 'training.epochs=2', '--backend', 'tfjs-node']);
    const t2 = t.epochSeconds[1]!;
    console.log(
      `regtrain run --backend tfjs-node (TensorFlow ${tensorflow}), tutorial epoch: ${t2.toFixed(2)} s = ${fmt(t.samplesPerEpoch / t2)} samples/s (${(t2 / e2).toFixed(2)}× the epoch above; ${t.step})`,
    );
  }
  console.log('');

  const rounds = Number(arg('--rounds') ?? 5);
  console.log(
    `Training step alone (forward, backward, penalties, SGD update), samples/s: ${rounds} rounds; each measurement is paired with a PyTorch one (1 thread, same batch) taken right after it:`,
  );
  const paths = await availablePaths({ quick });
  const r = await benchRounds({
    paths,
    rounds,
    torch,
    torchThreads: quick ? [1] : [1, 2],
    log: (s) => console.error(s),
  });
  console.log('\n' + roundsTable(r));
  if ('skipped' in r.torch) console.log(`\nPyTorch: skipped (${r.torch.skipped})`);

  if (!process.argv.includes('--no-epoch')) {
    console.log('\n' + (await epochStepReport({ rounds, epochs: 8, torch, log: (s) => console.error(s) })));
    console.log('\n' + (await epochExtrasReport({ rounds: quick ? 2 : 3, epochs: 4, log: (s) => console.error(s) })));
  }
  if (!process.argv.includes('--no-cnn')) await cnn();
  if (process.argv.includes('--tutorial'))
    await tutorialEndToEnd(
      Number(arg('--tutorial-epochs') ?? 60),
      py,
      tensorflow,
      Number(arg('--tutorial-rounds') ?? 1),
    );
}

if (require.main === module && !process.env.NODE_TEST_CONTEXT) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
