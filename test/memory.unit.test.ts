import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { loadSpec, parseSetFlag } from '../src/spec';
import { layerShapes } from '../src/spec/layers';
import { estimateMemory } from '../src/spec/memory';
import { OPTIMIZERS } from '../src/train/optimizers/registry';

const QUICK = path.resolve(__dirname, '../../configs/quick.yaml');

/** Slots per variable, by hand: SGD keeps a momentum only with momentum > 0; Adam m and v, and v̂ with amsgrad. */
const SLOTS_BY_HAND: { optimizer: string; slots: number }[] = [
  { optimizer: '{sgd: {}}', slots: 0 },
  { optimizer: '{sgd: {momentum: 0.9}}', slots: 1 },
  { optimizer: '{adam: {}}', slots: 2 },
  { optimizer: '{adam: {amsgrad: true}}', slots: 3 },
  { optimizer: '{adamw: {}}', slots: 2 },
  { optimizer: '{adamw: {amsgrad: true}}', slots: 3 },
];

test('every optimizer in the registry has its slot count written down here', () => {
  for (const d of OPTIMIZERS)
    assert.ok(
      SLOTS_BY_HAND.some((c) => c.optimizer.startsWith(`{${d.name}:`)),
      `${d.name}: add its slot count to SLOTS_BY_HAND`,
    );
});

for (const { optimizer, slots } of SLOTS_BY_HAND) {
  test(`the memory estimate keeps ${slots} optimizer slots per parameter for optimizer ${optimizer}, as the optimizer declares`, () => {
    const { spec } = loadSpec(QUICK, [parseSetFlag(`optimizer=${optimizer}`)]);
    const shapes = layerShapes(spec.model.layers).shapes;
    const params = shapes.reduce((n, s) => n + s.params, 0);
    const images = (spec.data.trainLimit ?? 60000) + spec.data.validation.size + (spec.data.testLimit ?? 10000);
    // Parameters, their gradients and the slots; plus the dataset's images.
    assert.equal(estimateMemory(spec, shapes).fixed, params * (2 + slots) + images * 784);
  });
}

test('the memory estimate keeps one more copy of the parameters for the EMA and one for SWA', () => {
  const estimate = (...sets: string[]) => {
    const { spec } = loadSpec(
      QUICK,
      sets.map((s) => parseSetFlag(s)),
    );
    return { fixed: estimateMemory(spec, layerShapes(spec.model.layers).shapes).fixed, spec };
  };
  const plain = estimate('optimizer={adam: {}}');
  const params = layerShapes(plain.spec.model.layers).shapes.reduce((n, s) => n + s.params, 0);
  assert.equal(estimate('optimizer={adam: {useEma: true}}').fixed - plain.fixed, params);
  assert.equal(
    estimate('optimizer={adam: {}}', 'training.swa={startEpoch: 2, learningRate: 0.001}').fixed - plain.fixed,
    params,
  );
});
