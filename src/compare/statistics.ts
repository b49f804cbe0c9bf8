/** `compare`, step 2's arithmetic: mean ± std and Student's t for the paired comparison against the baseline. */

export interface Stat {
  mean: number;
  /** Sample standard deviation (n − 1); null for a single value. */
  std: number | null;
  n: number;
}

export function stat(values: (number | null | undefined)[]): Stat | null {
  const xs = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  if (xs.length === 0) return null;
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : null;
  return { mean, std, n: xs.length };
}

function logGamma(x: number): number {
  // Lanczos approximation (g = 7, n = 9), accurate to ~1e-15 for x > 0.
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let a = c[0]!;
  const t = x + 7.5;
  for (let i = 1; i < 9; i++) a += c[i]! / (x + i);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Regularized incomplete beta I_x(a, b) by Lentz's continued fraction (Numerical Recipes' betacf). */
function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  if (x > (a + 1) / (a + b + 2)) return 1 - incompleteBeta(1 - x, b, a);
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  d = 1 / (Math.abs(d) < tiny ? tiny : d);
  let f = d;
  for (let m = 1; m <= 300; m++) {
    for (const num of [
      (m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m)),
      (-(a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1)),
    ]) {
      d = 1 + num * d;
      d = 1 / (Math.abs(d) < tiny ? tiny : d);
      c = 1 + num / c;
      if (Math.abs(c) < tiny) c = tiny;
      f *= c * d;
    }
    if (Math.abs(c * d - 1) < 1e-15) break;
  }
  return (front * f) / a;
}

/** P(T ≤ t) for Student's t with `df` degrees of freedom. */
export function tCdf(t: number, df: number): number {
  const tail = 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/** The t value with P(T ≤ t) = p (bisection; plenty fast for a handful of calls). */
export function tQuantile(p: number, df: number): number {
  let lo = -1e3;
  let hi = 1e3;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (tCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

export interface PairedResult {
  /** The compared group's name; the difference is group − baseline. */
  group: string;
  baseline: string;
  /** Test accuracy (higher is better) or the test ECE (lower is better: `better` when the interval is below 0). */
  metric: 'test accuracy' | 'test ECE';
  pairs: number;
  seeds: number[];
  meanDiff: number;
  sdDiff: number;
  t: number;
  df: number;
  /** Two-sided p-value. */
  p: number;
  ci95: [number, number];
  verdict: 'better' | 'worse' | 'inconclusive';
}

/** Paired t-test of x − y over matched pairs; null with fewer than 2 pairs. */
export function pairedT(
  x: number[],
  y: number[],
): Omit<PairedResult, 'group' | 'baseline' | 'metric' | 'seeds' | 'verdict'> | null {
  const n = Math.min(x.length, y.length);
  if (n < 2) return null;
  const d = x.slice(0, n).map((v, i) => v - y[i]!);
  const s = stat(d)!;
  const sd = s.std ?? 0;
  const df = n - 1;
  const se = sd / Math.sqrt(n);
  const crit = tQuantile(0.975, df);
  // Differences equal up to rounding (0.82 − 0.72 vs 0.84 − 0.74) have no spread either.
  if (se <= 1e-12 * Math.max(1, Math.abs(s.mean))) {
    // Identical differences: no spread, so the interval collapses to the difference itself.
    return {
      pairs: n,
      meanDiff: s.mean,
      sdDiff: 0,
      t: s.mean === 0 ? 0 : Math.sign(s.mean) * Infinity,
      df,
      p: s.mean === 0 ? 1 : 0,
      ci95: [s.mean, s.mean],
    };
  }
  const t = s.mean / se;
  return {
    pairs: n,
    meanDiff: s.mean,
    sdDiff: sd,
    t,
    df,
    p: Math.min(1, 2 * (1 - tCdf(Math.abs(t), df))),
    ci95: [s.mean - crit * se, s.mean + crit * se],
  };
}
