/**
 * Every command on the real tfjs-node backend (`--backend tfjs-node`, TensorFlow's C library), where it
 * loads (`npm run setup:tfjs-node`; CI's tfjs-node lane); skipped with the reason where it does not.
 * Small slices of the real data, 2–3 epochs: an MLP on the lean step and on the reference (autodiff)
 * step, a CNN, a SIGKILL + resume (bit for bit on the same backend), evaluate, --best, predict,
 * TensorBoard, a two-member study with run-member and compare. The losses are checked against the
 * same training on wasm (same seed, same initial weights): they agree to float32 rounding of a
 * different summation order, not bit for bit.
 */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QUICK, ROOT, killAfterFirstEpoch, regtrainSync } from './helpers/cli';
import { scratchDir } from './helpers/scratch';

const TMP = scratchDir('regtrain-tfjs-node-');
const ENV = { ...process.env, REGTRAIN_DATA_DIR: path.join(TMP, 'cache') };

/** Why tfjs-node cannot run here (the tests skip with it), or null when it loads. */
const noTfjsNode = ((): string | null => {
  const r = spawnSync(process.execPath, ['-e', "require('@tensorflow/tfjs-node')"], {
    cwd: ROOT,
    env: { ...ENV, TF_CPP_MIN_LOG_LEVEL: '2' },
    encoding: 'utf8',
  });
  if (r.status === 0) return null;
  const first = r.stderr.split('\n').find((l) => /Error/.test(l)) ?? `exit ${r.status}`;
  return `tfjs-node does not load here (${first.trim()}); \`npm run setup:tfjs-node\` installs it`;
})();

const SMALL = [
  '--set',
  'data.trainLimit=600',
  '--set',
  'data.validation.size=200',
  '--set',
  'data.testLimit=300',
  '--set',
  'training.epochs=3',
];
/** saveBest and TensorBoard on: what evaluate --best and the TensorBoard check read. */
const MLP = [
  QUICK,
  ...SMALL,
  '--set',
  'training.checkpoint.saveBest={monitor: val_accuracy}',
  '--set',
  'training.tensorboard=true',
];

function regtrain(args: string[], extraEnv: Record<string, string> = {}) {
  return regtrainSync(args, { cwd: TMP, env: { ...ENV, ...extraEnv } });
}
const events = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { event?: string } & Record<string, unknown>);
const read = (dir: string, file: string) => fs.readFileSync(path.join(TMP, dir, file));
const json = <T>(dir: string, file: string) => JSON.parse(read(dir, file).toString()) as T;
type Epoch = { loss: number; val_loss: number; seconds: number } & Record<string, unknown>;
const history = (dir: string) =>
  json<{ epochs: Epoch[] }>(dir, 'history.json').epochs.map(({ seconds: _s, ...rest }) => rest);

/** Each epoch's loss within `rel` (relative) of the other run's: the same training on another backend. */
function assertSameLosses(dir: string, other: string, rel: number): void {
  const a = history(dir);
  const b = history(other);
  assert.equal(a.length, b.length);
  a.forEach((e, i) => {
    for (const k of ['loss', 'val_loss'] as const) {
      const x = e[k] as number;
      const y = b[i]![k] as number;
      assert.ok(Math.abs(x - y) <= rel * Math.abs(y), `epoch ${i + 1} ${k}: ${x} on tfjs-node, ${y} on wasm`);
    }
  });
}

test(
  'tfjs-node loads in the CI lane that installs it (there a skip would hide a broken install)',
  { skip: process.env.REGTRAIN_TFJS_NODE_LANE ? false : 'not the tfjs-node lane of .ci/run' },
  () => {
    assert.equal(noTfjsNode, null);
  },
);

describe('the real tfjs-node backend', { skip: noTfjsNode ?? false }, () => {
  before(() => {
    for (const [out, backend] of [
      ['mlp', 'tfjs-node'],
      ['mlp-wasm', 'wasm'],
    ]) {
      const r = regtrain(['run', ...MLP, '--backend', backend!, '--out', out!, '-q']);
      assert.equal(r.status, 0, r.stderr);
    }
  });

  test('an MLP trains on TensorFlow with the lean step, run.json records it, and its losses are those of wasm to float32 rounding', () => {
    const r = regtrain(['run', QUICK, ...SMALL, '--backend', 'tfjs-node', '--out', 'mlp-json', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const ev = events(r.stdout);
    const start = ev.find((e) => e.event === 'start')!;
    assert.equal(start.backend, 'tensorflow');
    assert.match(String(start.backendReason), /^tfjs-node \(requested; TensorFlow \d+\.\d+\.\d+\)$/);
    assert.equal(ev.find((e) => e.event === 'training')!.step, 'lean step (hand-written gradients)');
    assert.deepEqual(json<{ backend: unknown }>('mlp-json', 'run.json').backend, {
      name: 'tensorflow',
      kernels: 'tensorflow',
    });
    assert.equal(json<{ backend: { name: string } }>('mlp', 'metrics.json').backend.name, 'tensorflow');
    assertSameLosses('mlp', 'mlp-wasm', 1e-4);
    assert.doesNotMatch(r.stderr, /I tensorflow\//, "TensorFlow's start-up log is silenced (TF_CPP_MIN_LOG_LEVEL=2)");
  });

  test('a model with a bias penalty trains on TensorFlow with the reference (autodiff) step', () => {
    const r = regtrain([
      'run',
      QUICK,
      ...SMALL,
      '--set',
      'model.layers.2.dense.biasRegularizer={l2: 0.001}',
      '--backend',
      'tfjs-node',
      '--out',
      'bias-penalty',
      '--json',
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(
      events(r.stdout).find((e) => e.event === 'training')!.step,
      'tfjs autodiff + optimizer (activity or bias penalties need autodiff)',
    );
    assert.equal(json<{ status: string }>('bias-penalty', 'metrics.json').status, 'complete');
  });

  test('a CNN trains on TensorFlow, its losses those of wasm to float32 rounding', () => {
    const cnn = path.join(ROOT, 'configs', 'cnn.yaml');
    const sets = [
      '--set',
      'data.trainLimit=256',
      '--set',
      'data.validation.size=64',
      '--set',
      'data.testLimit=100',
      '--set',
      'training.epochs=2',
    ];
    for (const [out, backend] of [
      ['cnn', 'tfjs-node'],
      ['cnn-wasm', 'wasm'],
    ]) {
      const r = regtrain(['run', cnn, ...sets, '--backend', backend!, '--out', out!, '-q']);
      assert.equal(r.status, 0, r.stderr);
    }
    assert.equal(json<{ backend: { name: string } }>('cnn', 'metrics.json').backend.name, 'tensorflow');
    assertSameLosses('cnn', 'cnn-wasm', 1e-3);
  });

  test('a run killed with SIGKILL resumes on TensorFlow without --backend, to the same history and weights bit for bit', async () => {
    await killAfterFirstEpoch(['run', ...MLP, '--backend', 'tfjs-node', '--out', 'killed'], TMP, ENV);
    const r = regtrain(['run', '--resume', 'killed']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^Backend: tensorflow — the run's own \(run\.json\): TensorFlow's kernels$/m);
    assert.doesNotMatch(r.stderr, /warning/);
    assert.deepEqual(history('killed'), history('mlp'));
    assert.ok(read('killed', 'weights.bin').equals(read('mlp', 'weights.bin')), 'weights.bin is byte-identical');
  });

  test('a wasm run resumed with --backend tfjs-node says it switches', async () => {
    await killAfterFirstEpoch(['run', ...MLP, '--backend', 'wasm', '--out', 'to-tf'], TMP, ENV);
    const r = regtrain(['run', '--resume', 'to-tf', '--backend', 'tfjs-node']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stderr,
      /^warning: the run trained on wasm with .+ so far; it continues on tensorflow with TensorFlow's kernels \(--backend tfjs-node\)$/m,
    );
    assert.deepEqual(json<{ backend: unknown }>('to-tf', 'run.json').backend, {
      name: 'tensorflow',
      kernels: 'tensorflow',
    });
  });

  test('evaluate and evaluate --best on TensorFlow give the accuracies the run recorded', () => {
    const r = regtrain(['evaluate', 'mlp', '--json', '--backend', 'tfjs-node']);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { accuracy: number; count: number };
    const m = json<{ test: { accuracy: number; count: number } }>('mlp', 'metrics.json');
    assert.deepEqual([report.accuracy, report.count], [m.test.accuracy, m.test.count]);
    const best = regtrain(['evaluate', 'mlp', '--best', '--json', '--backend', 'tfjs-node']);
    assert.equal(best.status, 0, best.stderr);
    const bestJson = json<{ epoch: number }>(path.join('mlp', 'best'), 'best.json');
    assert.ok(bestJson.epoch >= 1 && bestJson.epoch <= 3);
    assert.ok((JSON.parse(best.stdout) as { accuracy: number }).accuracy > 0.1);
  });

  test('predict on TensorFlow gives the classes wasm gives', () => {
    const top = (backend: string) => {
      const r = regtrain(['predict', 'mlp', '--test-index', '0', '--test-index', '1', '--json', '--backend', backend]);
      assert.equal(r.status, 0, r.stderr);
      return events(r.stdout).map((l) => (l.top as { index: number }[]).map((c) => c.index));
    };
    assert.deepEqual(top('tfjs-node'), top('wasm'));
  });

  test('TensorBoard gets its event file from a run on TensorFlow', () => {
    // Keras's layout: a train/ and a validation/ run, each with one event file holding epoch_loss.
    const tb = path.join(TMP, 'mlp', 'tensorboard');
    assert.deepEqual(fs.readdirSync(tb).sort(), ['train', 'validation']);
    for (const run of ['train', 'validation']) {
      const files = fs.readdirSync(path.join(tb, run));
      assert.equal(files.length, 1, `${run}: ${files.join(', ')}`);
      assert.match(files[0]!, /^events\.out\.tfevents\./);
      assert.ok(
        read(path.join('mlp', 'tensorboard', run), files[0]!).includes('epoch_loss'),
        `${run}: the per-epoch scalars are in it`,
      );
    }
  });

  test('a study trains its members on TensorFlow, run-member skips a finished one, and compare reads them', () => {
    const spec = path.join(TMP, 'tiny-study.yaml');
    fs.writeFileSync(
      spec,
      fs.readFileSync(QUICK, 'utf8') + '\nvariants:\n  baseline: {}\n  wider: { model.layers.1.dense.units: 64 }\n',
    );
    const r = regtrain([
      'run',
      spec,
      ...SMALL,
      '--set',
      'training.epochs=1',
      '--backend',
      'tfjs-node',
      '--out',
      'study',
      '--json',
      '-q',
    ]);
    assert.equal(r.status, 0, r.stderr);
    const studyDir = path.join(TMP, 'study');
    assert.equal(events(r.stdout).at(-1)!.studyDir, studyDir);
    const runs = fs.readdirSync(path.join(studyDir, 'runs'));
    assert.equal(runs.length, 2);
    for (const run of runs)
      assert.equal(
        (
          JSON.parse(fs.readFileSync(path.join(studyDir, 'runs', run, 'run.json'), 'utf8')) as {
            backend: { name: string };
          }
        ).backend.name,
        'tensorflow',
      );
    const again = regtrain(['run-member', studyDir, '--index', '0']);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stderr, /^member 0 \(.+\) already finished; nothing to do$/m);
    const c = regtrain(['compare', studyDir, '--json']);
    assert.equal(c.status, 0, c.stderr);
    assert.deepEqual(
      events(c.stdout)
        .filter((d) => d.type === 'group')
        .map((d) => d.name),
      ['baseline', 'wider'],
    );
  });
});
