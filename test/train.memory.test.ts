import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../src/backend';
import { buildModel } from '../src/model';
import { loadSpec, parseSetFlag } from '../src/spec';
import { createTrainStep } from '../src/step';
import { train } from '../src/train';
import { Rng } from '../src/rng';

const quick = path.resolve(__dirname, '../../configs/quick.yaml');

/** Random Fashion-MNIST-shaped data: the memory check needs shapes, not real images. */
function split(count: number, seed: number) {
  const rng = new Rng(seed);
  const images = new Float32Array(count * 784).map(() => rng.next());
  const labels = Int32Array.from({ length: count }, () => rng.int(10));
  return { images, labels, count };
}

for (const variant of [
  { name: 'the lean step (tutorial model)', sets: [] as string[] },
  { name: 'the reference step (dropout forces autodiff)', sets: ['model.layers.2={dropout: {rate: 0.2}}', 'model.layers.3.dense.kernelRegularizer=null'] },
]) {
  test(`training with ${variant.name} holds the same number of tensors after every epoch`, async () => {
    const { spec } = loadSpec(quick, ['training.epochs=4', 'training.batchSize=64', ...variant.sets].map(parseSetFlag));
    const backend = await initBackend('wasm');
    const built = buildModel(spec);
    const step = createTrainStep(built, spec, backend);
    const counts: number[] = [];
    await train(built, step, { train: split(640, 1), validation: split(128, 2) }, { training: spec.training, seed: spec.seed }, { onEpochEnd: () => void counts.push(tf.memory().numTensors) });
    step.dispose();
    built.model.dispose();
    assert.equal(counts.length, 4);
    assert.deepEqual(counts, new Array(4).fill(counts[0]), `tensor counts per epoch: ${counts.join(', ')} (${step.description})`);
  });
}
