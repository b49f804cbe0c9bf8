/**
 * Label smoothing and weight constraints through the real CLI: `validate` accepts a spec using all of
 * them, a run reports the smoothing apart and keeps its constrained weights in bounds, and a run killed
 * with SIGKILL after its first epoch resumes to the same history and weights, bit for bit, on the
 * lean step and on the autodiff step. `validate` and the lean step's runs but the killed one are made in this
 * process (helpers/resume-runs.ts); the autodiff step's runs (REGTRAIN_ACCEL=off) and killed runs are real processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { killAfterFirstEpoch, QUICK, regtrainSync, SMALL_SLICE } from './helpers/cli';
import { seededXdgCache } from './helpers/data';
import { inProcessRegtrain } from './helpers/resume-runs';
import { scratchDir } from './helpers/scratch';

const tmp = scratchDir('regtrain-toolbox-');
const xdg = seededXdgCache(path.join(tmp, 'xdg'));
const env = { ...process.env, XDG_CACHE_HOME: xdg };
const TOOLBOX = [
  ...SMALL_SLICE,
  '--set',
  'training.labelSmoothing=0.1',
  '--set',
  'model.layers.1.dense.kernelConstraint={maxNorm: {maxValue: 1}}',
  '--set',
  'model.layers.4.dense.kernelConstraint=nonNeg',
  '--set',
  'model.layers.4.dense.biasConstraint=unitNorm',
  '--backend',
  'wasm',
];

const regtrain = (args: string[], extraEnv: Record<string, string> = {}) =>
  regtrainSync(args, { cwd: tmp, env: { ...env, ...extraEnv } });
/** The same in this process (the same backend and kernels as the killed run's process, on the lean step). */
const regtrainHere = inProcessRegtrain(tmp, { XDG_CACHE_HOME: xdg });

const read = (dir: string, file: string) => fs.readFileSync(path.join(tmp, dir, file));
interface Epoch {
  loss: number;
  data_loss: number;
  smoothing?: number;
  penalty: number;
  seconds?: number;
}
const epochs = (dir: string) => (JSON.parse(read(dir, 'history.json').toString()) as { epochs: Epoch[] }).epochs;
const history = (dir: string) => epochs(dir).map(({ seconds: _s, ...rest }) => rest);

/** A weight of the saved model, by name, from weights.bin (float32, in the manifest's order). */
function weight(dir: string, name: string): { shape: number[]; values: Float32Array } {
  const manifest = (
    JSON.parse(read(dir, 'model.json').toString()) as {
      weightsManifest: { weights: { name: string; shape: number[] }[] }[];
    }
  ).weightsManifest[0]!.weights;
  const bin = read(dir, 'weights.bin');
  let offset = 0;
  for (const w of manifest) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    if (w.name === name)
      return {
        shape: w.shape,
        values: new Float32Array(bin.buffer.slice(bin.byteOffset + offset, bin.byteOffset + offset + 4 * n)),
      };
    offset += 4 * n;
  }
  throw new Error(`no weight ${name}`);
}

test('validate accepts a spec with label smoothing, every constraint on dense and conv layers and the noise and normalization layers, defaults filled in', async () => {
  fs.writeFileSync(
    path.join(tmp, 'toolbox.yaml'),
    [
      'name: toolbox',
      'model:',
      '  layers:',
      '    - reshape: { targetShape: [28, 28, 1] }',
      '    - conv2d: { filters: 4, kernelSize: 3, activation: relu, kernelConstraint: { maxNorm: { maxValue: 3, axis: [0, 1, 2] } }, biasConstraint: nonNeg }',
      '    - flatten: {}',
      '    - dense: { units: 32, activation: relu, kernelConstraint: unitNorm, biasConstraint: { minMaxNorm: { maxValue: 2, rate: 0.5 } } }',
      // Item 4 of issue 22: the noise and normalization layers and the orthogonal regularizer.
      '    - gaussianNoise: { stddev: 0.1 }',
      '    - dense: { units: 16, activation: selu, kernelRegularizer: orthogonal }',
      '    - alphaDropout: { rate: 0.1 }',
      '    - layerNormalization: {}',
      '    - gaussianDropout: { rate: 0.1 }',
      '    - activityRegularization: { l2: 0.001 }',
      '    - dense: { units: 10, activation: softmax, kernelConstraint: minMaxNorm }',
      'optimizer: { sgd: { learningRate: 0.01 } }',
      'training: { labelSmoothing: 0.1 }',
      '',
    ].join('\n'),
  );
  const r = await regtrainHere(['validate', 'toolbox.yaml', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const spec = JSON.parse(r.stdout) as {
    training: { labelSmoothing: number };
    model: { layers: Record<string, Record<string, unknown>>[] };
  };
  assert.equal(spec.training.labelSmoothing, 0.1);
  const [, conv, , hidden] = spec.model.layers;
  const out = spec.model.layers.at(-1);
  assert.deepEqual(spec.model.layers[7], {
    layerNormalization: { axis: -1, epsilon: 0.001, center: true, scale: true },
  });
  assert.deepEqual(conv!.conv2d!.kernelConstraint, { maxNorm: { maxValue: 3, axis: [0, 1, 2] } });
  assert.deepEqual(conv!.conv2d!.biasConstraint, { nonNeg: {} });
  assert.deepEqual(hidden!.dense!.kernelConstraint, { unitNorm: { axis: 0 } });
  assert.deepEqual(hidden!.dense!.biasConstraint, { minMaxNorm: { minValue: 0, maxValue: 2, rate: 0.5, axis: 0 } });
  assert.deepEqual(out!.dense!.kernelConstraint, { minMaxNorm: { minValue: 0, maxValue: 1, rate: 1, axis: 0 } });
});

for (const [step, extraEnv, slice] of [
  ['lean', {}, []],
  // Half the images on the autodiff step, ~2.5 times slower a step: nothing checked depends on the slice.
  ['autodiff', { REGTRAIN_ACCEL: 'off' }, ['--set', 'data.trainLimit=500', '--set', 'data.validation.size=100']],
] as const) {
  test(`on the ${step} step, a run with label smoothing and constraints killed with SIGKILL resumes bit for bit`, async () => {
    const whole = `whole-${step}`;
    const killed = `killed-${step}`;
    const r =
      step === 'lean'
        ? await regtrainHere(['run', QUICK, ...TOOLBOX, ...slice, '--out', whole])
        : regtrain(['run', QUICK, ...TOOLBOX, ...slice, '--out', whole], extraEnv);
    assert.equal('code' in r ? r.code : r.status, 0, r.stderr);
    assert.match(r.stdout + r.stderr, step === 'lean' ? /Training step: lean step/ : /Training step: tfjs autodiff/);
    // The summary names the constraints and the smoothing; the epoch lines show the smoothing apart.
    const out = r.stdout + r.stderr;
    assert.match(out, /^dense \(Dense\) .* kernel L1\(0\.01\); kernel maxNorm\(maxValue=1, axis=0\)$/m);
    assert.match(out, /^dense_3 \(Dense\) .* kernel nonNeg; bias unitNorm\(axis=0\)$/m);
    assert.match(out, /^Loss: sparse categorical cross-entropy with label smoothing 0\.1 /m);
    assert.match(out, /^Epoch 1\/3 - .* - smoothing: \d\.\d{4} - penalty: /m);
    // loss = data_loss + smoothing + penalty, each epoch.
    for (const e of epochs(whole)) {
      assert.ok(typeof e.smoothing === 'number' && e.smoothing > 0, JSON.stringify(e));
      assert.ok(Math.abs(e.loss - (e.data_loss + e.smoothing + e.penalty)) < 1e-9, JSON.stringify(e));
    }
    assert.match(read(whole, 'history.csv').toString().split('\n')[0]!, /,smoothing$/);
    // The constraints hold on the saved weights: dense's columns have norm ≤ 1, dense_3's kernel is ≥ 0
    // (−0 counts), its bias has norm 1.
    const k1 = weight(whole, 'dense/kernel');
    const [rows, cols] = k1.shape as [number, number];
    for (let c = 0; c < cols; c++) {
      let sq = 0;
      for (let i = 0; i < rows; i++) sq += k1.values[i * cols + c]! ** 2;
      assert.ok(Math.sqrt(sq) <= 1 + 1e-5, `dense column ${c} norm ${Math.sqrt(sq)}`);
    }
    assert.ok(
      weight(whole, 'dense_3/kernel').values.every((v) => v >= 0),
      'dense_3/kernel has a negative weight',
    );
    const b4 = weight(whole, 'dense_3/bias').values;
    assert.ok(Math.abs(Math.hypot(...b4) - 1) < 1e-5, `dense_3/bias norm ${Math.hypot(...b4)}`);

    await killAfterFirstEpoch(['run', QUICK, ...TOOLBOX, ...slice, '--out', killed], tmp, { ...env, ...extraEnv });
    assert.ok(fs.existsSync(path.join(tmp, killed, 'checkpoint.json')), 'the first epoch left a checkpoint');
    const resumed =
      step === 'lean'
        ? await regtrainHere(['run', '--resume', killed, '-q'])
        : regtrain(['run', '--resume', killed, '-q'], extraEnv);
    assert.equal('code' in resumed ? resumed.code : resumed.status, 0, resumed.stderr);
    assert.deepEqual(history(killed), history(whole));
    assert.ok(read(killed, 'weights.bin').equals(read(whole, 'weights.bin')), 'weights.bin is byte-identical');
  });
}
