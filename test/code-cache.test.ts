import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QUICK, regtrainSync } from './helpers/cli';
import { scratchDir } from './helpers/scratch';

/**
 * bin/regtrain loads the CLI bundle with V8's compiled code cached under the temp directory (src/code-cache.ts):
 * each test gives the CLI a temp directory of its own (TMPDIR) and reads what happened from NODE_DEBUG's lines.
 */
const uid = process.getuid?.();
const noUid = uid === undefined ? 'no user ids here' : false;

function start(tmpdir: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = regtrainSync(args, {
    env: { ...process.env, TMPDIR: tmpdir, NODE_DEBUG: 'regtrain-code-cache', ...env },
  });
  const said = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('REGTRAIN-CODE-CACHE'))
    .map((l) => l.replace(/^REGTRAIN-CODE-CACHE \d+: /, '').replace(/ for \S+$| \d+ bytes to \S+$/, ''));
  return { status: r.status, stdout: r.stdout, said };
}

const cacheDir = (tmpdir: string) => path.join(tmpdir, `regtrain-code-cache-${uid}`);
const files = (tmpdir: string) => fs.readdirSync(cacheDir(tmpdir)).sort();

test(
  'the first start of a command writes its cache file, readable by its user alone, and the next start uses it',
  { skip: noUid },
  () => {
    const tmpdir = scratchDir('regtrain-code-cache-');
    assert.deepEqual(start(tmpdir, ['validate', QUICK]).said, ['miss', 'wrote']);
    // The command's name, then a hash of the bundle's path, V8's version and the architecture.
    assert.match(files(tmpdir).join(' '), /^validate-[0-9a-f]{8}\.v8cache$/);
    assert.equal(fs.statSync(cacheDir(tmpdir)).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(cacheDir(tmpdir), files(tmpdir)[0]!)).mode & 0o777, 0o600);
    const second = start(tmpdir, ['validate', QUICK]);
    assert.equal(second.status, 0);
    assert.deepEqual(second.said, ['hit']);
    // Another command compiles other functions: a file of its own.
    assert.deepEqual(start(tmpdir, ['--version']).said, ['miss', 'wrote']);
    assert.equal(files(tmpdir).length, 2);
  },
);

test(
  'a cache file whose bytes changed after it was written is not given to V8, and is written again',
  { skip: noUid },
  () => {
    const tmpdir = scratchDir('regtrain-code-cache-');
    start(tmpdir, ['validate', QUICK]);
    const file = path.join(cacheDir(tmpdir), files(tmpdir)[0]!);
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 100] ^= 0xff; // one flipped byte in V8's data: the header's CRC-32 no longer matches
    fs.writeFileSync(file, bytes);
    const r = start(tmpdir, ['validate', QUICK]);
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^repeats: 1$/m);
    assert.deepEqual(r.said, ['miss', 'wrote']);
    assert.deepEqual(start(tmpdir, ['validate', QUICK]).said, ['hit']);
  },
);

test('a cache file written for another build of the bundle (another key) is not used', { skip: noUid }, () => {
  const tmpdir = scratchDir('regtrain-code-cache-');
  start(tmpdir, ['validate', QUICK]);
  const file = path.join(cacheDir(tmpdir), files(tmpdir)[0]!);
  // The key's first field is the bundle's path: the same data under another path's key.
  const bytes = fs.readFileSync(file);
  fs.writeFileSync(file, Buffer.concat([Buffer.from('/elsewhere'), bytes]));
  assert.deepEqual(start(tmpdir, ['validate', QUICK]).said, ['miss', 'wrote']);
});

test('a cache directory that other users can write to is not used', { skip: noUid }, () => {
  const tmpdir = scratchDir('regtrain-code-cache-');
  fs.mkdirSync(cacheDir(tmpdir), { mode: 0o777 });
  fs.chmodSync(cacheDir(tmpdir), 0o777); // past the umask
  const r = start(tmpdir, ['validate', QUICK]);
  assert.equal(r.status, 0);
  assert.deepEqual(r.said, ['not used: ' + cacheDir(tmpdir) + ' is not a directory of this user alone']);
  assert.deepEqual(files(tmpdir), []);
});

test('REGTRAIN_CODE_CACHE=off loads the bundle without a cache', () => {
  const tmpdir = scratchDir('regtrain-code-cache-');
  const r = start(tmpdir, ['validate', QUICK], { REGTRAIN_CODE_CACHE: 'off' });
  assert.equal(r.status, 0);
  assert.deepEqual(r.said, []);
  assert.equal(fs.existsSync(cacheDir(tmpdir)), false);
});
