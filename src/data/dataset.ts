/**
 * The loading API the rest of regtrain uses: verified files in, images as bytes with their
 * normalization out, with a reproducible train/validation split.
 */
import * as tf from '../tf';
import { FailureError, InputError } from '../errors';
import { wasmGather, wasmHeap, type GatherKernel, type WasmHeap } from '../accel/gather';
import { Rng, type RngState, type RunSeeds } from '../rng';
import { IDX_MAGIC_IMAGES, IDX_MAGIC_LABELS, IDX_MAX_HEADER_BYTES, parseIdx, parseIdxHeader } from './idx';
import type { ByteRange, FileContent } from './file-content';
import { fetchDataset, loadManifest, type FetchProgress, type FetchedFile, type Manifest } from './fetch';
import type { ExperimentSpec } from '../spec';

export type { FetchProgress } from './fetch';

export const IMAGE_ROWS = 28;
export const IMAGE_COLS = 28;
export const PIXELS_PER_IMAGE = IMAGE_ROWS * IMAGE_COLS;
const PIXEL_MAX = 255;
const BYTE_VALUES = 256;

export type Normalization = 'scale01' | 'standardize' | 'none';

export interface DataOptions {
  dataDir?: string;
  sources?: string[];
  offline?: boolean;
  normalize: Normalization;
  /**
   * size: validation images (0 = none). holdout: remove them from training (false reproduces
   * the Keras tutorial's leak: validation = training images that are also trained on).
   * shuffle: pick after a seeded shuffle (else the first ones). stratify: keep per-class
   * proportions (combined with shuffle: random within each class; without: first of each class).
   */
  validation: { size: number; holdout: boolean; shuffle: boolean; stratify: boolean };
  /**
   * The number of images trained on (null = all): the first N of the training file's images
   * outside the validation set, which is chosen from the whole file first, so it is the same
   * whatever the limit (a sweep over trainLimit validates every member on the same images).
   * Without holdout the first N images of the file (the validation images among them, the leak).
   */
  trainLimit: number | null;
  /** The first N images of the test file; null = all. */
  testLimit: number | null;
  /** The validation split's random stream (the run's `RunSeeds.split`). */
  splitSeed: RngState;
  onProgress?: (e: FetchProgress) => void;
  /** Tests pass a tiny manifest; the packaged Fashion-MNIST one by default. */
  manifest?: Manifest;
}

/**
 * A split's images as the dataset files hold them, bytes in row-major [count, 28, 28] (a quarter of
 * float32's memory: 55 MB instead of 220 for all 70,000), with the float32 value each byte stands for
 * after normalization: pixel p is `lut[pixels[p]]`. Batches and evaluation chunks are normalized as
 * they are gathered (gatherBatch, imagesOf), to the same float32 values as normalizing every image
 * up front did.
 */
export interface Split {
  /**
   * When the split lives on tfjs-wasm's heap (`heapPixels`), a view made at each read: read it again
   * after anything that may grow the heap (a tensor allocation), which detaches older views.
   */
  readonly pixels: Uint8Array;
  /** 256 entries: byte value → normalized float32 value. */
  lut: Float32Array;
  labels: Int32Array;
  count: number;
  /**
   * Where `pixels` are on tfjs-wasm's heap, when loadDataset ran on that backend: a training batch is
   * then gathered and normalized straight from them by gather.wasm (BatchGatherer), with no copy.
   */
  readonly heapPixels?: { heap: WasmHeap; offset: number };
}

/** Frees a split's heap block once the split is collected (a dataset lives until its run ends). */
const heapSplits = new FinalizationRegistry<{ heap: WasmHeap; offset: number }>(({ heap, offset }) =>
  heap.free(offset),
);

/**
 * A split over `bytes` new image bytes, to be filled by `fill` (given a view of them): on tfjs-wasm
 * a block of its heap (the bytes' only copy: no more memory than a JS array), elsewhere a JS array.
 */
function newSplit(
  bytes: number,
  fill: (pixels: Uint8Array) => void,
  rest: { lut: Float32Array; labels: Int32Array; count: number },
): Split {
  const heap = bytes > 0 ? wasmHeap() : null;
  if (!heap) {
    const pixels = new Uint8Array(bytes);
    fill(pixels);
    return { pixels, ...rest };
  }
  const offset = heap.malloc(bytes);
  const view = () => heap.bytes().subarray(offset, offset + bytes);
  fill(view());
  const split: Split = {
    get pixels() {
      return view();
    },
    ...rest,
    heapPixels: { heap, offset },
  };
  heapSplits.register(split, { heap, offset });
  return split;
}

export interface Dataset {
  train: Split;
  validation: Split | null;
  test: Split;
  /** Applied as x' = (s(x) - mean) / std, with s(x) = x/255 (scale01, standardize) or x (none). */
  normalization: { method: Normalization; mean: number; std: number };
  source: string;
  sha256: Record<string, string>;
  classNames: string[];
}

/** Counts of each byte value; exact pixel statistics come from these 256 numbers. */
function histogram(pixels: Uint8Array, indices: Int32Array | null, count: number): Uint32Array {
  const h = new Uint32Array(BYTE_VALUES); // integer counts: faster than float increments
  for (let i = 0; i < count; i++) {
    const start = (indices ? indices[i]! : i) * PIXELS_PER_IMAGE;
    const end = start + PIXELS_PER_IMAGE;
    for (let p = start; p < end; p++) h[pixels[p]!]!++;
  }
  return h;
}

function statsFromHistogram(h: Uint32Array): { mean: number; std: number } {
  let n = 0;
  let sum = 0;
  for (let v = 0; v < BYTE_VALUES; v++) {
    n += h[v]!;
    sum += h[v]! * (v / PIXEL_MAX);
  }
  if (n === 0) return { mean: 0, std: 0 };
  const mean = sum / n;
  let sq = 0;
  for (let v = 0; v < BYTE_VALUES; v++) sq += h[v]! * (v / PIXEL_MAX - mean) ** 2;
  return { mean, std: Math.sqrt(sq / n) };
}

/** Population mean and std of x/255 over all pixels of `count` images. */
export function pixelStats(
  pixels: Uint8Array,
  count: number = pixels.length / PIXELS_PER_IMAGE,
): { mean: number; std: number } {
  return statsFromHistogram(histogram(pixels, null, count));
}

/** Images per class, indexed by label. */
export function classCounts(labels: Uint8Array | Int32Array, numClasses: number): number[] {
  const counts = new Array<number>(numClasses).fill(0);
  for (let i = 0; i < labels.length; i++) counts[labels[i]!]!++;
  return counts;
}

/**
 * Indices (ascending) of the validation images among the first n. Stratified quotas use
 * largest remainders so they sum to exactly `size` (ties go to the lower class).
 */
export function chooseValidation(
  labels: Uint8Array,
  n: number,
  size: number,
  shuffle: boolean,
  stratify: boolean,
  splitSeed: RngState,
  numClasses: number,
): Int32Array {
  const order = shuffle ? new Rng(splitSeed).permutation(n) : Int32Array.from({ length: n }, (_, i) => i);
  let picked: Int32Array;
  if (!stratify) {
    picked = order.slice(0, size);
  } else {
    const counts = classCounts(labels.subarray(0, n), numClasses);
    const exact = counts.map((c) => (size * c) / n);
    const quota = exact.map(Math.floor);
    let left = size - quota.reduce((a, b) => a + b, 0);
    const byRemainder = exact.map((_, k) => k).sort((a, b) => exact[b]! - quota[b]! - (exact[a]! - quota[a]!) || a - b);
    for (const k of byRemainder) {
      if (left === 0) break;
      quota[k]!++;
      left--;
    }
    picked = new Int32Array(size);
    let m = 0;
    for (let i = 0; i < n && m < size; i++) {
      const idx = order[i]!;
      const k = labels[idx]!;
      if (quota[k]! > 0) {
        quota[k]!--;
        picked[m++] = idx;
      }
    }
  }
  return picked.sort();
}

/**
 * Reads the chosen images' bytes and copies their labels: one read per run of consecutive images
 * (the first `count` images are one run), straight into the split's own array, so that no buffer
 * of the whole file is made or kept.
 */
function gather(raw: RawSplit, indices: Int32Array | null, count: number, lut: Float32Array): Split {
  const labels = new Int32Array(count);
  return newSplit(count * PIXELS_PER_IMAGE, (images) => readImages(raw, indices, count, images, labels), {
    lut,
    labels,
    count,
  });
}

function readImages(
  raw: RawSplit,
  indices: Int32Array | null,
  count: number,
  images: Uint8Array,
  labels: Int32Array,
): void {
  const ranges: ByteRange[] = [];
  const at = (i: number) => (indices ? indices[i]! : i);
  for (let i = 0; i < count;) {
    let end = i + 1;
    while (end < count && at(end) === at(end - 1) + 1) end++;
    ranges.push({
      from: raw.pixelsAt + at(i) * PIXELS_PER_IMAGE,
      length: (end - i) * PIXELS_PER_IMAGE,
      into: images,
      at: i * PIXELS_PER_IMAGE,
    });
    for (; i < end; i++) labels[i] = raw.labels[at(i)]!;
  }
  raw.images.read(ranges);
}

/**
 * Normalizes `count` images of `pixels` from image `from` into `out` at image `to`, through the
 * 256-entry lookup table: one typed-array load per pixel.
 */
function normalizeInto(
  pixels: Uint8Array,
  lut: Float32Array,
  from: number,
  out: Float32Array,
  to: number,
  count: number,
): void {
  const src = from * PIXELS_PER_IMAGE;
  const dst = to * PIXELS_PER_IMAGE;
  const n = count * PIXELS_PER_IMAGE;
  for (let p = 0; p < n; p++) out[dst + p] = lut[pixels[src + p]!]!;
}

/** Images [start, end) of a split, normalized: float32 [end - start, 28, 28]. */
export function imagesOf(split: Split, start = 0, end = split.count): Float32Array {
  const out = new Float32Array((end - start) * PIXELS_PER_IMAGE);
  normalizeInto(split.pixels, split.lut, start, out, 0, end - start);
  return out;
}

/**
 * A training batch: images order[from], ..., order[from + b - 1], normalized into the first b
 * images of `x`, their labels into `y`.
 */
export function gatherBatch(
  split: Split,
  order: Int32Array,
  from: number,
  b: number,
  x: Float32Array,
  y: Int32Array,
): void {
  const { pixels, lut, labels } = split;
  for (let k = 0; k < b; k++) {
    const idx = order[from + k]!;
    const src = idx * PIXELS_PER_IMAGE;
    const dst = k * PIXELS_PER_IMAGE;
    for (let p = 0; p < PIXELS_PER_IMAGE; p++) x[dst + p] = lut[pixels[src + p]!]!;
    y[k] = labels[idx]!;
  }
}

/**
 * Consecutive images of a split as tensors, x float32 [n, 28, 28] and y int32 [n], with imagesOf's values, for the
 * evaluation passes: on tfjs-wasm, when the split's bytes are on its heap, gather.wasm writes them into the tensor
 * in place (the JS table loop took ~0.7 s of the tutorial run's last evaluation, 70,000 images); else imagesOf, then
 * tf.tensor3d.
 */
export class ChunkReader {
  private readonly gatherer: BatchGatherer | null = null;
  /** The chunk's image indices, start, start + 1, ...: gather.wasm reads the images in the order given. */
  private readonly order: Int32Array;

  constructor(
    private readonly split: Split,
    chunkSize: number,
  ) {
    const heap = wasmHeap();
    if (heap && split.heapPixels?.heap.id === heap.id) {
      const gatherer = new BatchGatherer(split, chunkSize);
      if (gatherer.readsSplitInPlace) this.gatherer = gatherer;
      else gatherer.dispose();
    }
    this.order = new Int32Array(this.gatherer ? chunkSize : 0);
  }

  /** Whether gather.wasm writes the chunks in place (else imagesOf's JS loop); for tests. */
  get inPlace(): boolean {
    return this.gatherer !== null;
  }

  /** Images [start, start + n) and their labels, the caller's to dispose. */
  read(start: number, n: number): { x: tf.Tensor3D; y: tf.Tensor1D } {
    if (!this.gatherer)
      return {
        x: tf.tensor3d(imagesOf(this.split, start, start + n), [n, IMAGE_ROWS, IMAGE_COLS]),
        y: tf.tensor1d(this.split.labels.subarray(start, start + n), 'int32'),
      };
    for (let k = 0; k < n; k++) this.order[k] = start + k;
    this.gatherer.gather(this.order, 0, n);
    return this.gatherer.tensors();
  }

  dispose(): void {
    this.gatherer?.dispose();
  }
}

/** A gathered training batch: its normalized images and labels, writable (augmentation works on them in place). */
export interface GatheredBatch {
  /** float32 [b, 28, 28], row-major. */
  images: Float32Array;
  /** int32 [b]. */
  labels: Int32Array;
}

/**
 * A split's training batches as the step's input tensors, x float32 [b, 28, 28] and y int32 [b],
 * with the values gatherBatch gives. On tfjs-wasm each batch is written where its tensors live on
 * the wasm heap: gather.wasm reads the batch's images from the split's bytes on the heap (where
 * loadDataset keeps them on that backend; a split made elsewhere is copied there once, for the
 * gatherer's life) and normalizes them through the split's table in the same pass (or, with
 * REGTRAIN_SIMD=off or no gather.wasm, gatherBatch's JS loop writes into a view of the same memory);
 * no float32 buffer in JS, and no copy into the heap when tfjs first reads the tensor. Elsewhere
 * gatherBatch into a reused buffer, then tf.tensor3d. Use: gather(), change the batch in place if
 * need be, tensors(); dispose them after the step.
 */
export class BatchGatherer {
  private readonly heap: WasmHeap | null;
  private readonly kernel: GatherKernel | null;
  /**
   * On the heap with the kernel, allocated for the gatherer's life (no tensors: a fit holds the same
   * tensors as before): the table (256 float32), the batch's image indices (batchSize int32) and,
   * when the split's bytes are not on this heap, a copy of them (`ownPixels`).
   */
  private readonly lut: number = 0;
  private readonly order: number = 0;
  private readonly pixels: number = 0;
  private readonly ownPixels: boolean = false;
  /** Elsewhere: the reused buffers. */
  private readonly xBuf: Float32Array | null = null;
  private readonly yBuf: Int32Array | null = null;
  private pending: { x: tf.Tensor3D; y: tf.Tensor1D } | null = null;
  private b = 0;
  private disposed = false;

  constructor(
    private readonly split: Split,
    private readonly batchSize: number,
  ) {
    const heap = wasmHeap();
    this.heap = heap;
    this.kernel = heap ? wasmGather() : null;
    if (heap && this.kernel) {
      this.lut = heap.malloc(split.lut.byteLength);
      this.order = heap.malloc(batchSize * Int32Array.BYTES_PER_ELEMENT);
      const onHeap = split.heapPixels?.heap.id === heap.id ? split.heapPixels.offset : null;
      this.ownPixels = onHeap === null;
      this.pixels = onHeap ?? heap.malloc(Math.max(1, split.count * PIXELS_PER_IMAGE));
      const bytes = heap.bytes(); // after the allocations
      new Float32Array(bytes.buffer, this.lut, split.lut.length).set(split.lut);
      if (this.ownPixels) bytes.set(split.pixels, this.pixels);
    }
    if (!heap) {
      this.xBuf = new Float32Array(batchSize * PIXELS_PER_IMAGE);
      this.yBuf = new Int32Array(batchSize);
    }
  }

  /** Which loop normalizes the batches (for tests and benchmarks). */
  get path(): 'wasm kernel' | 'JS loop into the wasm heap' | 'JS loop' {
    return this.kernel ? 'wasm kernel' : this.heap ? 'JS loop into the wasm heap' : 'JS loop';
  }

  /** Whether the wasm kernel reads the split's own bytes on the heap (no copy of them; for tests). */
  get readsSplitInPlace(): boolean {
    return this.kernel !== null && !this.ownPixels;
  }

  /**
   * Images order[from], ..., order[from + b - 1] (b ≤ batchSize), normalized, with their labels.
   * The views are valid until the next tensor allocation (on wasm they are the heap's).
   */
  gather(order: Int32Array, from: number, b: number): GatheredBatch {
    if (b > this.batchSize) throw new Error(`a batch of ${b} images is more than the batch size ${this.batchSize}`);
    this.dropPending();
    this.b = b;
    const { split, heap } = this;
    if (!heap) {
      const images = this.xBuf!.subarray(0, b * PIXELS_PER_IMAGE);
      const labels = this.yBuf!.subarray(0, b);
      gatherBatch(split, order, from, b, images, labels);
      return { images, labels };
    }
    const x = heap.allocate<tf.Rank.R3>([b, IMAGE_ROWS, IMAGE_COLS], 'float32');
    const y = heap.allocate<tf.Rank.R1>([b], 'int32');
    this.pending = { x, y };
    // Views after the allocations (they may grow the heap).
    const bytes = heap.bytes();
    const images = new Float32Array(bytes.buffer, heap.offsetOf(x), b * PIXELS_PER_IMAGE);
    const labels = new Int32Array(bytes.buffer, heap.offsetOf(y), b);
    if (!this.kernel) {
      gatherBatch(split, order, from, b, images, labels);
      return { images, labels };
    }
    const batchOrder = order.subarray(from, from + b);
    new Int32Array(bytes.buffer, this.order, b).set(batchOrder);
    const splitLabels = split.labels;
    for (let k = 0; k < b; k++) labels[k] = splitLabels[batchOrder[k]!]!;
    this.kernel.gather(this.order, b, this.pixels, this.lut, heap.offsetOf(x));
    return { images, labels };
  }

  /** The batch gather() gave as tensors (with any in-place changes), the caller's to dispose. */
  tensors(): { x: tf.Tensor3D; y: tf.Tensor1D } {
    if (this.pending) {
      const t = this.pending;
      this.pending = null;
      return t;
    }
    if (this.heap) throw new Error('BatchGatherer.tensors(): no batch gathered since the last call');
    const b = this.b;
    return {
      x: tf.tensor3d(this.xBuf!.subarray(0, b * PIXELS_PER_IMAGE), [b, IMAGE_ROWS, IMAGE_COLS], 'float32'),
      y: tf.tensor1d(this.yBuf!.subarray(0, b), 'int32'),
    };
  }

  private dropPending(): void {
    if (this.pending) tf.dispose([this.pending.x, this.pending.y]);
    this.pending = null;
  }

  dispose(): void {
    this.dropPending();
    if (this.heap && this.kernel && !this.disposed) {
      this.heap.free(this.lut);
      this.heap.free(this.order);
      if (this.ownPixels) this.heap.free(this.pixels);
    }
    this.disposed = true;
  }
}

function checkCount(value: number | null, what: string): void {
  if (value !== null && (!Number.isInteger(value) || value < 0))
    throw new InputError(`${what} must be a non-negative integer, got ${value}`);
}

interface RawSplit {
  /** The images file; image i's bytes start at pixelsAt + i * PIXELS_PER_IMAGE. */
  images: FileContent;
  pixelsAt: number;
  labels: Uint8Array;
  count: number;
}

/** Parses and cross-checks one images/labels pair: the labels whole, of the images only the header. */
function rawSplit(images: FetchedFile, labels: FetchedFile, numClasses: number): RawSplit {
  const head = images.data.bytes(0, Math.min(images.data.length, IDX_MAX_HEADER_BYTES));
  const img = parseIdxHeader(head, images.data.length, images.path, {
    magic: IDX_MAGIC_IMAGES,
    dims: [null, IMAGE_ROWS, IMAGE_COLS],
  });
  const lab = parseIdx(labels.data.bytes(), labels.path, { magic: IDX_MAGIC_LABELS });
  const count = img.dims[0]!;
  if (lab.dims[0] !== count)
    throw new InputError(`${labels.path}: ${lab.dims[0]} labels for ${count} images in ${images.path}`);
  for (let i = 0; i < count; i++) {
    if (lab.data[i]! >= numClasses)
      throw new InputError(
        `${labels.path}: label ${lab.data[i]} at index ${i} is not one of the ${numClasses} classes`,
      );
  }
  return { images: images.data, pixelsAt: img.headerBytes, labels: lab.data, count };
}

export async function loadDataset(opts: DataOptions): Promise<Dataset> {
  const { validation: v } = opts;
  checkCount(opts.trainLimit, 'trainLimit');
  checkCount(opts.testLimit, 'testLimit');
  checkCount(v.size, 'validation size');
  const manifest = opts.manifest ?? loadManifest();
  const fetched = await fetchDataset({
    manifest,
    ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
    ...(opts.sources !== undefined ? { sources: opts.sources } : {}),
    ...(opts.offline !== undefined ? { offline: opts.offline } : {}),
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  });
  const byName = new Map(fetched.files.map((f) => [f.name, f]));
  const need = (name: string): FetchedFile => {
    const f = byName.get(name);
    if (!f) throw new FailureError(`dataset manifest has no file named ${name}`);
    return f;
  };
  const numClasses = manifest.classNames.length;
  const train = rawSplit(need('trainImages'), need('trainLabels'), numClasses);
  const test = rawSplit(need('testImages'), need('testLabels'), numClasses);

  const n = train.count;
  const testCount = opts.testLimit === null ? test.count : Math.min(opts.testLimit, test.count);
  if (v.size > n) throw new InputError(`validation size ${v.size} is more than the ${n} training images`);
  if (v.holdout && v.size > 0 && v.size === n)
    throw new InputError(`validation size ${v.size} with holdout leaves no training images`);

  const valIdx =
    v.size > 0 ? chooseValidation(train.labels, n, v.size, v.shuffle, v.stratify, opts.splitSeed, numClasses) : null;
  const limit = opts.trainLimit ?? n;
  let trainIdx: Int32Array | null = null;
  if (valIdx && v.holdout) {
    const inVal = new Uint8Array(n);
    for (const i of valIdx) inVal[i] = 1;
    trainIdx = new Int32Array(Math.min(limit, n - valIdx.length));
    let m = 0;
    for (let i = 0; i < n && m < trainIdx.length; i++) if (!inVal[i]) trainIdx[m++] = i;
  }
  const trainCount = trainIdx ? trainIdx.length : Math.min(limit, n);

  // The table is filled in below, once the training images (whose statistics standardize uses) are read.
  const lut = new Float32Array(BYTE_VALUES);
  const trainSplit = gather(train, trainIdx, trainCount, lut);
  let mean = 0;
  let std = 1;
  if (opts.normalize === 'standardize') {
    ({ mean, std } = statsFromHistogram(histogram(trainSplit.pixels, null, trainCount)));
    if (std === 0) std = 1; // constant images: centre them, do not divide by zero
  }
  const scale = opts.normalize === 'none' ? 1 : PIXEL_MAX;
  for (let b = 0; b < BYTE_VALUES; b++) lut[b] = (b / scale - mean) / std;

  const source = [...new Set(fetched.files.map((f) => f.source))].join(', ');
  return {
    train: trainSplit,
    validation: valIdx ? gather(train, valIdx, valIdx.length, lut) : null,
    test: gather(test, null, testCount, lut),
    normalization: { method: opts.normalize, mean, std },
    source,
    sha256: Object.fromEntries(fetched.files.map((f) => [f.name, f.sha256])),
    classNames: [...manifest.classNames],
  };
}

/** x: float32 [count, 28, 28]; y: int32 [count]. */
export function splitToTensors(split: Split): { x: tf.Tensor3D; y: tf.Tensor1D } {
  return {
    x: tf.tensor3d(imagesOf(split), [split.count, IMAGE_ROWS, IMAGE_COLS], 'float32'),
    y: tf.tensor1d(split.labels, 'int32'),
  };
}

/** The dataset a spec asks for, from where the command line says (--data-dir, --source). */
export function loadSpecData(
  spec: ExperimentSpec,
  seeds: Pick<RunSeeds, 'split'>,
  opts: { dataDir?: string; source: string[] },
  onProgress?: (p: FetchProgress) => void,
): Promise<Dataset> {
  return loadDataset({
    ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
    ...(opts.source.length ? { sources: opts.source } : {}),
    normalize: spec.data.normalize,
    validation: spec.data.validation,
    trainLimit: spec.data.trainLimit,
    testLimit: spec.data.testLimit,
    splitSeed: seeds.split,
    ...(onProgress ? { onProgress } : {}),
  });
}
