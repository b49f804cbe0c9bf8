/**
 * What the lean step's extras cost per step (issue 22 follow-up): the EMA of the weights (useEma),
 * gradient clipping (clipnorm, globalClipnorm, clipvalue) and dropout, each against the same model
 * without it, and dropout on the lean step against dropout on the autodiff (reference) step.
 *
 * The models: configs/article.yaml's (784-200-100-50-10, its kernel penalties, SGD 0.01) and
 * configs/dropout.yaml's (the same sizes, dropout 0.2 after the first two hidden layers), on the
 * backend a run picks (`regtrain run --backend wasm`: OpenBLAS when it loads, else regtrain's SIMD
 * GEMM), through createTrainStep as a run builds it, on 64 in-memory batches of fake images.
 *
 * The machine is shared: per round each variant trains STEPS steps, the variants in turn, in
 * alternating order; CPU time (process.cpuUsage, user + system) per step, the median over the
 * rounds, and each variant's ratio to its baseline of the same round (median and range).
 *
 * Run: npm run build && node dist/test/bench/lean-extras.js [--rounds N] [--steps N] [--batch N]
 */
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '../../src/tf';
import { initBackend } from '../../src/backend';
import { buildModel, type BuiltModel } from '../../src/model';
import { loadSpec, parseSetFlag } from '../../src/spec';
import { createReferenceStep, createTrainStep } from '../../src/train/step';
import { createOptimizer } from '../../src/train/optimizers';
import type { TrainStep } from '../../src/train/types';
import { fakeData } from './tutorial-model';

const repoRoot = path.resolve(__dirname, '../../..');
const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const ROUNDS = arg('--rounds', 5);
const STEPS = arg('--steps', 300);
const BATCH = arg('--batch', 32);

interface Variant {
  name: string;
  baseline: string;
  config: string;
  sets: string[];
  reference?: boolean;
  /** Leave the spec's dropout layers out. */
  noDropout?: boolean;
}
const VARIANTS: Variant[] = [
  { name: 'plain', baseline: 'plain', config: 'article.yaml', sets: [] },
  { name: 'useEma', baseline: 'plain', config: 'article.yaml', sets: ['optimizer.sgd.useEma=true'] },
  { name: 'clipnorm 1', baseline: 'plain', config: 'article.yaml', sets: ['optimizer.sgd.clipnorm=1'] },
  { name: 'globalClipnorm 1', baseline: 'plain', config: 'article.yaml', sets: ['optimizer.sgd.globalClipnorm=1'] },
  { name: 'clipvalue 0.1', baseline: 'plain', config: 'article.yaml', sets: ['optimizer.sgd.clipvalue=0.1'] },
  {
    name: 'useEma + globalClipnorm 1',
    baseline: 'plain',
    config: 'article.yaml',
    sets: ['optimizer.sgd.useEma=true', 'optimizer.sgd.globalClipnorm=1'],
  },
  { name: 'no dropout', baseline: 'no dropout', config: 'dropout.yaml', sets: [], noDropout: true },
  { name: 'dropout, lean step', baseline: 'no dropout', config: 'dropout.yaml', sets: [] },
  {
    name: 'dropout, autodiff step',
    baseline: 'no dropout',
    config: 'dropout.yaml',
    sets: [],
    reference: true,
  },
];

interface Prepared {
  v: Variant;
  built: BuiltModel;
  step: TrainStep;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function main(): Promise<void> {
  const backend = await initBackend('wasm');
  const data = fakeData(64 * BATCH);
  const batches = Array.from({ length: 64 }, (_, i) => ({
    x: tf.slice(data.x, [i * BATCH, 0, 0], [BATCH, 28, 28]),
    y: tf.tidy(() => tf.cast(tf.slice(data.y, [i * BATCH], [BATCH]), 'int32')),
  }));
  const prepared: Prepared[] = VARIANTS.map((v) => {
    const sets = [...v.sets, `training.batchSize=${BATCH}`].map(parseSetFlag);
    const spec = loadSpec(path.join(repoRoot, 'configs', v.config), sets).spec;
    if (v.noDropout) spec.model.layers = spec.model.layers.filter((l) => !l.dropout);
    const built = buildModel(spec);
    const step = v.reference
      ? createReferenceStep(built, createOptimizer(spec.optimizer))
      : createTrainStep(built, spec, backend);
    return { v, built, step };
  });
  console.log(
    `lean-extras: ${os.cpus().length} CPUs, load ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}; ${backend.name}, batch ${BATCH}, ${ROUNDS} rounds × ${STEPS} steps`,
  );
  for (const p of prepared) console.log(`  ${p.v.name}: ${p.step.description}`);
  const perStep = new Map<string, number[]>(VARIANTS.map((v) => [v.name, []]));
  let seed = 0;
  const run = (p: Prepared, n: number): number => {
    const t0 = process.cpuUsage();
    for (let s = 0; s < n; s++) {
      const b = batches[s % batches.length]!;
      p.step.run(b.x, b.y, seed++);
    }
    const c = process.cpuUsage(t0);
    return (c.user + c.system) / n;
  };
  for (const p of prepared) run(p, 20); // warm-up: first calls compile and allocate
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 ? [...prepared].reverse() : prepared;
    for (const p of order) perStep.get(p.v.name)!.push(run(p, STEPS));
  }
  console.log(`| variant | CPU µs/step, median (range) | ÷ its baseline, median (range) |`);
  console.log(`| --- | ---: | ---: |`);
  for (const v of VARIANTS) {
    const xs = perStep.get(v.name)!;
    const base = perStep.get(v.baseline)!;
    const ratios = xs.map((x, i) => x / base[i]!);
    const fmt = (a: number[]) => `${median(a).toFixed(0)} (${Math.min(...a).toFixed(0)}–${Math.max(...a).toFixed(0)})`;
    const rfmt = (a: number[]) =>
      `${median(a).toFixed(3)}× (${Math.min(...a).toFixed(3)}–${Math.max(...a).toFixed(3)})`;
    console.log(`| ${v.name} | ${fmt(xs)} | ${v.baseline === v.name ? '—' : `${rfmt(ratios)} of ${v.baseline}`} |`);
  }
  console.log(
    `load after: ${os
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );
  for (const p of prepared) p.step.dispose();
}

void main();
