/**
 * Issue 23, goal 1, round 9: why a run's early epochs at batch 512 train slower than its later ones (and than the
 * step alone), batch by batch. V8 compiles hot JavaScript with TurboFan on a helper thread while the code keeps
 * running (1–35 ms a function here): in a new process that happens for regtrain's and tfjs's per-batch code over
 * its first ~10 epochs. With OpenBLAS on two threads every product is split between the main thread and OpenBLAS's
 * own thread and ends when both halves have; on two vCPUs (hyperthreads of one core) a batch during which a compile
 * runs takes 2–4× its median, while on one BLAS thread the same compiles cost nothing visible. (Lowering V8's helper
 * threads' priority did not remove the stalls: docs/bench-2026-12-07-round9-epoch-stalls.txt.)
 *
 * A child process (this file with --child, under `node --trace-opt`) trains the tutorial's model as `regtrain run
 * configs/article.yaml --set data.trainLimit=20000 --set training.batchSize=512` does (the spec, the data, the
 * step and the loop of a run, in process; validation on; no TensorBoard or checkpoint), and writes one line per
 * batch (the time since the previous batch ended: gathering, the step, the loop's own work) to the same stdout as
 * V8's trace. A batch is slow when it took more than 1.5× its epoch's median; it "had a compile" when V8 reported
 * a finished TurboFan compile (`completed compiling`) between the previous batch's line and its own.
 *
 * Reported per epoch: the median batch, the slow batches' time over the median (the stall), how much of that was
 * in batches that had a compile, and the compiles that finished. Then the same summed over epochs 2–4 (what
 * epoch-step.ts's first figure reads) and the epochs after, as a share of those epochs' training time.
 *
 * Run: npm run build && node dist/test/bench/epoch-stalls.js [--epochs E] [--rounds N]
 * (REGTRAIN_BLAS_THREADS=1 for the one-thread contrast.)
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initBackend } from '../../src/backend';
import { loadSpecData } from '../../src/data/dataset';
import { buildModel } from '../../src/model';
import { runSeeds } from '../../src/rng';
import { loadSpec, parseSetFlag } from '../../src/spec';
import { CallbackList, type Callback } from '../../src/train/callbacks/callback';
import { fit } from '../../src/train/loop';
import { createTrainStep } from '../../src/train/step';
import { median } from './train-bench';

const repoRoot = path.resolve(__dirname, '../../..');
const SPEC = path.join(repoRoot, 'configs', 'article.yaml');
const SLOW = 1.5;

/** The child: train, one `BATCH epoch batch ms` line per batch, written synchronously (V8's trace shares stdout). */
async function child(epochs: number): Promise<void> {
  const sets = ['data.trainLimit=20000', 'training.batchSize=512', `training.epochs=${epochs}`];
  const spec = loadSpec(SPEC, sets.map(parseSetFlag)).spec;
  const backend = await initBackend(spec.backend);
  const data = await loadSpecData(spec, runSeeds(spec.seed), { source: [] });
  const built = buildModel(spec);
  const step = createTrainStep(built, spec, backend);
  fs.writeSync(1, `STEP ${step.description}\n`);
  let epoch = 0;
  let last = 0n;
  const timer: Callback = {
    name: 'batch-timer',
    onEpochBegin: (e) => {
      epoch = e;
      last = process.hrtime.bigint();
    },
    onBatchEnd: (batch) => {
      const now = process.hrtime.bigint();
      fs.writeSync(1, `BATCH ${epoch} ${batch} ${(Number(now - last) / 1e6).toFixed(3)}\n`);
      last = now;
    },
  };
  await fit(built, step, { train: data.train, validation: data.validation }, new CallbackList([timer]), {
    epochs,
    batchSize: spec.training.batchSize,
    shuffle: true,
    seeds: runSeeds(spec.seed),
  });
}

interface Batch {
  epoch: number;
  ms: number;
  compiles: string[];
}

function childRun(epochs: number): Promise<{ step: string; batches: Batch[] }> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--trace-opt', __filename, '--child', String(epochs)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buf = '';
    let step = '';
    let pending: string[] = [];
    const batches: Batch[] = [];
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const compiled =
          /completed compiling\s+\S+\s+<JSFunction ([^\s>(]*)[^>]*>.*took [\d.]+, ([\d.]+), [\d.]+ ms/.exec(line);
        if (compiled) pending.push(`${compiled[1] || '(anonymous)'} ${Number(compiled[2]).toFixed(1)} ms`);
        if (line.startsWith('STEP ')) step = line.slice(5);
        const b = /^BATCH (\d+) (\d+) ([\d.]+)$/.exec(line);
        if (b) {
          batches.push({ epoch: Number(b[1]), ms: Number(b[3]), compiles: pending });
          pending = [];
        }
      }
    });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve({ step, batches }) : reject(new Error(`child exited ${code}`))));
  });
}

interface EpochStalls {
  epoch: number;
  total: number;
  median: number;
  stall: number;
  stallWithCompile: number;
  compiles: string[];
}

function stallsOf(batches: Batch[]): EpochStalls[] {
  const epochs = [...new Set(batches.map((b) => b.epoch))];
  return epochs.map((epoch) => {
    // The last batch of an epoch is a short one (20,000 = 39 × 512 + 32): left out of the median and the stalls.
    const all = batches.filter((b) => b.epoch === epoch);
    const full = all.slice(0, -1);
    const m = median(full.map((b) => b.ms));
    const slow = full.filter((b) => b.ms > SLOW * m);
    return {
      epoch,
      total: all.reduce((a, b) => a + b.ms, 0),
      median: m,
      stall: slow.reduce((a, b) => a + b.ms - m, 0),
      stallWithCompile: slow.filter((b) => b.compiles.length > 0).reduce((a, b) => a + b.ms - m, 0),
      compiles: all.flatMap((b) => b.compiles),
    };
  });
}

async function main(): Promise<void> {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const childEpochs = arg('--child');
  if (childEpochs) return child(Number(childEpochs));
  const epochs = Number(arg('--epochs') ?? 10);
  const rounds = Number(arg('--rounds') ?? 3);
  const early: number[] = [];
  const late: number[] = [];
  const earlyCompiled: number[] = [];
  const lines: string[] = [];
  for (let round = 1; round <= rounds; round++) {
    const { step, batches } = await childRun(epochs);
    const per = stallsOf(batches);
    lines.push(`Round ${round} (${step}; load average ${os.loadavg()[0]!.toFixed(1)}):`);
    for (const e of per)
      lines.push(
        `  epoch ${e.epoch}: ${e.total.toFixed(0)} ms, median batch ${e.median.toFixed(2)} ms, stalls ${e.stall.toFixed(1)} ms ` +
          `(${e.stallWithCompile.toFixed(1)} in batches with a finished compile); compiles: ${e.compiles.join(', ') || '—'}`,
      );
    const share = (xs: EpochStalls[], key: 'stall' | 'stallWithCompile') =>
      xs.reduce((a, e) => a + e[key], 0) / xs.reduce((a, e) => a + e.total, 0);
    const e24 = per.filter((e) => e.epoch >= 2 && e.epoch <= 4);
    const e5 = per.filter((e) => e.epoch >= 5);
    early.push(share(e24, 'stall'));
    earlyCompiled.push(share(e24, 'stallWithCompile'));
    late.push(share(e5, 'stall'));
    console.log(lines.slice(-per.length - 1).join('\n'));
  }
  const range = (xs: number[]) =>
    `${(100 * median(xs)).toFixed(1)}% (${(100 * Math.min(...xs)).toFixed(1)}–${(100 * Math.max(...xs)).toFixed(1)})`;
  console.log(
    [
      '',
      `Stalls (batches over ${SLOW}× their epoch's median, the time over it) as a share of the epochs' training time, ${rounds} rounds:`,
      `- epochs 2–4: ${range(early)}, of which in batches during which a TurboFan compile finished: ${range(earlyCompiled)}`,
      `- epochs 5–${epochs}: ${range(late)}`,
    ].join('\n'),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
