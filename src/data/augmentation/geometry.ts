/**
 * The geometric augmentations (Keras's RandomTranslation, RandomRotation, RandomZoom, RandomFlip) on
 * single-channel images stored row-major (height × width floats per image).
 *
 * As Keras's affine_transform, each output pixel (x, y) (column, row, pixel centres at integers)
 * reads the input at (a0·x + a1·y + a2, b0·x + b1·y + b2), bilinear or nearest, and the fill mode
 * says what lies beyond the edge:
 *   reflect  (d c b a | a b c d | d c b a)   reflected about the edge of the last pixel
 *   wrap     (a b c d | a b c d | a b c d)
 *   constant (k k k k | a b c d | k k k k)   k = fillValue
 *   nearest  (a a a a | a b c d | d d d d)
 * The fill mode is applied to each of the (up to four) pixels bilinear interpolation reads, as
 * scipy.ndimage's grid modes; TensorFlow's ImageProjectiveTransform kernel maps the coordinate first
 * and reads fillValue beyond the last pixel, which differs only within one pixel of the border at a
 * fractional position (whole-pixel shifts and flips give the same pixels).
 */
import type { FillMode } from '../../spec/augmentation';

/** Output → input mapping [a0, a1, a2, b0, b1, b2]: x_in = a0·x + a1·y + a2, y_in = b0·x + b1·y + b2. */
export type Affine = [number, number, number, number, number, number];

export interface Fill {
  fillMode: FillMode;
  fillValue: number;
  interpolation: 'bilinear' | 'nearest';
}

/** C's round(), as TensorFlow's nearest interpolation (JS's Math.round takes −1.5 to −1, not −2). */
const roundHalfAway = (v: number): number => Math.sign(v) * Math.round(Math.abs(v));

/** An integer index outside [0, n) mapped into it by the fill mode; −1 for constant (read fillValue). */
export function mapIndex(i: number, n: number, mode: FillMode): number {
  if (i >= 0 && i < n) return i;
  switch (mode) {
    case 'constant':
      return -1;
    case 'nearest':
      return i < 0 ? 0 : n - 1;
    case 'wrap':
      return ((i % n) + n) % n;
    case 'reflect': {
      const m = ((i % (2 * n)) + 2 * n) % (2 * n);
      return m < n ? m : 2 * n - 1 - m;
    }
  }
}

/** The input pixel (r, c) of an h×w image at `so`, or fillValue where the fill mode says (index −1). */
function read(src: Float32Array, so: number, h: number, w: number, r: number, c: number, fill: Fill): number {
  const rr = mapIndex(r, h, fill.fillMode);
  const cc = mapIndex(c, w, fill.fillMode);
  return rr < 0 || cc < 0 ? fill.fillValue : src[so + rr * w + cc]!;
}

/**
 * One image through an affine map: reads `src` (h×w) at offset `so`, writes `dst` at offset `do_`.
 * Translations and zooms (no shear or rotation terms) take the separable path: each column's and each
 * row's source indices and weights are computed once per image instead of once per pixel.
 */
export function affineTransform(
  src: Float32Array,
  so: number,
  dst: Float32Array,
  do_: number,
  h: number,
  w: number,
  m: Affine,
  fill: Fill,
): void {
  const [a0, a1, a2, b0, b1, b2] = m;
  const nearest = fill.interpolation === 'nearest';
  if (a1 === 0 && b0 === 0) {
    const cols = axisTaps(a0, a2, w, nearest, fill.fillMode);
    const rowTaps = axisTaps(b1, b2, h, nearest, fill.fillMode);
    const fv = fill.fillValue;
    const constant = fill.fillMode === 'constant';
    for (let y = 0; y < h; y++) {
      const r0 = rowTaps.i0[y]!;
      const r1 = rowTaps.i1[y]!;
      const fy = rowTaps.f[y]!;
      const o0 = so + r0 * w;
      const o1 = so + r1 * w;
      const out = do_ + y * w;
      if (!constant) {
        // Every index is inside the image: no fillValue to check for (the common case, and the fast one).
        for (let x = 0; x < w; x++) {
          const c0 = cols.i0[x]!;
          const c1 = cols.i1[x]!;
          const fx = cols.f[x]!;
          dst[out + x] = nearest
            ? src[o0 + c0]!
            : (1 - fy) * ((1 - fx) * src[o0 + c0]! + fx * src[o0 + c1]!) +
              fy * ((1 - fx) * src[o1 + c0]! + fx * src[o1 + c1]!);
        }
        continue;
      }
      for (let x = 0; x < w; x++) {
        const c0 = cols.i0[x]!;
        const c1 = cols.i1[x]!;
        const fx = cols.f[x]!;
        const v00 = r0 < 0 || c0 < 0 ? fv : src[o0 + c0]!;
        if (nearest) {
          dst[out + x] = v00;
          continue;
        }
        const v01 = r0 < 0 || c1 < 0 ? fv : src[o0 + c1]!;
        const v10 = r1 < 0 || c0 < 0 ? fv : src[o1 + c0]!;
        const v11 = r1 < 0 || c1 < 0 ? fv : src[o1 + c1]!;
        dst[out + x] = (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11);
      }
    }
    return;
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const xi = a0 * x + a1 * y + a2;
      const yi = b0 * x + b1 * y + b2;
      let v: number;
      if (nearest) {
        v = read(src, so, h, w, roundHalfAway(yi), roundHalfAway(xi), fill);
      } else {
        const x0 = Math.floor(xi);
        const y0 = Math.floor(yi);
        const fx = xi - x0;
        const fy = yi - y0;
        if (x0 >= 0 && y0 >= 0 && x0 < w - 1 && y0 < h - 1) {
          const o = so + y0 * w + x0;
          v = (1 - fy) * ((1 - fx) * src[o]! + fx * src[o + 1]!) + fy * ((1 - fx) * src[o + w]! + fx * src[o + w + 1]!);
        } else {
          v =
            (1 - fy) * ((1 - fx) * read(src, so, h, w, y0, x0, fill) + fx * read(src, so, h, w, y0, x0 + 1, fill)) +
            fy * ((1 - fx) * read(src, so, h, w, y0 + 1, x0, fill) + fx * read(src, so, h, w, y0 + 1, x0 + 1, fill));
        }
      }
      dst[do_ + y * w + x] = v;
    }
  }
}

/**
 * Along one axis of n pixels, for output position t reading input scale·t + offset: the two indices
 * interpolation reads (mapped by the fill mode, −1 for fillValue) and the second one's weight.
 */
function axisTaps(
  scale: number,
  offset: number,
  n: number,
  nearest: boolean,
  mode: FillMode,
): { i0: Int32Array; i1: Int32Array; f: Float64Array } {
  const i0 = new Int32Array(n);
  const i1 = new Int32Array(n);
  const f = new Float64Array(n);
  for (let t = 0; t < n; t++) {
    const v = scale * t + offset;
    const k = nearest ? roundHalfAway(v) : Math.floor(v);
    i0[t] = mapIndex(k, n, mode);
    i1[t] = mapIndex(k + 1, n, mode);
    f[t] = nearest ? 0 : v - k;
  }
  return { i0, i1, f };
}

/** Keras's translation matrix: the image moves by (dx, dy) pixels (right and down positive). */
export function translationMatrix(dx: number, dy: number): Affine {
  return [1, 0, -dx, 0, 1, -dy];
}

/**
 * Rotation by `angle` radians about the image centre, counter-clockwise for positive angles as
 * Keras's RandomRotation (tf.keras's get_rotation_matrix).
 */
export function rotationMatrix(angle: number, h: number, w: number): Affine {
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  const xOff = (w - 1 - (c * (w - 1) - s * (h - 1))) / 2;
  const yOff = (h - 1 - (s * (w - 1) + c * (h - 1))) / 2;
  return [c, -s, xOff, s, c, yOff];
}

/** Keras's zoom matrix: zoom factors zx, zy about the centre (> 1 shows more of the plane: zooms out). */
export function zoomMatrix(zx: number, zy: number, h: number, w: number): Affine {
  return [zx, 0, ((w - 1) / 2) * (1 - zx), 0, zy, ((h - 1) / 2) * (1 - zy)];
}

/** One image flipped in place: left–right (`horizontal`) and/or top–bottom (`vertical`). */
export function flipImage(img: Float32Array, o: number, h: number, w: number, horizontal: boolean, vertical: boolean) {
  if (horizontal) {
    for (let y = 0; y < h; y++) {
      const r = o + y * w;
      for (let a = 0, b = w - 1; a < b; a++, b--) {
        const t = img[r + a]!;
        img[r + a] = img[r + b]!;
        img[r + b] = t;
      }
    }
  }
  if (vertical) {
    for (let a = 0, b = h - 1; a < b; a++, b--) {
      for (let x = 0; x < w; x++) {
        const i = o + a * w + x;
        const j = o + b * w + x;
        const t = img[i]!;
        img[i] = img[j]!;
        img[j] = t;
      }
    }
  }
}
