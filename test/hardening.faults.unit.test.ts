/**
 * Broken and hostile run directories, refused by `regtrain evaluate` (and skipped by compare) through the real
 * program in process (test/helpers/in-process.ts): exit 2 and one clear line each, never "internal error", never a
 * stack. One tiny real run (a 10-unit softmax layer, one epoch) is made once, in process; every case is a copy of
 * it; compare's refusals on the fixture run directories too. test/hardening.faults.test.ts keeps two of them, a
 * compare refusal, and the other faults, through a real process.
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readMetrics } from '../src/rundir';
import { seededDataDir } from './helpers/data';
import { regtrainInProcess, type InProcessResult as Run } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';
import { ONE_EPOCH_SLICE, writeOneLayerSpec } from './helpers/one-layer-spec';
import { copyOfRun } from './helpers/run-files';

const TMP = scratchDir('regtrain-hardening-faults-unit-');

/** The tiny training settings of test/hardening.faults.test.ts. */
const SPEC = writeOneLayerSpec(TMP);
const DATA = seededDataDir(path.join(TMP, 'data'));

function regtrain(args: string[]): Promise<Run> {
  return regtrainInProcess(args, {
    cwd: TMP,
    env: { XDG_CACHE_HOME: path.join(TMP, 'xdg'), REGTRAIN_DATA_DIR: DATA },
  });
}

/** The first stderr line that is not progress chatter ("Backend: …"). */
function errorLine(r: Run): string {
  return (
    r.stderr.split('\n').find((l) => l.startsWith('error: ') || l.startsWith('! ') || l.startsWith('interrupted')) ??
    `(no error line in: ${r.stderr})`
  );
}

function assertClean(r: Run, code: number, what: string): void {
  assert.equal(r.code, code, `${what}: exit ${r.code}, expected ${code}\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error/, `${what}:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^ {4}at /m, `${what}: stack trace leaked:\n${r.stderr}`);
}

describe('run directory faults (evaluate, compare)', () => {
  const GOOD = path.join(TMP, 'run-good');

  before(async () => {
    const r = await regtrain(['run', SPEC, '--out', GOOD, '--quiet', ...ONE_EPOCH_SLICE]);
    assertClean(r, 0, 'making the reference run');
  });

  /** A copy of the good run with `mutate` applied. */
  const broken = (name: string, mutate: (dir: string) => void) =>
    copyOfRun(GOOD, path.join(TMP, `run-${name}`), mutate);
  const editJson = (file: string, edit: (v: Record<string, unknown>) => unknown) =>
    fs.writeFileSync(file, JSON.stringify(edit(JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>)));
  const editModel = (dir: string, edit: (m: { weightsManifest: { paths: string[] }[] }) => void) =>
    editJson(path.join(dir, 'model.json'), (m) => {
      edit(m as unknown as { weightsManifest: { paths: string[] }[] });
      return m;
    });

  test('each broken or hostile run directory is refused by evaluate with exit 2 and one line, nothing on stdout but the backend', async () => {
    const outside = path.join(TMP, 'outside.bin');
    fs.copyFileSync(path.join(GOOD, 'weights.bin'), outside);
    const cases: [string, (d: string) => void, (d: string) => string][] = [
      [
        'missing-model',
        (d) => fs.rmSync(path.join(d, 'model.json')),
        (d) => `error: ${d}/model.json: missing (not a complete run directory)`,
      ],
      [
        'missing-weights',
        (d) => fs.rmSync(path.join(d, 'weights.bin')),
        (d) => `error: ${d}/weights.bin: missing (named by model.json)`,
      ],
      [
        'missing-metrics',
        (d) => fs.rmSync(path.join(d, 'metrics.json')),
        (d) => `error: ${d}/metrics.json: missing (not a complete run directory)`,
      ],
      [
        'missing-spec',
        (d) => fs.rmSync(path.join(d, 'spec.yaml')),
        (d) => `error: ${d}/spec.yaml: missing (not a complete run directory)`,
      ],
      [
        'short-weights',
        (d) => fs.truncateSync(path.join(d, 'weights.bin'), 1000),
        (d) => `error: ${d}/weights.bin: 1000 bytes, but model.json describes 31400`,
      ],
      [
        'long-weights',
        (d) => fs.appendFileSync(path.join(d, 'weights.bin'), Buffer.alloc(8)),
        (d) => `error: ${d}/weights.bin: 31408 bytes, but model.json describes 31400`,
      ],
      [
        'nan-weights',
        (d) => {
          const w = fs.readFileSync(path.join(d, 'weights.bin'));
          w.writeFloatLE(NaN, 400);
          fs.writeFileSync(path.join(d, 'weights.bin'), w);
        },
        (d) => `error: ${d}/weights.bin: weight dense/kernel contains NaN or infinite values`,
      ],
      [
        'traversal',
        (d) => editModel(d, (m) => (m.weightsManifest[0]!.paths = ['../outside.bin'])),
        (d) => `error: ${d}/model.json: weights path "../outside.bin" points outside the run directory`,
      ],
      [
        'absolute-path',
        (d) => editModel(d, (m) => (m.weightsManifest[0]!.paths = [outside])),
        (d) => `error: ${d}/model.json: weights path ${JSON.stringify(outside)} points outside the run directory`,
      ],
      [
        'symlink-out',
        (d) => {
          fs.rmSync(path.join(d, 'weights.bin'));
          fs.symlinkSync(outside, path.join(d, 'weights.bin'));
        },
        (d) => `error: ${d}/weights.bin: is a link that leads outside the run directory`,
      ],
      [
        'metrics-newer',
        (d) => editJson(path.join(d, 'metrics.json'), (m) => ({ ...m, formatVersion: 2 })),
        (d) => `error: ${d}/metrics.json: run format version 2 is from a newer regtrain (this one reads version 1)`,
      ],
      [
        'metrics-older',
        (d) => editJson(path.join(d, 'metrics.json'), ({ formatVersion: _v, ...m }) => m),
        (d) =>
          `error: ${d}/metrics.json: run format version null is from an older or unknown regtrain (this one reads version 1)`,
      ],
      [
        'metrics-null',
        (d) => fs.writeFileSync(path.join(d, 'metrics.json'), 'null'),
        (d) => `error: ${d}/metrics.json: expected a JSON object, got null`,
      ],
      [
        'spec-newer',
        (d) =>
          fs.writeFileSync(
            path.join(d, 'spec.yaml'),
            fs.readFileSync(path.join(d, 'spec.yaml'), 'utf8').replace(/^version: 1$/m, 'version: 2'),
          ),
        (d) => `! version: expected 1 (this regtrain reads spec version 1), got 2 (${d}/spec.yaml:1:10)`,
      ],
      [
        'not-a-directory',
        (d) => {
          fs.rmSync(d, { recursive: true });
          fs.writeFileSync(d, 'x');
        },
        (d) => `error: ${d}: not a run directory (not a directory)`,
      ],
    ];
    for (const [name, mutate, expected] of cases) {
      const dir = broken(name, mutate);
      const r = await regtrain(['evaluate', dir, '--backend', 'cpu']);
      assertClean(r, 2, name);
      assert.equal(errorLine(r), expected(dir), name);
      assert.equal(r.stdout.replace(/^Backend: .*\n/, ''), '', name);
    }
  });

  test('the unmodified reference run evaluates (exit 0), so the refusals above are about the faults', async () => {
    const r = await regtrain(['evaluate', GOOD, '--backend', 'cpu', '--json']);
    assertClean(r, 0, 'good run');
    assert.equal((JSON.parse(r.stdout) as { count: number }).count, 200);
  });

  test('compare skips a run whose metrics.json is from a newer format', async () => {
    const newer = broken('compare-newer', (d) =>
      editJson(path.join(d, 'metrics.json'), (m) => ({ ...m, formatVersion: 2 })),
    );
    const r = await regtrain(['compare', GOOD, newer]);
    assertClean(r, 0, 'compare');
    assert.match(r.stderr, /warning: skipped .*run-compare-newer: .*format/);
  });

  test('evaluate of a run whose spec.yaml was edited after training is refused by the spec check, naming field and line', async () => {
    const d = broken('spec-mismatch', (dir) =>
      fs.writeFileSync(
        path.join(dir, 'spec.yaml'),
        fs.readFileSync(path.join(dir, 'spec.yaml'), 'utf8').replace('activation: softmax', 'activation: sigmoid'),
      ),
    );
    const r = await regtrain(['evaluate', d, '--backend', 'cpu']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      errorLine(r),
      `! model.layers.1.dense.activation: the last layer must use softmax (sparseCategoricalCrossentropy takes ` +
        `probabilities, as Keras's from_logits=False), got sigmoid (${d}/spec.yaml:22:21)`,
    );
  });
});

/** compare's refusals on the run directories in test/fixtures/runs. */
describe('compare on the fixture run directories', () => {
  const RUNS = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'runs');
  const STUDY = path.join(RUNS, 'study');
  const SINGLE = path.join(RUNS, 'single-run');

  test('a run directory written before metrics.json stored the confusion matrix is read as before; one that stores it is checked', async () => {
    assert.equal(readMetrics(path.join(STUDY, 'runs', 'baseline-seed1')).metrics.confusion, undefined);
    assert.equal(readMetrics(SINGLE).metrics.confusion!.matrix[6]![6], 20);
    const bad = fs.mkdtempSync(path.join(TMP, 'cmp-'));
    fs.cpSync(SINGLE, bad, { recursive: true });
    const m = JSON.parse(fs.readFileSync(path.join(bad, 'metrics.json'), 'utf8')) as {
      confusion: { matrix: number[][] };
    };
    m.confusion.matrix[3]!.pop();
    fs.writeFileSync(path.join(bad, 'metrics.json'), JSON.stringify(m));
    const r = await regtrainInProcess(['compare', bad]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(
      r.stderr,
      new RegExp(
        `^warning: skipped ${bad}: metrics\\.json: confusion\\.matrix\\.3: expected 10 counts \\(one per class\\), got 9\n`,
      ),
    );
  });

  test('compare with nothing usable exits 2 and says why', async () => {
    const empty = fs.mkdtempSync(path.join(TMP, 'cmp-'));
    const r = await regtrainInProcess(['compare', empty, path.join(STUDY, 'runs', 'broken')], { cwd: RUNS });
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /no complete runs to compare/);
    assert.match(r.stderr, /skipped \S*broken: metrics\.json: not valid JSON/);
  });
});
