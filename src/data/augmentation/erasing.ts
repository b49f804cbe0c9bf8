/**
 * Random erasing (cutout) as torchvision's RandomErasing (Zhong et al. 2017): with probability p,
 * up to 10 tries to draw a rectangle of a fraction `scale` of the area and an aspect ratio (height/width)
 * log-uniform in `ratio` that fits inside the image; the first that fits is filled with `value`
 * (or standard normal noise for `random`); if none fits the image stays as it is.
 *
 * Keras 3's RandomErasing differs (its `factor` is a probability range, `scale` a per-side range and
 * the default fill is noise); torchvision's is the paper's algorithm, and the one most papers cite.
 */
import type { Rng } from '../../rng';
import { normal, uniform } from './random';

export interface EraseBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

/** Python's round(): half to even (torchvision rounds the rectangle's sides with it). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** torchvision's get_params: the rectangle to erase, or null when none of 10 tries fits. */
export function drawEraseBox(
  rng: Rng,
  h: number,
  w: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
): EraseBox | null {
  const area = h * w;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const eraseArea = area * uniform(rng, scale[0], scale[1]);
    const aspect = Math.exp(uniform(rng, logLo, logHi));
    const eh = roundHalfEven(Math.sqrt(eraseArea * aspect));
    const ew = roundHalfEven(Math.sqrt(eraseArea / aspect));
    if (!(eh < h && ew < w)) continue;
    return { top: rng.int(h - eh + 1), left: rng.int(w - ew + 1), height: eh, width: ew };
  }
  return null;
}

/** Fills `box` of the image at offset `o` with `value`, or with normal noise drawn from `rng` for 'random'. */
export function eraseBox(
  img: Float32Array,
  o: number,
  w: number,
  box: EraseBox,
  value: number | 'random',
  rng: Rng | null,
): void {
  for (let y = box.top; y < box.top + box.height; y++) {
    for (let x = box.left; x < box.left + box.width; x++) {
      img[o + y * w + x] = value === 'random' ? normal(rng!) : value;
    }
  }
}
