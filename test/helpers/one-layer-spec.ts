/** The smallest model regtrain trains (flatten → dense 10 softmax) and a one-epoch slice: for tests that need any run. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sliceFlags } from './cli';

/** 500 training images, 100 for validation, 200 for the test, one epoch. */
export const ONE_EPOCH_SLICE = sliceFlags({ train: 500, validation: 100, test: 200, epochs: 1 });

/** Writes `dir/tiny.yaml`, the one-layer spec, and returns its path. */
export function writeOneLayerSpec(dir: string): string {
  const file = path.join(dir, 'tiny.yaml');
  fs.writeFileSync(
    file,
    'name: tiny\nmodel:\n  layers:\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n',
  );
  return file;
}
