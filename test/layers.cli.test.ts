/**
 * The noise and normalization layers and the orthogonal regularizer through the real CLI (`validate` of a spec
 * using all of them is checked in process in spec.unit.test.ts): a small run with each one says
 * which training step it took, lists it in the summary, and its saved model loads for `evaluate` and
 * `predict`; a run with gaussianNoise killed with SIGKILL after its first epoch resumes to the same
 * history and weights, bit for bit, on the lean step (noise on the input only) and on the autodiff step.
 *
 * The runs, evaluations and predictions are the real program in this process (helpers/in-process.ts: what
 * they check is the run's files and text, not a process's); the run that is SIGKILLed and its resume are
 * real processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { killAfterFirstEpoch, regtrainSync, sliceFlags, SMALL_SLICE } from './helpers/cli';
import { seededXdgCache } from './helpers/data';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

const tmp = scratchDir('regtrain-layers-');
const xdg = seededXdgCache(path.join(tmp, 'xdg'));
const env = { ...process.env, XDG_CACHE_HOME: xdg };

const regtrain = (args: string[]) => regtrainInProcess(args, { cwd: tmp, env: { XDG_CACHE_HOME: xdg } });

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

const TINY = [...sliceFlags({ train: 200, validation: 100, test: 100, epochs: 1 }), '--backend', 'wasm'];

const EACH: { name: string; middle: string[]; row: RegExp; step: RegExp; penalty: boolean }[] = [
  {
    name: 'gaussianNoise',
    middle: ['gaussianNoise: { stddev: 0.2 }', 'dense: { units: 16, activation: relu }'],
    row: /^gaussian_noise \(GaussianNoise\) +\(None, 784\) +0 +training only: stddev=0\.2$/m,
    // On the input, the lean step noises the batch itself (it takes no gradient there).
    step: /^Training step: lean step \(hand-written gradients\)/m,
    penalty: false,
  },
  {
    name: 'gaussianDropout',
    middle: ['dense: { units: 16, activation: relu }', 'gaussianDropout: { rate: 0.3 }'],
    row: /^gaussian_dropout \(GaussianDropout\) +\(None, 16\) +0 +training only: rate=0\.3$/m,
    step: /^Training step: tfjs autodiff \+ optimizer \(noise layers after the input need autodiff\)$/m,
    penalty: false,
  },
  {
    name: 'alphaDropout',
    middle: ['dense: { units: 16, activation: selu }', 'alphaDropout: { rate: 0.1 }'],
    row: /^alpha_dropout \(AlphaDropout\) +\(None, 16\) +0 +training only: rate=0\.1$/m,
    step: /^Training step: tfjs autodiff \+ optimizer \(noise layers after the input need autodiff\)$/m,
    penalty: false,
  },
  {
    name: 'layerNormalization',
    middle: ['dense: { units: 16, activation: relu }', 'layerNormalization: {}'],
    // gamma and beta, 16 each.
    row: /^layer_normalization \(LayerNormalization\) +\(None, 16\) +32 +-$/m,
    step: /^Training step: tfjs autodiff \+ optimizer \(layer 2 is LayerNormalization: the lean step covers Flatten and Dense layers\)$/m,
    penalty: false,
  },
  {
    name: 'activityRegularization',
    middle: ['dense: { units: 16, activation: relu }', 'activityRegularization: { l1: 0.001 }'],
    row: /^activity_regularization \(ActivityRegularization\) +\(None, 16\) +0 +activity L1\(0\.001\)$/m,
    step: /^Training step: tfjs autodiff \+ optimizer \(activity or bias penalties need autodiff\)$/m,
    penalty: true,
  },
  {
    name: 'orthogonal',
    middle: ['dense: { units: 16, activation: relu, kernelRegularizer: { orthogonal: { factor: 0.5 } } }'],
    row: /^dense \(Dense\) +\(None, 16\) +12,560 +kernel Orthogonal\(factor=0\.5, mode=rows\)$/m,
    step: /^Training step: tfjs autodiff \+ optimizer \(the orthogonal regularizer needs autodiff\)$/m,
    penalty: true,
  },
];

for (const c of EACH) {
  test(`a small run with ${c.name} trains on the step it names, lists it in the summary, and its saved model evaluates and predicts`, async () => {
    const spec = writeSpec(`${c.name}.yaml`, c.middle);
    const out = `run-${c.name}`;
    const r = await regtrain(['run', spec, ...TINY, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout + r.stderr;
    assert.match(text, c.row);
    assert.match(text, c.step);
    const [epoch] = (
      JSON.parse(fs.readFileSync(path.join(tmp, out, 'history.json'), 'utf8')) as {
        epochs: { loss: number; data_loss: number; penalty: number }[];
      }
    ).epochs;
    // The penalty (activity or orthogonal) is reported apart and is part of the loss.
    if (c.penalty) assert.ok(epoch!.penalty > 0, JSON.stringify(epoch));
    else assert.equal(epoch!.penalty, 0);
    assert.ok(Math.abs(epoch!.loss - (epoch!.data_loss + epoch!.penalty)) < 1e-9, JSON.stringify(epoch));
    const ev = await regtrain(['evaluate', out, '--backend', 'wasm']);
    assert.equal(ev.code, 0, ev.stderr);
    assert.match(ev.stdout, /^Test: loss: \d\.\d{4} - accuracy: \d\.\d{4} \(100 images\)$/m);
    // The noise layers are the identity at inference: evaluate reproduces the run's own test accuracy.
    assert.match(ev.stdout, /^\(run reported accuracy (\d\.\d{4}) on the same 100 images\)$/m);
    const acc = /^Test: loss: \d\.\d{4} - accuracy: (\d\.\d{4})/m.exec(ev.stdout)![1];
    assert.equal(/run reported accuracy (\d\.\d{4})/.exec(ev.stdout)![1], acc);
    const pr = await regtrain(['predict', out, '--test-index', '0', '--backend', 'wasm']);
    assert.equal(pr.code, 0, pr.stderr);
  });
}

for (const [step, middle, stepLine] of [
  [
    'the lean step',
    ['gaussianNoise: { stddev: 0.1 }', 'dense: { units: 32, activation: relu }'],
    /^Training step: lean step/m,
  ],
  [
    'the autodiff step',
    ['gaussianNoise: { stddev: 0.1 }', 'dense: { units: 32, activation: relu }', 'gaussianDropout: { rate: 0.2 }'],
    /^Training step: tfjs autodiff/m,
  ],
] as const) {
  test(`on ${step}, a run with gaussianNoise killed with SIGKILL after its first epoch resumes bit for bit`, async () => {
    const name = step.split(' ')[1]!;
    const spec = writeSpec(`noisy-${name}.yaml`, [...middle]);
    const args = ['run', spec, ...SMALL_SLICE, '--backend', 'wasm'];
    const whole = await regtrain([...args, '--out', `noisy-${name}-whole`]);
    assert.equal(whole.code, 0, whole.stderr);
    assert.match(whole.stdout + whole.stderr, stepLine);
    await killAfterFirstEpoch([...args, '--out', `noisy-${name}-killed`], tmp, env);
    assert.ok(
      fs.existsSync(path.join(tmp, `noisy-${name}-killed`, 'checkpoint.json')),
      'the first epoch left a checkpoint',
    );
    // A resume is a process of its own, as a user starts it (in this process, which has built models before,
    // tfjs would name the new model's variables apart from the checkpoint's).
    const resumed = regtrainSync(['run', '--resume', `noisy-${name}-killed`, '-q'], { cwd: tmp, env });
    assert.equal(resumed.status, 0, resumed.stderr);
    const read = (dir: string, file: string) => fs.readFileSync(path.join(tmp, dir, file));
    const history = (dir: string) =>
      (JSON.parse(read(dir, 'history.json').toString()) as { epochs: { seconds?: number }[] }).epochs.map(
        ({ seconds: _s, ...rest }) => rest,
      );
    assert.equal(history(`noisy-${name}-whole`).length, 3);
    assert.deepEqual(history(`noisy-${name}-killed`), history(`noisy-${name}-whole`));
    assert.ok(
      read(`noisy-${name}-killed`, 'weights.bin').equals(read(`noisy-${name}-whole`, 'weights.bin')),
      'weights.bin is byte-identical',
    );
  });
}
