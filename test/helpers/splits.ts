import { Rng } from '../../src/rng';
import type { Split } from '../../src/data/dataset';

/** A seeded split of `count` random 28×28 byte images (normalized as scale01) and labels 0–9, for in-process loop tests. */
export function randomSplit(count: number, seed: number): Split {
  const rng = new Rng(seed);
  const pixels = new Uint8Array(count * 784).map(() => rng.int(256));
  const labels = Int32Array.from({ length: count }, () => rng.int(10));
  return { pixels, lut: Float32Array.from({ length: 256 }, (_, v) => v / 255), labels, count };
}
