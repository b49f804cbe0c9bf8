import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { imagesOf, loadDataset } from '../src/data/dataset';
import { serve, tmpDir } from './fixtures/data/tiny';
import { runSeeds } from '../src/rng';
import { regtrain as cli, type CliResult } from './helpers/cli';

const DEBIAN_DIR = '/usr/share/datasets/fashion-mnist';
/** Fashion-MNIST's known pixel statistics of x/255 over the 60,000 training images. */
const KNOWN_TRAIN_MEAN = 0.286;
const KNOWN_TRAIN_STD = 0.353;

/** Runs `node bin/regtrain ...args` as a real child process, without blocking this event loop. */
function regtrain(args: string[]): Promise<CliResult> {
  // Point every cache default at a temp dir so no test touches the real ~/.cache.
  const env = { ...process.env, XDG_CACHE_HOME: tmpDir('regtrain-xdg-'), REGTRAIN_DATA_DIR: '' };
  return cli(args, { env, timeoutMs: 300_000 });
}

// The refusals that print nothing before failing, and the help texts, are checked in process in data.cli.unit.test.ts.

test('verify on an empty cache dir exits 2 listing the missing files', async () => {
  const r = await regtrain(['data', 'verify', '--data-dir', tmpDir()]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(
    r.stderr,
    /^error: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte missing from /,
  );
  assert.match(r.stdout, /^MISSING +trainImages/m);
});

test('verify --json reports a corrupted file as a mismatch and exits 1', async () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'train-labels-idx1-ubyte'), 'not the labels');
  const r = await regtrain(['data', 'verify', '--json', '--data-dir', dir]);
  assert.equal(r.code, 1, r.stderr);
  const out = JSON.parse(r.stdout) as {
    ok: boolean;
    dataDir: string;
    files: { name: string; state: string; verified: boolean }[];
  };
  assert.equal(out.ok, false);
  assert.equal(out.dataDir, dir);
  assert.deepEqual(
    out.files.map((f) => [f.name, f.state, f.verified]),
    [
      ['trainImages', 'missing', false],
      ['trainLabels', 'mismatch', false],
      ['testImages', 'missing', false],
      ['testLabels', 'missing', false],
    ],
  );
  assert.match(r.stderr, /train-labels-idx1-ubyte in .* fails sha256 verification/);
});

test('fetch from a mirror that has nothing exits 1 naming the file and the URLs tried', async () => {
  const server = await serve((_req, res) => void res.writeHead(404).end());
  try {
    const dir = tmpDir();
    const r = await regtrain(['data', 'fetch', '--data-dir', dir, '--source', server.url, '--timeout', '2']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stderr,
      /^error: no verified copy of train-images-idx3-ubyte \(trainImages; expected sha256 c59f468a/,
    );
    assert.ok(
      r.stderr.includes(`error:   ${server.url}: not found (train-images-idx3-ubyte.gz, train-images-idx3-ubyte)`),
      r.stderr,
    );
    assert.equal(r.stdout, '');
  } finally {
    await server.close();
  }
});

const haveDebian = fs.existsSync(DEBIAN_DIR);
test(
  'end to end on the real dataset: two concurrent fetches, then info shows 60000/10000 verified and the known pixel statistics',
  { skip: haveDebian ? false : `${DEBIAN_DIR} not found (install Debian's dataset-fashion-mnist)`, timeout: 120_000 },
  async (t) => {
    const dir = tmpDir();
    t.after(() => fs.rmSync(dir, { recursive: true, force: true })); // 55 MB
    // Two processes fetching into one cache at once must both succeed and leave it intact.
    const fetches = await Promise.all(
      [0, 1].map(() => regtrain(['data', 'fetch', '--json', '--data-dir', dir, '--source', DEBIAN_DIR])),
    );
    for (const f of fetches) {
      assert.equal(f.code, 0, f.stderr);
      const out = JSON.parse(f.stdout) as { files: { verified: boolean; source: string }[] };
      assert.equal(out.files.length, 4);
      assert.ok(out.files.every((x) => x.verified && x.source === DEBIAN_DIR));
    }
    assert.deepEqual(fs.readdirSync(dir).sort(), [
      'sources.json',
      't10k-images-idx3-ubyte',
      't10k-labels-idx1-ubyte',
      'train-images-idx3-ubyte',
      'train-labels-idx1-ubyte',
    ]);

    const verify = await regtrain(['data', 'verify', '--data-dir', dir]);
    assert.equal(verify.code, 0, verify.stderr);

    const r = await regtrain(['data', 'info', '--json', '--data-dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    type SplitInfo = { count: number; shape: number[]; classCounts: Record<string, number>; mean: number; std: number };
    const info = JSON.parse(r.stdout) as {
      train: SplitInfo;
      test: SplitInfo;
      dataDir: string;
      files: { name: string; sha256: string; verified: boolean; source: string }[];
    };
    assert.equal(info.dataDir, dir);
    assert.equal(info.train.count, 60000);
    assert.equal(info.test.count, 10000);
    assert.deepEqual(info.train.shape, [28, 28]);
    assert.deepEqual(Object.values(info.train.classCounts), new Array(10).fill(6000));
    assert.equal(info.train.classCounts['Ankle boot'], 6000);
    assert.deepEqual(Object.values(info.test.classCounts), new Array(10).fill(1000));
    assert.ok(Math.abs(info.train.mean - KNOWN_TRAIN_MEAN) < 5e-4, String(info.train.mean));
    assert.ok(Math.abs(info.train.std - KNOWN_TRAIN_STD) < 5e-4, String(info.train.std));
    assert.equal(info.files.length, 4);
    assert.ok(info.files.every((f) => f.verified && f.source === DEBIAN_DIR && /^[0-9a-f]{64}$/.test(f.sha256)));

    const ds = await loadDataset({
      dataDir: dir,
      offline: true,
      normalize: 'scale01',
      validation: { size: 0, holdout: true, shuffle: false, stratify: false },
      trainLimit: null,
      testLimit: null,
      splitSeed: runSeeds(1).split,
    });
    let sum = 0;
    let sq = 0;
    const images = imagesOf(ds.train);
    for (const v of images) {
      sum += v;
      sq += v * v;
    }
    const n = images.length;
    const mean = sum / n;
    const std = Math.sqrt(sq / n - mean * mean);
    assert.ok(Math.abs(mean - KNOWN_TRAIN_MEAN) < 5e-4, `train mean ${mean}`);
    assert.ok(Math.abs(std - KNOWN_TRAIN_STD) < 5e-4, `train std ${std}`);
  },
);
