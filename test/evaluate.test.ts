/**
 * `regtrain evaluate` on a real run directory, and its refusal of tampered ones.
 * One tiny real run is made once for this file (wasm, 500 test images); a tampered
 * scenario is a copy of it under <tmp>/rundirs/<scenario> (see test/fixtures/rundirs/README.md). The other
 * one-message refusals are checked in process: test/evaluate.unit.test.ts.
 */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../src/tf';
import { initBackend } from '../src/backend';
import { finished, QUICK, startCli, TINY_RUN, type CliResult } from './helpers/cli';
import { sharedDataDir } from './helpers/data';
import { scratchDir } from './helpers/scratch';
import { assertEvaluateRefused, readJson, metricsOf, type ModelJson } from './helpers/run-files';

/** TINY_RUN's data.testLimit. */
const TEST_COUNT = 500;
const FASHION_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];

let TMP = '';
let CACHE = '';
/** The one real run this file evaluates and copies. */
let RUN = '';

function regtrain(args: string[]): Promise<CliResult> {
  return finished(
    startCli(args, { cwd: TMP, env: { REGTRAIN_DATA_DIR: CACHE, XDG_CACHE_HOME: path.join(TMP, 'xdg') } }),
    undefined,
    90_000,
  );
}

/** A fresh copy of the real run, to tamper with. */
function scenario(name: string): string {
  const dir = path.join(TMP, 'rundirs', name);
  fs.cpSync(RUN, dir, { recursive: true });
  return dir;
}

/** evaluate must refuse `dir` with exit 2, exactly this one-line message, and nothing on stdout. */
async function assertRefused(dir: string, message: string): Promise<void> {
  assertEvaluateRefused(await regtrain(['evaluate', dir, '--json', '--backend', 'wasm']), message);
}

before(async () => {
  TMP = scratchDir('regtrain-evaluate-test-');
  CACHE = sharedDataDir();
  RUN = path.join(TMP, 'run');
  const r = await regtrain(['run', QUICK, ...TINY_RUN, '--out', RUN, '-q']);
  assert.equal(r.code, 0, `the reference run failed:\n${r.stderr}`);
});

describe('evaluate round trip', () => {
  test('evaluate --json gives the test loss and accuracy the run recorded, with per-class counts and a consistent confusion matrix', async () => {
    const r = await regtrain(['evaluate', RUN, '--json', '--backend', 'wasm']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 1, 'one JSON object');
    const report = JSON.parse(lines[0]!) as {
      runDir: string;
      loss: number;
      accuracy: number;
      count: number;
      perClass: { name: string; accuracy: number; count: number }[];
      confusion: number[][];
    };
    assert.deepEqual(Object.keys(report).sort(), [
      'accuracy',
      'brier',
      'confusion',
      'count',
      'ece',
      'loss',
      'nll',
      'perClass',
      'reliability',
      'runDir',
    ]);

    const m = metricsOf(RUN);
    assert.equal(report.runDir, RUN);
    assert.equal(report.count, TEST_COUNT);
    assert.equal(report.count, m.test!.count);
    // Same model, same images, same backend: the same accuracy, and the loss up to float noise.
    assert.equal(report.accuracy, m.test!.accuracy);
    assert.ok(Math.abs(report.loss - m.test!.loss) <= 1e-6 * m.test!.loss, `loss ${report.loss} vs ${m.test!.loss}`);

    // Per-class counts are the label counts of the first 500 test images, read from the IDX file itself.
    const labels = fs.readFileSync(path.join(CACHE, 't10k-labels-idx1-ubyte')).subarray(8, 8 + TEST_COUNT);
    const labelCounts = new Array<number>(10).fill(0);
    for (const l of labels) labelCounts[l]!++;
    assert.deepEqual(
      report.perClass.map((p) => p.name),
      FASHION_CLASSES,
    );
    assert.deepEqual(
      report.perClass.map((p) => p.count),
      labelCounts,
    );
    assert.equal(
      report.perClass.reduce((a, p) => a + p.count, 0),
      TEST_COUNT,
    );

    // Confusion rows (true class) sum to the class counts; its diagonal gives the accuracies.
    assert.equal(report.confusion.length, 10);
    report.confusion.forEach((row, c) => {
      assert.equal(row.length, 10);
      assert.equal(
        row.reduce((a, b) => a + b, 0),
        labelCounts[c],
        `row ${c}`,
      );
      assert.equal(report.perClass[c]!.accuracy, labelCounts[c] ? row[c]! / labelCounts[c]! : 0);
    });
    const correct = report.confusion.reduce((a, row, c) => a + row[c]!, 0);
    assert.equal(correct / TEST_COUNT, report.accuracy);
  });

  test('evaluate without --json prints the result and the run’s own accuracy for comparison', async () => {
    const r = await regtrain(['evaluate', RUN, '--backend', 'wasm']);
    assert.equal(r.code, 0, r.stderr);
    const m = metricsOf(RUN);
    assert.ok(
      r.stdout.includes(
        `Test: loss: ${m.test!.loss.toFixed(4)} - accuracy: ${m.test!.accuracy.toFixed(4)} (500 images)\n`,
      ),
      r.stdout,
    );
    assert.ok(
      r.stdout.includes(`(run reported accuracy ${m.test!.accuracy.toFixed(4)} on the same 500 images)\n`),
      r.stdout,
    );
    assert.match(r.stdout, /^Confusion matrix \(rows: true class, columns: predicted\):$/m);
    for (const name of FASHION_CLASSES)
      assert.match(r.stdout, new RegExp(`^  ${name.replace('/', '\\/')} +\\d+\\.\\d% +\\(\\d+\\)$`, 'm'));
  });

  test('--test-limit evaluates on fewer images', async () => {
    const r = await regtrain(['evaluate', RUN, '--json', '--backend', 'wasm', '--test-limit', '100']);
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { count: number; perClass: { count: number }[] };
    assert.equal(report.count, 100);
    assert.equal(
      report.perClass.reduce((a, p) => a + p.count, 0),
      100,
    );
  });
});

describe('the saved model', () => {
  test('is in tfjs Layers format: format "layers-model", one weights.bin shard of the manifest’s size', () => {
    const json = readJson<ModelJson>(path.join(RUN, 'model.json'));
    assert.equal(json.format, 'layers-model');
    assert.equal(json.weightsManifest.length, 1);
    assert.deepEqual(json.weightsManifest[0]!.paths, ['weights.bin']);
    const weights = json.weightsManifest[0]!.weights;
    assert.deepEqual(
      weights.map((w) => [w.name, w.shape, w.dtype]),
      [
        ['dense/kernel', [784, 200], 'float32'],
        ['dense/bias', [200], 'float32'],
        ['dense_1/kernel', [200, 100], 'float32'],
        ['dense_1/bias', [100], 'float32'],
        ['dense_2/kernel', [100, 50], 'float32'],
        ['dense_2/bias', [50], 'float32'],
        ['dense_3/kernel', [50, 10], 'float32'],
        ['dense_3/bias', [10], 'float32'],
      ],
    );
    // 182,660 float32 parameters.
    assert.equal(fs.statSync(path.join(RUN, 'weights.bin')).size, 4 * 182660);
    assert.deepEqual(json.userDefinedMetadata, {
      regtrain: { status: 'complete', stopReason: 'epochs', epochsRun: 2 },
    });
  });

  test('loads with tf.loadLayersModel from the two files alone and reproduces the recorded test accuracy', async () => {
    await initBackend('wasm');
    const json = readJson<ModelJson>(path.join(RUN, 'model.json'));
    const bin = fs.readFileSync(path.join(RUN, 'weights.bin'));
    const model = await tf.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: json.modelTopology,
        weightSpecs: json.weightsManifest[0]!.weights as tf.io.WeightsManifestEntry[],
        weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length),
      }),
    );
    assert.deepEqual(
      model.layers.map((l) => l.getClassName()),
      ['Flatten', 'Dense', 'Dense', 'Dense', 'Dense'],
    );
    // The loaded kernel is byte for byte the start of weights.bin.
    const kernel = model.layers[1]!.getWeights()[0]!.dataSync() as Float32Array;
    assert.ok(Buffer.from(kernel.buffer, kernel.byteOffset, kernel.byteLength).equals(bin.subarray(0, 4 * 784 * 200)));

    // The first 500 test images, scaled to [0, 1] as the spec's `normalize: scale01`.
    const raw = fs.readFileSync(path.join(CACHE, 't10k-images-idx3-ubyte')).subarray(16, 16 + TEST_COUNT * 784);
    const labels = fs.readFileSync(path.join(CACHE, 't10k-labels-idx1-ubyte')).subarray(8, 8 + TEST_COUNT);
    const x = tf.tensor3d(
      Float32Array.from(raw, (b) => b / 255),
      [TEST_COUNT, 28, 28],
    );
    const predicted = tf.tidy(() => (model.predict(x) as tf.Tensor).argMax(1).dataSync() as Int32Array);
    x.dispose();
    model.dispose();
    let correct = 0;
    predicted.forEach((p, i) => (correct += p === labels[i] ? 1 : 0));
    assert.equal(correct / TEST_COUNT, metricsOf(RUN).test!.accuracy);
  });
});

describe('evaluate refuses tampered run directories with exit 2 and one clear line (the rest: evaluate.unit.test.ts)', () => {
  test('a truncated weights.bin (wrong byte count)', async () => {
    const dir = scenario('truncated');
    const file = path.join(dir, 'weights.bin');
    fs.truncateSync(file, 4 * 182660 - 4);
    await assertRefused(dir, `${file}: 730636 bytes, but model.json describes 730640`);
  });

  test('the untouched original still evaluates after all the copies were tampered with', async () => {
    const r = await regtrain(['evaluate', RUN, '--json', '--backend', 'wasm']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { accuracy: number }).accuracy, metricsOf(RUN).test!.accuracy);
  });
});

test('evaluate --best evaluates the best epoch saved by training.checkpoint.saveBest', async () => {
  const out = path.join(TMP, 'with-best');
  // Early stopping restores the same best epoch (val_loss): the final model is the best one.
  const sets = [
    '--set',
    'training.epochs=4',
    '--set',
    'training.checkpoint.saveBest={monitor: val_loss}',
    '--set',
    'training.earlyStopping={monitor: val_loss, patience: 10, restoreBestWeights: true}',
  ];
  const run = await regtrain(['run', QUICK, ...TINY_RUN, ...sets, '--out', out, '-q']);
  assert.equal(run.code, 0, run.stderr);
  const metrics = metricsOf(out);
  const best = readJson<{ epoch: number; monitor: string; value: number; mode: string }>(
    path.join(out, 'best', 'best.json'),
  );
  const history = readJson<{ epochs: { epoch: number; val_loss: number }[] }>(path.join(out, 'history.json')).epochs;
  const lowest = history.reduce((a, b) => (b.val_loss < a.val_loss ? b : a));
  assert.deepEqual(best, { epoch: lowest.epoch, monitor: 'val_loss', value: lowest.val_loss, mode: 'min' });
  assert.equal(best.epoch, metrics.bestEpoch);
  const r = await regtrain(['evaluate', out, '--best', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const report = JSON.parse(r.stdout) as { accuracy: number; best: typeof best };
  assert.deepEqual(report.best, best);
  assert.equal(report.accuracy, metrics.test!.accuracy);
  const text = await regtrain(['evaluate', out, '--best']);
  assert.match(
    text.stdout,
    new RegExp(`^Best model: epoch ${best.epoch} \\(val_loss ${best.value.toFixed(4)}\\)$`, 'm'),
  );
});
