/**
 * A convolutional model trained for real, on a tiny slice of Fashion-MNIST (256 training
 * images, 2 epochs, wasm): deterministic, bit-identical after a SIGKILL and --resume,
 * re-evaluated to the same test accuracy, with conv kernels in the weight statistics. And the
 * penalties on a conv kernel and bias, hand-computed on a 2×2 kernel (in-process, cpu backend):
 *
 *   kernel W = [[1, −2], [0.5, 0]] (shape 2×2×1×1)   Σ|w| = 3.5   Σw² = 5.25   bias b = [3]
 *   kernelRegularizer l1l2 (0.01, 0.01): 0.01·3.5 + 0.01·5.25 = 0.0875
 *   biasRegularizer {l2: 0.1}:           0.1·3² = 0.9
 *   one SGD step, lr 0.1, moves the regularized weights further than the unregularized ones by
 *   lr·(l1·sign(w) + 2·l2·w):  kernel 0.1·(0.01·sign(W) + 0.02·W) = [[0.003, −0.005], [0.002, 0]],
 *                              bias   0.1·(2·0.1·3) = 0.06
 *
 * The run SIGKILLed and its resume are real processes; the uninterrupted runs, `evaluate` and `predict` are the
 * real program in this process (helpers/in-process.ts): they check numbers, files and the --json events.
 *
 * The tiny model (output shapes by Keras's formulas; weight statistics cover the kernels):
 *   reshape [28, 28, 1] → conv2d 4 3×3 strides 2 relu, L2 0.001 (13×13×4, kernel 3·3·1·4 = 36)
 *   → spatialDropout2d 0.25 → maxPooling2d 2 (6×6×4) → conv2d 8 3×3 same relu (6×6×8, kernel
 *   3·3·4·8 = 288) → averagePooling2d 2 (3×3×8) → flatten (72) → dense 10 softmax (kernel 720)
 */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../src/tf';
import { initBackend } from '../src/backend';
import { buildModel, type BuiltModel } from '../src/model';
import { penaltyValues } from '../src/train/penalties';
import { loadSpec, validateSpec } from '../src/spec';
import { createLeanStep } from '../src/train/lean-step';
import { createReferenceStep } from '../src/train/step';
import { createOptimizer } from '../src/train/optimizers';
import type { MetricsFile } from '../src/runformat';
import { killAfterFirstEpoch, regtrainSync } from './helpers/cli';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '../..');
const TMP = scratchDir('regtrain-cnn-');
const ENV = { ...process.env, REGTRAIN_DATA_DIR: path.join(TMP, 'cache'), XDG_CACHE_HOME: path.join(TMP, 'xdg') };
const SPEC = path.join(TMP, 'tiny-cnn.yaml');
const TEST_COUNT = 200;

fs.writeFileSync(
  SPEC,
  `name: tiny-cnn
seed: 7
backend: wasm
data: { trainLimit: 256, testLimit: ${TEST_COUNT}, validation: { size: 64 } }
model:
  layers:
    - reshape: { targetShape: [28, 28, 1] }
    - conv2d: { filters: 4, kernelSize: 3, strides: 2, activation: relu, kernelRegularizer: { l2: 0.001 } }
    - spatialDropout2d: { rate: 0.25 }
    - maxPooling2d: { poolSize: 2 }
    - conv2d: { filters: 8, kernelSize: 3, padding: same, activation: relu }
    - averagePooling2d: { poolSize: 2 }
    - flatten: {}
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
const metrics = (dir: string) => JSON.parse(read(dir, 'metrics.json').toString()) as MetricsFile;
const history = (dir: string) =>
  (JSON.parse(read(dir, 'history.json').toString()) as { epochs: Record<string, unknown>[] }).epochs.map(
    ({ seconds: _s, ...rest }) => rest,
  );

let events: { event: string; step?: string }[] = [];

describe('a CNN on a real slice', () => {
  before(async () => {
    const r = await inProcess(['run', SPEC, '--out', 'whole', '--json']);
    assert.equal(r.code, 0, r.stderr);
    events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; step?: string });
  });

  test('trains on the reference (autodiff) step and says so', () => {
    const training = events.find((e) => e.event === 'training');
    assert.match(training?.step ?? '', /^tfjs autodiff \+ optimizer \(/);
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
    assert.equal(metrics('killed').test!.accuracy, metrics('whole').test!.accuracy);
  });

  test('regtrain evaluate reloads it (spatial dropout included) and reproduces its test accuracy', async () => {
    const r = await inProcess(['evaluate', 'whole', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { accuracy: number; count: number };
    assert.equal(report.count, TEST_COUNT);
    assert.equal(report.accuracy, metrics('whole').test!.accuracy);
  });

  test('regtrain predict classifies its test images as the run scored them: top-1 right as often as its test accuracy', async () => {
    const indexes = Array.from({ length: TEST_COUNT }, (_, i) => ['--test-index', String(i)]).flat();
    const r = await inProcess(['predict', 'whole', ...indexes, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { testIndex: number; trueClass: string; top: { class: string }[] });
    assert.deepEqual(
      lines.map((l) => l.testIndex),
      Array.from({ length: TEST_COUNT }, (_, i) => i),
    );
    const right = lines.filter((l) => l.top[0]!.class === l.trueClass).length;
    assert.equal(right / TEST_COUNT, metrics('whole').test!.accuracy);
  });

  test('weight statistics and histograms cover both conv kernels and the dense kernel', () => {
    const m = metrics('whole');
    assert.deepEqual(
      m.finalWeights.map((w) => w.layer),
      ['conv2d', 'conv2d_1', 'dense'],
    );
    assert.deepEqual(
      m.histograms.map((h) => [h.layer, h.counts.reduce((a, b) => a + b, 0)]),
      [
        ['conv2d', 36],
        ['conv2d_1', 288],
        ['dense', 720],
      ],
    );
  });
});

describe('penalties on a conv kernel', () => {
  const KERNEL = [1, -2, 0.5, 0];
  const LR = 0.1;

  function built(regularized: boolean): BuiltModel {
    const spec = validateSpec({
      name: 'conv-penalty',
      seed: 3,
      model: {
        layers: [
          { reshape: { targetShape: [28, 28, 1] } },
          {
            conv2d: {
              filters: 1,
              kernelSize: 2,
              activation: 'tanh',
              ...(regularized ? { kernelRegularizer: 'l1l2', biasRegularizer: { l2: 0.1 } } : {}),
            },
          },
          { flatten: {} },
          { dense: { units: 10, activation: 'softmax' } },
        ],
      },
    });
    const b = buildModel(spec);
    const kernel = tf.tensor4d(KERNEL, [2, 2, 1, 1]);
    const bias = tf.tensor1d([3]);
    b.model.layers[1]!.setWeights([kernel, bias]);
    tf.dispose([kernel, bias]);
    return b;
  }

  before(async () => {
    await initBackend('cpu');
  });

  test('l1l2 on the 2×2 kernel is 0.0875 and l2 0.1 on the bias 3 is 0.9', () => {
    const b = built(true);
    const values = penaltyValues(b);
    assert.deepEqual(Object.keys(values), ['conv2d/kernel', 'conv2d/bias']);
    assert.ok(Math.abs(values['conv2d/kernel']! - 0.0875) <= 1e-7, `kernel penalty ${values['conv2d/kernel']}`);
    assert.ok(Math.abs(values['conv2d/bias']! - 0.9) <= 1e-6, `bias penalty ${values['conv2d/bias']}`);
    b.model.dispose();
  });

  test('one SGD step moves the penalized kernel by lr·(l1·sign(w) + 2·l2·w) and the bias by lr·2·l2·b more', () => {
    const n = 4;
    const pixels = new Float32Array(n * 28 * 28).map((_, i) => 0.5 + 0.5 * Math.sin(i * 0.37));
    const after = (regularized: boolean) => {
      const b = built(regularized);
      const step = createReferenceStep(b, createOptimizer({ sgd: { learningRate: LR } }));
      const x = tf.tensor3d(pixels, [n, 28, 28]);
      const y = tf.tensor1d([0, 1, 2, 3], 'int32');
      step.run(x, y, 0);
      const [kernel, bias] = b.model.layers[1]!.getWeights().map((w) => Array.from(w.dataSync()));
      tf.dispose([x, y]);
      step.dispose();
      b.model.dispose();
      return { kernel: kernel!, bias: bias! };
    };
    const plain = after(false);
    const penalized = after(true);
    const kernelShift = plain.kernel.map((v, i) => v - penalized.kernel[i]!);
    [0.003, -0.005, 0.002, 0].forEach((want, i) =>
      assert.ok(
        Math.abs(kernelShift[i]! - want) <= 1e-6,
        `kernel[${i}] moved ${kernelShift[i]} more, expected ${want}`,
      ),
    );
    assert.ok(
      Math.abs(plain.bias[0]! - penalized.bias[0]! - 0.06) <= 1e-6,
      `bias moved ${plain.bias[0]! - penalized.bias[0]!} more, expected 0.06`,
    );
  });

  test('the lean step refuses a conv model with its reason, so the run takes the reference step', () => {
    const b = buildModel(loadSpec(path.join(ROOT, 'configs', 'cnn.yaml')).spec);
    const lean = createLeanStep(b.model, createOptimizer({ sgd: {} }), []);
    assert.deepEqual(lean, {
      unsupported: 'layer 0 is Reshape: convolution, pooling and reshape layers train on the autodiff step',
    });
    b.model.dispose();
  });
});
