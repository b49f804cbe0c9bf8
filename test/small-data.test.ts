/**
 * A study crossing variants with a sweep over data.trainLimit, run for real on tiny slices
 * (8 runs of one epoch on 50 or 100 images, planned and run member by member in this process:
 * what is checked is in the files they write, not in processes): each member trains on exactly trainLimit images
 * with the same validation images, and compare pairs every variant with the baseline variant
 * at the same training-set size (not with the baseline at one arbitrary size).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { regtrainHere, studyInProcess } from './helpers/cluster-study';
import { sharedDataDir } from './helpers/data';
import { scratchDir } from './helpers/scratch';

const TMP = scratchDir('regtrain-small-data-');
const ENV = {
  REGTRAIN_DATA_DIR: sharedDataDir(),
  XDG_CACHE_HOME: path.join(TMP, 'xdg'),
};

const regtrain = (args: string[]) => regtrainHere(args, TMP, ENV);

before(async () => {
  fs.writeFileSync(
    path.join(TMP, 'sweep.yaml'),
    `name: tiny-sweep
seed: 1
backend: wasm
data: { testLimit: 100, validation: { size: 30, shuffle: true } }
model:
  layers:
    - flatten: {}
    - dense: { units: 10, activation: softmax }
training: { epochs: 1, batchSize: 25 }
repeats: 2
sweep:
  data.trainLimit: [50, 100]
variants:
  baseline: {}
  l2:
    model.layers.1.dense.kernelRegularizer: { l2: 0.01 }
`,
  );
  await studyInProcess('sweep.yaml', 'study', { cwd: TMP, env: ENV });
});

test('every member trains on exactly trainLimit images and validates on the same 30', () => {
  const runs = fs.readdirSync(path.join(TMP, 'study', 'runs')).sort();
  assert.equal(runs.length, 8);
  for (const run of runs) {
    const m = JSON.parse(fs.readFileSync(path.join(TMP, 'study', 'runs', run, 'metrics.json'), 'utf8')) as {
      dataset: { sizes: { train: number; validation: number } };
    };
    const limit = Number(/trainLimit=(\d+)/.exec(run)![1]);
    assert.deepEqual(m.dataset.sizes, { train: limit, validation: 30, test: 100 }, run);
  }
});

test('compare pairs each variant with the baseline variant at the same training-set size', async () => {
  const r = await regtrain(['compare', 'study', '--json']);
  assert.equal(r.code, 0, r.stderr);
  // JSON Lines: one `paired` line per paired test.
  const paired = r.stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { type: string; metric: string; group: string; baseline: string; pairs: number })
    .filter((o) => o.type === 'paired');
  // The test ECE is paired the same way as the accuracy.
  const pairsOf = (metric: string) =>
    paired
      .filter((p) => p.metric === metric)
      .map((p) => [p.group, p.baseline, p.pairs])
      .sort();
  assert.deepEqual(pairsOf('test ECE'), pairsOf('test accuracy'));
  // Each variant against the baseline variant at its own size; the baseline's other size against the first (the effect of more data).
  assert.deepEqual(pairsOf('test accuracy'), [
    ['baseline-trainLimit=100', 'baseline-trainLimit=50', 2],
    ['l2-trainLimit=100', 'baseline-trainLimit=100', 2],
    ['l2-trainLimit=50', 'baseline-trainLimit=50', 2],
  ]);
  const text = await regtrain(['compare', 'study']);
  assert.match(text.stdout, /\(in a sweep, the baseline variant at the same swept values\)/);
});
