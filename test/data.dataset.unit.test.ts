import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gatherBatch, imagesOf, loadDataset, splitToTensors, type DataOptions, type Split } from '../src/data/dataset';
import { InputError } from '../src/errors';
import { STAMP_FILE, verifyCache } from '../src/data/fetch';
import { validateSpec } from '../src/spec';
import { CLASS_NAMES, PIXELS, TEST_LABELS, TRAIN_LABELS, tinyManifest, tmpDir, writeTiny } from './fixtures/data/tiny';
import { runSeeds } from '../src/rng';

const SOURCE = writeTiny(tmpDir(), true);
const NO_VALIDATION = { size: 0, holdout: true, shuffle: false, stratify: false };

function load(over: Partial<DataOptions> = {}): ReturnType<typeof loadDataset> {
  return loadDataset({
    manifest: tinyManifest(),
    dataDir: tmpDir(),
    sources: [SOURCE],
    offline: true,
    normalize: 'none',
    validation: NO_VALIDATION,
    trainLimit: null,
    testLimit: null,
    splitSeed: runSeeds(1).split,
    ...over,
  });
}

/** Which fixture images a split holds: with normalize 'none', image i's pixels are all 10*i. */
function indices(split: Split | null): number[] {
  assert.ok(split);
  return Array.from({ length: split.count }, (_, k) => imagesOf(split)[k * PIXELS]! / 10);
}

function perClass(split: Split | null): number[] {
  assert.ok(split);
  const counts = [0, 0, 0];
  for (const l of split.labels) counts[l]!++;
  return counts;
}

const validation = (size: number, v: Partial<DataOptions['validation']> = {}): DataOptions['validation'] => ({
  ...NO_VALIDATION,
  size,
  ...v,
});

test('without a validation set all images load with their labels, class names, hashes and source', async () => {
  const ds = await load();
  assert.equal(ds.train.count, 20);
  assert.equal(imagesOf(ds.train).length, 20 * 28 * 28);
  assert.deepEqual([...ds.train.labels], TRAIN_LABELS);
  assert.deepEqual([...ds.test.labels], TEST_LABELS);
  assert.equal(ds.validation, null);
  assert.deepEqual(ds.classNames, CLASS_NAMES);
  assert.equal(ds.source, SOURCE);
  assert.deepEqual(ds.sha256, Object.fromEntries(tinyManifest().files.map((f) => [f.name, f.sha256])));
});

test('none keeps raw 0..255 values and scale01 divides by 255, both with mean 0 and std 1', async () => {
  const raw = await load({ normalize: 'none' });
  assert.equal(imagesOf(raw.train)[3 * PIXELS + 100], 30);
  assert.deepEqual(raw.normalization, { method: 'none', mean: 0, std: 1 });
  const scaled = await load({ normalize: 'scale01' });
  assert.equal(imagesOf(scaled.train)[3 * PIXELS + 100], Math.fround(30 / 255));
  assert.deepEqual(scaled.normalization, { method: 'scale01', mean: 0, std: 1 });
});

test('standardize uses the pixel mean and std of the training images', async () => {
  // Pixel values 0, 10, ..., 190 (784 each): mean 95, variance 100 * (20^2 - 1) / 12 = 3325.
  const ds = await load({ normalize: 'standardize' });
  assert.ok(Math.abs(ds.normalization.mean - 95 / 255) < 1e-12);
  assert.ok(Math.abs(ds.normalization.std - Math.sqrt(3325) / 255) < 1e-12);
  assert.ok(Math.abs(imagesOf(ds.train)[0]! - -95 / Math.sqrt(3325)) < 1e-6); // -1.6475
  assert.ok(Math.abs(imagesOf(ds.test)[4 * PIXELS]! - (40 - 95) / Math.sqrt(3325)) < 1e-6);
});

test('standardize takes its statistics after the split and applies them to every split', async () => {
  // Held-out validation = images 0..9, so training holds values 100..190: mean 145, variance 100 * 99 / 12 = 825.
  const ds = await load({ normalize: 'standardize', validation: validation(10) });
  const std = Math.sqrt(825);
  assert.ok(Math.abs(ds.normalization.mean - 145 / 255) < 1e-12);
  assert.ok(Math.abs(ds.normalization.std - std / 255) < 1e-12);
  assert.ok(Math.abs(imagesOf(ds.train)[0]! - (100 - 145) / std) < 1e-6);
  assert.ok(Math.abs(imagesOf(ds.validation!)[0]! - -145 / std) < 1e-6); // -5.0483
  assert.ok(Math.abs(imagesOf(ds.test)[0]! - -145 / std) < 1e-6);
});

test('a held-out validation set is removed from training', async () => {
  const ds = await load({ validation: validation(5) });
  assert.deepEqual(indices(ds.validation), [0, 1, 2, 3, 4]);
  assert.deepEqual(indices(ds.train), [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
  assert.deepEqual([...ds.validation!.labels], TRAIN_LABELS.slice(0, 5));
});

test('without holdout the validation images are also trained on, as in the Keras tutorial', async () => {
  const ds = await load({ validation: validation(5, { holdout: false }) });
  assert.equal(ds.train.count, 20);
  assert.deepEqual(indices(ds.validation), [0, 1, 2, 3, 4]);
  assert.deepEqual(imagesOf(ds.validation!), imagesOf(ds.train).subarray(0, 5 * PIXELS));
});

test('a shuffled split is the same for the same seed and different for another seed', async () => {
  const v = validation(8, { shuffle: true });
  const [a, b, c] = await Promise.all([
    load({ validation: v, splitSeed: runSeeds(1).split }),
    load({ validation: v, splitSeed: runSeeds(1).split }),
    load({ validation: v, splitSeed: runSeeds(2).split }),
  ]);
  assert.deepEqual(indices(a.validation), indices(b.validation));
  assert.deepEqual(imagesOf(a.train), imagesOf(b.train));
  assert.notDeepEqual(indices(a.validation), indices(c.validation));
  assert.notDeepEqual(indices(a.validation), [0, 1, 2, 3, 4, 5, 6, 7]);
  const all = [...indices(a.train), ...indices(a.validation)].sort((x, y) => x - y);
  assert.deepEqual(
    all,
    Array.from({ length: 20 }, (_, i) => i),
  );
});

test('a stratified split keeps class proportions, rounding by largest remainder', async () => {
  // 10/6/4 images per class: 10 of 20 -> 5/3/2; 5 of 20 -> 2.5/1.5/1 -> 3/1/1 (the tie goes to the lower class).
  const ten = await load({ validation: validation(10, { shuffle: true, stratify: true }) });
  assert.deepEqual(perClass(ten.validation), [5, 3, 2]);
  assert.deepEqual(perClass(ten.train), [5, 3, 2]);
  const five = await load({ validation: validation(5, { shuffle: true, stratify: true }) });
  assert.deepEqual(perClass(five.validation), [3, 1, 1]);
  const other = await load({
    validation: validation(10, { shuffle: true, stratify: true }),
    splitSeed: runSeeds(7).split,
  });
  assert.notDeepEqual(indices(ten.validation), indices(other.validation));
  assert.deepEqual(perClass(other.validation), [5, 3, 2]);
});

test('a stratified split without shuffle takes the first images of each class', async () => {
  const ds = await load({ validation: validation(6, { stratify: true }) });
  // Quotas 3/2/1 (exact 3, 1.8, 1.2): class 0 -> 0, 2, 4; class 1 -> 1, 5; class 2 -> 3.
  assert.deepEqual(indices(ds.validation), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(perClass(ds.validation), [3, 2, 1]);
});

test('trainLimit counts the images trained on: the first ones outside the validation set, which does not depend on it', async () => {
  const ds = await load({ trainLimit: 8, testLimit: 3, validation: validation(3) });
  assert.deepEqual(indices(ds.validation), [0, 1, 2]);
  assert.deepEqual(indices(ds.train), [3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(ds.test.count, 3);
  // A sweep over trainLimit validates every member on the same (here shuffled) images.
  const shuffled = validation(4, { shuffle: true });
  const small = await load({ trainLimit: 2, validation: shuffled });
  const large = await load({ trainLimit: 12, validation: shuffled });
  assert.deepEqual(indices(small.validation), indices(large.validation));
  assert.equal(small.train.count, 2);
  assert.equal(large.train.count, 12);
  assert.deepEqual(indices(small.train), indices(large.train).slice(0, 2));
  assert.ok(
    !indices(large.train).some((i) => indices(large.validation).includes(i)),
    'no validation image is trained on',
  );
  // Without holdout (the tutorial's leak) it is the first N images, the validation ones among them.
  const leak = await load({ trainLimit: 5, validation: validation(3, { holdout: false }) });
  assert.deepEqual(indices(leak.train), [0, 1, 2, 3, 4]);
  const big = await load({ trainLimit: 1000, testLimit: 1000 });
  assert.equal(big.train.count, 20);
  assert.equal(big.test.count, 5);
});

test('impossible sizes are bad input', async () => {
  const isInput = (message: string) => (err: unknown) => err instanceof InputError && err.message === message;
  await assert.rejects(
    load({ validation: validation(21) }),
    isInput('validation size 21 is more than the 20 training images'),
  );
  await assert.rejects(
    load({ validation: validation(20) }),
    isInput('validation size 20 with holdout leaves no training images'),
  );
  await assert.rejects(load({ trainLimit: -1 }), isInput('trainLimit must be a non-negative integer, got -1'));
  const all = await load({ validation: validation(20, { holdout: false }) });
  assert.equal(all.validation!.count, 20);
});

test('a split becomes a float32 [count, 28, 28] tensor and int32 labels', async () => {
  const ds = await load({ normalize: 'scale01' });
  const { x, y } = splitToTensors(ds.test);
  try {
    assert.deepEqual(x.shape, [5, 28, 28]);
    assert.equal(x.dtype, 'float32');
    assert.deepEqual(y.shape, [5]);
    assert.equal(y.dtype, 'int32');
    assert.deepEqual(Array.from(y.dataSync()), TEST_LABELS);
  } finally {
    x.dispose();
    y.dispose();
  }
});

test('a spec whose trainLimit exceeds what the held-out validation leaves is refused at data.trainLimit', () => {
  const spec = { name: 'limit', model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax' } }] } };
  assert.throws(
    () => validateSpec({ ...spec, data: { trainLimit: 58000, validation: { size: 5000 } } }),
    (err: Error) =>
      err.message ===
      '! data.trainLimit: expected at most the 55000 images left after the 5000 held-out validation images, got 58000 ((spec))',
  );
  assert.equal(
    validateSpec({ ...spec, data: { trainLimit: 55000, validation: { size: 5000 } } }).data.trainLimit,
    55000,
  );
  assert.equal(
    validateSpec({ ...spec, data: { trainLimit: 60000, validation: { size: 5000, holdout: false } } }).data.trainLimit,
    60000,
  );
});

test('a gathered batch holds lut[byte] of every pixel of the images in the order given, with their labels', () => {
  // Pixels that differ from their neighbours, normalized values below zero.
  const count = 5;
  const pixels = Uint8Array.from({ length: count * PIXELS }, (_, i) => (i * 37 + Math.floor(i / PIXELS)) % 256);
  const lut = Float32Array.from({ length: 256 }, (_, v) => (v / 255 - 0.3) / 0.35);
  const split: Split = { pixels, lut, labels: Int32Array.from([4, 3, 2, 1, 0]), count };
  const order = Int32Array.from([2, 3, 0, 4, 1]);
  const expected = (k: number, p: number) => lut[pixels[order[k + 1]! * PIXELS + p]!];
  // Into a fresh buffer and into one at an offset.
  for (const x of [new Float32Array(3 * PIXELS), new Float32Array(3 * PIXELS + 1).subarray(1)]) {
    const y = new Int32Array(3);
    gatherBatch(split, order, 1, 3, x, y);
    assert.deepEqual([...y], [1, 4, 0]);
    for (let k = 0; k < 3; k++)
      for (let p = 0; p < PIXELS; p++) assert.equal(x[k * PIXELS + p], expected(k, p), `image ${k} pixel ${p}`);
  }
  assert.equal(lut[37], Math.fround((37 / 255 - 0.3) / 0.35));
});

test('from a stamped cache the splits are read from the files on disk, the same as from a hashed fetch', async () => {
  const dataDir = tmpDir();
  const opts: Partial<DataOptions> = {
    dataDir,
    normalize: 'standardize',
    validation: validation(6, { shuffle: true, stratify: true }),
    trainLimit: 9,
    testLimit: 3,
  };
  const hashed = await load(opts); // fetched: every file read whole and hashed
  verifyCache(dataDir, tinyManifest(), { settleMs: 0 }); // now stamped
  // Images 14-18, neither validation (3 of class 0, 2 of class 1, 1 of class 2 under this seed) nor among the 9
  // trained on, are changed on disk, the stamp made to vouch for the file as changed: a load never needs them.
  const file = path.join(dataDir, 'train-images-idx3-ubyte');
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.alloc(5 * PIXELS, 255), 0, 5 * PIXELS, 16 + 14 * PIXELS);
  fs.closeSync(fd);
  const st = fs.statSync(file, { bigint: true });
  const stampFile = path.join(dataDir, STAMP_FILE);
  const stamp = JSON.parse(fs.readFileSync(stampFile, 'utf8')) as {
    files: Record<string, { mtimeNs: string; ctimeNs: string }>;
  };
  stamp.files['train-images-idx3-ubyte'] = {
    ...stamp.files['train-images-idx3-ubyte']!,
    mtimeNs: String(st.mtimeNs),
    ctimeNs: String(st.ctimeNs),
  };
  fs.writeFileSync(stampFile, JSON.stringify(stamp));

  const stamped = await load(opts);
  const images = (split: Split | null) =>
    Array.from({ length: split!.count }, (_, k) => split!.pixels[k * PIXELS]! / 10);
  assert.deepEqual(images(stamped.validation), [3, 5, 9, 10, 12, 19]);
  assert.deepEqual(images(stamped.train), [0, 1, 2, 4, 6, 7, 8, 11, 13]);
  for (const split of ['train', 'validation', 'test'] as const) {
    assert.deepEqual(imagesOf(stamped[split]!), imagesOf(hashed[split]!), split);
    assert.deepEqual(stamped[split]!.labels, hashed[split]!.labels, split);
  }
  assert.deepEqual(stamped.normalization, hashed.normalization);
});

test('a stamped file changed after the check and before its images are read is refused, naming it', async () => {
  const dataDir = writeTiny(tmpDir(), false);
  const manifest = tinyManifest();
  verifyCache(dataDir, manifest, { settleMs: 0 });
  const images = verifyCache(dataDir, manifest, { trustStamp: true }).find((s) => s.name === 'trainImages')!;
  assert.equal(images.state, 'ok');
  const file = path.join(dataDir, 'train-images-idx3-ubyte');
  assert.deepEqual(images.data!.bytes(16 + 3 * PIXELS, 2), Uint8Array.of(30, 30));
  await new Promise((resolve) => setTimeout(resolve, 50)); // past the clock tick of the stamped ctime
  fs.chmodSync(file, 0o600); // the same bytes, but a new ctime: not the file that was hashed
  assert.throws(() => images.data!.bytes(16 + 3 * PIXELS, 2), {
    name: 'FailureError',
    message: `${file}: changed since it was verified; run again to verify it (and fetch it again if needed)`,
  });
});
