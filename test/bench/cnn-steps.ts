/**
 * Issue 25: configs/cnn.yaml's training step, step for step, against an independent PyTorch
 * implementation (test/bench/torch_cnn_steps.py) from the same weights and batches: each layer's
 * output, the loss, every gradient, the learning rate and the weights after each Adam update.
 *
 * regtrain's side runs the step `regtrain run` trains the CNN with (src/train/step.ts): the lean CNN
 * step (src/train/cnn-step.ts) on the installed GEMM, its own gradients; with `path: 'reference'` the
 * autodiff step, the gradients then taken by the same forward pass and loss before each step. The
 * activations are the tfjs layers' own, before each step.
 * Every tensor is summarised (SUMMARY_POINTS values at fixed indices, Σx, Σx², max|x|) so that the
 * PyTorch numbers fit in a small fixture (test/fixtures/torch-cnn-steps.json), which
 * test/cnn.parity.test.ts checks regtrain against without needing torch.
 *
 * Regenerate the fixture (Debian's python3 has torch 1.13):
 *   npm run build && node dist/test/bench/cnn-steps.js --dump /tmp/cnn-steps \
 *     && /usr/bin/python3 test/bench/torch_cnn_steps.py /tmp/cnn-steps > test/fixtures/torch-cnn-steps.json
 * `--from RUN_DIR` (after --dump DIR or --compare FILE) starts from a finished run's weights instead.
 * `--dump-run DIR` writes what a whole `regtrain run configs/cnn.yaml` trains on (initial weights, the
 * training split, each epoch's batch order) for `torch_cnn_steps.py DIR --train`.
 * Compare (prints the first difference above float32 rounding per quantity):
 *   node dist/test/bench/cnn-steps.js --compare test/fixtures/torch-cnn-steps.json
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../../src/tf';
import { initBackend } from '../../src/backend';
import { imagesOf, loadDataset, loadSpecData, type Split } from '../../src/data/dataset';
import { Rng, runSeeds } from '../../src/rng';
import { buildModel, type BuiltModel } from '../../src/model';
import { loadSpec, parseSetFlag, type ExperimentSpec } from '../../src/spec';
import { optimizerChoice } from '../../src/train/optimizers/registry';
import { crossEntropySum, forward } from '../../src/train/forward';
import { Optimizer } from '../../src/train/optimizers';
import { createReferenceStep } from '../../src/train/step';
import { createCnnStep } from '../../src/train/cnn-step';
import { installedGemm } from '../../src/accel/kernels';
import { scratchDir } from '../helpers/scratch';

export const CNN_CONFIG = path.resolve(__dirname, '../../../configs/cnn.yaml');
export const STEPS = 30;
export const BATCH = 64;
const SUMMARY_POINTS = 8;

/** A tensor summarised: values at SUMMARY_POINTS fixed indices, Σx, Σx², max|x| (float64 sums). */
export interface Summary {
  at: number[];
  sum: number;
  sumSq: number;
  maxAbs: number;
}

export function summarise(x: ArrayLike<number>): Summary {
  let sum = 0;
  let sumSq = 0;
  let maxAbs = 0;
  for (let i = 0; i < x.length; i++) {
    sum += x[i]!;
    sumSq += x[i]! * x[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(x[i]!));
  }
  const at = Array.from({ length: SUMMARY_POINTS }, (_, k) => x[Math.floor(((k + 0.5) * x.length) / SUMMARY_POINTS)]!);
  return { at, sum, sumSq, maxAbs };
}

/** One step's numbers, every tensor in Keras's layout (kernels h×w×in×out and in×out; activations NHWC). */
export interface StepRecord {
  lr: number;
  loss: number;
  /** Each layer's output on the batch (training mode), by layer name. */
  activations: Record<string, Summary>;
  /** d loss / d variable, by Keras variable path (conv2d/kernel, …). */
  gradients: Record<string, Summary>;
  /** Each variable after the step's update. */
  weights: Record<string, Summary>;
}

export interface CnnSteps {
  spec: ExperimentSpec;
  built: BuiltModel;
  train: Split;
}

/**
 * The CNN of configs/cnn.yaml (its seed, its initial weights) and the first STEPS batches of its training split, unshuffled;
 * the images from `dataDir` when given (a test's seeded cache), else fetched into a scratch cache removed after.
 */
export async function cnnSetup(dataDir?: string): Promise<CnnSteps> {
  const cache = dataDir ?? scratchDir('regtrain-cnn-steps-');
  const spec = loadSpec(
    CNN_CONFIG,
    [`data.trainLimit=${STEPS * BATCH}`, 'data.validation.size=0'].map(parseSetFlag),
  ).spec;
  const ds = await loadDataset({
    dataDir: cache,
    normalize: 'scale01',
    validation: { size: 0, holdout: true, shuffle: false, stratify: false },
    trainLimit: STEPS * BATCH,
    testLimit: 10,
    splitSeed: runSeeds(spec.seed).split,
  });
  if (!dataDir) fs.rmSync(cache, { recursive: true, force: true });
  return { spec, built: buildModel(spec), train: ds.train };
}

/** Keras's path of a tfjs variable: `dense_1/kernel` (tfjs may append _N to the variable's part). */
const varPath = (v: tf.Variable): string => v.name.replace(/_\d+$/, '');

/**
 * Runs the training step STEPS times, recording each step's numbers: the lean CNN step on the GEMM
 * installed on wasm (initBackend), or the autodiff step (`path: 'reference'`, or no GEMM installed).
 */
export function runSteps(
  { spec, built, train }: CnnSteps,
  steps = STEPS,
  path: 'lean' | 'reference' = 'lean',
): StepRecord[] {
  const optimizer = new Optimizer(optimizerChoice(spec.optimizer));
  const kind = path === 'lean' ? installedGemm('wasm') : null;
  const lean = kind ? createCnnStep(built.model, optimizer, [], kind) : null;
  if (lean && 'unsupported' in lean) throw new Error(lean.unsupported);
  const step = lean ? null : createReferenceStep(built, optimizer);
  const vars = built.model.trainableWeights.map((w) => w.read() as tf.Variable);
  const records: StepRecord[] = [];
  for (let s = 0; s < steps; s++) {
    const x = tf.tensor3d(imagesOf(train, s * BATCH, (s + 1) * BATCH), [BATCH, 28, 28]);
    const y = tf.tensor1d(train.labels.subarray(s * BATCH, (s + 1) * BATCH), 'int32');
    const activations: Record<string, Summary> = {};
    tf.tidy(() => {
      let h: tf.Tensor = x;
      for (const layer of built.model.layers) {
        h = layer.apply(h, { training: true }) as tf.Tensor;
        activations[layer.name] = summarise(h.dataSync());
      }
    });
    const gradients: Record<string, Summary> = {};
    if (!lean)
      tf.tidy(() => {
        const { grads } = tf.variableGrads(
          () => crossEntropySum(forward(built, x, true), y).div(BATCH) as tf.Scalar,
          vars,
        );
        for (const v of vars) gradients[varPath(v)] = summarise(grads[v.name]!.dataSync());
      });
    const lr = optimizer.learningRate();
    let loss: number;
    if (lean) {
      const r = lean.run(x, y);
      loss = r.dataLoss / r.batchSize;
      const g = lean.gradients();
      for (const v of vars) gradients[varPath(v)] = summarise(g.get(v.name)!);
    } else loss = step!.run(x, y, 0).dataLoss;
    const weights: Record<string, Summary> = {};
    for (const v of vars) weights[varPath(v)] = summarise(v.dataSync());
    records.push({ lr, loss, activations, gradients, weights });
    tf.dispose([x, y]);
  }
  lean?.dispose();
  step?.dispose();
  return records;
}

/** Initial weights (Keras layout, float32 little-endian, in trainableWeights order) and the batches, for the PyTorch side. */
function dump(setup: CnnSteps, dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const vars = setup.built.model.trainableWeights.map((w) => w.read() as tf.Variable);
  const meta = {
    steps: STEPS,
    batch: BATCH,
    seed: setup.spec.seed,
    layers: setup.built.model.layers.map((l) => l.name),
    variables: vars.map((v) => ({ path: varPath(v), shape: v.shape })),
    optimizer: setup.spec.optimizer,
  };
  fs.writeFileSync(
    path.join(dir, 'weights.f32'),
    Buffer.concat(vars.map((v) => Buffer.from((v.dataSync() as Float32Array).slice().buffer))),
  );
  Object.assign(meta, { regtrain: runSteps(setup) });
  fs.writeFileSync(path.join(dir, 'images.f32'), Buffer.from(imagesOf(setup.train).buffer));
  fs.writeFileSync(path.join(dir, 'labels.i32'), Buffer.from(setup.train.labels.slice().buffer));
  fs.writeFileSync(path.join(dir, 'meta.json'), JSON.stringify(meta));
}

/**
 * What `regtrain run configs/cnn.yaml` trains on, for a whole-run comparison (torch_cnn_steps.py
 * --train): the seed's initial weights, the 55,000 training images of its split and each epoch's
 * batch order (the loop's shuffle stream, src/train/loop.ts).
 */
async function dumpRun(dir: string): Promise<void> {
  const spec = loadSpec(CNN_CONFIG, []).spec;
  const cache = scratchDir('regtrain-cnn-steps-');
  const ds = await loadSpecData(spec, runSeeds(spec.seed), { dataDir: cache, source: [] });
  fs.rmSync(cache, { recursive: true, force: true });
  const built = buildModel(spec);
  const vars = built.model.trainableWeights.map((w) => w.read() as tf.Variable);
  const shuffle = new Rng(runSeeds(spec.seed).shuffle);
  const orders = Array.from({ length: spec.training.epochs }, () => shuffle.permutation(ds.train.count));
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'weights.f32'),
    Buffer.concat(vars.map((v) => Buffer.from((v.dataSync() as Float32Array).slice().buffer))),
  );
  fs.writeFileSync(path.join(dir, 'images.f32'), Buffer.from(imagesOf(ds.train).buffer));
  fs.writeFileSync(path.join(dir, 'labels.i32'), Buffer.from(ds.train.labels.slice().buffer));
  fs.writeFileSync(path.join(dir, 'orders.i32'), Buffer.concat(orders.map((o) => Buffer.from(o.buffer))));
  const meta = {
    steps: 0,
    batch: spec.training.batchSize,
    epochs: spec.training.epochs,
    seed: spec.seed,
    layers: built.model.layers.map((l) => l.name),
    variables: vars.map((v) => ({ path: varPath(v), shape: v.shape })),
    optimizer: spec.optimizer,
  };
  fs.writeFileSync(path.join(dir, 'meta.json'), JSON.stringify(meta));
}

/** Relative difference of two summaries: max over the fixed values and Σx² (the sum can cancel), scaled by max|x|. */
export function summaryDiff(a: Summary, b: Summary): number {
  const scale = Math.max(a.maxAbs, b.maxAbs, 1e-30);
  const points = Math.max(...a.at.map((v, i) => Math.abs(v - b.at[i]!))) / scale;
  const sq = Math.abs(a.sumSq - b.sumSq) / Math.max(a.sumSq, b.sumSq, 1e-30);
  return Math.max(points, sq);
}

/** For each quantity, its largest relative difference at each step: ours against the fixture's. */
export function differences(ours: StepRecord[], theirs: StepRecord[]): { step: number; what: string; diff: number }[] {
  const out: { step: number; what: string; diff: number }[] = [];
  ours.forEach((o, s) => {
    const t = theirs[s]!;
    out.push({ step: s, what: 'lr', diff: Math.abs(o.lr - t.lr) / t.lr });
    out.push({ step: s, what: 'loss', diff: Math.abs(o.loss - t.loss) / t.loss });
    for (const kind of ['activations', 'gradients', 'weights'] as const) {
      for (const [name, sum] of Object.entries(t[kind]))
        out.push({ step: s, what: `${kind} ${name}`, diff: summaryDiff(o[kind][name]!, sum) });
    }
  });
  return out;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  await initBackend('wasm');
  if (args[0] === '--dump-run') return dumpRun(args[1]!);
  const setup = await cnnSetup();
  // --from RUN_DIR: start from a finished run's weights (weights.bin, tfjs's order) instead of the seed's.
  const from = args.indexOf('--from');
  if (from >= 0) {
    const bytes = fs.readFileSync(path.join(args[from + 1]!, 'weights.bin'));
    const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    let at = 0;
    setup.built.model.setWeights(
      setup.built.model.getWeights().map((w) => tf.tensor(all.slice(at, (at += w.size)), w.shape)),
    );
  }
  if (args[0] === '--dump') return dump(setup, args[1]!);
  if (args[0] === '--compare') {
    const fixture = JSON.parse(fs.readFileSync(args[1]!, 'utf8')) as { steps: StepRecord[] };
    const diffs = differences(runSteps(setup), fixture.steps);
    const worst = new Map<string, { step: number; diff: number }>();
    for (const d of diffs) {
      const key = d.what.replace(/ .*/, '');
      if (!worst.has(key) || worst.get(key)!.diff < d.diff) worst.set(key, d);
    }
    for (const [k, w] of worst)
      console.log(`${k}: largest relative difference ${w.diff.toExponential(2)} (step ${w.step})`);
    const first = diffs.find((d) => d.diff > 1e-5);
    console.log(
      first
        ? `first difference above 1e-5: step ${first.step}, ${first.what}: ${first.diff.toExponential(2)}`
        : `no difference above 1e-5 in ${fixture.steps.length} steps`,
    );
    return;
  }
  throw new Error('usage: cnn-steps.js --dump DIR | --compare FIXTURE');
}

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
