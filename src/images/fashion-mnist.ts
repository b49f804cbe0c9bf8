/**
 * Any greyscale picture → a 28×28 Fashion-MNIST image, the way Zalando made the dataset from
 * product photos (github.com/zalandoresearch/fashion-mnist, "Get the Data"): trim the edges close
 * to the corner's colour, resize the longest edge to 28 by subsampling, sharpen (Gaussian,
 * radius 1, σ 1), extend the shorter edge to 28 centred, negate, 8-bit grey.
 *
 * Differences, all deliberate: the input is made light-on-dark (negated when its border is light)
 * first instead of last, which gives the same pixels because every step treats black and white
 * alike (the sharpening kernel sums to 1, the trim tolerance is symmetric, the canvas is the
 * background); the trim compares grey levels, not RGB distances; an image that is already
 * 28×28 is taken as a Fashion-MNIST image and only negated if needed, not trimmed and resized.
 */
import type { GreyImage } from './png';

export const SIDE = 28;
/** Zalando's trim tolerance: 5% of the intensity range around the corner's colour. */
const TRIM_FUZZ = 0.05 * 255;
/** A border brighter than mid-grey on average is a light background (a product photo). */
const LIGHT_BORDER = 128;
const SHARPEN_SIGMA = 1;

export interface Preprocessed {
  /** 28×28, row-major, light-on-dark like Fashion-MNIST (0 = background). */
  pixels: Uint8Array;
  /** 'light': dark object on a light background, negated; 'dark': kept as it is. */
  background: 'light' | 'dark';
  /** The trimmed region's size, and its size after resizing (before centring on 28×28); null for 28×28 input. */
  trimmed: { width: number; height: number } | null;
  resized: { width: number; height: number } | null;
}

export function toFashionMnist(img: GreyImage): Preprocessed {
  const background = borderMean(img) >= LIGHT_BORDER ? 'light' : 'dark';
  const grey = background === 'light' ? img.pixels.map((v) => 255 - v) : img.pixels.slice();
  if (img.width === SIDE && img.height === SIDE) return { pixels: grey, background, trimmed: null, resized: null };

  const box = trimBox(grey, img.width, img.height);
  if (!box)
    return {
      pixels: new Uint8Array(SIDE * SIDE),
      background,
      trimmed: { width: 0, height: 0 },
      resized: { width: 0, height: 0 },
    };
  const longest = Math.max(box.width, box.height);
  const width = Math.max(1, Math.round((box.width * SIDE) / longest));
  const height = Math.max(1, Math.round((box.height * SIDE) / longest));
  const small = subsample(grey, img.width, box, width, height);
  const sharp = sharpen(small, width, height);
  const pixels = new Uint8Array(SIDE * SIDE);
  const x0 = Math.floor((SIDE - width) / 2);
  const y0 = Math.floor((SIDE - height) / 2);
  for (let y = 0; y < height; y++) pixels.set(sharp.subarray(y * width, (y + 1) * width), (y0 + y) * SIDE + x0);
  return { pixels, background, trimmed: { width: box.width, height: box.height }, resized: { width, height } };
}

function borderMean(img: GreyImage): number {
  const { width: w, height: h, pixels } = img;
  let sum = 0;
  let n = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x += y === 0 || y === h - 1 ? 1 : Math.max(1, w - 1)) {
      sum += pixels[y * w + x]!;
      n++;
    }
  }
  return sum / n;
}

interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** The smallest box holding every pixel that differs from the top-left corner by more than the fuzz; null when none does. */
function trimBox(grey: Uint8Array, w: number, h: number): Box | null {
  const ref = grey[0]!;
  let x0 = w;
  let y0 = h;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (Math.abs(grey[y * w + x]! - ref) > TRIM_FUZZ) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  return x1 < 0 ? null : { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 };
}

/** Nearest-pixel sampling (skipping rows and columns; repeating them when the image is smaller than 28). */
function subsample(grey: Uint8Array, stride: number, box: Box, width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const sy = box.y + Math.floor(((y + 0.5) * box.height) / height);
    for (let x = 0; x < width; x++) {
      const sx = box.x + Math.floor(((x + 0.5) * box.width) / width);
      out[y * width + x] = grey[sy * stride + sx]!;
    }
  }
  return out;
}

/**
 * ImageMagick's -sharpen with radius 1, σ 1: a 3×3 kernel of negated Gaussian weights whose centre
 * is twice their sum, normalised to sum 1; edges repeat the border pixel.
 */
function sharpen(src: Uint8Array, w: number, h: number): Uint8Array {
  const g = (u: number, v: number) => Math.exp(-(u * u + v * v) / (2 * SHARPEN_SIGMA * SHARPEN_SIGMA));
  const kernel: number[] = [];
  for (let v = -1; v <= 1; v++) for (let u = -1; u <= 1; u++) kernel.push(-g(u, v));
  const total = -kernel.reduce((a, b) => a + b, 0);
  kernel[4] = 2 * total;
  const norm = kernel.reduce((a, b) => a + b, 0);
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let acc = 0;
      for (let v = -1; v <= 1; v++) {
        const sy = Math.min(h - 1, Math.max(0, y + v));
        for (let u = -1; u <= 1; u++) {
          const sx = Math.min(w - 1, Math.max(0, x + u));
          acc += kernel[(v + 1) * 3 + (u + 1)]! * src[sy * w + sx]!;
        }
      }
      out[y * w + x] = Math.min(255, Math.max(0, Math.round(acc / norm)));
    }
  }
  return out;
}
