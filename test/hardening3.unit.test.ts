/**
 * Hardening round 3 (issue 21), the cases that need no trained run, through the real program in process
 * (test/helpers/in-process.ts): the memory bound on training.batchSize, names and paths with control
 * characters refused before they reach scheduler files, and hyperparameters that float32 turns into
 * something else. hardening3.test.ts keeps the cases that need a run, a FIFO or a shell, and a run and a
 * plan refusal through real processes.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { estimateMemory, memoryIssues } from '../src/spec/memory';
import { layerShapes } from '../src/spec/layers';
import { parseSpec } from '../src/spec';
import { regtrainInProcess, type InProcessResult } from './helpers/in-process';
import { HOSTILE_STUDY_SPEC } from './helpers/hostile-study';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '../..');
const CONFIGS = path.join(ROOT, 'configs');
const TMP = scratchDir('regtrain-h3-unit-');

const regtrain = (args: string[]) => regtrainInProcess(args, { cwd: TMP });

/** stderr's lines, with the check that there is no stack trace, no internal error and nothing on stdout. */
function oneLine(r: InProcessResult): string {
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, r.stderr);
  assert.equal(r.stdout, '', 'nothing on stdout');
  return r.stderr.trim();
}

// ---------- memory ----------

const CONV_SPEC = (batch: number) => `
name: big
model:
  layers:
    - reshape: { targetShape: [28, 28, 1] }
    - conv2d: { filters: 1479, kernelSize: 3, activation: relu }
    - globalAveragePooling2d: {}
    - dense: { units: 10, activation: softmax }
training: { batchSize: ${batch} }
`;

describe('family 3: validation bounds what training and inference allocate', () => {
  test('the issue’s conv2d (≈1M values per image) with batchSize 2000 is refused by run at training.batchSize with the numbers, exit 2, before training', async () => {
    const file = path.join(TMP, 'big-conv.yaml');
    fs.writeFileSync(file, CONV_SPEC(2000));
    const r = await regtrain(['run', file, '--backend', 'wasm', '--out', path.join(TMP, 'big-conv-run')]);
    assert.equal(r.code, 2, r.stderr);
    // Per image: input 784 + outputs (784 + 26·26·1479 + 1479 + 10) + 2 × 999804 (the widest's gradients) + 26·26·9 patches = 3008553.
    // Fixed: parameters (14790 + 14800) × 2 (weights, gradients; SGD has no slots) + (60000 + 5000 + 10000) × 784 images = 58859180.
    // 4 × (2000 × 3008553 + 58859180) = 24303860720 bytes; (2^30 − 58859180) / 3008553 → 337 images fit.
    assert.equal(
      oneLine(r),
      `! training.batchSize: training with batches of 2000 needs at least 24.30 GB (3008553 float32 values per image for activations, their gradients and conv patches; 58859180 for parameters, gradients, optimizer slots and the images), more than the 4 GiB a backend can address (the wasm heap's maximum); use a batchSize of at most 337 (big-conv.yaml:9:24)`,
    );
    assert.equal(fs.existsSync(path.join(TMP, 'big-conv-run')), false, 'nothing was created');
  });

  test('the largest batch the message offers validates, one more does not; Adam’s two slots count', () => {
    const check = (batch: number, optimizer = '') => {
      const spec = parseSpec(CONV_SPEC(batch) + optimizer, 'c.yaml').spec;
      return memoryIssues(spec, layerShapes(spec.model.layers).shapes);
    };
    assert.deepEqual(check(337), []);
    const spec = parseSpec(CONV_SPEC(1) + 'optimizer: { adam: {} }\n', 'c.yaml').spec;
    assert.equal(estimateMemory(spec, layerShapes(spec.model.layers).shapes).fixed, 29590 * 4 + 75000 * 784);
    assert.throws(
      () => parseSpec(CONV_SPEC(338), 'c.yaml'),
      /training\.batchSize: training with batches of 338 needs at least 4\.30 GB/,
    );
  });

  test('every shipped config still validates (the bound refuses nothing that runs today)', async () => {
    for (const f of fs.readdirSync(CONFIGS).filter((n) => n.endsWith('.yaml'))) {
      const r = await regtrain(['validate', path.join(CONFIGS, f)]);
      assert.equal(r.code, 0, `${f}: ${r.stderr}`);
      assert.match(r.stdout, /^version: 1\n/, f);
    }
  });
});

// ---------- names that reach scheduler files ----------

describe('family 4: names and paths that reach k8s.yaml, members.txt and scripts', () => {
  const CONTROL = ['new\nline', 'carriage\rreturn', 'esc\u001b[31m', 'nel\u0085x', 'ls\u2028x', 'tab\tx', 'del\u007fx'];
  test('a --study-dir or --out with any control character or line separator is refused before anything is created', async () => {
    fs.writeFileSync(path.join(TMP, 'hostile.yaml'), HOSTILE_STUDY_SPEC);
    for (const name of CONTROL) {
      const r = await regtrain(['plan', 'hostile.yaml', '--format', 'k8s', '--study-dir', name]);
      assert.equal(r.code, 2, r.stderr);
      const code = `U+${name
        .match(/[\p{Cc}\p{Zl}]/u)![0]
        .codePointAt(0)!
        .toString(16)
        .toUpperCase()
        .padStart(4, '0')}`;
      assert.equal(
        oneLine(r),
        `error: --study-dir ${JSON.stringify(name).replace(/[\p{Cc}\p{Zl}\p{Zp}]/gu, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`)}: contains a control character (${code}); names and paths written into scheduler files may not`,
      );
      assert.equal(fs.existsSync(path.join(TMP, name)), false);
    }
    const out = await regtrain(['run', 'hostile.yaml', '--out', 'x\ny', '--dry-run']);
    assert.equal(out.code, 2, out.stderr);
    assert.equal(
      oneLine(out),
      `error: --out "x\\ny": contains a control character (U+000A); names and paths written into scheduler files may not`,
    );
  });

  test('--data-dir, --regtrain and --image with a newline, a line separator or an escape are refused naming the flag', async () => {
    for (const [flag, value] of [
      ['--data-dir', '/data\nkind: Pod'],
      ['--regtrain', 'regtrain\u2028x'],
      ['--image', 'img\u001bx'],
    ]) {
      const r = await regtrain(['plan', 'hostile.yaml', '--format', 'k8s', '--study-dir', 'st-flags', flag!, value!]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(oneLine(r), new RegExp(`^error: ${flag} .*: contains a control character \\(U\\+[0-9A-F]{4}\\)`));
    }
  });
});

// ---------- float32 ----------

describe('family 5: hyperparameters validated in float32, the precision they are used in', () => {
  const cases: [string, string][] = [
    [
      'optimizer.adam.beta2=0.99999999',
      'optimizer.adam.beta2: 0.99999999 is 1 in float32 (the precision training uses), so 1 − it is 0; use at most 0.99999994',
    ],
    [
      'optimizer.adam.beta1=0.99999999',
      'optimizer.adam.beta1: 0.99999999 is 1 in float32 (the precision training uses), so 1 − it is 0; use at most 0.99999994',
    ],
    [
      'optimizer.adam.epsilon=1e-50',
      'optimizer.adam.epsilon: 1e-50 is 0 in float32 (the precision training uses); use at least 1.1754944e-38',
    ],
    [
      'optimizer.adamw.epsilon=1e-40',
      'optimizer.adamw.epsilon: 1e-40 is subnormal in float32 (the precision training uses), and tfjs-node flushes it to 0; use at least 1.1754944e-38',
    ],
    [
      'optimizer.sgd.learningRate=1e-50',
      'optimizer.sgd.learningRate: 1e-50 is 0 in float32 (the precision training uses); use at least 1.1754944e-38',
    ],
    [
      'optimizer.sgd.learningRate=1e39',
      'optimizer.sgd.learningRate: 1e+39 is Infinity in float32 (the precision training uses); the largest float32 is 3.4028235e+38',
    ],
    [
      'optimizer.sgd.momentum=0.999999999',
      'optimizer.sgd.momentum: 0.999999999 is 1 in float32 (the precision training uses), so 1 − it is 0; use at most 0.99999994',
    ],
    [
      'optimizer.sgd.weightDecay=1e-46',
      'optimizer.sgd.weightDecay: 1e-46 is 0 in float32 (the precision training uses); use 0 or at least 1.1754944e-38',
    ],
    [
      'optimizer.sgd.learningRate={exponentialDecay: {initialLearningRate: 1e-60, decaySteps: 10, decayRate: 0.9}}',
      'optimizer.sgd.learningRate.exponentialDecay.initialLearningRate: 1e-60 is 0 in float32 (the precision training uses); use at least 1.1754944e-38',
    ],
    [
      'optimizer.sgd.learningRate={piecewiseConstant: {boundaries: [10], values: [0.1, 1e-50]}}',
      'optimizer.sgd.learningRate.piecewiseConstant.values.1: 1e-50 is 0 in float32 (the precision training uses); use at least 1.1754944e-38',
    ],
    [
      'optimizer.sgd.learningRate={cosineDecay: {initialLearningRate: 0.1, decaySteps: 10, warmupSteps: 5, warmupTarget: 1e-50}}',
      'optimizer.sgd.learningRate.cosineDecay.warmupTarget: 1e-50 is 0 in float32 (the precision training uses); use at least 1.1754944e-38',
    ],
    [
      'training.reduceLrOnPlateau={factor: 0.999999999}',
      'training.reduceLrOnPlateau.factor: 0.999999999 is 1 in float32 (the precision training uses), so 1 − it is 0; use at most 0.99999994',
    ],
    [
      'training.reduceLrOnPlateau={minLr: 1e-50}',
      'training.reduceLrOnPlateau.minLr: 1e-50 is 0 in float32 (the precision training uses); use 0 or at least 1.1754944e-38',
    ],
    [
      'model.layers.1.dense.kernelRegularizer={l1: 1e-300}',
      'model.layers.1.dense.kernelRegularizer.l1: 1e-300 is 0 in float32 (the precision training uses); use 0 or at least 1.1754944e-38',
    ],
    [
      'model.layers.1.dense.kernelRegularizer={l2: 1e39}',
      'model.layers.1.dense.kernelRegularizer.l2: 1e+39 is Infinity in float32 (the precision training uses); the largest float32 is 3.4028235e+38',
    ],
    [
      'model.layers.1={dropout: {rate: 0.999999999}}',
      'model.layers.1.dropout.rate: 0.999999999 is 1 in float32 (the precision training uses), so 1 − it is 0; use at most 0.99999994',
    ],
    [
      'model.layers.1={batchNormalization: {epsilon: 1e-50}}',
      'model.layers.1.batchNormalization.epsilon: 1e-50 is 0 in float32 (the precision training uses); use at least 1.1754944e-38',
    ],
    [
      'model.layers.1={batchNormalization: {momentum: 0.999999999}}',
      'model.layers.1.batchNormalization.momentum: 0.999999999 is 1 in float32 (the precision training uses), so 1 − it is 0; use at most 0.99999994',
    ],
  ];
  test('each hyperparameter float32 turns into 0, 1, a subnormal or Infinity is refused at its field, saying what it becomes', async () => {
    for (const [set, message] of cases) {
      const optimizerKind = /^optimizer\.(\w+)/.exec(set)?.[1];
      const base = `name: f\nmodel:\n  layers:\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n${optimizerKind ? `optimizer: { ${optimizerKind}: {} }\n` : ''}`;
      const file = path.join(TMP, 'f32.yaml');
      fs.writeFileSync(file, base);
      const v = await regtrain(['validate', file, '--set', set]);
      assert.equal(v.code, 2, `${set}: ${v.stderr}`);
      assert.equal(v.stdout, '', set);
      assert.equal(
        v.stderr
          .trim()
          .split('\n')
          .find((l) => l.startsWith('! ')),
        `! ${message} (--set ${set})`,
        set,
      );
    }
  });

  test('the largest float32 below 1 and the smallest normal float32 themselves are accepted', () => {
    const base = `name: f\nmodel:\n  layers:\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\noptimizer: { adam: { beta1: 0.99999994, beta2: 0.99999994, epsilon: 1.1754944e-38, learningRate: 1.1754944e-38 } }\n`;
    assert.equal(parseSpec(base, 'ok.yaml').spec.optimizer.adam!.beta2, 0.99999994);
  });
});
