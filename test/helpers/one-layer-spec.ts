/** The smallest model regtrain trains (flatten → dense 10 softmax) and a one-epoch slice: for tests that need any run. */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** 500 training images, 100 for validation, 200 for the test, one epoch. */
export const ONE_EPOCH_SLICE = [
  '--set',
  'data.trainLimit=500',
  '--set',
  'data.validation.size=100',
  '--set',
  'data.testLimit=200',
  '--set',
  'training.epochs=1',
];

/** Writes `dir/tiny.yaml`, the one-layer spec, and returns its path. */
export function writeOneLayerSpec(dir: string): string {
  const file = path.join(dir, 'tiny.yaml');
  fs.writeFileSync(
    file,
    'name: tiny\nmodel:\n  layers:\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n',
  );
  return file;
}
