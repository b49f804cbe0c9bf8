import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { ChunkReader, imagesOf, type Split } from '../src/data/dataset';
import { useBackend } from './helpers/backend';
import { loadFirstImages } from './helpers/first-images';

/** The first 150 Fashion-MNIST training images, standardized (a table whose values are not k/255). */
const realSplit = async (): Promise<Split> => (await loadFirstImages('standardize', 150)).train;

/** Chunks of 64 through the reader (the last one 22 images), joined: what an evaluation pass reads. */
function readAll(reader: ChunkReader, split: Split): { images: Float32Array; labels: number[] } {
  const images = new Float32Array(split.count * 28 * 28);
  const labels: number[] = [];
  for (let start = 0; start < split.count; start += 64) {
    const n = Math.min(64, split.count - start);
    const { x, y } = reader.read(start, n);
    assert.deepEqual(x.shape, [n, 28, 28]);
    images.set(x.dataSync() as Float32Array, start * 28 * 28);
    labels.push(...Array.from(y.dataSync()));
    tf.dispose([x, y]);
  }
  return { images, labels };
}

/** Whether two float arrays hold the same bits (-0 ≠ 0). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

for (const backend of ['wasm', 'cpu'] as const) {
  test(`${backend}: an evaluation's chunks hold imagesOf's bits and the split's labels, the last chunk short`, async (t) => {
    if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
    const split = await realSplit();
    assert.equal(split.heapPixels !== undefined, backend === 'wasm', 'on wasm the split lives on the heap');
    const before = tf.memory().numTensors;
    const reader = new ChunkReader(split, 64);
    assert.equal(reader.inPlace, backend === 'wasm', 'on wasm gather.wasm writes the chunks where they live');
    const got = readAll(reader, split);
    reader.dispose();
    assert.equal(tf.memory().numTensors, before, 'the reader keeps no tensor');
    assert.ok(sameBits(got.images, imagesOf(split)), 'the same float32 bits as the JS table loop');
    assert.deepEqual(got.labels, Array.from(split.labels));
  });
}
