/**
 * `regtrain validate` of a spec using every noise and normalization layer and the orthogonal regularizer,
 * through the real program in process (test/helpers/in-process.ts). Runs with each layer are in layers.cli.test.ts.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { regtrainInProcess } from './helpers/in-process';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-layers-unit-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A spec file of the tutorial's shape with `middle` between the flatten layer and the output. */
function writeSpec(file: string, middle: string[]): string {
  fs.writeFileSync(
    path.join(tmp, file),
    [
      `name: ${path.basename(file, '.yaml')}`,
      'model:',
      '  layers:',
      '    - flatten: {}',
      ...middle.map((l) => `    - ${l}`),
      '    - dense: { units: 10, activation: softmax }',
      'optimizer: { sgd: { learningRate: 0.01 } }',
      '',
    ].join('\n'),
  );
  return file;
}

test('validate accepts a spec using every noise and normalization layer and the orthogonal regularizer, Keras defaults filled in', async () => {
  writeSpec('every-layer.yaml', [
    'gaussianNoise: { stddev: 0.1 }',
    'dense: { units: 32, activation: selu, kernelRegularizer: orthogonal }',
    'alphaDropout: { rate: 0.1 }',
    'layerNormalization: {}',
    'dense: { units: 16, activation: relu, kernelRegularizer: { orthogonal: { factor: 0.1, mode: columns } } }',
    'gaussianDropout: { rate: 0.2 }',
    'activityRegularization: { l2: 0.001 }',
  ]);
  const r = await regtrainInProcess(['validate', 'every-layer.yaml', '--json'], { cwd: tmp });
  assert.equal(r.code, 0, r.stderr);
  const layers = (JSON.parse(r.stdout) as { model: { layers: Record<string, Record<string, unknown>>[] } }).model
    .layers;
  assert.deepEqual(layers[1], { gaussianNoise: { stddev: 0.1 } });
  assert.deepEqual(layers[2]!.dense!.kernelRegularizer, { l1: 0, l2: 0, orthogonal: { factor: 0.01, mode: 'rows' } });
  assert.deepEqual(layers[3], { alphaDropout: { rate: 0.1 } });
  assert.deepEqual(layers[4], { layerNormalization: { axis: -1, epsilon: 0.001, center: true, scale: true } });
  assert.deepEqual(layers[5]!.dense!.kernelRegularizer, {
    l1: 0,
    l2: 0,
    orthogonal: { factor: 0.1, mode: 'columns' },
  });
  assert.deepEqual(layers[6], { gaussianDropout: { rate: 0.2 } });
  assert.deepEqual(layers[7], { activityRegularization: { l1: 0, l2: 0.001 } });
});
