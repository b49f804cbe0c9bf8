import * as path from 'node:path';
import type { Confusion, EpochRecord, Histogram } from '../runformat';
import type { Collected, RunData, Skipped } from './collect';
import { groupHistograms } from './histograms';
import { flatten, IDENTITY_FIELDS, specChanges } from './spec-diff';
import { pairedT, stat, type PairedResult, type Stat } from './statistics';

/**
 * `compare`, step 2: groups runs that differ only in seed, aggregates mean ± std per group,
 * picks the baseline, pairs every group with it by seed, and puts the groups in the study's order.
 */

export interface LayerRow {
  layer: string;
  sparsity1e3: Stat | null;
  sparsity1e2: Stat | null;
  l1: Stat | null;
  l2: Stat | null;
}

export interface CurvePoint {
  epoch: number;
  loss: number | null;
  accuracy: number | null;
  val_loss: number | null;
  val_accuracy: number | null;
}

export interface Group {
  /** Study group name (e.g. `l1-l1=0.001`), else the run name without its seed suffix. */
  name: string;
  /** Spec fields that differ from the baseline, `path=value, …` ("" for the baseline itself). */
  label: string;
  /** The same, one change per element. */
  changes: string[];
  variant: string | null;
  /** Values of the study's sweep paths for this group (from the resolved spec). */
  sweep: Record<string, unknown>;
  runs: RunData[];
  seeds: number[];
  isBaseline: boolean;
  /** The group its Δ is measured against: the baseline, or in a sweep the baseline variant at the same swept values (null for the baseline). */
  reference: string | null;
  best: boolean;
  testAccuracy: Stat;
  testLoss: Stat;
  bestValAccuracy: Stat | null;
  bestValEpoch: Stat | null;
  /** Test calibration (src/evaluation/calibration.ts), over the runs that measured it (null when none did). */
  ece: Stat | null;
  brier: Stat | null;
  nll: Stat | null;
  /** Train (inference mode) − test accuracy. */
  gap: Stat | null;
  /** Last epoch's mean data loss and penalty. */
  dataLoss: Stat | null;
  penalty: Stat | null;
  /** Last epoch's penalty ÷ (data loss + penalty): how much of the loss the regularizers make. */
  penaltyShare: Stat | null;
  /** Training images per run (from metrics.json). */
  trainSize: Stat | null;
  epochs: Stat | null;
  seconds: Stat | null;
  layers: LayerRow[];
  /** Mean over the group's runs per epoch (runs that stopped early drop out of later epochs). */
  curve: CurvePoint[];
  /** Per layer: every run's counts summed on the shared lattice of edges. */
  histograms: Histogram[];
  /** The test confusion matrices of the runs that stored one, added up (null when none did). */
  confusion: Confusion | null;
}

/** A run left out because another run with the same resolved spec and seed was counted. */
export interface Duplicate {
  kept: string;
  dropped: string;
  seed: number;
}

export interface CompareResult {
  /** Runs that repeat a counted run (same spec and seed), left out of every statistic. */
  duplicates: Duplicate[];
  /** Baseline first, then the study's variants in the order it declares them (a sweep by its values), then runs outside a study by test accuracy. */
  groups: Group[];
  baseline: string | null;
  paired: PairedResult[];
  skipped: Skipped[];
  warnings: string[];
  /** Sweep paths (from study.json) with numeric values, for the charts against λ. */
  sweepPaths: string[];
}

const finite = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

function specKey(run: RunData): string {
  if (!run.spec) return `name:${run.metrics.name.replace(/-seed\d+$/, '')}`;
  const flat = flatten(run.spec);
  return JSON.stringify(
    Object.keys(flat)
      .filter((k) => !IDENTITY_FIELDS.has(k))
      .sort()
      .map((k) => [k, flat[k]]),
  );
}

function meanCurve(runs: RunData[]): CurvePoint[] {
  const byEpoch = new Map<number, EpochRecord[]>();
  for (const r of runs) for (const e of r.history ?? []) byEpoch.set(e.epoch, [...(byEpoch.get(e.epoch) ?? []), e]);
  return [...byEpoch.keys()]
    .sort((a, b) => a - b)
    .map((epoch) => {
      const es = byEpoch.get(epoch)!;
      const m = (k: 'loss' | 'accuracy' | 'val_loss' | 'val_accuracy') => stat(es.map((e) => e[k]))?.mean ?? null;
      return {
        epoch,
        loss: m('loss'),
        accuracy: m('accuracy'),
        val_loss: m('val_loss'),
        val_accuracy: m('val_accuracy'),
      };
    });
}

function bestVal(run: RunData): { acc: number; epoch: number } | null {
  let best: { acc: number; epoch: number } | null = null;
  for (const e of run.history ?? []) {
    const v = finite(e.val_accuracy);
    if (v !== null && (!best || v > best.acc)) best = { acc: v, epoch: e.epoch };
  }
  return best;
}

/** The runs' confusion matrices added up; runs whose classes differ from the first one's are left out. */
function sumConfusion(runs: RunData[]): Confusion | null {
  const stored = runs.map((r) => r.metrics.confusion).filter((c): c is Confusion => c !== undefined);
  if (stored.length === 0) return null;
  const first = stored[0]!;
  const matrix = first.matrix.map((row) => row.map(() => 0));
  for (const c of stored) {
    if (JSON.stringify(c.classNames) !== JSON.stringify(first.classNames)) continue;
    c.matrix.forEach((row, i) => row.forEach((v, j) => (matrix[i]![j]! += v)));
  }
  return { classNames: first.classNames, matrix };
}

function buildGroup(name: string, runs: RunData[], sweepPaths: string[]): Group {
  const m = runs.map((r) => r.metrics);
  const last = runs.map((r) => (r.history?.length ? r.history[r.history.length - 1]! : null));
  const vals = runs.map(bestVal);
  const nLayers = m.reduce((n, x) => Math.max(n, x.finalWeights.length), 0);
  const layers: LayerRow[] = Array.from({ length: nLayers }, (_, i) => {
    const ws = m.map((x) => x.finalWeights[i]);
    return {
      layer: ws.find((w) => w)?.layer ?? `layer ${i + 1}`,
      sparsity1e3: stat(ws.map((w) => w?.sparsity1e3)),
      sparsity1e2: stat(ws.map((w) => w?.sparsity1e2)),
      l1: stat(ws.map((w) => w?.l1)),
      l2: stat(ws.map((w) => w?.l2)),
    };
  });
  const flat = runs[0]!.spec ? flatten(runs[0]!.spec) : {};
  const share = (e: EpochRecord | null) => {
    const d = finite(e?.data_loss);
    const p = finite(e?.penalty);
    return d === null || p === null || d + p <= 0 ? null : p / (d + p);
  };
  return {
    name,
    label: '',
    changes: [],
    variant: runs[0]!.study?.member.variant ?? null,
    sweep: Object.fromEntries(sweepPaths.filter((p) => p in flat).map((p) => [p, flat[p]])),
    runs,
    seeds: m.map((x) => x.seed),
    isBaseline: false,
    reference: null,
    best: false,
    testAccuracy: stat(m.map((x) => x.test!.accuracy))!,
    testLoss: stat(m.map((x) => x.test!.loss))!,
    bestValAccuracy: stat(vals.map((v) => v?.acc)),
    bestValEpoch: stat(vals.map((v) => v?.epoch)),
    ece: stat(m.map((x) => x.calibration?.ece)),
    brier: stat(m.map((x) => x.calibration?.brier)),
    nll: stat(m.map((x) => x.calibration?.nll)),
    gap: stat(m.map((x) => (x.trainEval ? x.trainEval.accuracy - x.test!.accuracy : null))),
    dataLoss: stat(last.map((e) => e?.data_loss)),
    penalty: stat(last.map((e) => e?.penalty)),
    penaltyShare: stat(last.map(share)),
    trainSize: stat(m.map((x) => x.dataset.sizes.train)),
    epochs: stat(m.map((x) => x.epochsRun)),
    seconds: stat(m.map((x) => x.seconds.total)),
    layers,
    curve: meanCurve(runs),
    histograms: groupHistograms(runs),
    confusion: sumConfusion(runs),
  };
}

/**
 * Where a group stands in the table: the baseline first; then a study's groups in the order the
 * study declares its variants, a sweep's by its values (numbers ascending); then runs outside any
 * study, best test accuracy first.
 */
function orderKey(g: Group, studies: Collected['studies']): number[] {
  if (g.isBaseline) return [0];
  const inStudy = g.runs.find((r) => r.study);
  if (!inStudy) return [2, -g.testAccuracy.mean];
  const { file, member } = inStudy.study!;
  const studyIndex = Math.max(
    0,
    studies.findIndex((s) => s.file === file),
  );
  const sweepRanks = Object.entries(file.sweep).map(([p, values]) => {
    const v = p in g.sweep ? g.sweep[p] : member.sweep[p];
    const numeric = values.every((x) => typeof x === 'number');
    const ordered = numeric ? [...(values as number[])].sort((a, b) => a - b) : values;
    const i = ordered.findIndex((x) => JSON.stringify(x) === JSON.stringify(v));
    return i < 0 ? ordered.length : i;
  });
  const variantIndex = file.variants.indexOf(member.variant);
  return [
    1,
    studyIndex,
    variantIndex < 0 ? file.variants.length : variantIndex,
    ...sweepRanks,
    file.members.indexOf(member),
  ];
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? -Infinity) - (b[i] ?? -Infinity);
    if (d !== 0) return d;
  }
  return 0;
}

/** Groups runs that differ only in seed, names them, picks the baseline, pairs each group with it. */
export function compareRuns(collected: Collected, opts: { baseline?: string } = {}): CompareResult {
  const sweepPaths = [
    ...new Set(
      collected.studies.flatMap((s) =>
        Object.entries(s.file.sweep ?? {})
          .filter(([, vs]) => Array.isArray(vs) && vs.every((v) => typeof v === 'number'))
          .map(([p]) => p),
      ),
    ),
  ];
  // The same (resolved spec, seed) found twice (a study compared twice, a copied run) is one
  // experiment: counting it twice would inflate n and the paired test. Keep the first, say so.
  const byKey = new Map<string, RunData[]>();
  const firstOf = new Map<string, RunData>();
  const duplicates: Duplicate[] = [];
  for (const r of collected.runs) {
    const k = specKey(r);
    const id = `${k}\u0000${r.metrics.seed}`;
    const first = firstOf.get(id);
    if (first) {
      duplicates.push({ kept: first.dir, dropped: r.dir, seed: r.metrics.seed });
      continue;
    }
    firstOf.set(id, r);
    byKey.set(k, [...(byKey.get(k) ?? []), r]);
  }
  // Names: the study's group name; else the run's name, or its directory's where names collide.
  const lists = [...byKey.values()];
  const baseName = (runs: RunData[]) =>
    runs.find((r) => r.study)?.study!.member.group ?? runs[0]!.metrics.name.replace(/-seed\d+$/, '');
  const counts = new Map<string, number>();
  for (const runs of lists) counts.set(baseName(runs), (counts.get(baseName(runs)) ?? 0) + 1);
  const used = new Map<string, number>();
  const groups = lists.map((runs) => {
    let name = baseName(runs);
    if (counts.get(name)! > 1 && runs.length === 1 && !runs[0]!.study) name = path.basename(path.resolve(runs[0]!.dir));
    const n = (used.get(name) ?? 0) + 1;
    used.set(name, n);
    if (n > 1) name = `${name}#${n}`;
    return buildGroup(name, runs, sweepPaths);
  });

  const studyBaselines = new Set(collected.studies.map((s) => s.file.baseline));
  const wanted = opts.baseline;
  // A variant named by --baseline that spans a sweep: its group at the first swept values, as for the study's own.
  const base =
    (wanted !== undefined
      ? groups
          .filter(
            (g) =>
              g.name === wanted ||
              g.variant === wanted ||
              g.runs.some((r) => path.resolve(r.dir) === path.resolve(wanted)),
          )
          .sort((a, b) => compareKeys(orderKey(a, collected.studies), orderKey(b, collected.studies)))[0]
      : undefined) ??
    groups
      .filter((g) => g.variant !== null && studyBaselines.has(g.variant))
      .sort((a, b) => compareKeys(orderKey(a, collected.studies), orderKey(b, collected.studies)))[0] ??
    groups.find((g) => g.name === 'baseline' || g.name.startsWith('baseline-')) ??
    groups[0];
  const warnings = [
    ...collected.warnings,
    ...duplicates.map((d) => `${d.dropped} repeats ${d.kept} (same spec, seed ${d.seed}): counted once`),
  ];
  if (
    wanted !== undefined &&
    base &&
    base.name !== wanted &&
    base.variant !== wanted &&
    !base.runs.some((r) => path.resolve(r.dir) === path.resolve(wanted))
  ) {
    warnings.push(`--baseline ${wanted}: no such variant or run; using ${base.name}`);
  }
  if (base) base.isBaseline = true;
  for (const g of groups) {
    g.changes = g === base ? [] : specChanges(g.runs[0]!.spec, base!.runs[0]!.spec);
    g.label = g.changes.join(', ');
  }

  const best = groups.reduce<Group | undefined>(
    (b, g) => (!b || g.testAccuracy.mean > b.testAccuracy.mean ? g : b),
    undefined,
  );
  if (best) best.best = true;
  const keys = new Map(groups.map((g) => [g, orderKey(g, collected.studies)]));
  groups.sort((a, b) => compareKeys(keys.get(a)!, keys.get(b)!));

  // In a sweep, a variant is paired with the baseline variant at the same swept values (l1 at
  // 1,000 images against the baseline at 1,000 images), else with the baseline. The baseline
  // variant is the one --baseline names, else each study's own.
  const chosenVariant = wanted !== undefined ? (base?.variant ?? null) : null;
  const sweepOf = (g: Group) => g.runs.find((r) => r.study)?.study ?? null;
  const referenceOf = (g: Group): Group | undefined => {
    const st = sweepOf(g);
    if (st && Object.keys(st.member.sweep).length > 0) {
      const twin = groups.find(
        (h) =>
          h !== g &&
          sweepOf(h)?.file === st.file &&
          h.variant === (chosenVariant ?? st.file.baseline) &&
          JSON.stringify(sweepOf(h)!.member.sweep) === JSON.stringify(st.member.sweep),
      );
      if (twin) return twin;
    }
    return base;
  };
  for (const g of groups) g.reference = g === base ? null : (referenceOf(g)?.name ?? null);
  // Each metric paired by seed the same way; ECE only over the runs that measured it.
  const metrics: { metric: PairedResult['metric']; value: (r: RunData) => number | null; higherIsBetter: boolean }[] = [
    { metric: 'test accuracy', value: (r) => r.metrics.test!.accuracy, higherIsBetter: true },
    { metric: 'test ECE', value: (r) => r.metrics.calibration?.ece ?? null, higherIsBetter: false },
  ];
  const paired: PairedResult[] = [];
  for (const { metric, value, higherIsBetter } of metrics) {
    for (const g of groups) {
      const ref = referenceOf(g);
      if (!ref || g === ref || g === base || g.runs.length < 2 || ref.runs.length < 2) continue;
      const refBySeed = new Map(
        ref.runs.filter((r) => value(r) !== null).map((r) => [r.metrics.seed, value(r)!] as const),
      );
      const matched = g.runs.filter((r) => value(r) !== null && refBySeed.has(r.metrics.seed));
      const res = pairedT(
        matched.map((r) => value(r)!),
        matched.map((r) => refBySeed.get(r.metrics.seed)!),
      );
      if (!res) continue;
      const [up, down] = higherIsBetter ? (['better', 'worse'] as const) : (['worse', 'better'] as const);
      const verdict = res.ci95[0] > 0 ? up : res.ci95[1] < 0 ? down : 'inconclusive';
      paired.push({
        group: g.name,
        baseline: ref.name,
        metric,
        seeds: matched.map((r) => r.metrics.seed),
        ...res,
        verdict,
      });
    }
  }
  return { groups, baseline: base?.name ?? null, paired, skipped: collected.skipped, warnings, sweepPaths, duplicates };
}
