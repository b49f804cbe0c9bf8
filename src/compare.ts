import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from './errors';
import { readRegularFile, UnreadableFileError } from './fsutil';
import { readHistory, readMetrics, readStudy, HISTORY_JSON, METRICS_FILE, SPEC_FILE, STUDY_FILE } from './rundir';
import { HISTOGRAM_BIN_WIDTH, HISTOGRAM_MAX_HALF_BINS, type EpochRecord, type Histogram, type MetricsFile, type StudyFile } from './runformat';
import { parsePlainYaml, MAX_SPEC_BYTES } from './spec';
import { latticeEdge } from './model';

/**
 * `compare`: reads run and study directories (skipping broken or unfinished runs with a
 * reason, never failing on them), groups runs that differ only in seed, aggregates mean ± std
 * per group, runs a paired t-test of each group against the baseline, and formats the table.
 */

// ---------- reading ----------

export interface RunData {
  dir: string;
  metrics: MetricsFile;
  history: EpochRecord[] | null;
  /** The resolved spec.yaml as a plain object, or null when missing/unreadable. */
  spec: Record<string, unknown> | null;
  study: { dir: string; file: StudyFile; member: StudyFile['members'][number] } | null;
}

export interface Skipped {
  dir: string;
  reason: string;
}

export interface Collected {
  runs: RunData[];
  skipped: Skipped[];
  /** Non-fatal problems with runs that were kept (e.g. an unreadable history.json). */
  warnings: string[];
  studies: { dir: string; file: StudyFile }[];
}

const RUN_FILES = ['metrics.json', 'history.json', 'spec.yaml', 'model.json'];

const finite = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
/** What a reader's InputError says after the file name (the reason names the file already). */
const reasonOf = (err: unknown, dir: string): string => {
  if (!(err instanceof InputError)) throw err;
  const msg = err.message.split('\n')[0]!;
  return msg.startsWith(dir) ? msg.slice(dir.length).replace(/^[\\/]/, '') : msg;
};

function looksLikeRun(dir: string): boolean {
  return RUN_FILES.some((f) => fs.existsSync(path.join(dir, f)));
}

function subdirs(dir: string): string[] {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && !e.name.startsWith('.'))
      .map((e) => path.join(dir, e.name))
      .sort();
  } catch {
    return [];
  }
}

/** Reads one run directory; returns a reason instead when it cannot be compared. */
export function readRun(dir: string): { run?: RunData; reason?: string; warnings: string[] } {
  const warnings: string[] = [];
  if (!fs.existsSync(path.join(dir, METRICS_FILE))) return { reason: 'no metrics.json (the run did not finish, or this is not a run directory)', warnings };
  let metrics: MetricsFile;
  try {
    const read = readMetrics(dir);
    metrics = read.metrics;
    warnings.push(...read.warnings);
  } catch (err) {
    return { reason: reasonOf(err, dir), warnings };
  }
  if (metrics.status !== 'complete') return { reason: `the run is ${metrics.status} (${metrics.stopReason})`, warnings };
  if (!metrics.test || finite(metrics.test.accuracy) === null || finite(metrics.test.loss) === null) return { reason: 'metrics.json has no test accuracy/loss', warnings };

  let history: EpochRecord[] | null = null;
  try {
    history = readHistory(dir).epochs;
  } catch (err) {
    const why = fs.existsSync(path.join(dir, HISTORY_JSON)) ? reasonOf(err, dir) : 'history.json missing';
    warnings.push(`${dir}: ${why}; its curves and best validation accuracy are left out`);
  }

  let spec: Record<string, unknown> | null = null;
  const specFile = path.join(dir, SPEC_FILE);
  try {
    const parsed = parsePlainYaml(readRegularFile(specFile, { maxBytes: MAX_SPEC_BYTES }).toString('utf8'), specFile);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) spec = parsed as Record<string, unknown>;
    else warnings.push(`${dir}: spec.yaml is not a map; grouped by name only`);
  } catch (err) {
    warnings.push(`${dir}: ${err instanceof UnreadableFileError && err.code === 'ENOENT' ? 'spec.yaml missing' : reasonOf(err, dir)}; grouped by name only`);
  }
  return { run: { dir, metrics, history, spec, study: null }, warnings };
}

function readStudyFile(dir: string): { study: StudyFile | null; problem: string | null } {
  if (!fs.existsSync(path.join(dir, STUDY_FILE))) return { study: null, problem: null };
  try {
    return { study: readStudy(dir), problem: null };
  } catch (err) {
    return { study: null, problem: reasonOf(err, dir) };
  }
}

/** Expands the arguments (run dirs, study dirs, folders of runs) and reads every run. */
export function collectRuns(args: string[]): Collected {
  const out: Collected = { runs: [], skipped: [], warnings: [], studies: [] };
  const seen = new Set<string>();
  const add = (dir: string, study: RunData['study']) => {
    const abs = path.resolve(dir);
    if (seen.has(abs)) return;
    seen.add(abs);
    const r = readRun(dir);
    out.warnings.push(...r.warnings);
    if (r.run) out.runs.push({ ...r.run, study });
    else out.skipped.push({ dir, reason: r.reason! });
  };
  for (const arg of args) {
    if (!fs.existsSync(arg)) {
      out.skipped.push({ dir: arg, reason: 'no such directory' });
      continue;
    }
    if (!fs.statSync(arg).isDirectory()) {
      out.skipped.push({ dir: arg, reason: 'not a directory' });
      continue;
    }
    if (looksLikeRun(arg)) {
      add(arg, null);
      continue;
    }
    const { study, problem } = readStudyFile(arg);
    if (study) {
      out.studies.push({ dir: arg, file: study });
      for (const member of study.members) {
        // runDir comes from a file: it must stay inside the study directory.
        const rel = member.runDir ?? path.join('runs', member.name);
        const runDir = path.join(arg, rel);
        if (path.isAbsolute(rel) || path.relative(arg, runDir).startsWith('..')) {
          out.skipped.push({ dir: runDir, reason: 'study.json names a run directory outside the study' });
          continue;
        }
        if (!fs.existsSync(runDir)) out.skipped.push({ dir: runDir, reason: 'not run yet' });
        else add(runDir, { dir: arg, file: study, member });
      }
      // Runs someone put there by hand still count.
      for (const d of subdirs(path.join(arg, 'runs'))) if (looksLikeRun(d)) add(d, null);
      continue;
    }
    // A folder of runs (e.g. runs/), or a study whose study.json is lost.
    const candidates = [...subdirs(arg), ...subdirs(path.join(arg, 'runs'))].filter(looksLikeRun);
    if (problem) out.warnings.push(`${arg}: ${problem}; its runs are compared without variant names`);
    if (candidates.length === 0) out.skipped.push({ dir: arg, reason: 'not a run directory, a study directory or a folder of runs' });
    for (const d of candidates) add(d, null);
  }
  return out;
}

// ---------- statistics ----------

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
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
    1.5056327351493116e-7,
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
    for (const num of [(m * (b - m) * x) / ((a + 2 * m - 1) * (a + 2 * m)), (-(a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))]) {
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
  metric: 'test accuracy';
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
export function pairedT(x: number[], y: number[]): Omit<PairedResult, 'group' | 'baseline' | 'metric' | 'seeds' | 'verdict'> | null {
  const n = Math.min(x.length, y.length);
  if (n < 2) return null;
  const d = x.slice(0, n).map((v, i) => v - y[i]!);
  const s = stat(d)!;
  const sd = s.std ?? 0;
  const df = n - 1;
  const se = sd / Math.sqrt(n);
  const crit = tQuantile(0.975, df);
  if (se === 0) {
    // Identical differences: no spread, so the interval collapses to the difference itself.
    return { pairs: n, meanDiff: s.mean, sdDiff: 0, t: s.mean === 0 ? 0 : Math.sign(s.mean) * Infinity, df, p: s.mean === 0 ? 1 : 0, ci95: [s.mean, s.mean] };
  }
  const t = s.mean / se;
  return { pairs: n, meanDiff: s.mean, sdDiff: sd, t, df, p: Math.min(1, 2 * (1 - tCdf(Math.abs(t), df))), ci95: [s.mean - crit * se, s.mean + crit * se] };
}

// ---------- grouping ----------

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
  variant: string | null;
  /** Values of the study's sweep paths for this group (from the resolved spec). */
  sweep: Record<string, unknown>;
  runs: RunData[];
  seeds: number[];
  isBaseline: boolean;
  best: boolean;
  testAccuracy: Stat;
  testLoss: Stat;
  bestValAccuracy: Stat | null;
  bestValEpoch: Stat | null;
  /** Train (inference mode) − test accuracy. */
  gap: Stat | null;
  /** Last epoch's mean data loss and penalty. */
  dataLoss: Stat | null;
  penalty: Stat | null;
  epochs: Stat | null;
  seconds: Stat | null;
  layers: LayerRow[];
  /** Mean over the group's runs per epoch (runs that stopped early drop out of later epochs). */
  curve: CurvePoint[];
  /** Per layer: every run's counts summed on the shared lattice of edges. */
  histograms: Histogram[];
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
  groups: Group[];
  baseline: string | null;
  paired: PairedResult[];
  skipped: Skipped[];
  warnings: string[];
  /** Sweep paths (from study.json) with numeric values, for "sparsity vs λ". */
  sweepPaths: string[];
}

/** Leaf values of a nested object by dotted path (lists by index; null and {} are leaves). */
export function flatten(value: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (value !== null && typeof value === 'object' && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) out[prefix] = value;
  return out;
}

/** Fields that say which run of a group this is, not what was run. */
const IDENTITY_FIELDS = new Set(['name', 'seed']);

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

/** YAML-flow-like compact text: `{l1: 0.001, l2: 0}`, `[28, 28]`, `relu`. */
export function compact(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(compact).join(', ')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.entries(v)
      .map(([k, x]) => `${k}: ${compact(x)}`)
      .join(', ')}}`;
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function getPath(v: unknown, dotted: string): unknown {
  return dotted.split('.').reduce<unknown>((o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), v);
}

/**
 * `path=value` for each field where `spec` differs from `base`, like `dvc exp diff`. Where the base
 * has a leaf (e.g. `kernelRegularizer: null`) above the differing field, the whole value there is
 * shown once (`…kernelRegularizer={l1: 0.001, l2: 0}`); fields `spec` lacks are implied by a parent.
 */
export function specDiff(spec: Record<string, unknown> | null, base: Record<string, unknown> | null): string {
  if (!spec || !base) return '';
  const a = flatten(spec);
  const b = flatten(base);
  const out: string[] = [];
  // Inserting a layer shifts every later index: describe the whole stack instead of each shifted field.
  const layersOf = (s: Record<string, unknown>) => (getPath(s, 'model.layers') as Record<string, Record<string, unknown>>[] | undefined) ?? [];
  const restacked = layersOf(spec).length !== layersOf(base).length;
  if (restacked) out.push(`model.layers=[${layersOf(spec).map(layerBrief).join(', ')}]`);
  for (const k of Object.keys(a)) {
    if (restacked && k.startsWith('model.layers.')) continue;
    if (IDENTITY_FIELDS.has(k) || JSON.stringify(a[k]) === JSON.stringify(b[k])) continue;
    let at = k;
    if (!(k in b)) {
      const segs = k.split('.');
      for (let n = segs.length - 1; n > 0; n--) {
        const prefix = segs.slice(0, n).join('.');
        if (prefix in b) {
          at = prefix;
          break;
        }
      }
    }
    const text = `${at}=${compact(at === k ? a[k] : getPath(spec, at))}`;
    if (!out.includes(text)) out.push(text);
  }
  return out.join(', ');
}

/** "dense 200 relu", "dropout 0.2", "flatten". */
function layerBrief(layer: Record<string, unknown>): string {
  const [type, cfg] = Object.entries(layer)[0] ?? ['?', {}];
  const c = (cfg ?? {}) as Record<string, unknown>;
  if (type === 'dense') return `dense ${c.units}${c.activation && c.activation !== 'linear' ? ` ${c.activation}` : ''}`;
  if (type === 'dropout') return `dropout ${c.rate}`;
  return type === 'batchNormalization' ? 'batchnorm' : type;
}

function meanCurve(runs: RunData[]): CurvePoint[] {
  const byEpoch = new Map<number, EpochRecord[]>();
  for (const r of runs) for (const e of r.history ?? []) byEpoch.set(e.epoch, [...(byEpoch.get(e.epoch) ?? []), e]);
  return [...byEpoch.keys()]
    .sort((a, b) => a - b)
    .map((epoch) => {
      const es = byEpoch.get(epoch)!;
      const m = (k: 'loss' | 'accuracy' | 'val_loss' | 'val_accuracy') => stat(es.map((e) => e[k]))?.mean ?? null;
      return { epoch, loss: m('loss'), accuracy: m('accuracy'), val_loss: m('val_loss'), val_accuracy: m('val_accuracy') };
    });
}

/**
 * A run's histogram as counts on the shared lattice (bin j covers [(j−half)·w, (j−half+1)·w)).
 * Histograms written on the lattice map exactly; older ones (own ±max|w| edges) are re-binned by
 * overlap, assuming weights spread evenly within each old bin.
 */
export function onLattice(h: Histogram): { half: number; counts: number[] } {
  const w = HISTOGRAM_BIN_WIDTH;
  const k0 = Math.round(h.edges[0]! / w);
  const exact = -k0 === h.edges.length - 1 + k0 && k0 < 0 && h.edges.every((e, i) => Math.abs(e - latticeEdge(k0 + i)) < 1e-9);
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
function groupHistograms(runs: RunData[]): Histogram[] {
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
    out.push({ layer: parts[0]!.layer, edges: Array.from({ length: 2 * half + 1 }, (_, i) => latticeEdge(i - half)), counts });
  }
  return out;
}

function bestVal(run: RunData): { acc: number; epoch: number } | null {
  let best: { acc: number; epoch: number } | null = null;
  for (const e of run.history ?? []) {
    const v = finite(e.val_accuracy);
    if (v !== null && (!best || v > best.acc)) best = { acc: v, epoch: e.epoch };
  }
  return best;
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
  return {
    name,
    label: '',
    variant: runs[0]!.study?.member.variant ?? null,
    sweep: Object.fromEntries(sweepPaths.filter((p) => p in flat).map((p) => [p, flat[p]])),
    runs,
    seeds: m.map((x) => x.seed),
    isBaseline: false,
    best: false,
    testAccuracy: stat(m.map((x) => x.test!.accuracy))!,
    testLoss: stat(m.map((x) => x.test!.loss))!,
    bestValAccuracy: stat(vals.map((v) => v?.acc)),
    bestValEpoch: stat(vals.map((v) => v?.epoch)),
    gap: stat(m.map((x) => (x.trainEval ? x.trainEval.accuracy - x.test!.accuracy : null))),
    dataLoss: stat(last.map((e) => e?.data_loss)),
    penalty: stat(last.map((e) => e?.penalty)),
    epochs: stat(m.map((x) => x.epochsRun)),
    seconds: stat(m.map((x) => x.seconds.total)),
    layers,
    curve: meanCurve(runs),
    histograms: groupHistograms(runs),
  };
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
  const baseName = (runs: RunData[]) => runs.find((r) => r.study)?.study!.member.group ?? runs[0]!.metrics.name.replace(/-seed\d+$/, '');
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
  const base =
    (wanted !== undefined ? groups.find((g) => g.name === wanted || g.variant === wanted || g.runs.some((r) => path.resolve(r.dir) === path.resolve(wanted))) : undefined) ??
    groups.find((g) => g.variant !== null && studyBaselines.has(g.variant)) ??
    groups.find((g) => g.name === 'baseline' || g.name.startsWith('baseline-')) ??
    groups[0];
  const warnings = [...collected.warnings, ...duplicates.map((d) => `${d.dropped} repeats ${d.kept} (same spec, seed ${d.seed}): counted once`)];
  if (wanted !== undefined && base && base.name !== wanted && base.variant !== wanted && !base.runs.some((r) => path.resolve(r.dir) === path.resolve(wanted))) {
    warnings.push(`--baseline ${wanted}: no such variant or run; using ${base.name}`);
  }
  if (base) base.isBaseline = true;
  for (const g of groups) g.label = g === base ? '' : specDiff(g.runs[0]!.spec, base!.runs[0]!.spec);

  groups.sort((a, b) => b.testAccuracy.mean - a.testAccuracy.mean);
  if (groups[0]) groups[0].best = true;

  const paired: PairedResult[] = [];
  // In a sweep, a variant is paired with the baseline variant at the same sweep point (dropout at
  // 2,000 images against no regularization at 2,000 images), where the study has that point.
  const sameSweep = (a: Group, b: Group) => sweepPaths.every((p) => JSON.stringify(a.sweep[p]) === JSON.stringify(b.sweep[p]));
  const partnerOf = (g: Group): Group | undefined =>
    (base && (base.variant !== null && sweepPaths.length ? groups.find((b) => b.variant === base.variant && sameSweep(b, g)) : undefined)) || base;
  for (const g of groups) {
    const partner = partnerOf(g);
    if (!partner || g === partner || partner.runs.length < 2 || g.runs.length < 2) continue;
    const partnerBySeed = new Map(partner.runs.map((r) => [r.metrics.seed, r.metrics.test!.accuracy]));
    const matched = g.runs.filter((r) => partnerBySeed.has(r.metrics.seed));
    const res = pairedT(
      matched.map((r) => r.metrics.test!.accuracy),
      matched.map((r) => partnerBySeed.get(r.metrics.seed)!),
    );
    if (!res) continue;
    const verdict = res.ci95[0] > 0 ? 'better' : res.ci95[1] < 0 ? 'worse' : 'inconclusive';
    paired.push({ group: g.name, baseline: partner.name, metric: 'test accuracy', seeds: matched.map((r) => r.metrics.seed), ...res, verdict });
  }
  return { groups, baseline: base?.name ?? null, paired, skipped: collected.skipped, warnings, sweepPaths, duplicates };
}

// ---------- formatting ----------

export function fmtNum(x: number, digits: number): string {
  if (!Number.isFinite(x)) return String(x);
  return x.toFixed(digits);
}

export function fmtStat(s: Stat | null, digits: number, scale = 1): string {
  if (!s) return '—';
  return s.std === null ? fmtNum(s.mean * scale, digits) : `${fmtNum(s.mean * scale, digits)} ± ${fmtNum(s.std * scale, digits)}`;
}

const fmtSig = (s: Stat | null) => (s ? (Math.abs(s.mean) >= 100 ? s.mean.toFixed(0) : s.mean.toPrecision(3)) : '—');

interface Column {
  title: string;
  cell: (g: Group) => string;
}

function columns(): Column[] {
  return [
    { title: 'variant', cell: (g) => `${g.best ? '*' : ''}${g.name}${g.isBaseline && g.name !== 'baseline' ? ' (baseline)' : ''}` },
    { title: 'changes', cell: (g) => (g.isBaseline ? '' : g.label || '(same spec)') },
    { title: 'n', cell: (g) => String(g.runs.length) },
    { title: 'test acc', cell: (g) => fmtStat(g.testAccuracy, 4) },
    { title: 'test loss', cell: (g) => fmtStat(g.testLoss, 4) },
    { title: 'best val acc (epoch)', cell: (g) => (g.bestValAccuracy ? `${fmtStat(g.bestValAccuracy, 4)} (${fmtNum(g.bestValEpoch!.mean, g.bestValEpoch!.std ? 1 : 0)})` : '—') },
    { title: 'train−test gap', cell: (g) => fmtStat(g.gap, 4) },
    { title: 'data loss / penalty', cell: (g) => `${fmtStat(g.dataLoss, 4)} / ${fmtStat(g.penalty, 4)}` },
    { title: 'sparsity |w|<1e-3 per layer', cell: (g) => g.layers.map((l) => (l.sparsity1e3 ? `${fmtNum(l.sparsity1e3.mean * 100, 1)}%` : '—')).join(' / ') || '—' },
    { title: 'L1 per layer', cell: (g) => g.layers.map((l) => fmtSig(l.l1)).join(' / ') || '—' },
    { title: 'L2 per layer', cell: (g) => g.layers.map((l) => fmtSig(l.l2)).join(' / ') || '—' },
    { title: 'epochs', cell: (g) => (g.epochs ? fmtNum(g.epochs.mean, Number.isInteger(g.epochs.mean) ? 0 : 1) : '—') },
    { title: 'seconds', cell: (g) => (g.seconds ? fmtNum(g.seconds.mean, 1) : '—') },
  ];
}

function pairedHeading(r: CompareResult): string {
  return r.paired.some((p) => p.baseline !== r.baseline)
    ? 'Paired against the baseline variant at the same sweep point, matched by seed'
    : `Paired against the baseline (${r.baseline}), matched by seed`;
}

export function pairedLine(p: PairedResult): string {
  const sign = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(4)}`;
  const t = Number.isFinite(p.t) ? p.t.toFixed(2) : p.t > 0 ? '∞' : '−∞';
  return `${p.group} − ${p.baseline}: ${sign(p.meanDiff)} test accuracy, 95% CI [${sign(p.ci95[0])}, ${sign(p.ci95[1])}], paired t(${p.df}) = ${t}, p = ${p.p < 0.001 ? '<0.001' : p.p.toFixed(3)}, ${p.pairs} seed pairs: ${p.verdict === 'inconclusive' ? 'inconclusive (the interval includes 0)' : p.verdict}`;
}

/** The table's header and cells, as the text/Markdown/HTML outputs show them. */
export function tableCells(r: CompareResult): { header: string[]; rows: string[][] } {
  const cols = columns();
  return { header: cols.map((c) => c.title), rows: r.groups.map((g) => cols.map((c) => c.cell(g))) };
}

export function formatText(r: CompareResult): string {
  const cols = columns();
  const rows = [cols.map((c) => c.title), ...r.groups.map((g) => cols.map((c) => c.cell(g)))];
  const widths = cols.map((_, i) => Math.max(...rows.map((row) => [...row[i]!].length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => cell + ' '.repeat(widths[i]! - [...cell].length))
      .join('  ')
      .trimEnd();
  const out = [line(rows[0]!), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.slice(1).map(line)];
  out.push('', '* best test accuracy; mean ± std over seeds where a variant has several runs; gap = train accuracy (inference mode) − test accuracy');
  if (r.paired.length) out.push('', `${pairedHeading(r)}:`, ...r.paired.map((p) => `  ${pairedLine(p)}`));
  return out.join('\n') + '\n';
}

const mdCell = (s: string) => s.replace(/\|/g, '\\|');

export function formatMarkdown(r: CompareResult): string {
  const cols = columns();
  const out = [
    `| ${cols.map((c) => mdCell(c.title)).join(' | ')} |`,
    `|${cols.map(() => '---').join('|')}|`,
    ...r.groups.map((g) => `| ${cols.map((c) => mdCell(c.cell(g))).join(' | ')} |`),
  ];
  out.push('', '\\* best test accuracy; mean ± std over seeds; gap = train accuracy (inference mode) − test accuracy.');
  if (r.paired.length) out.push('', `${pairedHeading(r)}:`, '', ...r.paired.map((p) => `- ${mdCell(pairedLine(p))}`));
  return out.join('\n') + '\n';
}

const csvCell = (v: unknown): string => {
  const s = v === null || v === undefined ? '' : typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

export function formatCsv(r: CompareResult): string {
  const layerNames = r.groups.reduce<string[]>((acc, g) => (g.layers.length > acc.length ? g.layers.map((l) => l.layer) : acc), []);
  const statCols = (name: string, s: (g: Group) => Stat | null): [string, (g: Group) => unknown][] => [
    [name, (g) => s(g)?.mean],
    [`${name}_std`, (g) => s(g)?.std],
  ];
  const cols: [string, (g: Group) => unknown][] = [
    ['variant', (g) => g.name],
    ['changes', (g) => g.label],
    ['baseline', (g) => (g.isBaseline ? 1 : 0)],
    ['best', (g) => (g.best ? 1 : 0)],
    ['runs', (g) => g.runs.length],
    ['seeds', (g) => g.seeds.join(' ')],
    ...statCols('test_accuracy', (g) => g.testAccuracy),
    ...statCols('test_loss', (g) => g.testLoss),
    ...statCols('best_val_accuracy', (g) => g.bestValAccuracy),
    ['best_val_epoch', (g) => g.bestValEpoch?.mean],
    ...statCols('gap', (g) => g.gap),
    ...statCols('data_loss', (g) => g.dataLoss),
    ...statCols('penalty', (g) => g.penalty),
    ...layerNames.flatMap((name, i): [string, (g: Group) => unknown][] => [
      [`sparsity1e3_${name}`, (g) => g.layers[i]?.sparsity1e3?.mean],
      [`sparsity1e2_${name}`, (g) => g.layers[i]?.sparsity1e2?.mean],
      [`l1_${name}`, (g) => g.layers[i]?.l1?.mean],
      [`l2_${name}`, (g) => g.layers[i]?.l2?.mean],
    ]),
    ['epochs', (g) => g.epochs?.mean],
    ['seconds', (g) => g.seconds?.mean],
  ];
  return [cols.map(([n]) => csvCell(n)).join(','), ...r.groups.map((g) => cols.map(([, f]) => csvCell(f(g))).join(','))].join('\n') + '\n';
}

/** JSON without the bulky per-run data (curves and histograms stay: they are per group). */
export function toJson(r: CompareResult): object {
  return {
    baseline: r.baseline,
    groups: r.groups.map(({ runs, ...g }) => ({ ...g, runDirs: runs.map((x) => x.dir) })),
    paired: r.paired.map((p) => ({ ...p, t: Number.isFinite(p.t) ? p.t : p.t > 0 ? 'Infinity' : '-Infinity' })),
    skipped: r.skipped,
    duplicates: r.duplicates,
    warnings: r.warnings,
  };
}
