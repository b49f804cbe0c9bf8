import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { collectRuns, compareRuns, pairedT, tCdf, tQuantile, specDiff, type Group } from '../src/compare';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'regtrain');
const RUNS = path.join(ROOT, 'test', 'fixtures', 'runs');
const STUDY = path.join(RUNS, 'study');
const LOOSE = path.join(RUNS, 'loose');

const close = (actual: number | null | undefined, expected: number, eps = 1e-6) =>
  assert.ok(actual !== null && actual !== undefined && Math.abs(actual - expected) < eps, `expected ${expected}, got ${actual}`);
const cli = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: ROOT, encoding: 'utf8' });
/** RFC 4180 fields of one line (quotes, doubled quotes). */
function csvFields(line: string): string[] {
  const out: string[] = [];
  const re = /("(?:[^"]|"")*"|[^,]*)(,|$)/g;
  for (let m = re.exec(line); m && m.index < line.length; m = re.exec(line)) out.push(m[1]!.startsWith('"') ? m[1]!.slice(1, -1).replace(/""/g, '"') : m[1]!);
  return out;
}
const byName = (groups: Group[], name: string) => groups.find((g) => g.name === name)!;

test('a study directory yields its complete runs and skips unrun, interrupted and corrupt ones with a reason', () => {
  const c = collectRuns([STUDY]);
  assert.equal(c.runs.length, 7);
  assert.deepEqual(
    c.skipped.map((s) => [path.basename(s.dir), s.reason]),
    [
      ['l2-seed2', 'not run yet'],
      ['l2-seed3', 'the run is incomplete (interrupted)'],
      ['broken', 'metrics.json: not valid JSON (truncated or corrupt)'],
    ],
  );
});

test('runs differing only in seed form one row, with hand-checked means, std, gaps and sparsity', () => {
  const r = compareRuns(collectRuns([STUDY]));
  assert.deepEqual(
    r.groups.map((g) => [g.name, g.runs.length, g.best, g.isBaseline]),
    [
      ['l1', 3, true, false],
      ['baseline', 3, false, true],
      ['l2', 1, false, false],
    ],
  );
  const base = byName(r.groups, 'baseline');
  // test accuracy 0.80, 0.82, 0.84
  close(base.testAccuracy.mean, 0.82);
  close(base.testAccuracy.std!, 0.02);
  close(base.testLoss.mean, 0.48);
  // train 0.90/0.91/0.92 − test → 0.10, 0.09, 0.08
  close(base.gap!.mean, 0.09);
  close(base.gap!.std!, 0.01);
  // best val: 0.78 @2, 0.80 @3, 0.79 @2 (the first of two equal maxima)
  close(base.bestValAccuracy!.mean, 0.79);
  close(base.bestValEpoch!.mean, 7 / 3);
  close(base.seconds!.mean, 12);

  const l1 = byName(r.groups, 'l1');
  // test accuracy 0.83, 0.84, 0.88: mean 0.85, squared deviations 4e-4 + 1e-4 + 9e-4 over n−1 = 2
  close(l1.testAccuracy.mean, 0.85);
  close(l1.testAccuracy.std!, Math.sqrt(7e-4));
  // gaps 0.03, 0.02, 0.02
  close(l1.gap!.mean, 0.07 / 3);
  close(l1.gap!.std!, Math.sqrt(((0.02 / 3) ** 2 + 2 * (0.01 / 3) ** 2) / 2));
  // last epoch: penalty 0.1/0.2/0.3, data loss 0.7 − penalty
  close(l1.penalty!.mean, 0.2);
  close(l1.dataLoss!.mean, 0.5);
  assert.deepEqual(
    l1.layers.map((l) => l.layer),
    ['dense_1', 'dense_2'],
  );
  close(l1.layers[0]!.sparsity1e3!.mean, 0.5);
  close(l1.layers[0]!.sparsity1e3!.std!, 0.1);
  close(l1.layers[1]!.sparsity1e3!.mean, 0.2);
  close(l1.layers[0]!.l1!.mean, 30);
  close(l1.layers[0]!.l2!.mean, 3);

  const l2 = byName(r.groups, 'l2');
  assert.equal(l2.testAccuracy.std, null);
  close(l2.gap!.mean, 0.04);
});

test('a row is labelled only with the spec fields that differ from the baseline', () => {
  const r = compareRuns(collectRuns([STUDY]));
  assert.equal(byName(r.groups, 'baseline').label, '');
  assert.equal(byName(r.groups, 'l1').label, 'model.layers.1.dense.kernelRegularizer={l1: 0.001, l2: 0}');
  assert.equal(
    specDiff({ name: 'a', seed: 1, training: { epochs: 3, earlyStopping: null } }, { name: 'b', seed: 2, training: { epochs: 3, earlyStopping: { patience: 2 } } }),
    'training.earlyStopping=null',
  );
});

test('the paired statistic matches a hand-computed example', () => {
  // d = 0.05, 0, 0.10, 0.05: mean 0.05, sd √(0.005/3), t = 0.05 / (sd/2) = √6, df 3.
  const res = pairedT([0.9, 0.8, 0.7, 0.85], [0.85, 0.8, 0.6, 0.8])!;
  close(res.meanDiff, 0.05);
  close(res.sdDiff, Math.sqrt(0.005 / 3));
  close(res.t, Math.sqrt(6));
  assert.equal(res.df, 3);
  // Student t with 3 df: F(t) = 1/2 + (1/π)(u/(1+u²) + atan u), u = t/√3 = √2.
  const F = 0.5 + (Math.SQRT2 / 3 + Math.atan(Math.SQRT2)) / Math.PI;
  close(res.p, 2 * (1 - F));
  close(res.ci95[0], 0.05 - 3.182446305 * (Math.sqrt(0.005 / 3) / 2), 1e-6);
  close(res.ci95[1], 0.05 + 3.182446305 * (Math.sqrt(0.005 / 3) / 2), 1e-6);
  assert.equal(pairedT([0.9], [0.8]), null);
  close(tCdf(1, 1), 0.75);
  close(tQuantile(0.975, 10), 2.228138852, 1e-6);
});

test('each variant with repeats is compared with the baseline pair by pair, matched by seed', () => {
  const r = compareRuns(collectRuns([STUDY]));
  assert.equal(r.paired.length, 1); // l2 has a single run
  const p = r.paired[0]!;
  assert.equal(p.group, 'l1');
  assert.equal(p.baseline, 'baseline');
  assert.deepEqual(p.seeds, [1, 2, 3]);
  // differences 0.03, 0.02, 0.04: mean 0.03, sd 0.01, t = 0.03/(0.01/√3) = 3√3, df 2; for df 2, F(t) = 1/2 + t/(2√(t²+2)).
  close(p.meanDiff, 0.03);
  close(p.t, 3 * Math.sqrt(3));
  close(p.p, 1 - (3 * Math.sqrt(3)) / Math.sqrt(29));
  close(p.ci95[0], 0.03 - 4.30265273 * (0.01 / Math.sqrt(3)), 1e-6);
  assert.equal(p.verdict, 'better');
});

test('loose run directories are grouped by spec, named by directory, and a missing history only drops its curves', () => {
  const c = collectRuns([LOOSE]);
  assert.deepEqual(
    c.skipped.map((s) => path.basename(s.dir)),
    ['model-only'],
  );
  assert.ok(c.warnings.some((w) => w.includes('tiny-lr1') && w.includes('history.json missing')));
  const r = compareRuns(c);
  assert.deepEqual(
    r.groups.map((g) => g.name),
    ['tiny-lr1', 'tiny-lr01'],
  );
  const lr1 = byName(r.groups, 'tiny-lr1');
  assert.equal(lr1.label, 'optimizer.sgd.learningRate=0.1');
  assert.equal(lr1.bestValAccuracy, null);
  assert.deepEqual(lr1.curve, []);
  assert.equal(r.paired.length, 0);
});

test('compare prints the table, sorted by test accuracy with the best marked, and warns about every skipped directory', () => {
  const r = cli(['compare', STUDY, path.join(RUNS, 'nowhere')]);
  assert.equal(r.status, 0, r.stderr);
  const rows = r.stdout.split('\n');
  assert.match(rows[0]!, /^variant\s+changes\s+n\s+test acc/);
  assert.match(rows[2]!, /^\*l1 .* 3 {2}0\.8500 ± 0\.0265/);
  assert.match(rows[3]!, /^baseline .* 0\.8200 ± 0\.0200/);
  assert.match(rows[4]!, /^l2 .* 0\.8100 /);
  assert.match(r.stdout, /l1 − baseline: \+0\.0300 test accuracy, 95% CI \[\+0\.0052, \+0\.0548\], paired t\(2\) = 5\.20, p = 0\.035/);
  for (const d of ['l2-seed2', 'l2-seed3', 'broken', 'nowhere']) assert.match(r.stderr, new RegExp(`warning: skipped \\S*${d}: `));
});

test('compare --json, --csv and --md carry the same numbers', () => {
  const j = cli(['compare', STUDY, '--json']);
  assert.equal(j.status, 0, j.stderr);
  const doc = JSON.parse(j.stdout) as { baseline: string; groups: { name: string; testAccuracy: { mean: number } }[]; paired: { group: string }[]; skipped: unknown[] };
  assert.equal(doc.baseline, 'baseline');
  assert.deepEqual(
    doc.groups.map((g) => g.name),
    ['l1', 'baseline', 'l2'],
  );
  close(doc.groups[0]!.testAccuracy.mean, 0.85);
  assert.equal(doc.skipped.length, 3);

  const c = cli(['compare', STUDY, '--csv']);
  const [header, first] = c.stdout.split('\n');
  const cols = csvFields(header!);
  const cells = csvFields(first!);
  assert.equal(cells.length, cols.length);
  const at = (name: string) => cells[cols.indexOf(name)];
  assert.equal(at('variant'), 'l1');
  assert.equal(at('changes'), 'model.layers.1.dense.kernelRegularizer={l1: 0.001, l2: 0}');
  close(Number(at('test_accuracy')), 0.85);
  close(Number(at('sparsity1e3_dense_1')), 0.5);
  close(Number(at('gap')), 0.07 / 3);
  assert.equal(at('best'), '1');

  const md = cli(['compare', STUDY, '--md']);
  assert.match(md.stdout, /^\| variant \| changes \|/);
  assert.match(md.stdout, /\| \*l1 \| model\.layers\.1\.dense\.kernelRegularizer=\{l1: 0\.001, l2: 0\} \| 3 \| 0\.8500 ± 0\.0265 \|/);
});

test('compare with nothing usable exits 2 and says why', () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-cmp-'));
  const r = cli(['compare', empty, path.join(STUDY, 'runs', 'broken')]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no complete runs to compare/);
  assert.match(r.stderr, /skipped \S*broken: metrics\.json: not valid JSON/);
});

test('--baseline picks another variant to compare against', () => {
  const r = compareRuns(collectRuns([STUDY]), { baseline: 'l1' });
  assert.equal(r.baseline, 'l1');
  assert.equal(r.paired[0]!.group, 'baseline');
  close(r.paired[0]!.meanDiff, -0.03);
  assert.equal(r.paired[0]!.verdict, 'worse');
});
