import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as tf from '../src/tf';
import { initBackend } from '../src/backend';
import { buildModel } from '../src/model';
import { loadSpec, parseSetFlag } from '../src/spec';
import { createTrainStep } from '../src/train/step';
import { fit } from '../src/train/loop';
import { CallbackList } from '../src/train/callbacks/callback';
import { runSeeds } from '../src/rng';
import { randomSplit } from './helpers/splits';

const quick = path.resolve(__dirname, '../../configs/quick.yaml');

/** Random Fashion-MNIST-shaped data: the memory check needs shapes, not real images. */
for (const variant of [
  { name: 'the lean step (tutorial model)', path: 'lean', sets: [] as string[] },
  { name: 'the lean step with Adam', path: 'lean', sets: ['optimizer={adam: {learningRate: 0.001}}'] },
  {
    name: 'the reference step (a bias penalty forces autodiff)',
    path: 'reference',
    sets: ['model.layers.2.dense.biasRegularizer={l2: 0.001}'],
  },
]) {
  test(`training with ${variant.name} holds the same number of tensors after every epoch, and releases the validation tensors after fit`, async (t) => {
    const { spec } = loadSpec(quick, ['training.epochs=4', 'training.batchSize=64', ...variant.sets].map(parseSetFlag));
    const backend = await initBackend('wasm');
    if (variant.path === 'lean' && !backend.gemm.kind)
      return t.skip(`the lean step needs fast matmul kernels: ${backend.gemm.reason}`);
    const built = buildModel(spec);
    const step = createTrainStep(built, spec, backend);
    // The test is about this path: a silent fallback to the other must fail it.
    assert.equal(step.path, variant.path, step.description);
    const counts: number[] = [];
    await fit(
      built,
      step,
      { train: randomSplit(640, 1), validation: randomSplit(128, 2) },
      new CallbackList([{ name: 'count', onEpochEnd: () => void counts.push(tf.memory().numTensors) }]),
      {
        epochs: 4,
        batchSize: 64,
        shuffle: true,
        seeds: runSeeds(spec.seed),
      },
    );
    const after = tf.memory().numTensors;
    step.dispose();
    built.model.dispose();
    assert.equal(counts.length, 4);
    // The 128 validation images are one chunk, an image tensor and a label tensor, kept from the first
    // epoch's end to fit's end and no longer.
    assert.equal(after, counts[0]! - 2, `tensors at the epochs' ends ${counts[0]}, after fit ${after}`);
    assert.deepEqual(
      counts,
      new Array(4).fill(counts[0]),
      `tensor counts per epoch: ${counts.join(', ')} (${step.description})`,
    );
  });
}
