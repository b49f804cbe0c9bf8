/** The small study specs and scratch directories that test/study.test.ts and test/study.unit.test.ts plan and run. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scratchDir } from './scratch';

const BIN = path.resolve(__dirname, '../../..', 'bin', 'regtrain');

/** A one-hidden-layer model on 800 training images, 2 epochs: the base the studies vary. */
export const BASE = `
name: tiny
seed: 1234
data: { trainLimit: 800, testLimit: 500, validation: { size: 200 } }
model:
  layers:
    - flatten: {}
    - dense: { units: 32, activation: relu }
    - dense: { units: 10, activation: softmax }
training: { epochs: 2 }
`;

/** Two variants × two repeats: four members. */
export const TWO_BY_TWO =
  BASE + 'variants: { baseline: {}, l2: { model.layers.1.dense.kernelRegularizer: l2 } }\nrepeats: 2\n';

export function tmpdir(): string {
  return scratchDir('regtrain-study-');
}

export function writeSpec(dir: string, text: string, file = 'study.yaml'): string {
  const p = path.join(dir, file);
  fs.writeFileSync(p, text);
  return p;
}

/** A directory with `regtrain` on PATH, as on a node where regtrain is installed: the PATH to use. */
export function pathWithRegtrain(dir: string): string {
  const binDir = path.join(dir, 'path-bin');
  fs.mkdirSync(binDir, { recursive: true });
  if (!fs.existsSync(path.join(binDir, 'regtrain'))) fs.symlinkSync(BIN, path.join(binDir, 'regtrain'));
  return `${binDir}${path.delimiter}${process.env.PATH ?? ''}`;
}
