import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { collectRuns, compareRuns, pairedT, tCdf, tQuantile, specDiff, type Group } from '../src/compare';
import { readMetrics } from '../src/rundir';
import { regtrain, regtrainSync, sliceFlags } from './helpers/cli';
import { sharedDataDir } from './helpers/data';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '..', '..');
const RUNS = path.join(ROOT, 'test', 'fixtures', 'runs');
const STUDY = path.join(RUNS, 'study');
const LOOSE = path.join(RUNS, 'loose');

const close = (actual: number | null | undefined, expected: number, eps = 1e-6) =>
  assert.ok(
    actual !== null && actual !== undefined && Math.abs(actual - expected) < eps,
    `expected ${expected}, got ${actual}`,
  );
const cli = (args: string[]) => regtrainSync(args, { cwd: RUNS });
/** RFC 4180 fields of one line (quotes, doubled quotes). */
function csvFields(line: string): string[] {
  const out: string[] = [];
  const re = /("(?:[^"]|"")*"|[^,]*)(,|$)/g;
  for (let m = re.exec(line); m && m.index < line.length; m = re.exec(line))
    out.push(m[1]!.startsWith('"') ? m[1]!.slice(1, -1).replace(/""/g, '"') : m[1]!);
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

test('runs differing only in seed form one row, with hand-checked means, std, gaps, sparsity and penalty shares', () => {
  const r = compareRuns(collectRuns([STUDY]));
  // The study's order (baseline first, then its variants as declared), the best one marked.
  assert.deepEqual(
    r.groups.map((g) => [g.name, g.runs.length, g.best, g.isBaseline]),
    [
      ['baseline', 3, false, true],
      ['l1', 3, true, false],
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
  // test accuracy 0.83, 0.84, 0.88: mean 0.85, squared deviations 4e-4 + 1e-4 + 9e-4 over n-1 = 2
  close(l1.testAccuracy.mean, 0.85);
  close(l1.testAccuracy.std!, Math.sqrt(7e-4));
  // gaps 0.03, 0.02, 0.02
  close(l1.gap!.mean, 0.07 / 3);
  close(l1.gap!.std!, Math.sqrt(((0.02 / 3) ** 2 + 2 * (0.01 / 3) ** 2) / 2));
  // last epoch: penalty 0.1/0.2/0.3, data loss 0.7 − penalty
  close(l1.penalty!.mean, 0.2);
  close(l1.dataLoss!.mean, 0.5);
  // penalty ÷ (data loss + penalty) per run: 0.1/0.7, 0.2/0.7, 0.3/0.7
  close(l1.penaltyShare!.mean, 0.2 / 0.7);
  close(byName(r.groups, 'baseline').penaltyShare!.mean, 0);
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
    specDiff(
      { name: 'a', seed: 1, training: { epochs: 3, earlyStopping: null } },
      { name: 'b', seed: 2, training: { epochs: 3, earlyStopping: { patience: 2 } } },
    ),
    'training.earlyStopping=null',
  );
  const layers = (reg: unknown) => ({
    model: {
      layers: [
        { flatten: {} },
        { dense: { units: 4, kernelRegularizer: reg } },
        { dense: { units: 2, kernelRegularizer: reg } },
      ],
    },
  });
  assert.equal(specDiff(layers({ l2: 0.01 }), layers(null)), 'model.layers.{1,2}.dense.kernelRegularizer={l2: 0.01}');
  assert.equal(
    specDiff(
      { optimizer: { adam: { learningRate: 0.001, amsgrad: false } } },
      { optimizer: { sgd: { learningRate: 0.01 } } },
    ),
    'optimizer.adam={learningRate: 0.001, amsgrad: false}',
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
    ['tiny-lr01', 'tiny-lr1'],
  );
  const lr1 = byName(r.groups, 'tiny-lr1');
  assert.equal(lr1.label, 'optimizer.sgd.learningRate=0.1');
  assert.equal(lr1.bestValAccuracy, null);
  assert.deepEqual(lr1.curve, []);
  assert.equal(r.paired.length, 0);
});

const STUDY_TABLE = ` variant    test acc ± std (n)  Δ vs baseline [95% CI]                gap  sparsity  penalty
─────────  ───────────────────  ─────────────────────────────────  ──────  ────────  ───────
 baseline  0.8200 ± 0.0200 (3)  —                                  0.0900      1.0%     0.0%
*l1        0.8500 ± 0.0265 (3)  +0.0300 [+0.0052, +0.0548] better  0.0233     50.0%    28.6%
 l2                 0.8100 (1)  -0.0100 (no CI: one run)           0.0400      3.0%     7.7%

Best test accuracy: l1. test acc: mean ± std over seeds (n runs). Δ: test accuracy minus the baseline's, paired by seed,
with its 95% t interval (better or worse when the interval excludes 0). gap: train accuracy (inference mode) − test
accuracy. sparsity: share of the first layer's kernel weights (dense_1) with |w| < 1e-3. penalty: the penalty's share of
the loss at the last epoch.

Variants (what differs from the baseline):
  l1  model.layers.1.dense.kernelRegularizer={l1: 0.001, l2: 0}
  l2  model.layers.1.dense.kernelRegularizer={l1: 0, l2: 0.01}

Test accuracy paired against the baseline, matched by seed (95% CI, paired t-test):
  l1 − baseline: +0.0300 [+0.0052, +0.0548], t(2) = 5.20, p = 0.035, 3 pairs: better
`;

test('compare prints a table that fits 120 columns, the changes in a legend under it, and warns about every skipped directory', () => {
  const r = cli(['compare', 'study', 'nowhere']);
  assert.equal(r.status, 0, r.stderr);
  // l1 − baseline: differences 0.03, 0.02, 0.04 → +0.0300 ± 4.303·0.01/√3; l2 has one run: the difference of means, no interval.
  assert.equal(r.stdout, STUDY_TABLE);
  assert.equal(
    r.stderr,
    [
      'warning: skipped study/runs/l2-seed2: not run yet',
      'warning: skipped study/runs/l2-seed3: the run is incomplete (interrupted)',
      'warning: skipped study/runs/broken: metrics.json: not valid JSON (truncated or corrupt)',
      'warning: skipped nowhere: no such directory',
      '',
    ].join('\n'),
  );
});

test('every line of the default output stays within 120 columns, even with long overrides', () => {
  const long = scratchDir('regtrain-cmp-');
  fs.cpSync(STUDY, path.join(long, 'study'), { recursive: true });
  // l1's spec gains a long optimizer change: the legend wraps it at its commas.
  const spec = path.join(long, 'study', 'runs');
  for (const d of ['l1-seed1', 'l1-seed2', 'l1-seed3']) {
    const f = path.join(spec, d, 'spec.yaml');
    fs.writeFileSync(
      f,
      fs
        .readFileSync(f, 'utf8')
        .replace(
          /optimizer:\n  sgd:\n    learningRate: 0.01\n    momentum: 0\n    nesterov: false/,
          'optimizer:\n  adam:\n    learningRate: 0.001\n    beta1: 0.9\n    beta2: 0.999\n    epsilon: 1.0e-7\n    amsgrad: false\n    weightDecay: 0\n    excludeFromWeightDecay: [bias, gamma, beta]',
        ),
    );
  }
  const r = regtrainSync(['compare', path.join(long, 'study')]);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n');
  for (const line of lines) assert.ok([...line].length <= 120, `${[...line].length} columns: ${line}`);
  const at = lines.findIndex((l) => l.startsWith('  l1  '));
  assert.equal(
    lines[at],
    '  l1  model.layers.1.dense.kernelRegularizer={l1: 0.001, l2: 0}, optimizer.adam={learningRate: 0.001, beta1: 0.9,',
  );
  assert.equal(
    lines[at + 1],
    '      beta2: 0.999, epsilon: 1e-7, amsgrad: false, weightDecay: 0, excludeFromWeightDecay: [bias, gamma, beta]}',
  );
});

test('compare --wide prints every column, with the changes in the table', () => {
  const r = cli(['compare', 'study', '--wide']);
  assert.equal(r.status, 0, r.stderr);
  const [header, , first, second] = r.stdout.split('\n');
  assert.deepEqual(header!.trim().split(/ {2,}/), [
    'variant',
    'changes',
    'n',
    'test acc',
    'Δ vs baseline [95% CI]',
    'test loss',
    'best val acc (epoch)',
    'train−test gap',
    'data loss / penalty',
    'penalty share',
    'sparsity |w|<1e-3 per layer',
    'L1 per layer',
    'L2 per layer',
    'epochs',
    'seconds',
  ]);
  assert.deepEqual(first!.trim().split(/ {2,}/), [
    'baseline',
    '3',
    '0.8200 ± 0.0200',
    '—',
    '0.4800 ± 0.0200',
    '0.7900 ± 0.0100 (2.3)',
    '0.0900 ± 0.0100',
    '0.6000 ± 0.0000 / 0.0000 ± 0.0000',
    '0.0%',
    '1.0% / 2.0%',
    '100 / 50.0',
    '10.0 / 5.00',
    '3',
    '12.0',
  ]);
  assert.deepEqual(second!.trim().split(/ {2,}/), [
    '*l1',
    'model.layers.1.dense.kernelRegularizer={l1: 0.001, l2: 0}',
    '3',
    '0.8500 ± 0.0265',
    '+0.0300 [+0.0052, +0.0548] better',
    '0.4400 ± 0.0100',
    '0.8233 ± 0.0153 (2.7)',
    '0.0233 ± 0.0058',
    '0.5000 ± 0.1000 / 0.2000 ± 0.1000',
    '28.6%',
    '50.0% / 20.0%',
    '30.0 / 20.0',
    '3.00 / 2.00',
    '3',
    '13.0',
  ]);
  assert.doesNotMatch(r.stdout, /Variants \(what differs/);
});

const STUDY_MD = `| variant | test acc ± std (n) | Δ vs baseline [95% CI] | gap | sparsity | penalty |
| --- | ---: | --- | ---: | ---: | ---: |
| baseline | 0.8200 ± 0.0200 (3) | — | 0.0900 | 1.0% | 0.0% |
| l1 | **0.8500 ± 0.0265 (3)** | +0.0300 [+0.0052, +0.0548] better | 0.0233 | 50.0% | 28.6% |
| l2 | 0.8100 (1) | -0.0100 (no CI: one run) | 0.0400 | 3.0% | 7.7% |

Best test accuracy in bold. test acc: mean ± std over seeds (n runs). Δ: test accuracy minus the baseline's, paired by seed, with its 95% t interval (better or worse when the interval excludes 0). gap: train accuracy (inference mode) − test accuracy. sparsity: share of the first layer's kernel weights (dense_1) with |w| < 1e-3. penalty: the penalty's share of the loss at the last epoch.

Variants (what differs from the baseline):

- l1: \`model.layers.1.dense.kernelRegularizer={l1: 0.001, l2: 0}\`
- l2: \`model.layers.1.dense.kernelRegularizer={l1: 0, l2: 0.01}\`

Test accuracy paired against the baseline, matched by seed (95% CI, paired t-test):

- l1 − baseline: +0.0300 [+0.0052, +0.0548], t(2) = 5.20, p = 0.035, 3 pairs: better
`;

test('compare --md prints the same table as Markdown, the best accuracy in bold', () => {
  const r = cli(['compare', 'study', '--md']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, STUDY_MD);
});

test('compare --json prints JSON Lines: a comparison line, one line per variant in table order, per paired comparison, per skipped directory', () => {
  const j = cli(['compare', 'study', '--json']);
  assert.equal(j.status, 0, j.stderr);
  const lines = j.stdout.trimEnd().split('\n');
  const docs = lines.map((l) => JSON.parse(l) as { type: string } & Record<string, unknown>);
  assert.deepEqual(
    docs.map((d) => d.type),
    ['comparison', 'group', 'group', 'group', 'paired', 'skipped', 'skipped', 'skipped'],
  );
  assert.deepEqual(docs[0], {
    type: 'comparison',
    baseline: 'baseline',
    groups: 3,
    runs: 7,
    paired: 1,
    skipped: 3,
    duplicates: 0,
    sweepPaths: [],
  });
  const groups = docs.slice(1, 4) as unknown as {
    name: string;
    testAccuracy: { mean: number; n: number };
    reference: string | null;
    runDirs: string[];
  }[];
  assert.deepEqual(
    groups.map((g) => [g.name, g.testAccuracy.n, g.reference]),
    [
      ['baseline', 3, null],
      ['l1', 3, 'baseline'],
      ['l2', 1, 'baseline'],
    ],
  );
  close(groups[1]!.testAccuracy.mean, 0.85);
  assert.deepEqual(groups[2]!.runDirs, [path.join('study', 'runs', 'l2-seed1')]);
  const paired = docs[4] as unknown as { group: string; baseline: string; meanDiff: number; verdict: string };
  assert.deepEqual([paired.group, paired.baseline, paired.verdict], ['l1', 'baseline', 'better']);
  assert.deepEqual(docs[7], {
    type: 'skipped',
    dir: path.join('study', 'runs', 'broken'),
    reason: 'metrics.json: not valid JSON (truncated or corrupt)',
  });

  const c = cli(['compare', 'study', '--csv']);
  const [header, , second] = c.stdout.split('\n');
  const cols = csvFields(header!);
  const cells = csvFields(second!);
  assert.equal(cells.length, cols.length);
  const at = (name: string) => cells[cols.indexOf(name)];
  assert.equal(at('variant'), 'l1');
  assert.equal(at('changes'), 'model.layers.1.dense.kernelRegularizer={l1: 0.001, l2: 0}');
  close(Number(at('test_accuracy')), 0.85);
  close(Number(at('delta')), 0.03);
  assert.equal(at('verdict'), 'better');
  close(Number(at('sparsity1e3_dense_1')), 0.5);
  close(Number(at('gap')), 0.07 / 3);
  close(Number(at('penalty_share')), 0.2 / 0.7);
  assert.equal(at('best'), '1');

  const both = cli(['compare', 'study', '--json', '--wide']);
  assert.equal(both.status, 2);
  assert.equal(
    both.stderr
      .split('\n')
      .filter((l) => !l.startsWith('warning: '))
      .join('\n'),
    'error: --wide is for the table (text or --md); --json always carries every column\n',
  );
});

test('a sweep is ordered by its values, and each variant is paired with the baseline at the same swept value', () => {
  // study.json declares data.trainLimit [1000, 400]; the table lists 400 first.
  const r = cli(['compare', 'small-data']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.split('\n');
  assert.deepEqual(lines.slice(0, 6), [
    ' variant                              test acc ± std (n)  Δ vs baseline [95% CI]                gap  sparsity  penalty',
    '───────────────────────────────────  ───────────────────  ─────────────────────────────────  ──────  ────────  ───────',
    // 0.70, 0.70, 0.76: mean 0.72, std √((4+4+16)e-4 / 2) = 0.0346
    ' baseline-trainLimit=400 (baseline)  0.7200 ± 0.0346 (3)  —                                  0.2700      1.0%     0.0%',
    // differences 0.10, 0.12, 0.08 from the baseline at 400: mean 0.10, sd 0.02, CI ± 4.303·0.02/√3 = 0.0497
    ' baseline-trainLimit=1000            0.8200 ± 0.0200 (3)  +0.1000 [+0.0503, +0.1497] better  0.0900      1.0%     0.0%',
    // 0.79, 0.79, 0.86 against 0.70, 0.70, 0.76 (same trainLimit): differences 0.09, 0.09, 0.10
    ' l1-trainLimit=400                   0.8133 ± 0.0404 (3)  +0.0933 [+0.0790, +0.1077] better  0.1767     50.0%    28.6%',
    // against the baseline at 1000: differences 0.03, 0.02, 0.04, as in the plain study
    '*l1-trainLimit=1000                  0.8500 ± 0.0265 (3)  +0.0300 [+0.0052, +0.0548] better  0.0233     50.0%    28.6%',
  ]);
  assert.match(
    r.stdout,
    /\n {2}l1-trainLimit=1000 − baseline-trainLimit=1000: \+0\.0300 \[\+0\.0052, \+0\.0548\], t\(2\) = 5\.20, p = 0\.035, 3 pairs: better\n/,
  );
});

test('in a sweep, --baseline pairs each variant with the named variant at the same swept value', () => {
  const r = cli(['compare', 'small-data', '--baseline', 'l1', '--md']);
  assert.equal(r.status, 0, r.stderr);
  // The sweep test's differences above, with the sides swapped: each baseline run minus l1's at its trainLimit.
  assert.match(
    r.stdout,
    /\n- baseline-trainLimit=400 − l1-trainLimit=400: -0\.0933 \[-0\.1077, -0\.0790\], t\(2\) = -28\.00, p = 0\.001, 3 pairs: worse\n/,
  );
  assert.match(
    r.stdout,
    /\n- baseline-trainLimit=1000 − l1-trainLimit=1000: -0\.0300 \[-0\.0548, -0\.0052\], t\(2\) = -5\.20, p = 0\.035, 3 pairs: worse\n/,
  );
  // l1 at 1000 (0.83, 0.84, 0.88) minus l1 at 400 (0.79, 0.79, 0.86): 0.04, 0.05, 0.02, mean 0.0367, sd 0.0153,
  // CI ± 4.303·0.0153/√3 = 0.0379.
  assert.match(
    r.stdout,
    /\n- l1-trainLimit=1000 − l1-trainLimit=400: \+0\.0367 \[-0\.0013, \+0\.0746\], t\(2\) = 4\.16, p = 0\.053, 3 pairs: inconclusive\n/,
  );
  assert.match(r.stdout, /\n\| l1-trainLimit=400 \(baseline\) \|/);
});

test('a finished run stores its test confusion matrix, whose diagonal gives its test accuracy and which evaluate reproduces', async () => {
  const tmp = scratchDir('regtrain-cmp-run-');
  const run = path.join(tmp, 'run');
  const env = {
    ...process.env,
    REGTRAIN_DATA_DIR: sharedDataDir(),
    XDG_CACHE_HOME: path.join(tmp, 'xdg'),
  };
  const exec = (args: string[]) => regtrain(args, { cwd: tmp, env });
  const tiny = ['--backend', 'wasm', ...sliceFlags({ train: 400, validation: 100, test: 300, epochs: 1 })];
  const r = await exec(['run', path.join(ROOT, 'configs', 'quick.yaml'), ...tiny, '--out', run, '-q']);
  assert.equal(r.code, 0, r.stderr);
  const { metrics } = readMetrics(run);
  const c = metrics.confusion!;
  assert.deepEqual(c.classNames, [
    'T-shirt/top',
    'Trouser',
    'Pullover',
    'Dress',
    'Coat',
    'Sandal',
    'Shirt',
    'Sneaker',
    'Bag',
    'Ankle boot',
  ]);
  assert.equal(
    c.matrix.flat().reduce((a, b) => a + b, 0),
    300,
  );
  assert.equal(c.matrix.reduce((a, row, i) => a + row[i]!, 0) / 300, metrics.test!.accuracy);
  const ev = await exec(['evaluate', run, '--json', '--backend', 'wasm']);
  assert.equal(ev.code, 0, ev.stderr);
  const report = JSON.parse(ev.stdout.trim().split('\n').pop()!) as { confusion: number[][] };
  assert.deepEqual(report.confusion, c.matrix);
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('the paired heading names the baseline only when it is not called baseline', () => {
  const r = cli(['compare', 'study', '--baseline', 'l1']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stdout,
    /\nTest accuracy paired against the baseline, l1, matched by seed \(95% CI, paired t-test\):\n {2}baseline − l1: -0\.0300 /,
  );
  assert.match(r.stdout, /^ variant {8}/);
  assert.match(r.stdout, /\n\*l1 \(baseline\) {2}0\.8500 ± 0\.0265 \(3\) {2}— /);
  assert.doesNotMatch(cli(['compare', 'study']).stdout, /baseline \(baseline\)/);
});

test('--baseline picks another variant to compare against', () => {
  const r = compareRuns(collectRuns([STUDY]), { baseline: 'l1' });
  assert.equal(r.baseline, 'l1');
  assert.equal(r.paired[0]!.group, 'baseline');
  close(r.paired[0]!.meanDiff, -0.03);
  assert.equal(r.paired[0]!.verdict, 'worse');
});
