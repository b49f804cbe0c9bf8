/**
 * The experiment spec, in process: every error a user can make names the dotted path, says what was
 * expected and what was found, and points at the line:col of the YAML (or at the --set flag).
 * Fixture specs live in test/fixtures/specs/<scenario>.yaml (the source tree: tsc does not copy YAML).
 * `regtrain validate` runs here through the real program in process; as a process, in spec.test.ts.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { InputError } from '../src/errors';
import { loadSpec, parseSetFlag, parseSpec, SpecError, validateSpec, type ExperimentSpec } from '../src/spec';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '../..');
const SPECS = path.join(ROOT, 'test', 'fixtures', 'specs');
const CONFIGS = path.join(ROOT, 'configs');
const fixture = (name: string) => path.join(SPECS, `${name}.yaml`);

/** The message lines of the InputError/SpecError that loading `file` throws. */
function errorLines(file: string, sets: string[] = []): string[] {
  try {
    loadSpec(file, sets.map(parseSetFlag));
  } catch (err) {
    assert.ok(err instanceof InputError, `expected an InputError, got ${String(err)}`);
    return err.message.split('\n');
  }
  assert.fail(`${file} validated, but an error was expected`);
}

describe('spec errors name the path, the problem and the line:col', () => {
  test('an unknown key is refused with a did-you-mean hint at the key itself', () => {
    assert.deepEqual(errorLines(fixture('unknown-key')), [
      "! trainig: unknown key (did you mean 'training'?) (unknown-key.yaml:6:1)",
    ]);
  });

  test('an unknown layer type is called a layer type, with a hint, and not also "no layer type"', () => {
    assert.deepEqual(errorLines(fixture('unknown-layer-type')), [
      "! model.layers.1.dens: unknown layer type (did you mean 'dense'?) (unknown-layer-type.yaml:5:7)",
    ]);
  });

  test('negative units are refused as not a positive integer', () => {
    assert.deepEqual(errorLines(fixture('negative-units')), [
      '! model.layers.1.dense.units: expected a positive integer, got -5 (negative-units.yaml:5:23)',
    ]);
  });

  test('a last layer without 10 units is refused (one output per class)', () => {
    assert.deepEqual(errorLines(fixture('last-layer-units')), [
      '! model.layers.2.dense.units: the last layer must have 10 units (one per class), got 5 (last-layer-units.yaml:6:23)',
    ]);
  });

  test('a NaN learning rate (.nan in YAML) is refused', () => {
    assert.deepEqual(errorLines(fixture('nan-learning-rate')), [
      '! optimizer.sgd.learningRate: expected a positive number, got NaN (nan-learning-rate.yaml:8:19)',
    ]);
  });

  test('a regularizer shorthand other than l1, l2, l1l2 is refused at its value', () => {
    assert.deepEqual(errorLines(fixture('bad-shorthand')), [
      '! model.layers.1.dense.kernelRegularizer: expected {l1, l2}, {orthogonal: {factor, mode}} or one of l1, l2, l1l2, orthogonal, got "l3" (bad-shorthand.yaml:8:28)',
    ]);
  });

  test('a YAML syntax error is reported as invalid YAML with its position', () => {
    assert.deepEqual(errorLines(fixture('yaml-syntax')), [
      '! invalid YAML: Flow map in block collection must be sufficiently indented and end with a } (yaml-syntax.yaml:6:1)',
    ]);
  });

  test('a duplicate key is refused at the second occurrence (never silently last-wins)', () => {
    assert.deepEqual(errorLines(fixture('duplicate-key')), [
      '! invalid YAML: Map keys must be unique (duplicate-key.yaml:8:3)',
    ]);
  });

  test('an empty file is refused as an empty spec', () => {
    assert.deepEqual(errorLines(fixture('empty')), ['! the spec is empty (empty.yaml)']);
  });

  test('a directory instead of a file is refused', () => {
    assert.deepEqual(errorLines(SPECS), [`${SPECS}: is a directory, expected a YAML spec file`]);
  });

  test('a missing file is refused as "no such file"', () => {
    const missing = path.join(SPECS, 'does-not-exist.yaml');
    assert.deepEqual(errorLines(missing), [`${missing}: no such file`]);
  });

  test('units: 1e9 is refused before anything is allocated (units limit and parameter budget)', () => {
    // 784·1e9 + 1e9 (dense) + 1e9·10 + 10 (output) = 795,000,000,010 parameters.
    assert.deepEqual(errorLines(fixture('huge-units')), [
      '! model.layers.1.dense.units: expected at most 65536, got 1000000000 (huge-units.yaml:5:23)',
      '! model.layers: the model has 795000000010 parameters, more than the limit of 50000000 (huge-units.yaml:4:5)',
    ]);
  });

  test('every error of a spec is listed, one per line, in document order', () => {
    assert.deepEqual(errorLines(fixture('several-errors')), [
      '! model.layers.1.dense.units: expected a positive integer, got 0 (several-errors.yaml:5:23)',
      '! model.layers.1.dense.activation: expected one of linear, relu, relu6, elu, selu, sigmoid, hardSigmoid, tanh, softmax, softplus, softsign, swish, mish, gelu, got "rleu" (several-errors.yaml:5:38)',
      '! training.epochs: expected a positive integer, got -1 (several-errors.yaml:8:11)',
    ]);
  });

  test('a SpecError carries structured issues as well as the formatted message', () => {
    try {
      loadSpec(fixture('negative-units'));
      assert.fail('expected a SpecError');
    } catch (err) {
      assert.ok(err instanceof SpecError);
      assert.equal(err.exitCode, 2);
      assert.deepEqual(err.issues, [
        {
          path: ['model', 'layers', 1, 'dense', 'units'],
          message: 'expected a positive integer, got -5',
          where: 'negative-units.yaml:5:23',
        },
      ]);
    }
  });
});

describe('valid specs', () => {
  const configs = fs
    .readdirSync(CONFIGS)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort();

  test('the configs folder holds at least quick.yaml and article.yaml', () => {
    assert.ok(configs.includes('quick.yaml') && configs.includes('article.yaml'), configs.join(', '));
  });

  for (const file of configs) {
    test(`configs/${file} validates`, () => {
      const { spec, file: label } = loadSpec(path.join(CONFIGS, file));
      assert.equal(label, file);
      assert.equal(spec.version, 1);
      const last = spec.model.layers[spec.model.layers.length - 1]!;
      assert.equal(last.dense?.units, 10);
      assert.equal(last.dense?.activation, 'softmax');
    });
  }

  test("configs/article.yaml resolves to the tutorial's three regularizers", () => {
    const { spec } = loadSpec(path.join(CONFIGS, 'article.yaml'));
    const regs = spec.model.layers.filter((l) => l.dense).map((l) => l.dense!.kernelRegularizer);
    assert.deepEqual(regs, [{ l1: 0.01, l2: 0 }, { l1: 0, l2: 0.001 }, { l1: 0.01, l2: 0.01 }, null]);
    assert.equal(spec.training.epochs, 60);
    assert.equal(spec.training.batchSize, 32);
    assert.deepEqual(spec.data.validation, { size: 5000, holdout: false, shuffle: false, stratify: false });
  });

  test('a minimal spec gets Keras defaults and its name from the file name', () => {
    const { spec } = loadSpec(fixture('minimal'));
    assert.equal(spec.name, 'minimal');
    assert.equal(spec.seed, 1234);
    assert.deepEqual(spec.training, {
      epochs: 1,
      batchSize: 32,
      shuffle: true,
      earlyStopping: null,
      reduceLrOnPlateau: null,
      checkpoint: { saveBest: null },
      tensorboard: true,
    });
    assert.deepEqual(spec.optimizer, {
      sgd: { learningRate: 0.01, momentum: 0, nesterov: false, weightDecay: 0, excludeFromWeightDecay: [] },
    });
    assert.deepEqual(spec.model.layers[0], { flatten: { inputShape: [28, 28] } });
    assert.deepEqual(spec.model.layers[1], {
      dense: {
        units: 10,
        activation: 'softmax',
        useBias: true,
        kernelInitializer: 'glorotUniform',
        biasInitializer: 'zeros',
        kernelRegularizer: null,
        biasRegularizer: null,
        activityRegularizer: null,
      },
    });
  });

  test('the regularizer shorthands l1, l2, l1l2 mean a factor of 0.01', () => {
    const withReg = (r: unknown): ExperimentSpec =>
      validateSpec({
        name: 'r',
        model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax', kernelRegularizer: r } }] },
      });
    assert.deepEqual(withReg('l1').model.layers[1]!.dense!.kernelRegularizer, { l1: 0.01, l2: 0 });
    assert.deepEqual(withReg('l2').model.layers[1]!.dense!.kernelRegularizer, { l1: 0, l2: 0.01 });
    assert.deepEqual(withReg('l1l2').model.layers[1]!.dense!.kernelRegularizer, { l1: 0.01, l2: 0.01 });
    assert.deepEqual(withReg({ l2: 0.001 }).model.layers[1]!.dense!.kernelRegularizer, { l1: 0, l2: 0.001 });
  });

  test('parseSpec of the text a run directory keeps gives back the same spec', () => {
    const { spec } = loadSpec(path.join(CONFIGS, 'quick.yaml'));
    assert.deepEqual(parseSpec(YAML.stringify(spec), 'spec.yaml').spec, spec);
  });
});

describe('--set overrides', () => {
  const quick = path.join(CONFIGS, 'quick.yaml');

  test('--set training.epochs=5 replaces the file value (parsed as a YAML number)', () => {
    const { spec, raw } = loadSpec(quick, [parseSetFlag('training.epochs=5')]);
    assert.equal(spec.training.epochs, 5);
    assert.equal((raw.training as { epochs: unknown }).epochs, 5);
  });

  test('later --set flags win and list indexes address layers', () => {
    const { spec } = loadSpec(
      quick,
      [
        'training.epochs=3',
        'training.epochs=7',
        'model.layers.1.dense.kernelRegularizer=l2',
        'optimizer.sgd.learningRate=1e-3',
      ].map(parseSetFlag),
    );
    assert.equal(spec.training.epochs, 7);
    assert.deepEqual(spec.model.layers[1]!.dense!.kernelRegularizer, { l1: 0, l2: 0.01 });
    assert.equal(spec.optimizer.sgd?.learningRate, 0.001);
  });

  test('a flow map value gets its defaults filled in', () => {
    const { spec } = loadSpec(quick, [parseSetFlag('training.earlyStopping={patience: 2}')]);
    assert.deepEqual(spec.training.earlyStopping, {
      monitor: 'val_loss',
      patience: 2,
      minDelta: 0,
      restoreBestWeights: false,
    });
  });

  test('a bad --set value names the flag instead of a file position', () => {
    assert.deepEqual(errorLines(quick, ['training.epochs=abc']), [
      '! training.epochs: expected a positive integer, got "abc" (--set training.epochs=abc)',
    ]);
  });

  test('a --set without PATH=VALUE is refused naming the flag', () => {
    assert.throws(() => parseSetFlag('epochs'), {
      name: 'InputError',
      message: '--set epochs: expected PATH=VALUE with a dotted path, e.g. --set training.epochs=3',
    });
  });

  test('a --set with a non-index segment into a list is refused naming the flag', () => {
    assert.deepEqual(errorLines(quick, ['model.layers.x=3']), [
      "--set model.layers.x=3: model.layers is a list; expected an index, got 'x'",
    ]);
  });

  test('a --set with a list index past the end names the flag (not the YAML file)', () => {
    // quick.yaml has 5 layers; index 9 used to leave holes 5..8 reported at quick.yaml:11:5.
    const lines = errorLines(quick, ['model.layers.9.dense.units=3']);
    assert.equal(lines.length, 1, `one error expected:\n${lines.join('\n')}`);
    assert.ok(lines[0]!.includes('--set model.layers.9.dense.units=3'), `the error should name the flag: ${lines[0]}`);
  });
});

describe('regtrain validate through the real program, in process (test/helpers/in-process.ts)', () => {
  const TMP = scratchDir('regtrain-spec-unit-');
  const regtrain = (args: string[]) => regtrainInProcess(args, { cwd: TMP });
  const noStackTrace = (s: string) => assert.doesNotMatch(s, /^\s+at .+[(:]\d+/m, `a stack trace leaked:\n${s}`);

  test('--json prints the same resolved spec as one JSON object', async () => {
    const r = await regtrain(['validate', path.join(CONFIGS, 'quick.yaml'), '--json', '--set', 'training.epochs=3']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      JSON.parse(r.stdout),
      loadSpec(path.join(CONFIGS, 'quick.yaml'), [parseSetFlag('training.epochs=3')]).spec,
    );
  });

  test('a bad --set value exits 2 naming the flag', async () => {
    const r = await regtrain(['validate', path.join(CONFIGS, 'quick.yaml'), '--set', 'training.epochs=abc']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, '! training.epochs: expected a positive integer, got "abc" (--set training.epochs=abc)\n');
  });

  test('a missing file and a directory exit 2 with one "error:" line each', async () => {
    const missing = path.join(TMP, 'nope.yaml');
    const a = await regtrain(['validate', missing]);
    assert.equal(a.code, 2);
    assert.equal(a.stderr, `error: ${missing}: no such file\n`);
    const b = await regtrain(['validate', SPECS]);
    assert.equal(b.code, 2);
    assert.equal(b.stderr, `error: ${SPECS}: is a directory, expected a YAML spec file\n`);
  });

  test('YAML syntax errors and empty files exit 2 without a stack trace', async () => {
    for (const name of ['yaml-syntax', 'duplicate-key', 'empty', 'huge-units', 'unknown-key']) {
      const r = await regtrain(['validate', fixture(name)]);
      assert.equal(r.code, 2, `${name}: ${r.stderr}`);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^! /, name);
      noStackTrace(r.stderr);
    }
  });

  /** A spec file of the tutorial's shape with `middle` between the flatten layer and the output. */
  function writeLayersSpec(file: string, middle: string[]): void {
    fs.writeFileSync(
      path.join(TMP, file),
      [
        `name: ${path.basename(file, '.yaml')}`,
        'model:',
        '  layers:',
        '    - flatten: {}',
        ...middle.map((l) => `    - ${l}`),
        '    - dense: { units: 10, activation: softmax }',
        'optimizer: { sgd: { learningRate: 0.01 } }',
        '',
      ].join('\n'),
    );
  }

  test('validate accepts a spec using every noise and normalization layer and the orthogonal regularizer, Keras defaults filled in', async () => {
    writeLayersSpec('every-layer.yaml', [
      'gaussianNoise: { stddev: 0.1 }',
      'dense: { units: 32, activation: selu, kernelRegularizer: orthogonal }',
      'alphaDropout: { rate: 0.1 }',
      'layerNormalization: {}',
      'dense: { units: 16, activation: relu, kernelRegularizer: { orthogonal: { factor: 0.1, mode: columns } } }',
      'gaussianDropout: { rate: 0.2 }',
      'activityRegularization: { l2: 0.001 }',
    ]);
    const r = await regtrainInProcess(['validate', 'every-layer.yaml', '--json'], { cwd: TMP });
    assert.equal(r.code, 0, r.stderr);
    const layers = (JSON.parse(r.stdout) as { model: { layers: Record<string, Record<string, unknown>>[] } }).model
      .layers;
    assert.deepEqual(layers[1], { gaussianNoise: { stddev: 0.1 } });
    assert.deepEqual(layers[2]!.dense!.kernelRegularizer, { l1: 0, l2: 0, orthogonal: { factor: 0.01, mode: 'rows' } });
    assert.deepEqual(layers[3], { alphaDropout: { rate: 0.1 } });
    assert.deepEqual(layers[4], { layerNormalization: { axis: -1, epsilon: 0.001, center: true, scale: true } });
    assert.deepEqual(layers[5]!.dense!.kernelRegularizer, {
      l1: 0,
      l2: 0,
      orthogonal: { factor: 0.1, mode: 'columns' },
    });
    assert.deepEqual(layers[6], { gaussianDropout: { rate: 0.2 } });
    assert.deepEqual(layers[7], { activityRegularization: { l1: 0, l2: 0.001 } });
  });
});
