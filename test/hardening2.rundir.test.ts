/**
 * Hardening round 2, run directories: compare counts a repeated (spec, seed) once, histograms of
 * every seed add up on shared edges, every run-dir file goes through its zod schema and one
 * reader (one line instead of a crash), files that are devices, FIFOs or huge are refused before
 * reading, a hostile model.json is refused before tfjs allocates, and stdout on a full disk.
 * Two real tiny runs (two seeds) are made once; every damaged case is a copy of one of them.
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- the tests damage JSON files field by field, any shape */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { collectRuns, compareRuns, onLattice } from '../src/compare';
import { latticeHistogram } from '../src/train/weight-stats';
import { readHistory, readOrigin, readStudy } from '../src/rundir';
import { renderReport } from '../src/report';
import type { MetricsFile } from '../src/runformat';
import { finished, QUICK, sliceFlags, startCli, type CliResult } from './helpers/cli';
import { sharedDataDir } from './helpers/data';
import { DAMAGED_METRICS } from './helpers/damaged-metrics';
import { scratchDir } from './helpers/scratch';
import { readJson } from './helpers/run-files';

const TINY = ['--backend', 'wasm', ...sliceFlags({ train: 500, validation: 100, test: 300, epochs: 2 }), '-q'];
/** Kernel sizes of quick.yaml's dense layers: 784×200, 200×100, 100×50, 50×10. */
const KERNEL_SIZES = [156800, 20000, 5000, 500];

let TMP = '';
/** The verified data every test file shares: these commands only read it. */
let DATA = '';
let RUN_A = '';
let RUN_B = '';

function regtrain(args: string[], opts: { stdoutFd?: number } = {}): Promise<CliResult> {
  return finished(
    startCli(args, {
      cwd: TMP,
      env: { REGTRAIN_DATA_DIR: DATA, XDG_CACHE_HOME: path.join(TMP, 'xdg') },
      stdoutFd: opts.stdoutFd,
    }),
  );
}

const writeJson = (file: string, v: unknown) => fs.writeFileSync(file, JSON.stringify(v, null, 2));

/** A copy of run A (or B) to damage. */
function copyOf(name: string, from = RUN_A): string {
  const dir = path.join(TMP, 'cases', name);
  fs.cpSync(from, dir, { recursive: true });
  return dir;
}

function editMetrics(dir: string, edit: (m: Record<string, any>) => void): void {
  const m = readJson<Record<string, any>>(path.join(dir, 'metrics.json'));
  edit(m);
  writeJson(path.join(dir, 'metrics.json'), m);
}

before(async () => {
  TMP = scratchDir('regtrain-h2-rundir-');
  DATA = sharedDataDir();
  RUN_A = path.join(TMP, 'run-a');
  RUN_B = path.join(TMP, 'run-b');
  const a = await regtrain(['run', QUICK, ...TINY, '--out', RUN_A]);
  assert.equal(a.code, 0, a.stderr);
  const b = await regtrain(['run', QUICK, ...TINY, '--set', 'seed=1235', '--out', RUN_B]);
  assert.equal(b.code, 0, b.stderr);
});

describe('compare counts a repeated (spec, seed) once', () => {
  /** A study-like folder: runs of `spec edit` with the given seeds and test accuracies. */
  function group(folder: string, name: string, accs: Record<number, number>, units = 200): string[] {
    return Object.entries(accs).map(([seed, acc]) => {
      const dir = path.join(TMP, folder, `${name}-seed${seed}`);
      fs.cpSync(RUN_A, dir, { recursive: true });
      const specFile = path.join(dir, 'spec.yaml');
      fs.writeFileSync(
        specFile,
        fs
          .readFileSync(specFile, 'utf8')
          .replace(/^seed: \d+$/m, `seed: ${seed}`)
          .replace(/^name: .*$/m, `name: ${name}-seed${seed}`)
          .replace('units: 200', `units: ${units}`),
      );
      editMetrics(dir, (m) => {
        m.seed = Number(seed);
        m.name = `${name}-seed${seed}`;
        m.test.accuracy = acc;
      });
      return dir;
    });
  }

  test('a folder of runs compared twice gives n = 3 and the t of three pairs (3√3), not six; each repeat is named once', () => {
    group('twice', 'baseline', { 1: 0.8, 2: 0.82, 3: 0.81 });
    group('twice', 'wide', { 1: 0.83, 2: 0.84, 3: 0.85 }, 256);
    fs.cpSync(path.join(TMP, 'twice'), path.join(TMP, 'twice-copy'), { recursive: true });
    const result = compareRuns(collectRuns([path.join(TMP, 'twice'), path.join(TMP, 'twice-copy')]), {
      baseline: 'baseline',
    });
    assert.deepEqual(result.groups.map((g) => [g.name.replace(/-seed\d+$/, ''), g.runs.length]).sort(), [
      ['baseline', 3],
      ['wide', 3],
    ]);
    assert.equal(result.duplicates.length, 6);
    // One paired test per metric (accuracy, and the ECE these runs measured), each over three pairs.
    assert.deepEqual(
      result.paired.map((x) => [x.metric, x.pairs]),
      [
        ['test accuracy', 3],
        ['test ECE', 3],
      ],
    );
    const p = result.paired[0]!;
    // Differences 0.03, 0.02, 0.04: mean 0.03, sd 0.01, t = 0.03 / (0.01/√3) = 3√3, df 2.
    assert.equal(p.pairs, 3);
    assert.equal(p.df, 2);
    assert.ok(Math.abs(p.t - 3 * Math.sqrt(3)) < 1e-9, String(p.t));
    assert.ok(Math.abs(p.meanDiff - 0.03) < 1e-12);
    const repeats = result.warnings.filter((w) => w.includes('(same spec, seed'));
    assert.equal(repeats.length, 6);
    assert.ok(
      repeats.includes(
        `${path.join(TMP, 'twice-copy', 'wide-seed2')} repeats ${path.join(TMP, 'twice', 'wide-seed2')} (same spec, seed 2): counted once`,
      ),
      repeats.join('\n'),
    );
  });

  test('a single run found twice is one run: no paired test, no t = ∞', () => {
    group('single', 'baseline', { 1: 0.8, 2: 0.82 });
    const [one] = group('single', 'tall', { 7: 0.9 }, 128);
    fs.cpSync(one!, path.join(TMP, 'single', 'tall-copy'), { recursive: true });
    const result = compareRuns(collectRuns([path.join(TMP, 'single')]), { baseline: 'baseline' });
    assert.equal(result.groups.find((g) => g.name.startsWith('tall'))!.runs.length, 1);
    assert.deepEqual(result.paired, []);
    assert.equal(result.duplicates.length, 1);
  });

  test('the CLI says which runs it counted once (stderr) and lists them in --json', async () => {
    const r = await regtrain(['compare', RUN_A, copyOf('cli-dup'), '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      `warning: ${path.join(TMP, 'cases', 'cli-dup')} repeats ${RUN_A} (same spec, seed 1234): counted once\n`,
    );
    const lines = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; runDirs?: string[] });
    assert.deepEqual(
      lines.filter((l) => l.type === 'duplicate'),
      [{ type: 'duplicate', kept: RUN_A, dropped: path.join(TMP, 'cases', 'cli-dup'), seed: 1234 }],
    );
    assert.deepEqual(lines.find((l) => l.type === 'group')!.runDirs, [RUN_A]);
  });
});

describe('weight histograms use shared edges, so every seed and variant adds up', () => {
  test('values land in the lattice bins computed by hand (width 0.005)', () => {
    const h = latticeHistogram([-0.012, 0, 0.0049, 0.005, 0.3], 0.3);
    // floor(0.3 / 0.005) + 1 = 61 bins each side, so the largest |w| lies inside the outer edge;
    // bin j covers [(j − 61)·0.005, (j − 60)·0.005).
    assert.equal(h.counts.length, 122);
    assert.equal(h.edges[0], -0.305);
    assert.equal(h.edges[58], -0.015);
    assert.equal(h.edges[61], 0);
    const nonZero = h.counts.flatMap((c, j) => (c ? [[j, c]] : []));
    // −0.012 → floor(−2.4) = −3 → 58; 0 and 0.0049 → 61; 0.005 → 62; 0.3 → 60 + 61 = 121.
    assert.deepEqual(nonZero, [
      [58, 1],
      [61, 2],
      [62, 1],
      [121, 1],
    ]);
  });

  test('each real run writes lattice edges, and a group of two seeds sums both runs per layer', () => {
    for (const run of [RUN_A, RUN_B]) {
      const m = readJson<MetricsFile>(path.join(run, 'metrics.json'));
      m.histograms.forEach((h, i) => {
        const half = (h.edges.length - 1) / 2;
        h.edges.forEach((e, k) =>
          assert.equal(e, Number(((k - half) * 0.005).toFixed(6)), `${run} layer ${i} edge ${k}`),
        );
        assert.equal(
          h.counts.reduce((a, b) => a + b, 0),
          KERNEL_SIZES[i],
        );
      });
    }
    const result = compareRuns(collectRuns([RUN_A, RUN_B]));
    assert.equal(result.groups.length, 1);
    assert.deepEqual(
      result.groups[0]!.histograms.map((h) => h.counts.reduce((a, b) => a + b, 0)),
      KERNEL_SIZES.map((n) => 2 * n),
    );
  });

  test('a run with the old per-run ±max|w| edges is re-binned onto the lattice, keeping its count', () => {
    const old = {
      layer: 'dense',
      edges: Array.from({ length: 51 }, (_, i) => -0.0783 + (2 * 0.0783 * i) / 50),
      counts: Array.from({ length: 50 }, (_, i) => i + 1),
    };
    const { half, counts } = onLattice(old);
    assert.equal(half, 16); // ceil(0.0783 / 0.005)
    assert.ok(Math.abs(counts.reduce((a, b) => a + b, 0) - 1275) < 1e-9); // 1 + 2 + … + 50
    const dir = copyOf('old-edges', RUN_B);
    editMetrics(dir, (m) => (m.histograms[0] = { ...old, counts: old.counts.map((c) => c * 2) }));
    const result = compareRuns(collectRuns([RUN_A, dir]));
    assert.ok(
      Math.abs(result.groups[0]!.histograms[0]!.counts.reduce((a, b) => a + b, 0) - (KERNEL_SIZES[0]! + 2550)) < 1e-6,
    );
  });

  test('the report draws one panel per variant on one x axis, and the panel counts every seed', () => {
    const wide = copyOf('variant-wide', RUN_B);
    fs.writeFileSync(
      path.join(wide, 'spec.yaml'),
      fs.readFileSync(path.join(wide, 'spec.yaml'), 'utf8').replace('learningRate: 0.01', 'learningRate: 0.02'),
    );
    const result = compareRuns(collectRuns([RUN_A, RUN_B, wide]));
    const { charts } = renderReport(result);
    const hist = charts.filter((c) => c.id.startsWith('hist-'));
    assert.equal(hist.length, 4);
    for (const c of hist) assert.equal(c.series, 2);
  });
});

describe('run-dir files: one schema and one reader each; damage is one line, never a crash', () => {
  const cases = DAMAGED_METRICS;

  // Every case is checked in process (test/hardening2.rundir.unit.test.ts); two through the real boundary here.
  test("evaluate refuses a damaged metrics.json through a real process with exit 2 and the field's dotted path", async () => {
    for (const [name, edit, message] of cases) {
      const dir = copyOf(`metrics-${name}`);
      editMetrics(dir, edit);
      if (name !== 'accuracy-null' && name !== 'version-newer') continue;
      const r = await regtrain(['evaluate', dir, '--backend', 'wasm']);
      assert.equal(r.code, 2, `${name}: ${r.stderr}`);
      assert.equal(r.stdout, '', name);
      assert.equal(r.stderr, `error: ${dir}/metrics.json: ${message}\n`, name);
    }
  });

  test('compare skips each of them with the same reason, and still compares the good run', async () => {
    const dirs = cases.map(([name]) => path.join(TMP, 'cases', `metrics-${name}`));
    const r = await regtrain(['compare', RUN_A, ...dirs]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stderr.trimEnd().split('\n');
    assert.deepEqual(
      lines,
      cases.map(
        ([name, , message]) =>
          `warning: skipped ${path.join(TMP, 'cases', `metrics-${name}`)}: metrics.json: ${message}`,
      ),
    );
  });

  test('compare and --report on null edges, numeric layer names, a 200k-bin histogram and members: [null] end in one line per problem', async () => {
    const nullEdges = copyOf('hist-null-edges', RUN_B);
    editMetrics(nullEdges, (m) => (m.histograms[1].edges[3] = null));
    const numeric = copyOf('hist-numeric-layer');
    editMetrics(numeric, (m) => {
      m.seed = 99;
      m.histograms[0].layer = 17;
      m.finalWeights[0].layer = 17;
    });
    const huge = copyOf('hist-200k');
    editMetrics(huge, (m) => {
      m.seed = 98;
      m.histograms[0] = {
        layer: 'dense',
        edges: Array.from({ length: 200_001 }, (_, i) => i),
        counts: new Array(200_000).fill(1),
      };
    });
    const study = path.join(TMP, 'study-null-member');
    fs.mkdirSync(study);
    writeJson(path.join(study, 'study.json'), {
      formatVersion: 1,
      name: 's',
      baseline: 'base',
      variants: ['base'],
      sweep: {},
      repeats: 1,
      members: [null],
    });
    const report = path.join(TMP, 'report.html');
    const r = await regtrain(['compare', RUN_A, nullEdges, numeric, huge, study, '--report', report]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /internal error|^\s+at /m);
    assert.ok(
      r.stderr.includes(
        `warning: ${nullEdges}/metrics.json: histograms.1.edges.3: expected a number, got null; that histogram is left out\n`,
      ),
      r.stderr,
    );
    assert.ok(
      r.stderr.includes(
        `warning: ${huge}/metrics.json: histograms.0.edges: expected at most 100001 edges, got a list; that histogram is left out\n`,
      ),
      r.stderr,
    );
    assert.ok(
      r.stderr.includes(
        `warning: ${study}: study.json: members.0: expected a map, got null; its runs are compared without variant names\n`,
      ),
      r.stderr,
    );
    assert.ok(fs.statSync(report).size > 1000);
    assert.match(
      fs.readFileSync(report, 'utf8'),
      /Final kernel weights of 17 \(layer 1\)|Final kernel weights of dense \(layer 1\)/,
    );
  });

  test('a study.json naming a run directory outside the study is skipped, not followed', () => {
    const study = path.join(TMP, 'study-escape');
    fs.mkdirSync(study);
    writeJson(path.join(study, 'study.json'), {
      formatVersion: 1,
      name: 's',
      baseline: 'base',
      variants: ['base'],
      sweep: {},
      repeats: 1,
      members: [{ name: 'm', variant: 'base', group: 'base', sweep: {}, seed: 1, repeat: 0, runDir: '../run-a' }],
    });
    const c = collectRuns([study]);
    assert.deepEqual(c.runs, []);
    assert.deepEqual(c.skipped, [
      { dir: path.join(TMP, 'run-a'), reason: 'study.json names a run directory outside the study' },
    ]);
  });

  test('history.json, run.json and study.json readers name the file and the dotted path', () => {
    const dir = copyOf('other-files');
    writeJson(path.join(dir, 'history.json'), { formatVersion: 1, epochs: [{ epoch: 'one' }] });
    assert.throws(() => readHistory(dir), {
      name: 'InputError',
      message: `${dir}/history.json: epochs.0.epoch: expected a count, got "one"`,
    });
    writeJson(path.join(dir, 'run.json'), { formatVersion: 1, specFile: 5, sets: [], specSha256: 'x' });
    assert.throws(() => readOrigin(dir), {
      name: 'InputError',
      message: `${dir}/run.json: specFile: expected text, got 5`,
    });
    writeJson(path.join(dir, 'study.json'), {
      formatVersion: 1,
      name: 's',
      baseline: 'b',
      variants: [],
      repeats: 1,
      members: 'all',
    });
    assert.throws(() => readStudy(dir), {
      name: 'InputError',
      message: `${dir}/study.json: members: expected a list of members, got "all"`,
    });
    fs.writeFileSync(path.join(dir, 'history.json'), '{"formatVersion": 1, "epochs": [');
    assert.throws(() => readHistory(dir), {
      name: 'InputError',
      message: `${dir}/history.json: not valid JSON (truncated or corrupt)`,
    });
  });
});

describe('run-dir files that are devices, FIFOs or huge are refused before reading; model.json before allocating', () => {
  async function refusedByEvaluate(dir: string, message: string): Promise<void> {
    const r = await regtrain(['evaluate', dir, '--backend', 'wasm']);
    assert.equal(r.signal, null, 'hung');
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.replace(/^Backend: .*\n/m, ''), `error: ${message}\n`);
  }

  test('metrics.json → /dev/zero, spec.yaml a FIFO, weights.bin a FIFO: each one line, no hang', async () => {
    const zero = copyOf('metrics-dev-zero');
    fs.rmSync(path.join(zero, 'metrics.json'));
    fs.symlinkSync('/dev/zero', path.join(zero, 'metrics.json'));
    await refusedByEvaluate(zero, `${zero}/metrics.json: a character device, not a regular file`);
    const fifoSpec = copyOf('spec-fifo');
    fs.rmSync(path.join(fifoSpec, 'spec.yaml'));
    execFileSync('mkfifo', [path.join(fifoSpec, 'spec.yaml')]);
    await refusedByEvaluate(fifoSpec, `${fifoSpec}/spec.yaml: a FIFO (named pipe), not a regular file`);
    const fifoWeights = copyOf('weights-fifo');
    fs.rmSync(path.join(fifoWeights, 'weights.bin'));
    execFileSync('mkfifo', [path.join(fifoWeights, 'weights.bin')]);
    await refusedByEvaluate(
      fifoWeights,
      `${fs.realpathSync(fifoWeights)}/weights.bin: a FIFO (named pipe), not a regular file`,
    );
  });

  test('a 10 GB (sparse) weights.bin and a 100 MB model.json are refused by their size, unread', async () => {
    // 182660 float32 parameters (784·200+200 + 200·100+100 + 100·50+50 + 50·10+10) = 730640 bytes.
    const big = copyOf('weights-10g');
    fs.truncateSync(path.join(big, 'weights.bin'), 10 * 1024 ** 3);
    await refusedByEvaluate(big, `${big}/weights.bin: 10737418240 bytes, but model.json describes 730640`);
    const bigJson = copyOf('model-json-100m');
    fs.truncateSync(path.join(bigJson, 'model.json'), 100 * 1024 ** 2);
    await refusedByEvaluate(
      bigJson,
      `${bigJson}/model.json: 104857600 bytes is more than the 16777216 this file may have`,
    );
  });

  test('compare passes over a history.json FIFO with a warning instead of waiting for a writer', async () => {
    const dir = copyOf('history-fifo');
    fs.rmSync(path.join(dir, 'history.json'));
    execFileSync('mkfifo', [path.join(dir, 'history.json')]);
    const r = await regtrain(['compare', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stderr,
      `warning: ${dir}: history.json: a FIFO (named pipe), not a regular file; its curves and best validation accuracy are left out\n`,
    );
  });
});

describe('stdout on a full disk', () => {
  const full = () => fs.openSync('/dev/full', 'w');
  for (const [name, args] of [
    ['compare', () => ['compare', RUN_A]],
    ['validate', () => ['validate', QUICK]],
    ['data info --json', () => ['data', 'info', '--json']],
    ['evaluate --json', () => ['evaluate', RUN_A, '--json', '--backend', 'wasm']],
  ] as [string, () => string[]][]) {
    test(`${name} > /dev/full exits 1 with one line, no stack`, async () => {
      const fd = full();
      try {
        const r = await regtrain(args(), { stdoutFd: fd });
        assert.equal(r.code, 1, r.stderr);
        assert.equal(
          r.stderr.replace(/^Backend: .*\n/m, ''),
          'error: cannot write to standard output (no space left on device); the output is incomplete\n',
        );
      } finally {
        fs.closeSync(fd);
      }
    });
  }
});
