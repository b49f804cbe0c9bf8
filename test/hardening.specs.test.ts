/**
 * Bad specs through the real CLI process (`regtrain validate`): one or two cases per kind of mistake
 * from test/fixtures/bad-specs/ prove that the real error boundary prints the same first line as the
 * in-process checks of the whole corpus (test/hardening.specs.unit.test.ts), exits 2, writes nothing
 * on stdout, and leaks no stack trace and no Node warning.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { regtrain as run, type CliResult as Run } from './helpers/cli';
import { BAD_SPECS, BAD_SPEC_FIRST_LINES as CORPUS } from './helpers/bad-specs';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '../..');
const TMP = scratchDir('regtrain-hardening-specs-');

/** `regtrain ARGS` with cwd = the corpus, so messages name files as the user typed them. */
const ENV = { ...process.env, XDG_CACHE_HOME: path.join(TMP, 'xdg'), REGTRAIN_DATA_DIR: path.join(TMP, 'data') };
const regtrain = (args: string[], cwd = BAD_SPECS) => run(args, { cwd, env: ENV });

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

describe('the bad-spec corpus through a real process', () => {
  for (const [kind, file] of [
    ['YAML syntax', 'yaml-unclosed-flow.yaml'],
    ['a wrong type', 'type-units-string.yaml'],
    ['an unknown key', 'unknown-top-level-key.yaml'],
    ['a file that is not YAML text', 'binary-file.yaml'],
    // Nesting a runtime's stack could not take once crashed the parser (exit 1, a stack trace): a real stack here.
    ['nesting past the limit', 'deeply-nested-block.yaml'],
  ] as const)
    test(`${kind} (${file}) exits 2 with the same first line as in process, nothing on stdout, no stack, no warning`, async () => {
      assertRefused(await regtrain(['validate', file]), CORPUS[file]!, file);
    });

  test('a --set index far past the end is refused in one line instead of building a huge sparse list (out of memory)', async () => {
    assertRefused(
      await regtrain([
        'validate',
        path.join(ROOT, 'configs', 'quick.yaml'),
        '--set',
        'model.layers.99999999.dense.units=3',
      ]),
      'error: --set model.layers.99999999.dense.units=3: model.layers has 5 items; index 99999999 is past the end',
      'sparse index',
    );
  });
});
