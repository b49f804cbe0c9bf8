/**
 * `regtrain evaluate` on a real run directory, and its refusal of tampered ones.
 * One tiny real run is made once for this file (wasm, 500 test images); every tampered
 * scenario is a copy of it under <tmp>/rundirs/<scenario> (see test/fixtures/rundirs/README.md).
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '../src/tf';
import * as YAML from 'yaml';
import { initBackend } from '../src/backend';
import type { MetricsFile } from '../src/runformat';
import { finished, HINT, QUICK, startCli, type CliResult } from './helpers/cli';
import { seededDataDir } from './helpers/data';

const TEST_COUNT = 500;
const TINY = [
  '--backend',
  'wasm',
  '--set',
  'data.trainLimit=500',
  '--set',
  'data.validation.size=100',
  '--set',
  `data.testLimit=${TEST_COUNT}`,
  '--set',
  'training.epochs=2',
];
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

const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;
const metricsOf = (dir: string) => readJson<MetricsFile>(path.join(dir, 'metrics.json'));

interface ModelJson {
  format: string;
  modelTopology: object;
  weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: string }[] }[];
  userDefinedMetadata?: Record<string, unknown>;
}

/** A fresh copy of the real run, to tamper with. */
function scenario(name: string): string {
  const dir = path.join(TMP, 'rundirs', name);
  fs.cpSync(RUN, dir, { recursive: true });
  return dir;
}

/** Byte offset of a weight in weights.bin (all float32, in manifest order). */
function offsetOf(dir: string, weight: string): number {
  let offset = 0;
  for (const w of readJson<ModelJson>(path.join(dir, 'model.json')).weightsManifest[0]!.weights) {
    if (w.name === weight) return offset;
    offset += 4 * w.shape.reduce((a, b) => a * b, 1);
  }
  throw new Error(`no weight ${weight}`);
}

function writeFloatAt(file: string, offset: number, value: number): void {
  const buf = fs.readFileSync(file);
  buf.writeFloatLE(value, offset);
  fs.writeFileSync(file, buf);
}

/** evaluate must refuse `dir` with exit 2, exactly this one-line message, and nothing on stdout. */
async function assertRefused(dir: string, message: string): Promise<void> {
  const r = await regtrain(['evaluate', dir, '--json', '--backend', 'wasm']);
  assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr.replace(/^Backend: .*\n/m, ''), `error: ${message}\n`);
}

before(async () => {
  TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-evaluate-test-'));
  CACHE = seededDataDir(path.join(TMP, 'data-cache'));
  RUN = path.join(TMP, 'run');
  const r = await regtrain(['run', QUICK, ...TINY, '--out', RUN, '-q']);
  assert.equal(r.code, 0, `the reference run failed:\n${r.stderr}`);
});
after(() => fs.rmSync(TMP, { recursive: true, force: true }));

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

describe('evaluate refuses tampered run directories with exit 2 and one clear line', () => {
  test('a weights path with ../ (path traversal)', async () => {
    const dir = scenario('traversal');
    const file = path.join(dir, 'model.json');
    const json = readJson<ModelJson>(file);
    json.weightsManifest[0]!.paths = ['../../etc/passwd'];
    fs.writeFileSync(file, JSON.stringify(json));
    await assertRefused(dir, `${file}: weights path "../../etc/passwd" points outside the run directory`);
  });

  test('an absolute weights path', async () => {
    const dir = scenario('absolute-path');
    const file = path.join(dir, 'model.json');
    const json = readJson<ModelJson>(file);
    json.weightsManifest[0]!.paths = [path.join(RUN, 'weights.bin')];
    fs.writeFileSync(file, JSON.stringify(json));
    await assertRefused(
      dir,
      `${file}: weights path ${JSON.stringify(path.join(RUN, 'weights.bin'))} points outside the run directory`,
    );
  });

  test('a truncated weights.bin (wrong byte count)', async () => {
    const dir = scenario('truncated');
    const file = path.join(dir, 'weights.bin');
    fs.truncateSync(file, 4 * 182660 - 4);
    await assertRefused(dir, `${file}: 730636 bytes, but model.json describes 730640`);
  });

  test('a weights.bin with bytes appended', async () => {
    const dir = scenario('appended');
    const file = path.join(dir, 'weights.bin');
    fs.appendFileSync(file, Buffer.alloc(8));
    await assertRefused(dir, `${file}: 730648 bytes, but model.json describes 730640`);
  });

  test('a NaN written into weights.bin (named by the weight it is in)', async () => {
    const dir = scenario('nan');
    const file = path.join(dir, 'weights.bin');
    // The very last float: the output layer's last bias.
    writeFloatAt(file, 4 * 182660 - 4, NaN);
    await assertRefused(dir, `${file}: weight dense_3/bias contains NaN or infinite values`);
  });

  test('an infinity written into a middle kernel', async () => {
    const dir = scenario('infinity');
    const file = path.join(dir, 'weights.bin');
    writeFloatAt(file, offsetOf(dir, 'dense_1/kernel') + 4 * 123, Infinity);
    await assertRefused(dir, `${file}: weight dense_1/kernel contains NaN or infinite values`);
  });

  test('weights.bin as a symlink to a file outside the run directory (even one with the right size)', async () => {
    const dir = scenario('symlink');
    const file = path.join(dir, 'weights.bin');
    const outside = path.join(TMP, 'outside-weights.bin');
    fs.copyFileSync(file, outside);
    fs.rmSync(file);
    fs.symlinkSync(outside, file);
    await assertRefused(dir, `${file}: is a link that leads outside the run directory`);
  });

  test('a missing weights.bin', async () => {
    const dir = scenario('no-weights');
    fs.rmSync(path.join(dir, 'weights.bin'));
    await assertRefused(dir, `${path.join(dir, 'weights.bin')}: missing (named by model.json)`);
  });

  test('a model.json that is not JSON', async () => {
    const dir = scenario('bad-model-json');
    fs.writeFileSync(path.join(dir, 'model.json'), '{"modelTopology": ');
    const r = await regtrain(['evaluate', dir, '--json', '--backend', 'wasm']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: ${path.join(dir, 'model.json').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not valid JSON \\(.+\\)$`,
        'm',
      ),
    );
  });

  test('a missing metrics.json', async () => {
    const dir = scenario('no-metrics');
    fs.rmSync(path.join(dir, 'metrics.json'));
    await assertRefused(dir, `${path.join(dir, 'metrics.json')}: missing (not a complete run directory)`);
  });

  test('an incomplete (interrupted) run', async () => {
    const dir = scenario('incomplete');
    const m = metricsOf(dir);
    fs.writeFileSync(
      path.join(dir, 'metrics.json'),
      JSON.stringify({ ...m, status: 'incomplete', stopReason: 'interrupted', test: null }),
    );
    await assertRefused(
      dir,
      `${dir}: the run is incomplete (interrupted); evaluate needs a finished run; finish it first: ${HINT} run --resume ${path.resolve(dir)} --backend wasm`,
    );
  });

  test('a failed (non-finite loss) run', async () => {
    const dir = scenario('failed');
    const m = metricsOf(dir);
    fs.writeFileSync(
      path.join(dir, 'metrics.json'),
      JSON.stringify({ ...m, status: 'failed', stopReason: 'non-finite-loss', test: null }),
    );
    await assertRefused(dir, `${dir}: the run is failed (non-finite-loss); evaluate needs a finished run`);
  });

  test('a spec.yaml whose layers do not match model.json', async () => {
    const dir = scenario('spec-mismatch');
    const specFile = path.join(dir, 'spec.yaml');
    const spec = YAML.parse(fs.readFileSync(specFile, 'utf8')) as { model: { layers: unknown[] } };
    spec.model.layers.splice(3, 1); // drop the 50-unit layer: still a valid spec, but 4 layers
    fs.writeFileSync(specFile, YAML.stringify(spec));
    // Checked against the spec before tfjs builds the model.
    await assertRefused(dir, `${dir}/model.json: 5 layers, but spec.yaml describes 4`);
  });

  test('a path that is not a directory', async () => {
    const missing = path.join(TMP, 'rundirs', 'does-not-exist');
    await assertRefused(missing, `${missing}: not a run directory (no such directory)`);
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
  const run = await regtrain(['run', QUICK, ...TINY, ...sets, '--out', out, '-q']);
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

test('evaluate --best on a run without a best model says how to keep one', async () => {
  const r = await regtrain(['evaluate', RUN, '--best']);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr.trim(),
    `error: ${RUN}: has no best model (train with training.checkpoint.saveBest, e.g. --set 'training.checkpoint.saveBest={monitor: val_loss}')`,
  );
});
