import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { initBackend } from '../src/backend';
import { buildModel } from '../src/model';
import { loadSpec, parseSetFlag } from '../src/spec';
import { readCheckpoint } from '../src/checkpoint';
import { Callback, CallbackList } from '../src/train/callbacks/callback';
import { CheckpointWriter } from '../src/train/callbacks/checkpoint';
import { EarlyStopping } from '../src/train/callbacks/early-stopping';
import { History } from '../src/train/callbacks/history';
import { ReduceLrOnPlateau } from '../src/train/callbacks/reduce-lr-on-plateau';
import { fit } from '../src/train/loop';
import { createTrainStep } from '../src/train/step';
import { runSeeds } from '../src/rng';
import { randomSplit } from './helpers/splits';
import { scratchDir } from './helpers/scratch';

const QUICK = path.resolve(__dirname, '../../configs/quick.yaml');

async function setup(sets: string[] = []) {
  const spec = loadSpec(QUICK, ['training.batchSize=50', ...sets].map(parseSetFlag)).spec;
  const backend = await initBackend('wasm');
  const built = buildModel(spec);
  return {
    spec,
    backend,
    built,
    step: createTrainStep(built, spec, backend),
    data: { train: randomSplit(200, 1), validation: randomSplit(50, 2) },
  };
}

test('the loop calls the hooks in order: train begin, then per epoch begin, batch ends, epoch end, and train end', async () => {
  const { built, step, data } = await setup();
  const calls: string[] = [];
  const recorder: Callback = {
    name: 'recorder',
    onTrainBegin: () => void calls.push('trainBegin'),
    onEpochBegin: (e) => void calls.push(`epochBegin ${e}`),
    onBatchEnd: (b) => void calls.push(`batchEnd ${b}`),
    onEpochEnd: (e) => void calls.push(`epochEnd ${e}`),
    onTrainEnd: (logs) => void calls.push(`trainEnd ${logs.stopReason} ${logs.epochs}`),
  };
  const r = await fit(built, step, data, new CallbackList([recorder]), {
    epochs: 2,
    batchSize: 50,
    shuffle: true,
    seeds: runSeeds(1),
  });
  assert.equal(r.stopReason, 'epochs');
  const epoch = (e: number) => [
    `epochBegin ${e}`,
    'batchEnd 1',
    'batchEnd 2',
    'batchEnd 3',
    'batchEnd 4',
    `epochEnd ${e}`,
  ];
  assert.deepEqual(calls, ['trainBegin', ...epoch(1), ...epoch(2), 'trainEnd epochs 2']);
  step.dispose();
  built.model.dispose();
});

test('a callback that sets stopTraining ends training after that epoch, with its reason', async () => {
  const { built, step, data } = await setup();
  const seen: number[] = [];
  const stopper: Callback = {
    name: 'stopper',
    onEpochEnd: (e, _logs, ctx) => {
      seen.push(e);
      if (e === 2) ctx.stopTraining = 'early-stopping';
    },
  };
  const r = await fit(built, step, data, new CallbackList([stopper]), {
    epochs: 5,
    batchSize: 50,
    shuffle: true,
    seeds: runSeeds(1),
  });
  assert.deepEqual(seen, [1, 2]);
  assert.deepEqual([r.stopReason, r.epochs], ['early-stopping', 2]);
  step.dispose();
  built.model.dispose();
});

test("a checkpoint holds the loop's, the optimizer's and every callback's state", async () => {
  const { built, step, data, backend } = await setup(['optimizer={adam: {}}']);
  const dir = scratchDir('regtrain-cb-');
  const history = new History(dir);
  const early = new EarlyStopping({ monitor: 'val_loss', patience: 5, minDelta: 0, restoreBestWeights: true });
  // minDelta 10 against epochs that gain ~5 each (penalty-dominated losses): epoch 2 cuts the learning rate.
  const plateau = new ReduceLrOnPlateau({
    monitor: 'val_loss',
    factor: 0.5,
    patience: 1,
    minDelta: 10,
    cooldown: 1,
    minLr: 0,
  });
  const valLosses: number[] = [];
  const recorder: Callback = {
    name: 'recorder',
    onEpochEnd: (_e, logs) => void valLosses.push(logs.val_loss as number),
  };
  const list: CallbackList = new CallbackList([
    recorder,
    history,
    early,
    plateau,
    new CheckpointWriter(dir, backend.name, () => list),
  ]);
  await fit(built, step, data, list, { epochs: 3, batchSize: 50, shuffle: true, seeds: runSeeds(1) });
  const cp = readCheckpoint(dir)!;
  assert.equal(cp.body.epoch, 3);
  assert.deepEqual(Object.keys(cp.body.callbacks).sort(), ['earlyStopping', 'history', 'reduceLrOnPlateau']);
  // What each callback must have recorded, from the epochs' val_loss by Keras's rules (not from the callbacks).
  const best = Math.min(...valLosses);
  const bestEpoch = valLosses.indexOf(best) + 1;
  assert.deepEqual(cp.body.callbacks.earlyStopping, { best, bestEpoch, wait: 3 - bestEpoch });
  let plateauBest = Infinity;
  let wait = 0;
  let cooldown = 0;
  let scale = 1;
  for (const v of valLosses) {
    if (cooldown > 0) [cooldown, wait] = [cooldown - 1, 0];
    if (v < plateauBest - 10) [plateauBest, wait] = [v, 0];
    else if (cooldown === 0 && ++wait >= 1) [scale, cooldown, wait] = [scale * 0.5, 1, 0];
  }
  assert.ok(
    scale < 1,
    `the plateau never cut the learning rate (val_loss ${valLosses.join(', ')}): the test checks too little`,
  );
  assert.deepEqual(cp.body.callbacks.reduceLrOnPlateau, { best: plateauBest, wait, cooldownCounter: cooldown });
  const chain = (cp.body.callbacks.history as { chain: unknown }).chain;
  assert.deepEqual(cp.body.callbacks.history, { epochs: 3, chain });
  assert.match(String(chain), /^[0-9a-f]{64}$/, 'the history chain is a SHA-256 of the logged lines');
  // 200 images in batches of 50: 4 steps an epoch.
  assert.deepEqual(cp.body.optimizer, { type: 'adam', iterations: 12, learningRateScale: scale });
  assert.equal(cp.body.loop.epoch, 3);
  assert.equal(cp.body.trainingPath, step.path);
  const groups = new Set(cp.arrays.map((a) => a.group));
  assert.deepEqual([...groups].sort(), ['callback:earlyStopping', 'optimizer', 'weights']);
  // Adam keeps m and v for each of the 8 trainable variables.
  assert.equal(cp.arrays.filter((a) => a.group === 'optimizer').length, 16);
  step.dispose();
  built.model.dispose();
});

test('the checkpoint does not grow with the epochs: the history is appended to history.jsonl instead', async () => {
  const { built, step, data, backend } = await setup();
  const dir = scratchDir('regtrain-cb-');
  const sizes: number[] = [];
  const list: CallbackList = new CallbackList([
    new History(dir),
    new CheckpointWriter(dir, backend.name, () => list),
    { name: 'size', onEpochEnd: () => void sizes.push(fs.statSync(path.join(dir, 'checkpoint.json')).size) },
  ]);
  await fit(built, step, data, list, { epochs: 6, batchSize: 50, shuffle: true, seeds: runSeeds(1) });
  // Only the numbers change (rng states, epoch counts): a few bytes either way, not a record per epoch.
  assert.ok(Math.max(...sizes) - Math.min(...sizes) < 64, `checkpoint.json sizes: ${sizes.join(', ')}`);
  const lines = fs.readFileSync(path.join(dir, 'history.jsonl'), 'utf8').trim().split('\n');
  assert.deepEqual(
    lines.map((l) => (JSON.parse(l) as { epoch: number }).epoch),
    [1, 2, 3, 4, 5, 6],
  );
  step.dispose();
  built.model.dispose();
});

test('a checkpointed callback state that does not fit its schema is refused, naming the field', () => {
  const early = new EarlyStopping({ monitor: 'val_loss', patience: 5, minDelta: 0, restoreBestWeights: false });
  assert.throws(() => early.setState({ json: { best: 'low', bestEpoch: 1, wait: 0 } }), {
    name: 'InputError',
    message: 'damaged (callbacks.earlyStopping.best is invalid)',
  });
  const plateau = new ReduceLrOnPlateau({
    monitor: 'val_loss',
    factor: 0.5,
    patience: 1,
    minDelta: 0,
    cooldown: 0,
    minLr: 0,
  });
  assert.throws(() => plateau.setState({ json: { best: 1, wait: -1, cooldownCounter: 0 } }), {
    name: 'InputError',
    message: 'damaged (callbacks.reduceLrOnPlateau.wait is invalid)',
  });
  assert.throws(() => new History(null).setState({ json: null }), {
    name: 'InputError',
    message: 'damaged (callbacks.history is invalid)',
  });
  // A valid state is taken as it is: null is "no best yet".
  early.setState({ json: { best: null, bestEpoch: 0, wait: 2 } });
  assert.deepEqual(early.getState().json, { best: null, bestEpoch: 0, wait: 2 });
});
