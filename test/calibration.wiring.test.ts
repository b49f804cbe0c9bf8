/**
 * Calibration wired through the tool: a tiny real run's metrics.json, `evaluate` (text and --json)
 * on it, and `compare` (the ECE column, the paired ECE interval, the reliability diagrams) on the
 * fixture study with hand-chosen ECEs. Runs written before regtrain measured calibration stay readable.
 * Every command is the real program in this process (helpers/in-process.ts): what is checked is numbers,
 * files and messages, not a process's.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MetricsFile } from '../src/runformat';
import { ECE_BINS } from '../src/evaluation/calibration';
import { sliceFlags } from './helpers/cli';
import { seededXdgCache } from './helpers/data';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';
import { readJson, metricsOf } from './helpers/run-files';

const ROOT = path.resolve(__dirname, '..', '..');
const QUICK = path.join(ROOT, 'configs', 'quick.yaml');
const STUDY = path.join(ROOT, 'test', 'fixtures', 'runs', 'study');
const TEST_COUNT = 300;

let TMP = '';
let RUN = '';
const cli = (args: string[]) => regtrainInProcess(args, { cwd: TMP, env: { XDG_CACHE_HOME: path.join(TMP, 'xdg') } });
const close = (actual: number, expected: number, eps = 1e-9) =>
  assert.ok(Math.abs(actual - expected) <= eps, `expected ${expected}, got ${actual}`);

before(async () => {
  TMP = scratchDir('regtrain-calibration-');
  seededXdgCache(path.join(TMP, 'xdg'));
  const r = await cli([
    'run',
    QUICK,
    '--backend',
    'wasm',
    ...sliceFlags({ train: 400, validation: 100, test: TEST_COUNT, epochs: 1 }),
    '--out',
    path.join(TMP, 'run'),
    '-q',
  ]);
  assert.equal(r.code, 0, r.stderr);
  RUN = path.join(TMP, 'run');
});

test("a finished run's metrics.json holds the test set's ECE, Brier score, NLL and 15 reliability bins that add up to them", async () => {
  const c = metricsOf(RUN).calibration!;
  assert.ok(c, 'metrics.json has no calibration');
  assert.equal(c.bins.length, ECE_BINS);
  assert.deepEqual(
    c.bins.map((b) => [b.lower, b.upper]),
    Array.from({ length: 15 }, (_, m) => [m / 15, (m + 1) / 15]),
  );
  assert.equal(
    c.bins.reduce((a, b) => a + b.count, 0),
    TEST_COUNT,
  );
  // ECE is the count-weighted |accuracy − confidence| over the bins it stores.
  const ece = c.bins.reduce(
    (a, b) => a + (b.count ? (b.count / TEST_COUNT) * Math.abs(b.accuracy! - b.confidence!) : 0),
    0,
  );
  close(c.ece, ece, 1e-12);
  // The bins' accuracies add up to the run's test accuracy.
  const correct = c.bins.reduce((a, b) => a + (b.count ? b.count * b.accuracy! : 0), 0);
  close(correct / TEST_COUNT, metricsOf(RUN).test!.accuracy, 1e-12);
  assert.ok(c.brier > 0 && c.brier < 2 && c.nll > 0, JSON.stringify(c));
});

test('evaluate reports the same ECE, Brier score and NLL as the run recorded, in its text and in --json', async () => {
  const c = metricsOf(RUN).calibration!;
  const j = await cli(['evaluate', RUN, '--json']);
  assert.equal(j.code, 0, j.stderr);
  const report = JSON.parse(j.stdout.trim().split('\n').at(-1)!) as {
    ece: number;
    brier: number;
    nll: number;
    reliability: MetricsFile['calibration'] extends infer C ? (C extends { bins: infer B } ? B : never) : never;
  };
  close(report.ece, c.ece);
  close(report.brier, c.brier);
  close(report.nll, c.nll);
  assert.deepEqual(report.reliability, c.bins);
  const t = await cli(['evaluate', RUN]);
  assert.equal(t.code, 0, t.stderr);
  assert.match(
    t.stdout,
    new RegExp(
      `^Calibration: ECE: ${c.ece.toFixed(4)} \\(15 bins\\) - Brier: ${c.brier.toFixed(4)} - NLL: ${c.nll.toFixed(4)}$`,
      'm',
    ),
  );
});

test('a run directory written before calibration was measured is still evaluated and compared, without ECE columns', async () => {
  const old = path.join(TMP, 'old-run');
  fs.cpSync(RUN, old, { recursive: true });
  const m = metricsOf(old) as Partial<MetricsFile>;
  delete m.calibration;
  fs.writeFileSync(path.join(old, 'metrics.json'), JSON.stringify(m));
  const e = await cli(['evaluate', old]);
  assert.equal(e.code, 0, e.stderr);
  assert.match(e.stdout, /^Calibration: ECE: /m);
  const c = await cli(['compare', old]);
  assert.equal(c.code, 0, c.stderr);
  assert.deepEqual(c.stdout.split('\n')[0]!.trim().split(/ {2,}/), [
    'variant',
    'test acc ± std (n)',
    'Δ vs baseline [95% CI]',
    'gap',
    'sparsity',
    'penalty',
  ]);
});

test('metrics.json with an ECE above 1 is refused with the field path and the expected range', async () => {
  const bad = path.join(TMP, 'bad-ece');
  fs.cpSync(RUN, bad, { recursive: true });
  const m = metricsOf(bad);
  m.calibration!.ece = 1.5;
  fs.writeFileSync(path.join(bad, 'metrics.json'), JSON.stringify(m));
  const e = await cli(['evaluate', bad]);
  assert.equal(e.code, 2, e.stderr);
  assert.equal(
    e.stderr.trim().split('\n').at(-1),
    `error: ${path.join(bad, 'metrics.json')}: calibration.ece: expected a number from 0 to 1, got 1.5`,
  );
});

/** RFC 4180 fields of one line (quotes, doubled quotes). */
function csvFields(line: string): string[] {
  const out: string[] = [];
  const re = /("(?:[^"]|"")*"|[^,]*)(,|$)/g;
  for (let m = re.exec(line); m && m.index < line.length; m = re.exec(line))
    out.push(m[1]!.startsWith('"') ? m[1]!.slice(1, -1).replace(/""/g, '"') : m[1]!);
  return out;
}

/** The fixture study with each run's test ECE set: baseline 0.10, 0.12, 0.14; l1 0.07, 0.08, 0.12 (seeds 1, 2, 3). */
function calibratedStudy(): string {
  const dir = path.join(TMP, 'study');
  fs.cpSync(STUDY, dir, { recursive: true });
  const eces: Record<string, number> = {
    'baseline-seed1': 0.1,
    'baseline-seed2': 0.12,
    'baseline-seed3': 0.14,
    'l1-seed1': 0.07,
    'l1-seed2': 0.08,
    'l1-seed3': 0.12,
  };
  for (const [run, ece] of Object.entries(eces)) {
    const file = path.join(dir, 'runs', run, 'metrics.json');
    const m = readJson<MetricsFile>(file);
    // Two non-empty bins, 400 and 100 of the 500 test images.
    const bins = Array.from({ length: 15 }, (_, i) => ({
      lower: i / 15,
      upper: (i + 1) / 15,
      count: i === 14 ? 400 : i === 9 ? 100 : 0,
      confidence: i === 14 ? 0.97 : i === 9 ? 0.64 : null,
      accuracy: i === 14 ? 0.9 : i === 9 ? 0.5 : null,
    }));
    m.calibration = { ece, brier: 2 * ece, nll: 3 * ece, bins };
    fs.writeFileSync(file, JSON.stringify(m));
  }
  return dir;
}

test('compare shows each variant’s mean ECE and pairs the ECE with the baseline by seed, lower being better', async () => {
  const study = calibratedStudy();
  const t = await cli(['compare', study]);
  assert.equal(t.code, 0, t.stderr);
  const lines = t.stdout.split('\n');
  assert.deepEqual(lines[0]!.trim().split(/ {2,}/), [
    'variant',
    'test acc ± std (n)',
    'Δ vs baseline [95% CI]',
    'gap',
    'ECE',
    'sparsity',
    'penalty',
  ]);
  // Means: baseline (0.10 + 0.12 + 0.14)/3 = 0.12; l1 (0.07 + 0.08 + 0.12)/3 = 0.09; l2 has no ECE.
  assert.match(lines[2]!, / 0\.0900 +0\.1200 +1\.0%/);
  assert.match(lines[3]!, / 0\.0233 +0\.0900 +50\.0%/);
  assert.match(lines[4]!, / 0\.0400 +— +3\.0%/);
  // l1 − baseline: differences −0.03, −0.04, −0.02: mean −0.03, sd 0.01, t(2) = −0.03/(0.01/√3) = −5.20,
  // 95% interval −0.03 ± 4.303·0.01/√3 = [−0.0548, −0.0052]: below 0, so better calibrated.
  const at = lines.indexOf(
    'Test ECE (lower is better) paired against the baseline, matched by seed (95% CI, paired t-test):',
  );
  assert.ok(at > 0, t.stdout);
  assert.equal(lines[at + 1], '  l1 − baseline: -0.0300 [-0.0548, -0.0052], t(2) = -5.20, p = 0.035, 3 pairs: better');

  const j = await cli(['compare', study, '--json']);
  assert.equal(j.code, 0, j.stderr);
  const paired = j.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { type: string; metric?: string; meanDiff?: number; ci95?: number[] })
    .filter((l) => l.type === 'paired' && l.metric === 'test ECE');
  assert.equal(paired.length, 1);
  close(paired[0]!.meanDiff!, -0.03, 1e-12);
  close(paired[0]!.ci95![0]!, -0.03 - (4.302652729911275 * 0.01) / Math.sqrt(3), 1e-6);

  const w = await cli(['compare', study, '--wide']);
  assert.equal(w.code, 0, w.stderr);
  const header = w.stdout.split('\n')[0]!.trim().split(/ {2,}/);
  assert.deepEqual(header.slice(5, 10), ['test loss', 'test ECE', 'Δ ECE [95% CI]', 'Brier', 'test NLL']);
  const l1 = w.stdout.split('\n').find((l) => l.startsWith('*l1'))!;
  assert.ok(l1.includes('0.0900 ± 0.0265  -0.0300 [-0.0548, -0.0052] better  0.1800 ± 0.0529  0.2700 ± 0.0794'), l1);

  const csv = await cli(['compare', study, '--csv']);
  const [head, , l1Row] = csv.stdout.split('\n');
  const col = (name: string) => csvFields(l1Row!)[csvFields(head!).indexOf(name)];
  close(Number(col('ece')), 0.09, 1e-12);
  assert.equal(col('ece_verdict'), 'better');
});

test('the HTML report draws a reliability diagram per variant that measured calibration, one bar per non-empty bin', async () => {
  const study = calibratedStudy();
  const file = path.join(TMP, 'report.html');
  const r = await cli(['compare', study, '--report', file]);
  assert.equal(r.code, 0, r.stderr);
  const html = fs.readFileSync(file, 'utf8');
  assert.ok(html.includes('<h2>Calibration: reliability diagrams</h2>'));
  const charts = [...html.matchAll(/<svg[^>]*data-chart="(reliability-[^"]+)" data-series="(\d+)"/g)].map((m) => [
    m[1],
    m[2],
  ]);
  assert.deepEqual(charts, [
    ['reliability-1-baseline', '2'],
    ['reliability-2-l1', '2'],
  ]);
  assert.ok(html.includes('Reliability: l1, ECE 0.0900 (mean of 3)'));
  assert.ok(fs.existsSync(path.join(TMP, 'report-charts', 'reliability-2-l1.svg')));
});
