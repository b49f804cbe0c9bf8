/**
 * `regtrain validate` as a process: exit 0 with the resolved spec on stdout, exit 2 with one line per error on
 * stderr. The rest of validate's outcomes and the spec's errors themselves are tested in process in spec.unit.test.ts.
 * Fixture specs live in test/fixtures/specs/<scenario>.yaml (the source tree: tsc does not copy YAML).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { loadSpec, type ExperimentSpec } from '../src/spec';
import { regtrain as run } from './helpers/cli';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '../..');
const SPECS = path.join(ROOT, 'test', 'fixtures', 'specs');
const fixture = (name: string) => path.join(SPECS, `${name}.yaml`);

const TMP = scratchDir('regtrain-spec-test-');

const ENV = { ...process.env, XDG_CACHE_HOME: path.join(TMP, 'xdg'), REGTRAIN_DATA_DIR: path.join(TMP, 'data') };
const regtrain = (args: string[]) => run(args, { cwd: TMP, env: ENV, timeoutMs: 60_000 });

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
});
