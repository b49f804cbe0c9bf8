/**
 * Where long work is, in a few lines: a run's time left, a study's one-screen view with each
 * member's output in its log, and numbers formatted for a reader. The study runs in a process of its own
 * (its members are processes); the runs and the refusal whose text is checked are the real program in this
 * process (helpers/in-process.ts).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { epochLine, fmtLogValue } from '../src/train/callbacks/epoch-lines';
import { fmtTimeLeft } from '../src/train/callbacks/progress-bar';
import type { EpochRecord } from '../src/runformat';
import { BIN, QUICK, ROOT } from './helpers/cli';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

const TMP = scratchDir('regtrain-progress-');
const FAKE = path.join(ROOT, 'test', 'fixtures', 'bin');

test('time left reads as seconds below 90 s, whole minutes below an hour, then hours and minutes', () => {
  assert.deepEqual([0.2, 40.4, 89.4, 90, 200, 3569, 3570, 3900].map(fmtTimeLeft), [
    'about 1s left',
    'about 40s left',
    'about 89s left',
    'about 2 min left',
    'about 3 min left',
    'about 59 min left',
    'about 1h00m left',
    'about 1h05m left',
  ]);
});

test('a diverged epoch prints its numbers in exponent form, and a constant learning rate only on the first line', () => {
  const record = {
    epoch: 3,
    seconds: 0.7,
    loss: 3.448547222280469e22,
    accuracy: 0.1,
    val_loss: null,
    val_accuracy: null,
    data_loss: 3.4e22,
    penalty: 12345678.9,
    penalties: {},
    lr: 1e7,
  } as unknown as EpochRecord;
  assert.equal(
    epochLine(record, 20),
    'Epoch 3/20 - 0.7s - loss: 3.4485e+22 - accuracy: 0.1000 - penalty: 1.2346e+7 - lr: 1.0000e+7',
  );
  assert.equal(
    epochLine(record, 20, false),
    'Epoch 3/20 - 0.7s - loss: 3.4485e+22 - accuracy: 0.1000 - penalty: 1.2346e+7',
  );
  assert.deepEqual([0.01, 999999.5, 0.0001].map(fmtLogValue), ['0.0100', '999999.5000', '1.0000e-4']);
});

test('a constant learning rate shows on the first epoch line only, so the later lines of the quick run stay within 115 columns', async () => {
  const r = await regtrainInProcess(['run', QUICK, '--out', path.join(TMP, 'quick'), '--backend', 'wasm'], {
    cwd: TMP,
  });
  assert.equal(r.code, 0, r.stderr);
  const epochs = r.stdout.split('\n').filter((l) => l.startsWith('Epoch '));
  assert.equal(epochs.length, 3);
  assert.match(epochs[0]!, / - lr: 0\.0100$/);
  for (const line of epochs.slice(1)) {
    assert.doesNotMatch(line, / - lr: /);
    assert.ok(line.length <= 115, `${line.length} characters: ${line}`);
  }
});

test("a 12-member study's terminal output is one line per member and one progress line after each, with every member's own lines in its log", () => {
  const dir = fs.mkdtempSync(path.join(TMP, 'study-'));
  const spec = path.join(dir, 'study.yaml');
  fs.writeFileSync(
    spec,
    fs.readFileSync(QUICK, 'utf8') +
      'variants: { a: {}, b: { training.epochs: 2 }, failing: { training.epochs: 4 } }\nrepeats: 4\n',
  );
  const out = path.join(dir, 'study');
  const r = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '3'], {
    encoding: 'utf8',
    cwd: dir,
  });
  assert.equal(r.status, 1, r.stderr);
  const lines = r.stderr.trim().split('\n');
  // The header, 12 × (member line, progress line), the study's summary and the error.
  assert.equal(lines.length, 1 + 24 + 2, r.stderr);
  assert.equal(
    lines[0],
    `study quick: 12 runs into ${out}, 3 at a time; each run's output goes to ${out}/logs/<member>.log`,
  );
  const ends = lines.filter((l) => l.startsWith('['));
  assert.equal(ends.length, 12);
  for (const l of ends)
    assert.match(
      l,
      /^\[(a|b)-seed\d+\] done in \d+\.\ds$|^\[failing-seed\d+\] failed \(exit 1\) in \d+\.\ds: see study\/logs\/failing-seed\d+\.log$/,
    );
  const progress = lines.filter((l) => l.startsWith('progress: '));
  assert.equal(progress.length, 12);
  assert.match(progress[0]!, /^progress: [01]\/12 done, 2 running \(\S+, \S+\), (1 failed, )?about \d+s left$/);
  assert.match(progress[11]!, /^progress: 8\/12 done, 0 running, 4 failed$/);
  assert.equal(
    lines[25],
    'study: 8/12 runs ok, failed: failing-seed1234 (exit 1), failing-seed1235 (exit 1), failing-seed1236 (exit 1), failing-seed1237 (exit 1); compare with: node ' +
      BIN +
      ' compare study',
  );
  for (const name of ['a-seed1234', 'failing-seed1237']) {
    const log = fs.readFileSync(path.join(out, 'logs', `${name}.log`), 'utf8');
    assert.match(log, new RegExp(`^training ${name}\nsecond line\n`));
  }
});

test('a cosine decay longer than the run is warned about before training, naming the steps that would finish it', async () => {
  const spec = path.join(TMP, 'cosine.yaml');
  fs.writeFileSync(
    spec,
    fs
      .readFileSync(QUICK, 'utf8')
      .replace(/^optimizer:[^]*?(?=^\S)/m, '')
      .concat(
        'optimizer: { sgd: { learningRate: { cosineDecay: { initialLearningRate: 0.1, decaySteps: 1000 } } } }\n',
      ),
  );
  // 320 training images in batches of 32: 10 steps.
  const slice = ['data.trainLimit=320', 'data.validation.size=100', 'data.testLimit=100', 'training.epochs=1'];
  const r = await regtrainInProcess(
    ['run', spec, ...slice.flatMap((s) => ['--set', s]), '--out', path.join(TMP, 'cosine'), '-q'],
    { cwd: TMP },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stderr,
    /^warning: optimizer\.sgd\.learningRate\.cosineDecay: warmupSteps \+ decaySteps = 1000 steps, more than the 10 this run trains \(1 epochs × 10 steps\): the decay stops part-way; decaySteps: 10 would finish it$/m,
  );
});

test('a --set that makes a section wrong is named in the error, with the spec line it lands on', async () => {
  const r = await regtrainInProcess(['validate', QUICK, '--set', 'optimizer.adam.learningRate=0.1']);
  assert.equal(r.code, 2);
  // quick.yaml's line 16, column 12: the `{ sgd: … }` the --set adds a second optimizer to.
  assert.equal(
    r.stderr,
    '! optimizer: expected exactly one optimizer (sgd, adam, adamw), got 2 (--set optimizer.adam.learningRate=0.1, onto quick.yaml:16:12)\n',
  );
});
