/**
 * Dropout on the lean step through the real CLI: a dense model with dropout on its input and between its
 * layers trains on the lean step, with the autodiff step's history to float32 rounding (both draw the same
 * masks), and a run killed with SIGKILL after its first epoch resumes to the same history and weights, bit
 * for bit; also with the EMA of the weights and global gradient clipping on (the lean step's own EMA and
 * clipping passes). The lean step's runs are made in this process (helpers/resume-runs.ts) but for the one
 * killed; the autodiff run (REGTRAIN_ACCEL=off) is a real process too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { killAfterFirstEpoch, regtrainSync } from './helpers/cli';
import { seededXdgCache } from './helpers/data';
import { inProcessRegtrain } from './helpers/resume-runs';
import { scratchDir } from './helpers/scratch';

const tmp = scratchDir('regtrain-lean-dropout-');
const xdg = seededXdgCache(path.join(tmp, 'xdg'));
const env = { ...process.env, XDG_CACHE_HOME: xdg };
const SPEC = path.join(tmp, 'dropout.yaml');
fs.writeFileSync(
  SPEC,
  [
    'name: lean-dropout',
    'seed: 1234',
    'data: { normalize: scale01, validation: { size: 200, holdout: true }, trainLimit: 1000, testLimit: 300 }',
    'model:',
    '  layers:',
    '    - flatten: { inputShape: [28, 28] }',
    '    - dropout: { rate: 0.1 }',
    '    - dense: { units: 64, activation: relu, kernelRegularizer: { l2: 0.001 } }',
    '    - dropout: { rate: 0.3 }',
    '    - dense: { units: 32, activation: relu }',
    '    - dropout: { rate: 0.2 }',
    '    - dense: { units: 10, activation: softmax }',
    'optimizer: { sgd: { learningRate: 0.05, momentum: 0.9 } }',
    'training: { epochs: 3, batchSize: 32 }',
    '',
  ].join('\n'),
);

const regtrain = (args: string[], extraEnv: Record<string, string> = {}) =>
  regtrainSync(args, { cwd: tmp, env: { ...env, ...extraEnv } });
/** The same in this process (the same backend and kernels as the killed run's process). */
const regtrainHere = inProcessRegtrain(tmp, { XDG_CACHE_HOME: xdg });

const read = (dir: string, file: string) => fs.readFileSync(path.join(tmp, dir, file));
interface Epoch {
  loss: number;
  seconds?: number;
}
const history = (dir: string) =>
  (JSON.parse(read(dir, 'history.json').toString()) as { epochs: Epoch[] }).epochs.map(
    ({ seconds: _s, ...rest }) => rest,
  );

for (const [name, sets] of [
  ['dropout', []],
  [
    'dropout, the EMA of the weights and global gradient clipping',
    [
      '--set',
      'optimizer.sgd.useEma=true',
      '--set',
      'optimizer.sgd.emaOverwriteFrequency=20',
      '--set',
      'optimizer.sgd.globalClipnorm=0.5',
    ],
  ],
] as const) {
  const tag = sets.length ? 'ema-clip' : 'plain';
  test(`on the lean step, a run with ${name} agrees with the autodiff step and, killed with SIGKILL, resumes bit for bit`, async () => {
    const args = ['run', SPEC, ...sets, '--backend', 'wasm'];
    const whole = await regtrainHere([...args, '--out', `whole-${tag}`]);
    assert.equal(whole.code, 0, whole.stderr);
    assert.match(whole.stdout + whole.stderr, /^Training step: lean step/m);
    // The same masks on the autodiff step: the same losses, to float32 rounding over 96 steps.
    const autodiff = regtrain([...args, '--out', `autodiff-${tag}`], { REGTRAIN_ACCEL: 'off' });
    assert.equal(autodiff.status, 0, autodiff.stderr);
    assert.match(autodiff.stdout + autodiff.stderr, /^Training step: tfjs autodiff/m);
    history(`whole-${tag}`).forEach((e, i) => {
      const ref = history(`autodiff-${tag}`)[i]!.loss;
      assert.ok(Math.abs(e.loss - ref) <= 1e-3 * ref, `epoch ${i + 1}: loss ${e.loss} lean, ${ref} autodiff`);
    });

    const killed = `killed-${tag}`;
    await killAfterFirstEpoch([...args, '--out', killed], tmp, env);
    assert.ok(fs.existsSync(path.join(tmp, killed, 'checkpoint.json')), 'the first epoch left a checkpoint');
    const resumed = await regtrainHere(['run', '--resume', killed, '-q']);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(history(killed), history(`whole-${tag}`));
    assert.ok(read(killed, 'weights.bin').equals(read(`whole-${tag}`, 'weights.bin')), 'weights.bin is byte-identical');
  });
}
