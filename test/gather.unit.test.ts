import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { BatchGatherer, gatherBatch, type Normalization, type Split } from '../src/data/dataset';
import { Augmenter } from '../src/data/augmentation';
import { Rng, runSeeds } from '../src/rng';
import { useBackend } from './helpers/backend';
import { loadFirstImages } from './helpers/first-images';

const PIXELS = 28 * 28;
/** The first `n` Fashion-MNIST training images, normalized as `normalize` says (the table loadDataset builds). */
async function realSplit(normalize: Normalization, n = 64): Promise<{ split: Split; mean: number; std: number }> {
  const ds = await loadFirstImages(normalize, n);
  return { split: ds.train, mean: ds.normalization.mean, std: ds.normalization.std };
}

/** A batch through the gatherer: its images and labels as the step's tensors hold them. */
function viaGatherer(g: BatchGatherer, order: Int32Array, from: number, b: number) {
  g.gather(order, from, b);
  const { x, y } = g.tensors();
  try {
    return { shape: x.shape, images: x.dataSync() as Float32Array, labels: Array.from(y.dataSync()) };
  } finally {
    tf.dispose([x, y]);
  }
}

/** The reference: gatherBatch's JS loop through the table into a plain buffer. */
function viaJs(split: Split, order: Int32Array, from: number, b: number) {
  const images = new Float32Array(b * PIXELS);
  const labels = new Int32Array(b);
  gatherBatch(split, order, from, b, images, labels);
  return { images, labels: Array.from(labels) };
}

/** Index of the first float whose bits differ, or -1 (bitwise: -0 ≠ 0, NaN = NaN). */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return -1;
}

function withSimd<T>(value: string | undefined, f: () => T): T {
  const saved = process.env.REGTRAIN_SIMD;
  if (value === undefined) delete process.env.REGTRAIN_SIMD;
  else process.env.REGTRAIN_SIMD = value;
  try {
    return f();
  } finally {
    if (saved === undefined) delete process.env.REGTRAIN_SIMD;
    else process.env.REGTRAIN_SIMD = saved;
  }
}

for (const normalize of ['scale01', 'standardize', 'none'] as const) {
  test(`wasm: gather.wasm writes a ${normalize} batch of real images into the heap with the JS table loop's bits`, async (t) => {
    if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
    const { split } = await realSplit(normalize);
    // Real images hold both ends of the byte range.
    assert.ok(split.pixels.includes(0) && split.pixels.includes(255));
    const order = new Rng(runSeeds(7).shuffle).permutation(split.count);
    const before = tf.memory().numTensors;
    const g = new BatchGatherer(split, 32);
    assert.equal(g.path, 'wasm kernel');
    assert.ok(g.readsSplitInPlace, 'a split loaded on wasm is read where it is on the heap');
    for (const from of [0, 32]) {
      const got = viaGatherer(g, order, from, 32);
      const want = viaJs(split, order, from, 32);
      assert.deepEqual(got.shape, [32, 28, 28]);
      assert.deepEqual(got.labels, want.labels);
      assert.equal(firstBitDifference(got.images, want.images), -1);
    }
    g.dispose();
    assert.equal(tf.memory().numTensors, before, 'the gatherer leaves no tensor behind');
  });

  test(`wasm: every byte value 0..255 comes out of gather.wasm as the ${normalize} table's float32, (v/scale − mean)/std rounded once`, async (t) => {
    if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
    const { split: real, mean, std } = await realSplit(normalize);
    // One image per rotation of 0..255 (784 = 3·256 + 16), so each byte value sits at every offset mod 4.
    const count = 4;
    const pixels = Uint8Array.from({ length: count * PIXELS }, (_, i) => (i + 61 * Math.floor(i / PIXELS)) % 256);
    const split: Split = { pixels, lut: real.lut, labels: Int32Array.from([3, 1, 4, 1]), count };
    const g = new BatchGatherer(split, count);
    assert.equal(g.readsSplitInPlace, false, 'a split made in JS is copied onto the heap');
    const got = viaGatherer(g, Int32Array.from([0, 1, 2, 3]), 0, count);
    g.dispose();
    const scale = normalize === 'none' ? 1 : 255;
    for (let i = 0; i < got.images.length; i++) {
      const v = pixels[i]!;
      assert.ok(Object.is(got.images[i], Math.fround((v / scale - mean) / std)), `pixel ${i} (byte ${v})`);
    }
    // Hand-checked ends of the range.
    if (normalize === 'none') assert.deepEqual([got.images[0], got.images[255]], [0, 255]);
    if (normalize === 'scale01')
      assert.deepEqual([got.images[0], got.images[255], got.images[30]], [0, 1, Math.fround(30 / 255)]);
  });
}

test('wasm: the last batch of an epoch (fewer images than the batch size) holds just its images, and a full batch after it is whole', async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const { split } = await realSplit('standardize', 13);
  const order = Int32Array.from([12, 3, 7, 0, 9, 1, 11, 5, 2, 10, 8, 6, 4]);
  const g = new BatchGatherer(split, 5);
  const full = viaGatherer(g, order, 0, 5);
  const tail = viaGatherer(g, order, 10, 3);
  assert.deepEqual(tail.shape, [3, 28, 28]);
  assert.deepEqual(
    tail.labels,
    [8, 6, 4].map((i) => split.labels[i]!),
  );
  assert.equal(firstBitDifference(tail.images, viaJs(split, order, 10, 3).images), -1);
  // The index slot is reused: the next full batch is not mixed with the tail's bytes.
  const again = viaGatherer(g, order, 5, 5);
  assert.equal(firstBitDifference(again.images, viaJs(split, order, 5, 5).images), -1);
  assert.equal(firstBitDifference(full.images, viaJs(split, order, 0, 5).images), -1);
  assert.throws(() => g.gather(order, 0, 6), /a batch of 6 images is more than the batch size 5/);
  g.dispose();
});

test('wasm: with REGTRAIN_SIMD=off the JS loop writes the same bits into the heap', async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const { split } = await realSplit('standardize');
  const order = new Rng(runSeeds(3).shuffle).permutation(split.count);
  const off = withSimd('off', () => new BatchGatherer(split, 16));
  const on = withSimd(undefined, () => new BatchGatherer(split, 16));
  assert.equal(off.path, 'JS loop into the wasm heap');
  assert.equal(on.path, 'wasm kernel');
  for (const [from, b] of [
    [0, 16],
    [60, 4],
  ] as const) {
    const a = viaGatherer(off, order, from, b);
    const k = viaGatherer(on, order, from, b);
    assert.deepEqual(a.labels, k.labels);
    assert.equal(firstBitDifference(a.images, k.images), -1);
  }
  off.dispose();
  on.dispose();
});

test('cpu: the gatherer falls back to the JS loop and tf.tensor3d, with the same values', async (t) => {
  if (!(await useBackend('cpu'))) return t.skip('cpu backend unavailable');
  const { split } = await realSplit('scale01');
  const order = new Rng(runSeeds(5).shuffle).permutation(split.count);
  const g = new BatchGatherer(split, 10);
  assert.equal(g.path, 'JS loop');
  const got = viaGatherer(g, order, 60, 4);
  assert.deepEqual(got.shape, [4, 28, 28]);
  const want = viaJs(split, order, 60, 4);
  assert.deepEqual(got.labels, want.labels);
  assert.equal(firstBitDifference(got.images, want.images), -1);
  g.dispose();
});

test('wasm: augmentation applied to the gathered views reaches the tensors the step gets, as on the JS path', async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const { split } = await realSplit('scale01');
  const order = new Rng(runSeeds(9).shuffle).permutation(split.count);
  const steps = [{ randomFlip: { mode: 'horizontal' as const } }, { mixUp: { alpha: 0.2 } }];
  const augmented = (g: BatchGatherer) => {
    const batch = g.gather(order, 8, 8);
    const soft = new Augmenter(steps, new Rng(runSeeds(2).augmentation)).apply(batch.images, batch.labels, 8);
    const { x, y } = g.tensors();
    const out = { images: x.dataSync() as Float32Array, soft: soft! };
    tf.dispose([x, y]);
    return out;
  };
  const g = new BatchGatherer(split, 8);
  const onHeap = augmented(g);
  g.dispose();
  // The same augmentation on gatherBatch's plain buffer.
  const plain = viaJs(split, order, 8, 8);
  const soft = new Augmenter(steps, new Rng(runSeeds(2).augmentation)).apply(
    plain.images,
    Int32Array.from(plain.labels),
    8,
  );
  assert.equal(firstBitDifference(onHeap.images, plain.images), -1);
  assert.deepEqual(Array.from(onHeap.soft), Array.from(soft!));
  // And it did change the images: mixUp blends them.
  assert.notEqual(firstBitDifference(onHeap.images, viaJs(split, order, 8, 8).images), -1);
});

test('wasm: a split loaded on wasm keeps its bytes on the heap, readable after the heap grows and the same as on cpu', async (t) => {
  if (!(await useBackend('cpu'))) return t.skip('cpu backend unavailable');
  const { split: inJs } = await realSplit('scale01', 40);
  assert.equal(inJs.heapPixels, undefined);
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const { split } = await realSplit('scale01', 40);
  assert.ok(split.heapPixels);
  assert.equal(split.pixels.length, 40 * PIXELS);
  assert.deepEqual(split.pixels, inJs.pixels);
  // 64 MB of tensor: the heap grows (its old buffer is detached), and the split's view follows it.
  const big = tf.zeros([16 * 1024 * 1024]);
  try {
    assert.deepEqual(split.pixels, inJs.pixels);
  } finally {
    big.dispose();
  }
});
