/** `regtrain evaluate`'s work: the saved model on the test set. Loaded by the command's action only (it needs tfjs). */
import * as path from 'node:path';
import { initBackend } from '../backend';
import { loadModel } from '../rundir';
import { parseSetFlag, NUM_CLASSES } from '../spec';
import { evaluateSplit } from '../train/forward';
import { weightPenalty } from '../train/penalties';
import { Console } from '../console';
import { resumeCommand } from '../invocation';
import { runSeeds } from '../rng';
import { loadSpecData } from '../data/dataset';
import type { EvaluateOptions } from './evaluate';
import { bindRunModel, openFinishedRun, readRunSpec } from './saved-run';
import { BEST_DIR, type BestInfo } from '../train/callbacks/best-model';
import { calibrationLine } from '../train/callbacks/epoch-lines';
import { calibration, type ReliabilityBin } from '../evaluation/calibration';

export interface EvaluationReport {
  runDir: string;
  /** With --best: the epoch and monitor value the evaluated model was saved at. */
  best?: BestInfo;
  loss: number;
  accuracy: number;
  count: number;
  /** Expected calibration error over 15 equal-width confidence bins (Guo et al. 2017). */
  ece: number;
  /** Multi-class Brier score: mean Σ_k (p_k − y_k)², 0 to 2. */
  brier: number;
  /** Mean −ln p_y, unclipped (Infinity when an image got p = 0 for its class; null in --json). */
  nll: number;
  perClass: { name: string; accuracy: number; count: number }[];
  /** confusion[true][predicted]. */
  confusion: number[][];
  /** The reliability diagram's 15 bins: range, count, mean confidence and accuracy (null when empty). */
  reliability: ReliabilityBin[];
}

export async function evaluateRun(dir: string, opts: EvaluateOptions): Promise<EvaluationReport> {
  const out = new Console(!!opts.json, false);
  const { metrics, best } = openFinishedRun(dir, 'evaluate', !!opts.best, out, (metrics) =>
    metrics.status === 'incomplete'
      ? `; finish it first: ${resumeCommand(path.resolve(dir), { source: opts.source, ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}), ...(opts.backend ? { backend: opts.backend } : {}) })}`
      : '',
  );
  const sets = opts.testLimit !== undefined ? [parseSetFlag(`data.testLimit=${opts.testLimit}`)] : [];
  const spec = readRunSpec(
    dir,
    sets.map((s) => ({ ...s, label: `--test-limit ${opts.testLimit}` })),
  );

  const backend = await initBackend(opts.backend ?? spec.backend);
  out.info(`Backend: ${backend.name} — ${backend.reason}`);
  const { model } = await loadModel(best ? path.join(dir, BEST_DIR) : dir, spec);
  if (best) out.result(`Best model: epoch ${best.epoch} (${best.monitor} ${best.value.toFixed(4)})`);
  try {
    const built = bindRunModel(dir, model, spec);
    const data = await loadSpecData(spec, runSeeds(spec.seed), opts);
    const recorded = metrics.dataset.normalization;
    if (
      recorded &&
      (Math.abs(recorded.mean - data.normalization.mean) > 1e-6 ||
        Math.abs(recorded.std - data.normalization.std) > 1e-6)
    ) {
      out.warn(
        `normalization constants differ from the run's (mean ${recorded.mean} vs ${data.normalization.mean}); the data may differ`,
      );
    }
    for (const [name, hash] of Object.entries(metrics.dataset.sha256)) {
      if (data.sha256[name] && data.sha256[name] !== hash)
        out.warn(
          `${name} differs from the file the run used (sha256 ${hash.slice(0, 12)}… vs ${data.sha256[name]!.slice(0, 12)}…)`,
        );
    }

    const ev = evaluateSplit(built, data.test, { probabilities: true });
    const cal = calibration(ev.probabilities!, data.test.labels, NUM_CLASSES);
    const loss = ev.dataLoss + ev.activityPenalty + weightPenalty(built);
    const confusion = Array.from({ length: NUM_CLASSES }, () => new Array<number>(NUM_CLASSES).fill(0));
    for (let i = 0; i < ev.count; i++) confusion[data.test.labels[i]!]![ev.predictions[i]!]!++;
    const perClass = confusion.map((row, c) => {
      const count = row.reduce((a, b) => a + b, 0);
      return { name: data.classNames[c] ?? String(c), accuracy: count ? row[c]! / count : 0, count };
    });
    const report: EvaluationReport = {
      runDir: dir,
      ...(best ? { best } : {}),
      loss,
      accuracy: ev.accuracy,
      count: ev.count,
      ece: cal.ece,
      brier: cal.brier,
      nll: cal.nll,
      perClass,
      confusion,
      reliability: cal.bins,
    };

    if (opts.json) {
      out.event(report as unknown as Record<string, unknown>);
    } else {
      const w = Math.max(...perClass.map((p) => p.name.length));
      out.result(`Test: loss: ${loss.toFixed(4)} - accuracy: ${ev.accuracy.toFixed(4)} (${ev.count} images)`);
      if (!best && metrics.test && metrics.test.count === ev.count)
        out.result(`(run reported accuracy ${metrics.test.accuracy.toFixed(4)} on the same ${ev.count} images)`);
      out.result(calibrationLine(cal));
      out.result('\nPer class:');
      for (const p of perClass)
        out.result(`  ${p.name.padEnd(w)}  ${(100 * p.accuracy).toFixed(1).padStart(5)}%  (${p.count})`);
      out.result('\nConfusion matrix (rows: true class, columns: predicted):');
      out.result('  ' + ''.padEnd(w) + confusion.map((_, c) => String(c).padStart(6)).join(''));
      confusion.forEach((row, c) =>
        out.result(`  ${perClass[c]!.name.padEnd(w)}${row.map((v) => String(v).padStart(6)).join('')}`),
      );
    }
    return report;
  } finally {
    model.dispose();
  }
}
