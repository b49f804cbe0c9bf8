/**
 * EMA, gradient clipping and SWA through the real CLI: the tutorial's model with clipping and the EMA
 * stays on the lean step, the header names them, metrics.json records the average the model ends
 * with, and a run killed with SIGKILL after its first epoch resumes to the same history and weights,
 * bit for bit (the EMA's averages are optimizer state, SWA's average the callback's, both in the
 * checkpoint). The uninterrupted runs and the resumes are made in this process (helpers/resume-runs.ts: the same
 * backend and kernels); the killed runs are real processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { killAfterFirstEpoch, QUICK, SMALL_SLICE } from './helpers/cli';
import { MetricsFileSchema } from '../src/runformat';
import { seededXdgCache } from './helpers/data';
import { inProcessRegtrain } from './helpers/resume-runs';
import { scratchDir } from './helpers/scratch';

const tmp = scratchDir('regtrain-averaging-');
const xdg = seededXdgCache(path.join(tmp, 'xdg'));
const env = { ...process.env, XDG_CACHE_HOME: xdg };

/** regtrain in this process (the same backend and kernels as the killed runs' processes). */
const regtrainHere = inProcessRegtrain(tmp, { XDG_CACHE_HOME: xdg });

const read = (dir: string, file: string) => fs.readFileSync(path.join(tmp, dir, file));
const history = (dir: string) =>
  (JSON.parse(read(dir, 'history.json').toString()) as { epochs: { seconds?: number }[] }).epochs.map(
    ({ seconds: _s, ...rest }) => rest,
  );
const metrics = (dir: string) => MetricsFileSchema.parse(JSON.parse(read(dir, 'metrics.json').toString()));

async function assertResumesBitForBit(args: string[], name: string) {
  await killAfterFirstEpoch([...args, '--out', `killed-${name}`], tmp, env);
  assert.ok(fs.existsSync(path.join(tmp, `killed-${name}`, 'checkpoint.json')), 'the first epoch left a checkpoint');
  const resumed = await regtrainHere(['run', '--resume', `killed-${name}`, '-q']);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.deepEqual(history(`killed-${name}`), history(`whole-${name}`));
  assert.ok(
    read(`killed-${name}`, 'weights.bin').equals(read(`whole-${name}`, 'weights.bin')),
    'weights.bin is byte-identical',
  );
  assert.deepEqual(metrics(`killed-${name}`).weightAveraging, metrics(`whole-${name}`).weightAveraging);
}

test('the tutorial’s model with clipnorm and the EMA trains on the lean step, ends with the averages and resumes bit for bit', async () => {
  const args = [
    'run',
    QUICK,
    ...SMALL_SLICE,
    '--set',
    'optimizer.sgd={learningRate: 0.05, clipnorm: 1, useEma: true, emaMomentum: 0.9}',
    '--backend',
    'wasm',
  ];
  const r = await regtrainHere([...args, '--out', 'whole-ema']);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout + r.stderr;
  assert.match(out, /^Training step: lean step/m);
  assert.match(out, /^Gradient clipping \(sgd\): clipnorm 1 \(each variable's gradient scaled to norm ≤ 1\)$/m);
  assert.match(out, /^EMA of the weights \(sgd\): momentum 0\.9; the model takes it at the end of training$/m);
  // 1,000 images in batches of 32: 32 updates an epoch.
  assert.match(out, /^EMA: the model now holds the moving average of its weights \(momentum 0\.9, 96 updates\)$/m);
  assert.deepEqual(metrics('whole-ema').weightAveraging, {
    kind: 'ema',
    momentum: 0.9,
    overwriteFrequency: null,
    updates: 96,
  });
  await assertResumesBitForBit(args, 'ema');
});

test('SWA on a batch-norm model with dropout ends with the average and its batch-norm pass, and resumes bit for bit', async () => {
  fs.writeFileSync(
    path.join(tmp, 'swa.yaml'),
    [
      'name: swa',
      'seed: 7',
      'data: { validation: { size: 200, holdout: true }, trainLimit: 1000, testLimit: 300 }',
      'model:',
      '  layers:',
      '    - flatten: {}',
      '    - dense: { units: 32, activation: relu }',
      '    - batchNormalization: {}',
      '    - dropout: { rate: 0.2 }',
      '    - dense: { units: 10, activation: softmax }',
      'optimizer: { sgd: { learningRate: 0.05, momentum: 0.9 } }',
      'training: { epochs: 3, batchSize: 64, swa: { startEpoch: 1, learningRate: 0.01, annealEpochs: 2 } }',
      '',
    ].join('\n'),
  );
  const args = ['run', 'swa.yaml', '--backend', 'wasm'];
  const r = await regtrainHere([...args, '--out', 'whole-swa']);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout + r.stderr;
  assert.match(out, /^SWA: average of the weights at each epoch's end from epoch 1; /m);
  // SWALR (cos, 2 epochs) from 0.05: epoch 2 at halfway, 0.03; epoch 3 at 0.01.
  const lrs = (JSON.parse(read('whole-swa', 'history.json').toString()) as { epochs: { lr: number }[] }).epochs.map(
    (e) => e.lr,
  );
  assert.deepEqual(
    lrs.map((lr) => Number(lr.toFixed(6))),
    [0.05, 0.03, 0.01],
  );
  assert.match(
    out,
    /^SWA: the model now holds the average of the weights at the end of epochs 1–3 \(3 snapshots\); batch-norm statistics recomputed over the 1,000 training images$/m,
  );
  assert.deepEqual(metrics('whole-swa').weightAveraging, {
    kind: 'swa',
    startEpoch: 1,
    snapshots: 3,
    learningRate: 0.01,
    batchNormImages: 1000,
  });
  await assertResumesBitForBit(args, 'swa');
});
