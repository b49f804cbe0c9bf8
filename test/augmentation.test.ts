/**
 * Issue 22 item 1, data augmentation in real runs (small slices, the wasm backend): a run with every
 * image augmentation and both batch-mixing steps on, SIGKILLed after its first epoch and resumed, ends
 * bit for bit where the uninterrupted run does (the augmentation stream is in the checkpoint); and the
 * tutorial's model stays on the lean training step with augmentation on.
 * The hand-computed cases are in augmentation.unit.test.ts. The run SIGKILLed and its resume are real processes;
 * the uninterrupted runs are the real program in this process (helpers/in-process.ts): they check numbers, files
 * and the --json events.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, QUICK, killAfterFirstEpoch, SMALL_SLICE } from './helpers/cli';
import { sharedDataDir } from './helpers/data';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

const tmp = scratchDir('regtrain-augment-');
const env = { ...process.env, REGTRAIN_DATA_DIR: sharedDataDir() };
const spec = path.join(tmp, 'augmented.yaml');
const small = [...SMALL_SLICE, '--backend', 'wasm'];

const regtrain = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: tmp, env, encoding: 'utf8' });
const inProcess = (args: string[]) =>
  regtrainInProcess(args, { cwd: tmp, env: { REGTRAIN_DATA_DIR: env.REGTRAIN_DATA_DIR } });
const read = (dir: string, file: string) => fs.readFileSync(path.join(tmp, dir, file));
const history = (dir: string) =>
  (JSON.parse(read(dir, 'history.json').toString()) as { epochs: Record<string, unknown>[] }).epochs.map(
    ({ seconds: _s, ...rest }) => rest,
  );

let wholeEvents: { event: string; step?: string }[] = [];

before(async () => {
  // configs/quick.yaml (the tutorial's model) with every augmentation step on.
  fs.writeFileSync(
    spec,
    fs
      .readFileSync(QUICK, 'utf8')
      .replace(
        /^ {2}testLimit: null$/m,
        [
          '  testLimit: null',
          '  augmentation:',
          '    - randomTranslation: { heightFactor: 0.1, widthFactor: 0.1 }',
          '    - randomFlip: { mode: horizontal }',
          '    - randomRotation: { factor: 0.05 }',
          '    - randomZoom: { heightFactor: 0.1 }',
          '    - randomErasing: { value: random }',
          '    - mixUp: { alpha: 0.2 }',
          '    - cutMix: {}',
        ].join('\n'),
      ),
  );
  const r = await inProcess(['run', spec, ...small, '--out', 'whole', '--json']);
  assert.equal(r.code, 0, r.stderr);
  wholeEvents = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { event: string; step?: string });
});

test('the tutorial model with augmentation and mixing on still trains on the lean step', () => {
  // The JSON "training" event records the step the run trains on (the text log's "Training step:" line).
  const training = wholeEvents.find((e) => e.event === 'training');
  assert.match(training?.step ?? '', /^lean step \(hand-written gradients\) \+ /);
});

test('a run with augmentation, mixUp and cutMix killed with SIGKILL and resumed ends with the same history and weights', async () => {
  await killAfterFirstEpoch(['run', spec, ...small, '--out', 'killed'], tmp, env);
  const checkpoint = JSON.parse(read('killed', 'checkpoint.json').toString()) as {
    body: { trainingPath: string; loop: { augmentationRng?: number[] } };
  };
  assert.equal(checkpoint.body.trainingPath, 'lean');
  assert.equal(checkpoint.body.loop.augmentationRng?.length, 4, 'the augmentation stream is checkpointed');
  const r = regtrain(['run', '--resume', 'killed', '-q']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(history('killed'), history('whole'));
  assert.ok(read('killed', 'weights.bin').equals(read('whole', 'weights.bin')), 'weights.bin is byte-identical');
});

test('augmentation reaches the training batches only: validation and test see the images as they are', async () => {
  // A learning rate of 1e-30 leaves the weights as initialized (same seed, same weights in both runs), so
  // erasing 90% of every training image changes the training loss and nothing else.
  const frozen = [...small, '--set', 'training.epochs=1', '--set', 'optimizer.sgd.learningRate=1e-30', '-q'];
  const erased = ['--set', 'data.augmentation=[{randomErasing: {p: 1, scale: [0.9, 0.9], ratio: [1, 1]}}]'];
  for (const [out, extra] of [
    ['frozen-plain', []],
    ['frozen-erased', erased],
  ] as const) {
    const r = await inProcess(['run', QUICK, ...frozen, ...extra, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
  }
  const [plain, erasedRun] = ['frozen-plain', 'frozen-erased'].map((d) => history(d)[0]!);
  assert.ok(Math.abs((plain!.loss as number) - (erasedRun!.loss as number)) > 0.01, 'the training loss differs');
  assert.equal(erasedRun!.val_loss, plain!.val_loss);
  assert.equal(erasedRun!.val_accuracy, plain!.val_accuracy);
  const test = (d: string) => (JSON.parse(read(d, 'metrics.json').toString()) as { test: unknown }).test;
  assert.deepEqual(test('frozen-erased'), test('frozen-plain'));
});
