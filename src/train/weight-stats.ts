/**
 * What the run reports of the weights: per-layer kernel statistics (each epoch and at the end)
 * and histograms on the shared lattice (at the end, for compare's bin-by-bin sums).
 */
import type { BuiltModel } from '../model';
import { HISTOGRAM_BIN_WIDTH, HISTOGRAM_MAX_HALF_BINS, type WeightStats, type Histogram } from '../runformat';

/** Per-layer kernel statistics: the numbers that show what L1 (sparsity) and L2 (shrinkage) do. */
export function weightStats(built: BuiltModel): WeightStats[] {
  return built.denseLayers.map((layer) => {
    const w = layer.getWeights()[0]!.dataSync() as Float32Array;
    let l1 = 0;
    let sq = 0;
    let max = 0;
    let small3 = 0;
    let small2 = 0;
    for (let i = 0; i < w.length; i++) {
      const a = Math.abs(w[i]!);
      l1 += a;
      sq += a * a;
      if (a > max) max = a;
      if (a < 1e-3) small3++;
      if (a < 1e-2) small2++;
    }
    return {
      layer: layer.name,
      l1,
      l2: Math.sqrt(sq),
      sparsity1e3: small3 / w.length,
      sparsity1e2: small2 / w.length,
      maxAbs: max,
    };
  });
}

/**
 * A histogram of each dense kernel on the shared lattice of edges (multiples of
 * HISTOGRAM_BIN_WIDTH, symmetric around zero, just wide enough for the largest |w|), so the
 * histograms of every seed and variant add up bin by bin.
 */
export function weightHistograms(built: BuiltModel): Histogram[] {
  return built.denseLayers.map((layer) => {
    const w = layer.getWeights()[0]!.dataSync() as Float32Array;
    let max = 0;
    for (let i = 0; i < w.length; i++) if (Math.abs(w[i]!) > max) max = Math.abs(w[i]!);
    return { layer: layer.name, ...latticeHistogram(w, max) };
  });
}

/** Counts of `values` on the lattice reaching past `maxAbs`; values beyond the widest lattice count in its outer bins. */
export function latticeHistogram(values: ArrayLike<number>, maxAbs: number): { edges: number[]; counts: number[] } {
  // A failed run's weights may be NaN or infinite: NaN is not counted, ±∞ counts in the outer bins.
  const reach = Number.isFinite(maxAbs) ? maxAbs : HISTOGRAM_MAX_HALF_BINS * HISTOGRAM_BIN_WIDTH;
  const half = Math.min(HISTOGRAM_MAX_HALF_BINS, Math.max(1, Math.floor(reach / HISTOGRAM_BIN_WIDTH) + 1));
  const edges = Array.from({ length: 2 * half + 1 }, (_, i) => latticeEdge(i - half));
  const counts = new Array<number>(2 * half).fill(0);
  for (let i = 0; i < values.length; i++) {
    if (Number.isNaN(values[i]!)) continue;
    const j = Math.floor(values[i]! / HISTOGRAM_BIN_WIDTH) + half;
    counts[Math.min(2 * half - 1, Math.max(0, j))]!++;
  }
  return { edges, counts };
}

/** The k-th lattice edge, rounded so that every run writes the same number for it. */
export function latticeEdge(k: number): number {
  return Number((k * HISTOGRAM_BIN_WIDTH).toFixed(6));
}
