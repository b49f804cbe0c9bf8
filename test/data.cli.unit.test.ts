/**
 * `regtrain data` refusals and help through the real program in process (test/helpers/in-process.ts):
 * exit codes and exact messages. data.cli.test.ts keeps what needs a process or a real download: a refusal
 * through the real boundary, a verify that prints its table before failing, a mirror that has nothing, and
 * fetching the real dataset.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { tmpDir } from './fixtures/data/tiny';
import { pathWithoutRegtrain } from './helpers/path-without-regtrain';
import { regtrainInProcess } from './helpers/in-process';

const BIN = path.resolve(__dirname, '../..', 'bin', 'regtrain');

/**
 * `regtrain ...args` in process, with every cache default pointed at a temp dir, and started as `node bin/regtrain`
 * would be: no regtrain on PATH and not under npx (the hints name it `node BIN`).
 */
function regtrain(args: string[]) {
  return regtrainInProcess(args, {
    env: {
      XDG_CACHE_HOME: tmpDir('regtrain-xdg-'),
      REGTRAIN_DATA_DIR: '',
      PATH: pathWithoutRegtrain(process.env.PATH ?? ''),
      npm_command: undefined,
    },
  });
}

test('verify on a cache dir that does not exist exits 2 and says to fetch', async () => {
  const dir = path.join(tmpDir(), 'nothing-here');
  const r = await regtrain(['data', 'verify', '--data-dir', dir]);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(
    r.stderr,
    `error: data dir ${dir} does not exist; fill it with: node ${BIN} data fetch --data-dir ${dir}\n`,
  );
});

test('fetch with a source that is neither a URL nor a directory exits 2', async () => {
  const r = await regtrain(['data', 'fetch', '--data-dir', tmpDir(), '--source', '/no/such/dir']);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, 'error: source /no/such/dir: not an http(s) URL or an existing directory\n');
});

test('an unknown option to a data subcommand is a usage error (exit 2)', async () => {
  const r = await regtrain(['data', 'fetch', '--bogus']);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, "error: unknown option '--bogus'\n");
});

test('data verify --help and data info --help document their exit statuses', async () => {
  for (const sub of ['verify', 'info']) {
    const r = await regtrain(['data', sub, '--help']);
    assert.equal(r.code, 0);
    assert.match(
      r.stdout,
      /\n  1    a cached file fails its sha256 check \(fetch again\)\n  2    the cache directory or a file is missing \(fetch first\)\n/,
      sub,
    );
  }
});
