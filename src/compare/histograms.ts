/** Weight histograms on the shared lattice of edges, so that every seed and variant adds up bin by bin. */
import { HISTOGRAM_BIN_WIDTH, HISTOGRAM_MAX_HALF_BINS, type Histogram } from '../runformat';
import { latticeEdge } from '../train/weight-stats';
import type { RunData } from './collect';

/**
 * A run's histogram as counts on the shared lattice (bin j covers [(j−half)·w, (j−half+1)·w)).
 * Histograms written on the lattice map exactly; older ones (own ±max|w| edges) are re-binned by
 * overlap, assuming weights spread evenly within each old bin.
 */
export function onLattice(h: Histogram): { half: number; counts: number[] } {
  const w = HISTOGRAM_BIN_WIDTH;
  const k0 = Math.round(h.edges[0]! / w);
  const exact =
    -k0 === h.edges.length - 1 + k0 && k0 < 0 && h.edges.every((e, i) => Math.abs(e - latticeEdge(k0 + i)) < 1e-9);
  if (exact) return { half: -k0, counts: [...h.counts] };
  let lo = 0;
  let hi = 0;
  for (const e of h.edges) {
    lo = Math.min(lo, e);
    hi = Math.max(hi, e);
  }
  const half = Math.min(HISTOGRAM_MAX_HALF_BINS, Math.max(1, Math.ceil(Math.max(-lo, hi) / w - 1e-9)));
  const counts = new Array<number>(2 * half).fill(0);
  const clampK = (x: number) => Math.min(half, Math.max(-half, x));
  h.counts.forEach((c, i) => {
    const a = clampK(h.edges[i]! / w);
    const b = clampK(h.edges[i + 1]! / w);
    if (c === 0) return;
    if (b - a < 1e-12) {
      counts[Math.min(2 * half - 1, Math.max(0, Math.floor(a) + half))]! += c;
      return;
    }
    for (let k = Math.floor(a); k < b; k++) {
      const overlap = Math.min(b, k + 1) - Math.max(a, k);
      if (overlap > 0) counts[Math.min(2 * half - 1, Math.max(0, k + half))]! += (c * overlap) / (b - a);
    }
  });
  return { half, counts };
}

/** Per layer (by position): every run's counts added on the shared lattice, so each seed counts. */
export function groupHistograms(runs: RunData[]): Histogram[] {
  const nLayers = runs.reduce((n, r) => Math.max(n, r.metrics.histograms.length), 0);
  const out: Histogram[] = [];
  for (let li = 0; li < nLayers; li++) {
    const parts = runs
      .map((r) => r.metrics.histograms[li])
      .filter((h): h is Histogram => h !== undefined)
      .map((h) => ({ layer: h.layer, ...onLattice(h) }));
    if (parts.length === 0) continue;
    const half = parts.reduce((n, p) => Math.max(n, p.half), 1);
    const counts = new Array<number>(2 * half).fill(0);
    for (const p of parts) p.counts.forEach((c, j) => (counts[j + half - p.half]! += c));
    out.push({
      layer: parts[0]!.layer,
      edges: Array.from({ length: 2 * half + 1 }, (_, i) => latticeEdge(i - half)),
      counts,
    });
  }
  return out;
}
