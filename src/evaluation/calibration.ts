/**
 * How well a classifier's probabilities match how often it is right, from its softmax outputs:
 * - expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the
 *   samples binned by confidence (the top probability) into M equal-width bins ((m−1)/M, m/M],
 *   ECE = Σ_m |B_m|/n · |accuracy(B_m) − confidence(B_m)|;
 * - the Brier score (Brier 1950, the multi-class form): the mean over samples of Σ_k (p_k − y_k)²,
 *   from 0 (certain and right) to 2 (certain and wrong);
 * - the negative log-likelihood: the mean of −ln p_y, the cross-entropy without Keras's clipping,
 *   so a sample given p_y = 0 makes it Infinity (which a reader should see, not a clipped 16.1).
 */

/** Guo et al.'s 15 bins. */
export const ECE_BINS = 15;

/** One bin of a reliability diagram: its range, how many samples fell in it, their mean confidence and accuracy (null when empty). */
export interface ReliabilityBin {
  lower: number;
  upper: number;
  count: number;
  confidence: number | null;
  accuracy: number | null;
}

export interface Calibration {
  ece: number;
  brier: number;
  nll: number;
  bins: ReliabilityBin[];
}

/**
 * The calibration of `probabilities` (n rows of k, each a distribution) against `labels` (n
 * class indexes). The prediction is the first class with the top probability, as argmax takes it.
 */
export function calibration(
  probabilities: Float32Array,
  labels: Int32Array,
  classes: number,
  binCount = ECE_BINS,
): Calibration {
  const n = labels.length;
  if (probabilities.length !== n * classes)
    throw new Error(`calibration: ${probabilities.length} probabilities for ${n} samples of ${classes} classes`);
  const count = new Float64Array(binCount);
  const confidenceSum = new Float64Array(binCount);
  const correctSum = new Float64Array(binCount);
  let brierSum = 0;
  let nllSum = 0;
  for (let i = 0; i < n; i++) {
    const row = i * classes;
    const label = labels[i]!;
    let top = 0;
    for (let c = 1; c < classes; c++) if (probabilities[row + c]! > probabilities[row + top]!) top = c;
    const confidence = probabilities[row + top]!;
    // Bin m (0-based) holds (m/M, (m+1)/M]: ceil(confidence · M) − 1, with 0 put in the first bin.
    const bin = Math.min(binCount - 1, Math.max(0, Math.ceil(confidence * binCount) - 1));
    count[bin]!++;
    confidenceSum[bin]! += confidence;
    if (top === label) correctSum[bin]!++;
    for (let c = 0; c < classes; c++) {
      const d = probabilities[row + c]! - (c === label ? 1 : 0);
      brierSum += d * d;
    }
    nllSum -= Math.log(probabilities[row + label]!);
  }
  const bins: ReliabilityBin[] = [];
  let ece = 0;
  for (let m = 0; m < binCount; m++) {
    const c = count[m]!;
    const confidence = c ? confidenceSum[m]! / c : null;
    const accuracy = c ? correctSum[m]! / c : null;
    if (c) ece += (c / n) * Math.abs(accuracy! - confidence!);
    bins.push({ lower: m / binCount, upper: (m + 1) / binCount, count: c, confidence, accuracy });
  }
  return { ece: n ? ece : 0, brier: n ? brierSum / n : 0, nll: n ? nllSum / n : 0, bins };
}
