/**
 * Histogram bucketing as TensorFlow's HistogramSummary op does it (tsl/lib/histogram/histogram.cc),
 * the bucketing HistogramProto was made for and that TensorBoard's histogram and distribution
 * dashboards read from `histo` values:
 *
 * - bucket limits: 0, ±1e-12·1.1^k for every k with 1e-12·1.1^k < 1e20 (each the previous one
 *   times 1.1, in double precision, as TensorFlow builds them), and ±DBL_MAX at both ends;
 * - bucket i counts the values v with limit[i-1] ≤ v < limit[i] (bucket 0 from -DBL_MAX);
 * - in the proto, each run of empty buckets collapses into one entry holding the run's last limit
 *   (EncodeToProto with preserve_zero_buckets = false), so the counts still sum to `num`.
 *
 * NaN and ±Infinity are refused, as TensorFlow refuses them ("Nan in summary histogram for: …"):
 * HistogramProto has no place for them, and weights that hold them mean training has diverged.
 * No values give TensorFlow's empty histogram: num 0, min DBL_MAX, max -DBL_MAX, one empty bucket.
 */
import { FailureError } from '../../errors';

/** HistogramProto's fields; `bucket[i]` counts the values in [bucketLimit[i-1], bucketLimit[i]). */
export interface Histogram {
  min: number;
  max: number;
  num: number;
  sum: number;
  sumSquares: number;
  bucketLimit: number[];
  bucket: number[];
}

let defaultLimits: Float64Array | undefined;

/** TensorFlow's default bucket limits, ascending: 1551 of them. */
export function defaultBucketLimits(): Float64Array {
  if (defaultLimits) return defaultLimits;
  const positive: number[] = [];
  for (let v = 1e-12; v < 1e20; v *= 1.1) positive.push(v);
  positive.push(Number.MAX_VALUE);
  const limits = new Float64Array(positive.length * 2 + 1);
  positive.forEach((v, i) => {
    limits[positive.length - 1 - i] = -v;
    limits[positive.length + 1 + i] = v;
  });
  limits[positive.length] = 0;
  defaultLimits = limits;
  return limits;
}

/** The index of the first limit greater than `value` (C++'s upper_bound); DBL_MAX itself goes to the last bucket. */
function bucketIndex(limits: Float64Array, value: number): number {
  let lo = 0;
  let hi = limits.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (limits[mid] > value) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** A span of float32StartsTable whose bucket is not looked up yet. */
const UNSET = 0xffff;
let float32Starts: Uint16Array | undefined;

/**
 * For float32 values: per top 16 bits of the float (sign, exponent, 7 mantissa bits, a span of
 * under 1%, while limits are 10% apart), the bucket of the span's value nearest zero, looked up the
 * first time a value falls in the span (UNSET until then: a model's weights fill a few hundred of
 * the 65,536 spans, and filling them all cost ~15 ms of every run's first epoch). A value's bucket
 * is then at most one step from its span's, so weights are bucketed with a table lookup and a
 * comparison instead of a binary search (which cost a few percent of a training epoch at batch 512
 * for the tutorial's 178,000 weights).
 */
function float32StartsTable(): Uint16Array {
  float32Starts ??= new Uint16Array(65536).fill(UNSET);
  return float32Starts;
}

/** The bucket of span `hi`'s value nearest zero (its low 16 bits zero), stored in `starts`. */
function spanStart(starts: Uint16Array, limits: Float64Array, hi: number): number {
  const f = new Float32Array(1);
  new Uint32Array(f.buffer)[0] = hi << 16;
  return (starts[hi] = bucketIndex(limits, f[0]!));
}

/**
 * The histogram of `values` in TensorFlow's default buckets. `what` names the values in the error
 * thrown when some are NaN or infinite (a FailureError; nothing is counted then).
 */
export function histogramOf(values: ArrayLike<number>, what: string): Histogram {
  const limits = defaultBucketLimits();
  const counts = new Float64Array(limits.length);
  let min = Number.MAX_VALUE;
  let max = -Number.MAX_VALUE;
  let sum = 0;
  let sumSquares = 0;
  let nan = 0;
  let infinite = 0;
  const bits = values instanceof Float32Array ? new Uint32Array(values.buffer, values.byteOffset, values.length) : null;
  const starts = bits ? float32StartsTable() : null;
  const last = limits.length - 1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) {
      if (Number.isNaN(v)) nan++;
      else infinite++;
      continue;
    }
    let b: number;
    if (starts) {
      const hi = bits![i]! >>> 16;
      b = starts[hi]!;
      if (b === UNSET) b = spanStart(starts, limits, hi);
      while (b > 0 && limits[b - 1]! > v) b--;
      while (b < last && limits[b]! <= v) b++;
    } else {
      b = bucketIndex(limits, v);
    }
    counts[b]++;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    sumSquares += v * v;
  }
  if (nan + infinite > 0) {
    const which = [nan ? `${nan} NaN` : '', infinite ? `${infinite} infinite` : ''].filter(Boolean).join(' and ');
    throw new FailureError(
      `${what}: ${which} of ${values.length} values; a TensorBoard histogram cannot hold them (training has diverged?)`,
    );
  }
  const bucketLimit: number[] = [];
  const bucket: number[] = [];
  for (let i = 0; i < limits.length;) {
    let end = limits[i];
    const count = counts[i++];
    if (count === 0) {
      while (i < limits.length && counts[i] === 0) end = limits[i++];
    }
    bucketLimit.push(end);
    bucket.push(count);
  }
  return { min, max, num: values.length, sum, sumSquares, bucketLimit, bucket };
}
