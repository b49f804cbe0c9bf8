/**
 * `run -q` on a terminal keeps a heartbeat: one line at an epoch's end, at most once per interval,
 * and none after the last epoch (the final result line follows it). Driven through the real fit
 * loop on a tiny random split, with the interval at 0 and then at an hour.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { initBackend } from '../src/backend';
import { buildModel } from '../src/model';
import { loadSpec, parseSetFlag } from '../src/spec';
import { CallbackList } from '../src/train/callbacks/callback';
import { Heartbeat } from '../src/train/callbacks/progress-bar';
import { fit } from '../src/train/loop';
import { createTrainStep } from '../src/train/step';
import { runSeeds } from '../src/rng';
import { randomSplit } from './helpers/splits';

const QUICK = path.resolve(__dirname, '../../configs/quick.yaml');

async function trainWithHeartbeat(everyMs: number, epochs: number): Promise<string[]> {
  const spec = loadSpec(QUICK, ['training.batchSize=50'].map(parseSetFlag)).spec;
  const backend = await initBackend('wasm');
  const built = buildModel(spec);
  const step = createTrainStep(built, spec, backend);
  const lines: string[] = [];
  try {
    await fit(
      built,
      step,
      { train: randomSplit(100, 1), validation: randomSplit(50, 2) },
      new CallbackList([new Heartbeat((line) => lines.push(line), everyMs)]),
      { epochs, batchSize: 50, shuffle: true, seeds: runSeeds(1) },
    );
  } finally {
    step.dispose();
    built.model.dispose();
  }
  return lines;
}

test('with no pause between beats, every epoch but the last prints where the run is and the time left', async () => {
  const lines = await trainWithHeartbeat(0, 4);
  assert.deepEqual(
    lines.map((l) => l.replace(/, .*$/, '')),
    ['epoch 1/4 done', 'epoch 2/4 done', 'epoch 3/4 done'],
  );
  // From the second epoch on, the pace of the finished ones gives a time left.
  for (const line of lines.slice(1)) assert.match(line, /^epoch \d\/4 done, (about|less than) .+ left$/);
});

test('within the interval the heartbeat stays silent', async () => {
  assert.deepEqual(await trainWithHeartbeat(3_600_000, 4), []);
});
