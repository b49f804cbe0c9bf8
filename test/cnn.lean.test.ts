/**
 * A convolutional model on the lean CNN step (src/train/cnn-step.ts), trained for real through the
 * CLI on a tiny slice of Fashion-MNIST (256 training images, 2 epochs, wasm with regtrain's GEMM):
 * it says which step trains it, is deterministic, and a run killed with SIGKILL after its first
 * epoch and resumed ends bit for bit where the uninterrupted run ends (the step pulls the resumed
 * weights from the model's variables, the optimizer state comes back through the checkpoint).
 *
 *   reshape [28, 28, 1] → conv2d 4 3×3 strides 2 relu, L2 0.001, maxNorm 2 (13×13×4) → maxPooling2d 2
 *   (6×6×4) → conv2d 8 3×3 same relu (6×6×8) → maxPooling2d 2 same (3×3×8) → flatten (72)
 *   → dense 16 relu → dense 10 softmax; Adam 0.01, batch 32 (8 steps an epoch).
 * The run SIGKILLed and its resume are real processes; the uninterrupted runs are the real program in this
 * process (helpers/in-process.ts): they check numbers, files and the --json events.
 */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { killAfterFirstEpoch, regtrainSync } from './helpers/cli';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

const TMP = scratchDir('regtrain-cnn-lean-');
const ENV = { ...process.env, REGTRAIN_DATA_DIR: path.join(TMP, 'cache'), XDG_CACHE_HOME: path.join(TMP, 'xdg') };
const SPEC = path.join(TMP, 'lean-cnn.yaml');

fs.writeFileSync(
  SPEC,
  `name: lean-cnn
seed: 11
backend: wasm
data: { trainLimit: 256, testLimit: 200, validation: { size: 64 } }
model:
  layers:
    - reshape: { targetShape: [28, 28, 1] }
    - conv2d: { filters: 4, kernelSize: 3, strides: 2, activation: relu, kernelRegularizer: { l2: 0.001 }, kernelConstraint: { maxNorm: { maxValue: 2 } } }
    - maxPooling2d: { poolSize: 2 }
    - conv2d: { filters: 8, kernelSize: 3, padding: same, activation: relu }
    - maxPooling2d: { poolSize: 2, padding: same }
    - flatten: {}
    - dense: { units: 16, activation: relu }
    - dense: { units: 10, activation: softmax }
optimizer: { adam: { learningRate: 0.01 } }
training: { epochs: 2, batchSize: 32 }
`,
);

const regtrain = (args: string[]) => regtrainSync(args, { cwd: TMP, env: ENV });
const inProcess = (args: string[]) =>
  regtrainInProcess(args, {
    cwd: TMP,
    env: { REGTRAIN_DATA_DIR: ENV.REGTRAIN_DATA_DIR, XDG_CACHE_HOME: ENV.XDG_CACHE_HOME },
  });
const read = (dir: string, file: string) => fs.readFileSync(path.join(TMP, dir, file));
const history = (dir: string) =>
  (JSON.parse(read(dir, 'history.json').toString()) as { epochs: Record<string, unknown>[] }).epochs.map(
    ({ seconds: _s, ...rest }) => rest,
  );

let events: { event: string; step?: string }[] = [];

describe('a CNN on the lean CNN step', () => {
  before(async () => {
    const r = await inProcess(['run', SPEC, '--out', 'whole', '--json']);
    assert.equal(r.code, 0, r.stderr);
    events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; step?: string });
  });

  test('trains on the lean CNN step and says so', () => {
    const training = events.find((e) => e.event === 'training');
    assert.match(training?.step ?? '', /^lean CNN step \(hand-written gradients\) \+ /);
  });

  test('learns: the second epoch ends with a lower training loss than the first', () => {
    const h = history('whole') as { loss: number }[];
    assert.equal(h.length, 2);
    assert.ok(h[1]!.loss < h[0]!.loss, `loss ${h[0]!.loss} → ${h[1]!.loss}`);
  });

  test('is deterministic: a second run gives the same history and byte-identical weights', async () => {
    const r = await inProcess(['run', SPEC, '--out', 'again', '-q']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(history('again'), history('whole'));
    assert.ok(read('again', 'weights.bin').equals(read('whole', 'weights.bin')), 'weights.bin is byte-identical');
  });

  test('killed with SIGKILL after epoch 1 and resumed, it ends with the same history and weights as the uninterrupted run', async () => {
    await killAfterFirstEpoch(['run', SPEC, '--out', 'killed'], TMP, ENV);
    assert.ok(fs.existsSync(path.join(TMP, 'killed', 'checkpoint.json')), 'the first epoch left a checkpoint');
    const r = regtrain(['run', '--resume', 'killed', '-q']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(history('killed'), history('whole'));
    assert.ok(read('killed', 'weights.bin').equals(read('whole', 'weights.bin')), 'weights.bin is byte-identical');
  });
});
