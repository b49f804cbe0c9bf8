/**
 * `regtrain run` end to end on the real Fashion-MNIST files (found in /usr/share/datasets/fashion-mnist,
 * copied into a temp cache once for this file). Every run is tiny: 500 training images, 100 validation,
 * 500 test, 2 epochs, on wasm. What is a process's (its exit code and outputs, a signal, a failed run's exit)
 * runs as a real child process; the rest (a run's numbers and files, refusals) is the real program in this
 * process (helpers/in-process.ts).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import * as YAML from 'yaml';
import type { EpochRecord, HistoryFile, MetricsFile } from '../src/runformat';
import { finished, QUICK, ROOT, startCli, TINY_RUN, type CliResult } from './helpers/cli';
import { sharedDataDir } from './helpers/data';
import { scratchDir } from './helpers/scratch';
import { regtrainInProcess } from './helpers/in-process';
import { readJson } from './helpers/run-files';

const SPECS = path.join(ROOT, 'test', 'fixtures', 'specs');
const RUN_TIMEOUT = 90_000;

let TMP = '';
let CACHE = '';

before(() => {
  TMP = scratchDir('regtrain-run-test-');
  CACHE = sharedDataDir();
});

/** A fresh working directory for one test (also the parent of its --out). */
const workdir = () => fs.mkdtempSync(path.join(TMP, 'w-'));

function start(args: string[], cwd: string): ChildProcess {
  return startCli(args, { cwd, env: { REGTRAIN_DATA_DIR: CACHE, XDG_CACHE_HOME: path.join(TMP, 'xdg') } });
}

const regtrain = (args: string[], cwd: string): Promise<CliResult> =>
  finished(start(args, cwd), undefined, RUN_TIMEOUT);

/** `regtrain ...args` in this process, with the environment `start` gives a child. */
const inProcess = (args: string[], cwd: string) =>
  regtrainInProcess(args, { cwd, env: { REGTRAIN_DATA_DIR: CACHE, XDG_CACHE_HOME: path.join(TMP, 'xdg') } });

const history = (dir: string) => readJson<HistoryFile>(path.join(dir, 'history.json'));
const metrics = (dir: string) => readJson<MetricsFile>(path.join(dir, 'metrics.json'));
/** History without wall-clock times: what must repeat exactly. */
const numbers = (epochs: EpochRecord[]) => epochs.map(({ seconds: _s, ...rest }) => rest);

/** No temp files from atomic writes and no lock left behind. */
function assertNoLeftovers(dir: string): void {
  const names = fs.readdirSync(dir);
  assert.deepEqual(
    names.filter((f) => /^\..*\.tmp$/.test(f)),
    [],
    `temp files left in ${dir}: ${names.join(', ')}`,
  );
  assert.ok(!names.includes('.regtrain.lock'), `lock file left in ${dir}`);
}

/** One run of QUICK on TINY_RUN, made by the first test that asks: its directory and result. */
let tinyRun: Promise<{ out: string; r: CliResult }> | undefined;
const theTinyRun = () =>
  (tinyRun ??= (async () => {
    const cwd = workdir();
    const out = path.join(cwd, 'run');
    return { out, r: await regtrain(['run', QUICK, ...TINY_RUN, '--out', out], cwd) };
  })());

test('a quick run on the real dataset exits 0 and writes a complete run directory', async () => {
  const { out, r } = await theTinyRun();
  assert.equal(r.code, 0, r.stderr);

  for (const f of ['model.json', 'weights.bin', 'spec.yaml', 'history.json', 'history.csv', 'metrics.json']) {
    assert.ok(fs.statSync(path.join(out, f)).size > 0, `${f} missing or empty`);
  }
  assertNoLeftovers(out);
  // A finished run keeps no checkpoint (it cannot be resumed).
  assert.deepEqual(
    fs.readdirSync(out).filter((f) => f.startsWith('checkpoint')),
    [],
  );

  const m = metrics(out);
  assert.equal(m.status, 'complete');
  assert.equal(m.stopReason, 'epochs');
  assert.equal(m.epochsRun, 2);
  assert.equal(m.bestEpoch, null);
  assert.equal(m.name, 'quick');
  assert.equal(m.seed, 1234);
  assert.equal(m.backend.name, 'wasm');
  // trainLimit=500 counts the images trained on; the 100 validation images are held out apart.
  assert.deepEqual(m.dataset.sizes, { train: 500, validation: 100, test: 500 });
  assert.equal(m.test?.count, 500);
  assert.ok(m.test!.accuracy > 0.1 && m.test!.accuracy <= 1, `test accuracy ${m.test!.accuracy}`);
  assert.equal(m.trainEval?.count, 500);
  assert.equal(m.seconds.perEpoch.length, 2);
  assert.deepEqual(
    m.finalWeights.map((w) => w.layer),
    ['dense', 'dense_1', 'dense_2', 'dense_3'],
  );
  // 784·200+200 + 200·100+100 + 100·50+50 + 50·10+10 = 157000 + 20100 + 5050 + 510.
  assert.deepEqual(m.parameters, { total: 182660, trainable: 182660 });

  const h = history(out);
  assert.equal(h.formatVersion, 1);
  assert.deepEqual(
    h.epochs.map((e) => e.epoch),
    [1, 2],
  );
  for (const e of h.epochs) {
    // Keras's loss is data loss + penalty; this spec regularizes dense, dense_1 and dense_2.
    assert.ok(
      Math.abs(e.loss - (e.data_loss + e.penalty)) < 1e-9 * Math.max(1, e.loss),
      `epoch ${e.epoch}: loss ≠ data_loss + penalty`,
    );
    assert.deepEqual(Object.keys(e.penalties).sort(), ['dense/kernel', 'dense_1/kernel', 'dense_2/kernel']);
    assert.ok(e.penalty > 0 && e.val_loss !== null && e.val_accuracy !== null);
  }

  // history.csv carries the same numbers, one row per epoch.
  const csv = fs.readFileSync(path.join(out, 'history.csv'), 'utf8').trimEnd().split('\n');
  assert.equal(csv[0], 'epoch,loss,accuracy,val_loss,val_accuracy,data_loss,penalty,lr,seconds');
  assert.deepEqual(
    csv.slice(1),
    h.epochs.map((e) =>
      [e.epoch, e.loss, e.accuracy, e.val_loss, e.val_accuracy, e.data_loss, e.penalty, e.lr, e.seconds]
        .map(String)
        .join(','),
    ),
  );

  // spec.yaml is the resolved spec, overrides included.
  const spec = YAML.parse(fs.readFileSync(path.join(out, 'spec.yaml'), 'utf8')) as {
    data: { trainLimit: number; testLimit: number; validation: { size: number } };
    training: { epochs: number; batchSize: number };
  };
  assert.equal(spec.data.trainLimit, 500);
  assert.equal(spec.data.testLimit, 500);
  assert.equal(spec.data.validation.size, 100);
  assert.deepEqual([spec.training.epochs, spec.training.batchSize], [2, 32]);

  // Keras-style epoch lines, with the numbers of history.json.
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('Epoch '));
  assert.equal(lines.length, 2, r.stdout);
  h.epochs.forEach((e, i) => {
    const re =
      /^Epoch (\d+)\/2 - \d+\.\ds - loss: (\d+\.\d{4}) - accuracy: (\d\.\d{4}) - val_loss: (\d+\.\d{4}) - val_accuracy: (\d\.\d{4}) - penalty: (\d+\.\d{4})(?: - lr: (\d\.\d{4}))?$/;
    const match = re.exec(lines[i]!);
    assert.ok(match, `not a Keras-style epoch line: ${lines[i]}`);
    assert.deepEqual(match.slice(1), [
      String(e.epoch),
      e.loss.toFixed(4),
      e.accuracy.toFixed(4),
      e.val_loss!.toFixed(4),
      e.val_accuracy!.toFixed(4),
      e.penalty.toFixed(4),
      // A constant learning rate shows on the first line only.
      i === 0 ? '0.0100' : undefined,
    ]);
  });
  assert.ok(
    r.stdout.includes(
      `Test: loss: ${m.test!.loss.toFixed(4)} - accuracy: ${m.test!.accuracy.toFixed(4)} (500 images)\n`,
    ),
    r.stdout,
  );
});

test('--json prints only JSON lines: start, training, one epoch per epoch, test, done, with the documented keys', async () => {
  const cwd = workdir();
  const out = path.join(cwd, 'run');
  const r = await regtrain(['run', QUICK, ...TINY_RUN, '--set', 'training.epochs=3', '--out', out, '--json'], cwd);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.endsWith('\n'));
  const events = r.stdout
    .trimEnd()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.deepEqual(
    events.map((e) => e.event),
    ['start', 'training', 'epoch', 'epoch', 'epoch', 'test', 'done'],
  );

  const [startEv, trainingEv, ...rest] = events;
  assert.deepEqual(Object.keys(trainingEv!).sort(), [
    'blas',
    'epochs',
    'event',
    'gemm',
    'resumedAfterEpoch',
    'seconds',
    'step',
    'steps',
  ]);
  assert.deepEqual([trainingEv!.epochs, trainingEv!.steps], [3, Math.ceil(500 / 32)]);
  assert.deepEqual(Object.keys(startEv!).sort(), [
    'backend',
    'backendReason',
    'event',
    'name',
    'resumedAfterEpoch',
    'runDir',
    'seed',
  ]);
  assert.deepEqual(
    [startEv!.runDir, startEv!.backend, startEv!.name, startEv!.seed, startEv!.resumedAfterEpoch],
    [out, 'wasm', 'quick', 1234, null],
  );

  const h = history(out);
  const epochEvents = rest.slice(0, 3);
  epochEvents.forEach((ev, i) => {
    assert.deepEqual(Object.keys(ev).sort(), [
      'accuracy',
      'data_loss',
      'epoch',
      'event',
      'loss',
      'lr',
      'penalties',
      'penalty',
      'seconds',
      'trainSeconds',
      'val_accuracy',
      'val_loss',
      'weights',
    ]);
    const { event: _e, trainSeconds, ...record } = ev;
    assert.deepEqual(record, h.epochs[i], `epoch event ${i + 1} differs from history.json`);
    // The training steps' share of the epoch: more than nothing, less than the whole epoch with its validation.
    assert.ok(
      typeof trainSeconds === 'number' && trainSeconds > 0 && trainSeconds < h.epochs[i]!.seconds,
      `trainSeconds ${String(trainSeconds)}, seconds ${h.epochs[i]!.seconds}`,
    );
  });

  const m = metrics(out);
  const testEv = rest[3]!;
  assert.deepEqual(Object.keys(testEv).sort(), [
    'accuracy',
    'brier',
    'count',
    'ece',
    'event',
    'loss',
    'nll',
    'train_accuracy',
  ]);
  assert.deepEqual(
    [testEv.loss, testEv.accuracy, testEv.count, testEv.train_accuracy, testEv.ece, testEv.brier, testEv.nll],
    [
      m.test!.loss,
      m.test!.accuracy,
      500,
      m.trainEval!.accuracy,
      m.calibration!.ece,
      m.calibration!.brier,
      m.calibration!.nll,
    ],
  );

  const done = rest[4]!;
  assert.deepEqual(Object.keys(done).sort(), ['epochs', 'event', 'peakRssMB', 'runDir', 'seconds', 'stopReason']);
  assert.deepEqual([done.runDir, done.epochs, done.stopReason], [out, 3, 'epochs']);
  assert.ok(typeof done.seconds === 'number' && done.seconds > 0);

  // The human text went to stderr instead.
  assert.match(r.stderr, /^Epoch 3\/3 - .* - loss: \d+\.\d{4} - /m);
  assert.match(r.stderr, /^Test: loss: /m);
  assert.match(r.stderr, /^Test: .*\nCalibration: ECE: \d\.\d{4} \(15 bins\) - Brier: \d\.\d{4} - NLL: \d\.\d{4}\n/m);
});

test('two runs with the same spec, seed and backend give identical histories, metrics and weights', async () => {
  const cwd = workdir();
  // The first is the run the first test checks (a child process); the second is made here, in this process.
  const { out: a, r: ra } = await theTinyRun();
  const b = path.join(cwd, 'b');
  const rb = await inProcess(['run', QUICK, ...TINY_RUN, '--out', b, '-q'], cwd);
  assert.equal(ra.code, 0, ra.stderr);
  assert.equal(rb.code, 0, rb.stderr);
  assert.deepEqual(numbers(history(b).epochs), numbers(history(a).epochs));
  assert.deepEqual(metrics(b).test, metrics(a).test);
  assert.deepEqual(metrics(b).finalWeights, metrics(a).finalWeights);
  assert.ok(
    fs.readFileSync(path.join(a, 'weights.bin')).equals(fs.readFileSync(path.join(b, 'weights.bin'))),
    'weights.bin differs',
  );
  // -q keeps only the final result.
  assert.doesNotMatch(rb.stdout, /^Epoch /m);
  assert.match(rb.stdout, /^Test: loss: \d+\.\d{4} - accuracy: \d\.\d{4} \(500 images\)$/m);
});

test('a run whose loss becomes non-finite exits 1 with a clear message, keeps its history and marks the run failed', async () => {
  const cwd = workdir();
  const out = path.join(cwd, 'run');
  // One 500-image batch per epoch and lr 1e7: the weights grow ~1e4× per step and the loss
  // overflows float32 a few epochs in, after at least one full epoch. No validation split: its
  // loss (from the logits, unclipped) would overflow first, and this is the training loss's path.
  const r = await regtrain(
    [
      'run',
      QUICK,
      ...TINY_RUN,
      '--set',
      'data.validation.size=0',
      '--set',
      'training.epochs=20',
      '--set',
      'training.batchSize=500',
      '--set',
      'optimizer.sgd.learningRate=1e7',
      '--out',
      out,
    ],
    cwd,
  );
  assert.equal(r.code, 1, r.stderr);
  const match =
    /^error: the loss became NaN or infinite at epoch (\d+), step (\d+): training stopped; try a smaller learning rate or smaller penalties \(history so far is in (.+)\)\n$/.exec(
      r.stderr,
    );
  assert.ok(match, `unexpected stderr:\n${r.stderr}`);
  assert.equal(match[3], out);
  const epoch = Number(match[1]);
  assert.equal(Number(match[2]), 1, 'one batch per epoch');
  assert.ok(epoch >= 2 && epoch < 20, `non-finite at epoch ${epoch}`);

  const h = history(out);
  assert.equal(h.epochs.length, epoch - 1, 'the history keeps every completed epoch');
  for (const e of h.epochs) assert.ok(Number.isFinite(e.loss), `epoch ${e.epoch} has loss ${e.loss}`);
  const csvRows = fs.readFileSync(path.join(out, 'history.csv'), 'utf8').trimEnd().split('\n');
  assert.equal(csvRows.length, 1 + h.epochs.length);

  const m = metrics(out);
  assert.equal(m.status, 'failed');
  assert.equal(m.stopReason, 'non-finite-loss');
  assert.equal(m.epochsRun, epoch - 1);
  assert.equal(m.test, null);
  // A diverged model is not saved (a model.json only ever describes usable weights).
  assert.ok(!fs.existsSync(path.join(out, 'model.json')));
  assert.ok(!fs.existsSync(path.join(out, 'weights.bin')));
  assertNoLeftovers(out);
});

test('SIGINT stops a real run after the current batch: exit 130, history and model saved, run marked incomplete', async () => {
  const cwd = workdir();
  const out = path.join(cwd, 'run');
  const child = start(['run', QUICK, ...TINY_RUN, '--set', 'training.epochs=200', '--out', out], cwd);
  let sent = false;
  const r = await finished(
    child,
    (stdout) => {
      if (!sent && /^Epoch 1\/200 /m.test(stdout)) {
        sent = true;
        child.kill('SIGINT');
      }
    },
    RUN_TIMEOUT,
  );
  assert.ok(sent, `never saw the first epoch line:\n${r.stdout}\n${r.stderr}`);
  assert.equal(r.signal, null, 'the process must exit by itself, not die of the signal');
  assert.equal(r.code, 130, r.stderr);
  const match =
    /^interrupted \(SIGINT\) after epoch (\d+) of 200; the history and the model so far are saved in (.+); continue with: node \S+ run --resume (.+) --backend wasm$/m.exec(
      r.stderr,
    );
  assert.ok(match, r.stderr);
  assert.equal(match[2], out);
  assert.equal(match[3], out);

  const h = history(out);
  assert.ok(h.epochs.length >= 1 && h.epochs.length < 200, `history has ${h.epochs.length} epochs`);
  assert.equal(Number(match[1]), h.epochs.length);
  const m = metrics(out);
  assert.equal(m.status, 'incomplete');
  assert.equal(m.stopReason, 'interrupted');
  assert.equal(m.epochsRun, h.epochs.length);
  assert.equal(m.test, null);
  assert.ok(fs.existsSync(path.join(out, 'weights.bin')));
  const model = readJson<{ userDefinedMetadata: { regtrain: Record<string, unknown> } }>(path.join(out, 'model.json'));
  assert.deepEqual(model.userDefinedMetadata.regtrain, {
    status: 'incomplete',
    stopReason: 'interrupted',
    epochsRun: h.epochs.length,
  });
  assertNoLeftovers(out);
});

test('--out pointing at a non-empty directory exits 2 and leaves its files untouched', async () => {
  const cwd = workdir();
  const out = path.join(cwd, 'existing');
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'metrics.json'), '{"mine": true}\n');
  fs.writeFileSync(path.join(out, 'notes.txt'), 'do not touch\n');
  const before = fs
    .readdirSync(out)
    .map((f) => [f, fs.readFileSync(path.join(out, f), 'utf8'), fs.statSync(path.join(out, f)).mtimeMs]);

  const r = await inProcess(['run', QUICK, ...TINY_RUN, '--out', out], cwd);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr, `error: --out ${out}: exists and is not empty; regtrain never overwrites a run\n`);
  const afterFiles = fs
    .readdirSync(out)
    .map((f) => [f, fs.readFileSync(path.join(out, f), 'utf8'), fs.statSync(path.join(out, f)).mtimeMs]);
  assert.deepEqual(afterFiles, before);
});

test('--out pointing at a file exits 2 and leaves the file untouched', async () => {
  const cwd = workdir();
  const out = path.join(cwd, 'a-file');
  fs.writeFileSync(out, 'keep\n');
  const r = await inProcess(['run', QUICK, ...TINY_RUN, '--out', out], cwd);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr, `error: --out ${out}: exists and is not a directory\n`);
  assert.equal(fs.readFileSync(out, 'utf8'), 'keep\n');
});

test('a spec error exits 2 before any run directory is created', async () => {
  const cwd = workdir();
  const out = path.join(cwd, 'run');
  const r = await inProcess(['run', path.join(SPECS, 'negative-units.yaml'), '--backend', 'wasm', '--out', out], cwd);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(
    r.stderr,
    '! model.layers.1.dense.units: expected a positive integer, got -5 (negative-units.yaml:5:23)\n',
  );
  assert.equal(r.stdout, '');
  assert.ok(!fs.existsSync(out), '--out was created');

  // Without --out: no runs/ folder either; a bad --set is refused the same way.
  const r2 = await inProcess(['run', QUICK, '--backend', 'wasm', '--set', 'training.epochs=0'], cwd);
  assert.equal(r2.code, 2, r2.stderr);
  assert.equal(r2.stderr, '! training.epochs: expected a positive integer, got 0 (--set training.epochs=0)\n');
  assert.deepEqual(fs.readdirSync(cwd), []);
});

test('without --out the run directory is runs/<name>-<UTC timestamp> under the working directory', async () => {
  const cwd = workdir();
  const r = await inProcess(['run', QUICK, ...TINY_RUN, '--set', 'training.epochs=1', '-q'], cwd);
  assert.equal(r.code, 0, r.stderr);
  const runs = fs.readdirSync(path.join(cwd, 'runs'));
  assert.equal(runs.length, 1);
  assert.match(runs[0]!, /^quick-\d{8}T\d{6}Z$/);
  // Shown absolute, as the first line shows it.
  assert.ok(r.stdout.endsWith(`; run directory: ${path.join(fs.realpathSync(cwd), 'runs', runs[0]!)}\n`), r.stdout);
  assert.equal(metrics(path.join(cwd, 'runs', runs[0]!)).status, 'complete');
});

test('early stopping with restoreBestWeights stops after `patience` epochs without improvement and records bestEpoch', async () => {
  const cwd = workdir();
  const out = path.join(cwd, 'run');
  // minDelta 1000 on val_loss (~66 here): only the first epoch counts as an improvement
  // (from +∞), so with patience 2 training stops after epoch 3 and restores epoch 1's weights,
  // whatever the exact loss values are.
  const es = 'training.earlyStopping={monitor: val_loss, patience: 2, minDelta: 1000, restoreBestWeights: true}';
  const r = await inProcess(['run', QUICK, ...TINY_RUN, '--set', 'training.epochs=6', '--set', es, '--out', out], cwd);
  assert.equal(r.code, 0, r.stderr);
  const m = metrics(out);
  const h = history(out);
  assert.equal(m.status, 'complete');
  assert.equal(m.stopReason, 'early-stopping');
  assert.equal(m.epochsRun, 3);
  assert.equal(h.epochs.length, 3);
  assert.equal(m.bestEpoch, 1);
  assert.match(r.stdout, /^Early stopping after epoch 3; best epoch 1$/m);
  // The model ends with epoch 1's weights: its final statistics are those history recorded for epoch 1.
  assert.deepEqual(m.finalWeights, h.epochs[0]!.weights);
  assert.notDeepEqual(m.finalWeights, h.epochs[2]!.weights);
  assertNoLeftovers(out);
});

test('early stopping on val_accuracy stops after patience epochs without an improvement of minDelta and restores the best epoch', async () => {
  const cwd = workdir();
  const out = path.join(cwd, 'run');
  // On this slice val_accuracy climbs 0.16, 0.20, 0.34, 0.35, 0.49, 0.53, 0.56, …: with minDelta 0.1 only
  // epochs 1, 3 and 5 improve, and patience 2 ends training after epoch 7.
  const es = 'training.earlyStopping={monitor: val_accuracy, patience: 2, minDelta: 0.1, restoreBestWeights: true}';
  const r = await inProcess(
    ['run', QUICK, ...TINY_RUN, '--set', 'training.epochs=8', '--set', es, '--out', out, '-q'],
    cwd,
  );
  assert.equal(r.code, 0, r.stderr);
  const m = metrics(out);
  const h = history(out);
  // Keras's rule, replayed on the logged values: an epoch improves when val_accuracy > best + minDelta.
  let best = -Infinity;
  let bestEpoch = 0;
  let wait = 0;
  let stoppedAt = 0;
  for (const e of h.epochs) {
    if (e.val_accuracy! > best + 0.1) [best, bestEpoch, wait] = [e.val_accuracy!, e.epoch, 0];
    else if (++wait >= 2) {
      stoppedAt = e.epoch;
      break;
    }
  }
  assert.deepEqual(
    [bestEpoch, stoppedAt],
    [5, 7],
    `val_accuracy per epoch: ${h.epochs.map((e) => e.val_accuracy).join(', ')}`,
  );
  assert.equal(m.stopReason, 'early-stopping');
  assert.equal(m.epochsRun, 7);
  assert.equal(m.bestEpoch, 5);
  assert.deepEqual(m.finalWeights, h.epochs[4]!.weights);
});

test('early stopping without restoreBestWeights keeps the last weights, records bestEpoch and does not claim a restore', async () => {
  const cwd = workdir();
  const out = path.join(cwd, 'run');
  // As above, only epoch 1 improves; patience 5 is never reached in 3 epochs.
  const es = 'training.earlyStopping={monitor: val_loss, patience: 5, minDelta: 1000}';
  const r = await inProcess(['run', QUICK, ...TINY_RUN, '--set', 'training.epochs=3', '--set', es, '--out', out], cwd);
  assert.equal(r.code, 0, r.stderr);
  const m = metrics(out);
  const h = history(out);
  assert.equal(m.stopReason, 'epochs');
  assert.equal(m.epochsRun, 3);
  assert.equal(m.bestEpoch, 1);
  assert.deepEqual(m.finalWeights, h.epochs[2]!.weights);
  assert.doesNotMatch(r.stdout, /Restored the weights/);
});
