/**
 * The batch-mixing augmentations: each image is combined with another of the same batch (a random
 * permutation), and so are the labels, which become soft (a probability per class).
 *
 * - mixUp as Keras 3's MixUp (Zhang et al. 2018): one λ ~ Beta(alpha, alpha) per batch;
 *   x = λ·x + (1 − λ)·x[perm], y = λ·y + (1 − λ)·y[perm].
 * - cutMix as Keras-CV's CutMix (Yun et al. 2019): per image λ ~ Beta(alpha, alpha), a box of
 *   ⌊√(1 − λ)·H⌋ × ⌊√(1 − λ)·W⌋ centred on a uniformly drawn pixel and clipped to the image, filled
 *   from image perm[i]; the labels are weighted by the area actually pasted, 1 − box/(H·W), as the
 *   CutMix paper's code (Keras-CV weights by the unclipped box).
 */
import type { Rng } from '../../rng';
import { beta } from './random';

export interface MixBatch {
  /** count images of `size` floats each, row-major. */
  images: Float32Array;
  /** count × classes probabilities. */
  labels: Float32Array;
  count: number;
  height: number;
  width: number;
  classes: number;
}

/** Rows of `a` by `perm`, into a fresh copy (mixing reads the images as they were before the step). */
function permuted(a: Float32Array, perm: Int32Array, row: number): Float32Array {
  const out = new Float32Array(perm.length * row);
  for (let i = 0; i < perm.length; i++) out.set(a.subarray(perm[i]! * row, (perm[i]! + 1) * row), i * row);
  return out;
}

/** MixUp with a given permutation and weight (the hand-checkable part). */
export function mixUpWith(b: MixBatch, perm: Int32Array, lambda: number): void {
  const size = b.height * b.width;
  const other = permuted(b.images, perm, size);
  const otherLabels = permuted(b.labels, perm, b.classes);
  const n = b.count * size;
  for (let i = 0; i < n; i++) b.images[i] = lambda * b.images[i]! + (1 - lambda) * other[i]!;
  for (let i = 0; i < b.count * b.classes; i++) b.labels[i] = lambda * b.labels[i]! + (1 - lambda) * otherLabels[i]!;
}

export function mixUp(b: MixBatch, alpha: number, rng: Rng): void {
  const perm = rng.permutation(b.count);
  mixUpWith(b, perm, beta(rng, alpha, alpha));
}

export interface CutBox {
  top: number;
  left: number;
  bottom: number;
  right: number;
}

/** The box for weight λ centred on (cy, cx): sides ⌊√(1 − λ)·size⌋, clipped to the image ([top, bottom) × [left, right)). */
export function cutBox(lambda: number, cy: number, cx: number, h: number, w: number): CutBox {
  const r = Math.sqrt(1 - lambda);
  const ch = Math.floor(r * h);
  const cw = Math.floor(r * w);
  const clip = (v: number, n: number) => Math.min(n, Math.max(0, v));
  return {
    top: clip(cy - Math.floor(ch / 2), h),
    bottom: clip(cy + Math.floor(ch / 2), h),
    left: clip(cx - Math.floor(cw / 2), w),
    right: clip(cx + Math.floor(cw / 2), w),
  };
}

/** CutMix with a given permutation and boxes (the hand-checkable part). */
export function cutMixWith(b: MixBatch, perm: Int32Array, boxes: CutBox[]): void {
  const size = b.height * b.width;
  const other = permuted(b.images, perm, size);
  const otherLabels = permuted(b.labels, perm, b.classes);
  for (let i = 0; i < b.count; i++) {
    const box = boxes[i]!;
    for (let y = box.top; y < box.bottom; y++)
      for (let x = box.left; x < box.right; x++)
        b.images[i * size + y * b.width + x] = other[i * size + y * b.width + x]!;
    const kept = 1 - ((box.bottom - box.top) * (box.right - box.left)) / size;
    for (let c = 0; c < b.classes; c++) {
      const k = i * b.classes + c;
      b.labels[k] = kept * b.labels[k]! + (1 - kept) * otherLabels[k]!;
    }
  }
}

export function cutMix(b: MixBatch, alpha: number, rng: Rng): void {
  const perm = rng.permutation(b.count);
  const boxes: CutBox[] = [];
  for (let i = 0; i < b.count; i++) {
    const lambda = beta(rng, alpha, alpha);
    boxes.push(cutBox(lambda, rng.int(b.height), rng.int(b.width), b.height, b.width));
  }
  cutMixWith(b, perm, boxes);
}
