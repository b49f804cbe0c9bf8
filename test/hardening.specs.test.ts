/**
 * Bad specs, tried systematically through the real CLI (`regtrain validate`): every case in
 * test/fixtures/bad-specs/ (one small file per case) must exit 2 with one clear first line
 * naming the dotted path, the problem and file:line:col — never "internal error", never a stack.
 * Fixtures are read from the source tree (tsc does not copy them into dist/).
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { regtrain as run, type CliResult as Run } from './helpers/cli';

const ROOT = path.resolve(__dirname, '../..');
const BAD = path.join(ROOT, 'test', 'fixtures', 'bad-specs');
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-hardening-specs-'));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));

/** `regtrain ARGS` with cwd = the corpus, so messages name files as the user typed them. */
const ENV = { ...process.env, XDG_CACHE_HOME: path.join(TMP, 'xdg'), REGTRAIN_DATA_DIR: path.join(TMP, 'data') };
const regtrain = (args: string[], cwd = BAD) => run(args, { cwd, env: ENV });

/** A user mistake: exit 2, a first line as given, no "internal error", no stack frame. */
function assertRefused(r: Run, firstLine: string, what: string): void {
  assert.equal(r.signal, null, `${what}: killed by ${r.signal} (hang?)`);
  assert.equal(r.code, 2, `${what}: exit ${r.code}\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error/, `${what}: ${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^ {4}at /m, `${what}: a stack trace leaked:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /\(node:\d+\)|Warning:/, `${what}: a Node warning leaked:\n${r.stderr}`);
  assert.equal(r.stderr.split('\n')[0], firstLine, `${what}: first line`);
  assert.equal(r.stdout, '', `${what}: nothing on stdout`);
}

/** Each corpus file and the exact first line `regtrain validate FILE` must print. */
const CORPUS: Record<string, string> = {
  // YAML syntax
  'yaml-unclosed-flow.yaml':
    '! invalid YAML: Flow map in block collection must be sufficiently indented and end with a } (yaml-unclosed-flow.yaml:6:1)',
  'yaml-bad-indent.yaml':
    '! invalid YAML: A block sequence may not be used as an implicit map key (yaml-bad-indent.yaml:5:1)',
  'yaml-tab-indent.yaml': '! invalid YAML: Tabs are not allowed as indentation (yaml-tab-indent.yaml:3:1)',
  'yaml-unterminated-string.yaml': '! invalid YAML: Missing closing "quote (yaml-unterminated-string.yaml:4:1)',
  'yaml-multiple-documents.yaml':
    '! invalid YAML: Source contains multiple documents; please use YAML.parseAllDocuments() (yaml-multiple-documents.yaml:2:1)',
  'yaml-undefined-alias.yaml':
    '! invalid YAML: Unresolved alias (the anchor must be set before the alias): nowhere (yaml-undefined-alias.yaml:2:7)',
  // wrong types
  'type-units-string.yaml':
    '! model.layers.1.dense.units: expected a positive integer, got "ten" (type-units-string.yaml:5:23)',
  'type-epochs-list.yaml': '! training.epochs: expected a positive integer, got a list (type-epochs-list.yaml:7:11)',
  'type-layers-map.yaml': '! model.layers: expected a list of layers, got a map (type-layers-map.yaml:4:5)',
  'type-model-missing.yaml': '! model: expected a map with a list of layers, got nothing (type-model-missing.yaml:1:1)',
  'type-top-level-list.yaml':
    '! expected a map of settings at the top level, got a list (type-top-level-list.yaml:1:1)',
  'type-top-level-scalar.yaml':
    '! expected a map of settings at the top level, got "just a sentence" (type-top-level-scalar.yaml:1:1)',
  'type-boolean-string.yaml':
    '! model.layers.1.dense.useBias: expected true or false, got "yes" (type-boolean-string.yaml:5:57)',
  'type-custom-tag.yaml':
    '! seed: the YAML tag !!js/function is not supported: write a plain value, map or list (type-custom-tag.yaml:2:21)',
  // unknown keys
  'unknown-top-level-key.yaml': "! optimiser: unknown key (did you mean 'optimizer'?) (unknown-top-level-key.yaml:2:1)",
  'unknown-nested-key.yaml':
    "! model.layers.1.dense.kernel_regularizer: unknown key (did you mean 'kernelRegularizer'?) (unknown-nested-key.yaml:5:48)",
  'unknown-layer-type.yaml':
    "! model.layers.1.conv3d: unknown layer type (did you mean 'conv2d'?) (unknown-layer-type.yaml:5:7)",
  // negative / zero / NaN / infinite / huge numbers
  'number-negative-units.yaml':
    '! model.layers.1.dense.units: expected a positive integer, got -64 (number-negative-units.yaml:5:23)',
  'number-zero-batch.yaml': '! training.batchSize: expected a positive integer, got 0 (number-zero-batch.yaml:7:14)',
  'number-fractional-epochs.yaml':
    '! training.epochs: expected an integer, got 2.5 (number-fractional-epochs.yaml:7:11)',
  'number-nan-l2.yaml':
    '! model.layers.1.dense.kernelRegularizer.l2: expected a finite number ≥ 0, got NaN (number-nan-l2.yaml:5:73)',
  'number-inf-learning-rate.yaml':
    '! optimizer.sgd.learningRate: expected a positive number, got Infinity (number-inf-learning-rate.yaml:7:24)',
  'number-overflow-seed.yaml':
    '! seed: expected an integer from 0 to 4294967295, got Infinity (number-overflow-seed.yaml:2:7)',
  'number-huge-units.yaml':
    '! model.layers.1.dense.units: expected at most 65536, got 1000000000 (number-huge-units.yaml:5:23)',
  'number-parameter-budget.yaml':
    '! model.layers: the model has 4347133962 parameters, more than the limit of 50000000 (number-parameter-budget.yaml:4:5)',
  'number-dropout-rate-one.yaml':
    '! model.layers.1.dropout.rate: expected a rate in [0, 1), got 1 (number-dropout-rate-one.yaml:5:24)',
  'number-validation-too-large.yaml':
    '! data.validation.size: expected at most 60000, got 1000000000 (number-validation-too-large.yaml:3:23)',
  // empty, binary, directory
  'empty-file.yaml': '! the spec is empty (empty-file.yaml)',
  'empty-comment-only.yaml': '! the spec is empty (empty-comment-only.yaml)',
  'empty-null.yaml': '! the spec is empty (empty-null.yaml)',
  'binary-file.yaml': 'error: binary-file.yaml: not a YAML text file (it contains NUL bytes)',
  'a-directory.yaml': 'error: a-directory.yaml: is a directory, expected a YAML spec file',
  // spec versions
  'version-newer.yaml': '! version: expected 1 (this regtrain reads spec version 1), got 2 (version-newer.yaml:1:10)',
  'version-older.yaml': '! version: expected 1 (this regtrain reads spec version 1), got 0 (version-older.yaml:1:10)',
  // aliases, nesting, duplicates
  'alias-bomb.yaml':
    '! invalid YAML: Excessive alias count indicates a resource exhaustion attack (alias-bomb.yaml:2:8)',
  'alias-self-reference.yaml': '! model.layers: expected a list of layers, got a map (alias-self-reference.yaml:3:11)',
  // The 65th level (64 + 1), not a runtime's stack depth; the block one used to crash the YAML parser (exit 1, stack trace).
  'deeply-nested-flow.yaml': '! YAML nesting deeper than 64 levels (deeply-nested-flow.yaml:2:260)',
  'deeply-nested-block.yaml': '! YAML nesting deeper than 64 levels (deeply-nested-block.yaml:3:129)',
  'duplicate-top-level-key.yaml': '! invalid YAML: Map keys must be unique (duplicate-top-level-key.yaml:7:1)',
  'duplicate-flow-key.yaml': '! invalid YAML: Map keys must be unique (duplicate-flow-key.yaml:5:48)',
  // cross-field checks
  'name-path-traversal.yaml':
    '! name: expected 1–64 letters, digits, ".", "_" or "-", starting with a letter or digit, got "../../etc" (name-path-traversal.yaml:1:7)',
  'last-layer-not-softmax.yaml':
    "! model.layers.1.dense.activation: the last layer must use softmax (sparseCategoricalCrossentropy takes probabilities, as Keras's from_logits=False), got relu (last-layer-not-softmax.yaml:5:39)",
  'dense-before-flatten.yaml':
    '! model.layers.0.dense: a flatten layer must come before the first dense layer (inputs are 28×28 images) (dense-before-flatten.yaml:4:14)',
};

/** Runs jobs with at most `n` at once (child processes are the slow part). */
async function pool<T>(items: T[], n: number, job: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: n }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await job(item);
    }),
  );
}

describe('the bad-spec corpus (test/fixtures/bad-specs)', () => {
  /** `regtrain validate FILE` of each corpus file, run once (the tests below read the same processes). */
  const results = new Map<string, Run>();

  test('every file in the corpus has an expected first line, and every expected file exists', () => {
    assert.deepEqual(fs.readdirSync(BAD).sort(), Object.keys(CORPUS).sort());
  });

  test('each bad spec exits 2 with its one clear first line (path, problem, file:line:col) and no stack', async () => {
    await pool(Object.keys(CORPUS), 4, async (file) => {
      results.set(file, await regtrain(['validate', file]));
    });
    for (const [file, first] of Object.entries(CORPUS)) assertRefused(results.get(file)!, first, file);
  });

  test('units: 1e9 is refused by the schema: the process never allocates the 795e9-parameter model', async () => {
    const r = results.get('number-huge-units.yaml') ?? (await regtrain(['validate', 'number-huge-units.yaml']));
    assert.match(r.stderr, /the model has 795000000010 parameters, more than the limit/);
  });
});

describe('bad spec files that cannot be fixtures', () => {
  test('a missing file exits 2 naming it', async () => {
    assertRefused(
      await regtrain(['validate', 'no-such-spec.yaml']),
      'error: no-such-spec.yaml: no such file',
      'missing',
    );
  });

  test('/dev/zero (an endless device) is refused as not a regular file instead of being read forever', async () => {
    assertRefused(
      await regtrain(['validate', '/dev/zero']),
      'error: /dev/zero: a character device, not a regular file',
      '/dev/zero',
    );
  });

  test('a spec over 1 MiB is refused by its size', async () => {
    const big = path.join(TMP, 'big.yaml');
    fs.writeFileSync(big, `name: big\n# ${'x'.repeat(1024 * 1024)}\n`);
    assertRefused(
      await regtrain(['validate', big]),
      `error: ${big}: 1048589 bytes is more than the 1048576 this file may have`,
      'big',
    );
  });

  test('a symlink loop is refused in one line', async () => {
    const a = path.join(TMP, 'loop-a.yaml');
    const b = path.join(TMP, 'loop-b.yaml');
    fs.symlinkSync(b, a);
    fs.symlinkSync(a, b);
    // The expected line is written out: comparing the first line with itself could never fail.
    assertRefused(await regtrain(['validate', a]), `error: ${a}: a loop of symbolic links`, 'loop');
  });
});

describe('bad --set flags', () => {
  const spec = path.join(ROOT, 'configs', 'quick.yaml');

  test('a list index far past the end is refused instead of building a huge sparse list (out of memory)', async () => {
    assertRefused(
      await regtrain(['validate', spec, '--set', 'model.layers.99999999.dense.units=3']),
      'error: --set model.layers.99999999.dense.units=3: model.layers has 5 items; index 99999999 is past the end',
      'sparse index',
    );
  });

  test('__proto__, constructor and prototype segments are refused (no prototype pollution)', async () => {
    for (const key of ['__proto__.polluted', 'constructor.prototype.x', 'training.__proto__.x']) {
      const seg = key.split('.').find((s) => ['__proto__', 'constructor', 'prototype'].includes(s))!;
      assertRefused(
        await regtrain(['validate', spec, '--set', `${key}=1`]),
        `error: --set ${key}=1: '${seg}' is not a spec key`,
        key,
      );
    }
  });

  test('non-finite and huge --set values are refused at the flag', async () => {
    const cases: [string, string][] = [
      ['data.trainLimit=.nan', '! data.trainLimit: expected a positive integer, got NaN (--set data.trainLimit=.nan)'],
      [
        'training.epochs=1e400',
        '! training.epochs: expected a positive integer, got Infinity (--set training.epochs=1e400)',
      ],
      ['model=1', '! model: expected a map with a list of layers, got 1 (--set model=1)'],
    ];
    for (const [flag, first] of cases) assertRefused(await regtrain(['validate', spec, '--set', flag]), first, flag);
  });
});
