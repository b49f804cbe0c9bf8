/**
 * `regtrain validate` as a process: exit codes, the resolved spec on stdout, one line per error on stderr.
 * The spec's errors themselves are tested in process in spec.unit.test.ts.
 * Fixture specs live in test/fixtures/specs/<scenario>.yaml (the source tree: tsc does not copy YAML).
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { loadSpec, parseSetFlag, type ExperimentSpec } from '../src/spec';
import { regtrain as run } from './helpers/cli';

const ROOT = path.resolve(__dirname, '../..');
const SPECS = path.join(ROOT, 'test', 'fixtures', 'specs');
const CONFIGS = path.join(ROOT, 'configs');
const fixture = (name: string) => path.join(SPECS, `${name}.yaml`);

const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-spec-test-'));
after(() => fs.rmSync(TMP, { recursive: true, force: true }));

const ENV = { ...process.env, XDG_CACHE_HOME: path.join(TMP, 'xdg'), REGTRAIN_DATA_DIR: path.join(TMP, 'data') };
const regtrain = (args: string[]) => run(args, { cwd: TMP, env: ENV, timeoutMs: 60_000 });

const noStackTrace = (s: string) => assert.doesNotMatch(s, /^\s+at .+[(:]\d+/m, `a stack trace leaked:\n${s}`);

describe('regtrain validate (CLI)', () => {
  test('exit 0 prints the resolved spec with defaults filled in, as YAML', async () => {
    const r = await regtrain(['validate', fixture('minimal')]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    const printed = YAML.parse(r.stdout) as ExperimentSpec;
    assert.deepEqual(printed, loadSpec(fixture('minimal')).spec);
    // Defaults a reader looks for are stated explicitly.
    for (const line of [
      'version: 1',
      'name: minimal',
      'seed: 1234',
      'backend: auto',
      '  epochs: 1',
      '  batchSize: 32',
      '  shuffle: true',
      '    learningRate: 0.01',
      '    size: 5000',
      '        kernelInitializer: glorotUniform',
    ]) {
      assert.ok(r.stdout.split('\n').includes(line), `missing line ${JSON.stringify(line)} in:\n${r.stdout}`);
    }
  });

  test('--json prints the same resolved spec as one JSON object', async () => {
    const r = await regtrain(['validate', path.join(CONFIGS, 'quick.yaml'), '--json', '--set', 'training.epochs=3']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      JSON.parse(r.stdout),
      loadSpec(path.join(CONFIGS, 'quick.yaml'), [parseSetFlag('training.epochs=3')]).spec,
    );
  });

  test('exit 2 lists every error, one line per error, on stderr, with no stack trace', async () => {
    const r = await regtrain(['validate', fixture('several-errors')]);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      [
        '! model.layers.1.dense.units: expected a positive integer, got 0 (several-errors.yaml:5:23)',
        '! model.layers.1.dense.activation: expected one of linear, relu, relu6, elu, selu, sigmoid, hardSigmoid, tanh, softmax, softplus, softsign, swish, mish, gelu, got "rleu" (several-errors.yaml:5:38)',
        '! training.epochs: expected a positive integer, got -1 (several-errors.yaml:8:11)',
      ].join('\n') + '\n',
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
});
