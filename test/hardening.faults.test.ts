/**
 * Faults, injected for real: broken data files, broken and hostile run directories, a full or
 * read-only disk (tmpfs / read-only bind mounts when this process may mount, else skipped with a
 * reason), two writers on one --out, misbehaving mirrors (a real HTTP server on 127.0.0.1) and
 * SIGINT/SIGTERM during a download and during training. Each must end in one clear line with the
 * right exit code (1 runtime, 2 bad input, 130 interrupted) and leave consistent files behind.
 * Faults already covered by test/data.*.test.ts (404, wrong hash, truncated gzip, stall, HTML 200,
 * short body, concurrent fetches) are not repeated here.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fetchDataset, type FetchOptions, type Manifest } from '../src/data/fetch';
import { loadDataset, type DataOptions } from '../src/data/dataset';
import { encodeIdx } from '../src/data/idx';
import { FailureError, InputError } from '../src/errors';
import { sha256 } from '../src/fsutil';
import {
  gzBodies,
  listDir,
  serve,
  tinyFiles,
  tinyManifest,
  tmpDir,
  writeTiny,
  PIXELS,
  SIDE,
  TRAIN_LABELS,
} from './fixtures/data/tiny';
import { runSeeds } from '../src/rng';
import { BIN, launch, type CliResult, type Running } from './helpers/cli';
import { seededDataDir } from './helpers/data';
import { scratchDir } from './helpers/scratch';
import { ONE_EPOCH_SLICE, writeOneLayerSpec } from './helpers/one-layer-spec';
import { copyOfRun } from './helpers/run-files';

const TMP = scratchDir('regtrain-hardening-faults-');
fs.chmodSync(TMP, 0o755); // an unprivileged child (uid 65534) must be able to walk in
const mounts: string[] = [];
after(() => {
  for (const m of mounts.reverse()) spawnSyncQuiet('umount', ['-l', m]);
  fs.rmSync(TMP, { recursive: true, force: true });
});

/** The tiny training settings every run here uses (a couple of seconds at most). */
const SPEC = writeOneLayerSpec(TMP);
/** A data cache shared by the runs that are not about data (a verified, stamped copy: no run fetches or re-hashes it). */
const DATA = seededDataDir(path.join(TMP, 'data'));

function spawnSyncQuiet(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

type Run = CliResult;

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, XDG_CACHE_HOME: path.join(TMP, 'xdg'), REGTRAIN_DATA_DIR: DATA, ...extra };
}

function regtrain(args: string[], opts: { uid?: number } = {}): Promise<Run> {
  return launch(args, { cwd: TMP, env: env(), timeoutMs: 60_000, uid: opts.uid }).done;
}

/** The first stderr line that is not progress chatter ("Backend: …", "SIGTERM: finishing…"). */
function errorLine(r: Run): string {
  return (
    r.stderr.split('\n').find((l) => l.startsWith('error: ') || l.startsWith('! ') || l.startsWith('interrupted')) ??
    `(no error line in: ${r.stderr})`
  );
}

function assertClean(r: Run, code: number, what: string): void {
  assert.equal(r.signal, null, `${what}: killed by ${r.signal}`);
  assert.equal(r.code, code, `${what}: exit ${r.code}, expected ${code}\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /internal error/, `${what}:\n${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^ {4}at /m, `${what}: stack trace leaked:\n${r.stderr}`);
}

/** Whether this process may mount a tmpfs (root in a privileged container); else the disk tests skip. */
function canMount(): string | false {
  const probe = path.join(TMP, 'mount-probe');
  fs.mkdirSync(probe);
  if (!spawnSyncQuiet('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe]))
    return 'cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)';
  spawnSyncQuiet('umount', [probe]);
  return false;
}
const NO_MOUNT = canMount();
if (NO_MOUNT) process.stdout.write(`# skipping disk-full / read-only tests: ${NO_MOUNT}\n`);

function tmpfs(name: string, size: string, readOnly = false): string {
  const dir = path.join(TMP, name);
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}${readOnly ? ',ro' : ''}`, 'tmpfs', dir]);
  mounts.push(dir);
  return dir;
}

// --------------------------------------------------------------------------------------
// Data files: a manifest whose hashes match broken content, so only the parser can object.

/** A manifest and source dir serving `files` (tiny ones by default, with `changes` applied). */
function brokenData(changes: Record<string, Buffer>): { manifest: Manifest; source: string } {
  const files = { ...tinyFiles(), ...changes };
  const source = tmpDir('regtrain-broken-src-');
  for (const [name, data] of Object.entries(files)) fs.writeFileSync(path.join(source, name), data);
  const manifest = tinyManifest();
  manifest.files = manifest.files.map((f) => ({ ...f, bytes: files[f.file]!.length, sha256: sha256(files[f.file]!) }));
  return { manifest, source };
}

function loadOpts(manifest: Manifest, source: string): DataOptions {
  return {
    manifest,
    dataDir: tmpDir(),
    sources: [source],
    offline: true,
    normalize: 'scale01',
    validation: { size: 0, holdout: true, shuffle: false, stratify: false },
    trainLimit: null,
    testLimit: null,
    splitSeed: runSeeds(1).split,
  };
}

async function rejectsInput(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof InputError, `expected InputError, got ${String(err)}`);
    assert.match(err.message, re);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  });
}

describe('data faults', () => {
  const images = (n: number) => encodeIdx([n, SIDE, SIDE], new Uint8Array(n * PIXELS));

  test("an images file with a label file's magic number is refused naming the file and both magics", async () => {
    const { manifest, source } = brokenData({
      'train-images-idx3-ubyte': encodeIdx(
        [TRAIN_LABELS.length * PIXELS],
        new Uint8Array(TRAIN_LABELS.length * PIXELS),
      ),
    });
    await rejectsInput(
      loadDataset(loadOpts(manifest, source)),
      /train-images-idx3-ubyte: bad IDX magic 0x00000801, expected 0x00000803$/,
    );
  });

  test('a truncated images file is refused with the byte counts', async () => {
    const full = images(TRAIN_LABELS.length);
    const { manifest, source } = brokenData({ 'train-images-idx3-ubyte': full.subarray(0, full.length - 100) });
    await rejectsInput(
      loadDataset(loadOpts(manifest, source)),
      /train-images-idx3-ubyte: truncated: header \[20, 28, 28\] needs 15680 data bytes, file has 15580$/,
    );
  });

  test('a label value ≥ the number of classes is refused with its index', async () => {
    const labels = Uint8Array.from(TRAIN_LABELS);
    labels[7] = 10;
    const { manifest, source } = brokenData({ 'train-labels-idx1-ubyte': encodeIdx([labels.length], labels) });
    await rejectsInput(
      loadDataset(loadOpts(manifest, source)),
      /train-labels-idx1-ubyte: label 10 at index 7 is not one of the 3 classes$/,
    );
  });

  test('an image count that differs from the label count is refused naming both files', async () => {
    const { manifest, source } = brokenData({ 't10k-images-idx3-ubyte': images(4) });
    await rejectsInput(
      loadDataset(loadOpts(manifest, source)),
      /t10k-labels-idx1-ubyte: 5 labels for 4 images in .*t10k-images-idx3-ubyte$/,
    );
  });

  test('a cache file replaced right after verification cannot reach training: the verified bytes are used, and the next load re-verifies', async () => {
    const source = writeTiny(tmpDir(), true);
    const dataDir = tmpDir();
    const manifest = tinyManifest();
    const first = await fetchDataset({ manifest, dataDir, sources: [source] });
    const cached = path.join(dataDir, 'train-labels-idx1-ubyte');
    // Swapped for a well-formed but different file (label 10 everywhere) after verification.
    fs.writeFileSync(cached, encodeIdx([TRAIN_LABELS.length], new Uint8Array(TRAIN_LABELS.length).fill(2)));
    const used = first.files.find((f) => f.name === 'trainLabels')!;
    assert.equal(
      sha256(used.data.bytes()),
      manifest.files[1]!.sha256,
      'the returned bytes are the verified ones, not re-read from disk',
    );
    // Without a source the swap is reported; with one it is replaced.
    await assert.rejects(
      fetchDataset({ manifest, dataDir, sources: [tmpDir()], offline: true }),
      (err: unknown) => err instanceof FailureError && /changed since verified; re-fetching/.test(err.message),
    );
    const ds = await loadDataset({ ...loadOpts(manifest, source), dataDir });
    assert.deepEqual([...ds.train.labels], TRAIN_LABELS);
  });

  test('a directory where a cached file belongs: data fetch exits 2 in one line (was an internal error)', async () => {
    const dataDir = path.join(TMP, 'cache-with-dir');
    fs.mkdirSync(path.join(dataDir, 'train-images-idx3-ubyte'), { recursive: true });
    for (const sub of ['fetch', 'verify', 'info']) {
      const r = await regtrain(['data', sub, '--data-dir', dataDir, ...(sub === 'fetch' ? ['--offline'] : [])]);
      assertClean(r, 2, `data ${sub}`);
      assert.equal(
        errorLine(r),
        `error: data dir ${dataDir}: cannot read train-images-idx3-ubyte (a directory, not a regular file); remove it or choose another --data-dir`,
      );
    }
  });

  test('an unreadable data dir (mode 000, as an unprivileged user) exits 2 in one line', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs root to run the child as uid 65534');
    const dataDir = path.join(TMP, 'cache-unreadable');
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, 'train-images-idx3-ubyte'), 'x');
    fs.chmodSync(dataDir, 0o000);
    const r = await regtrain(['data', 'verify', '--data-dir', dataDir], { uid: 65534 });
    fs.chmodSync(dataDir, 0o755);
    assertClean(r, 2, 'unreadable');
    assert.equal(
      errorLine(r),
      `error: data dir ${dataDir}: cannot read train-images-idx3-ubyte (EACCES); remove it or choose another --data-dir`,
    );
  });

  test('a full cache disk (8 KiB tmpfs): exit 1 in one line, no partial file', { skip: NO_MOUNT }, async () => {
    const dataDir = tmpfs('cache-full', '8k');
    await assert.rejects(
      fetchDataset({ manifest: tinyManifest(), dataDir, sources: [writeTiny(tmpDir(), true)] }),
      (err: unknown) =>
        err instanceof FailureError &&
        err.message ===
          `data dir ${dataDir}: cannot write train-images-idx3-ubyte (no space left on device); nothing partial is kept`,
    );
    assert.deepEqual(listDir(dataDir), []);
  });

  test(
    'a read-only cache (read-only tmpfs) fails at once instead of trying every mirror',
    { skip: NO_MOUNT },
    async () => {
      const dataDir = tmpfs('cache-ro', '1m', true);
      const server = await serve((_req, res) => res.writeHead(500).end());
      try {
        await assert.rejects(
          fetchDataset({
            manifest: tinyManifest(),
            dataDir,
            sources: [writeTiny(tmpDir(), true), server.url],
            timeoutMs: 300,
            retries: 0,
          }),
          (err: unknown) =>
            err instanceof FailureError &&
            /cannot write train-images-idx3-ubyte \(read-only file system\)/.test(err.message),
        );
        assert.equal(server.requests.length, 0, 'no mirror is asked once the cache cannot take the file');
      } finally {
        await server.close();
      }
    },
  );
});

// --------------------------------------------------------------------------------------
// Mirrors that misbehave at the HTTP level: each is rejected and the next source is tried.

const FAST: Partial<FetchOptions> = { timeoutMs: 500, retries: 1, backoffMs: 5 };

describe('network faults (a real HTTP server on 127.0.0.1)', () => {
  /** Serves /bad/* through `bad` and /good/* correctly. */
  async function mirrors(
    bad: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void,
  ) {
    const bodies = gzBodies();
    const server = await serve((req, res) => {
      if (req.url?.startsWith('/bad/')) return bad(req, res);
      const body = bodies.get(req.url!.replace(/^\/good/, ''));
      if (!body) res.writeHead(404).end();
      else res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    return { server, sources: [`${server.url}bad/`, `${server.url}good/`] };
  }

  async function fallsThrough(bad: Parameters<typeof mirrors>[0], note: RegExp): Promise<void> {
    const { server, sources } = await mirrors(bad);
    try {
      const dataDir = tmpDir();
      const result = await fetchDataset({ manifest: tinyManifest(), dataDir, sources, ...FAST });
      assert.ok(
        result.files.every((f) => f.source === sources[1]),
        'every file came from the good mirror',
      );
      assert.ok(
        listDir(dataDir).every((f) => !f.endsWith('.part') && !f.endsWith('.tmp')),
        listDir(dataDir).join(','),
      );
      assert.ok(server.requests.some((r) => r.startsWith('/bad/')));
      // And with the bad mirror alone, the reason is reported.
      await assert.rejects(
        fetchDataset({ manifest: tinyManifest(), dataDir: tmpDir(), sources: [sources[0]!], ...FAST }),
        (err: unknown) => err instanceof FailureError && note.test(err.message),
      );
    } finally {
      await server.close();
    }
  }

  test('a mirror that resets the connection mid-body is rejected and the next source is used', async () => {
    await fallsThrough((_req, res) => {
      // 10000: within the manifest's size (a larger Content-Length is refused before the body).
      res.writeHead(200, { 'content-length': 10000 });
      res.write(Buffer.alloc(500), () => res.socket?.resetAndDestroy());
    }, /\/bad\/train-images-idx3-ubyte\.gz: connection closed after 500 of 10000 bytes \(2 attempts\)\n {2}http:\/\/127\.0\.0\.1:\d+\/bad\/train-images-idx3-ubyte: connection closed after 500 of 10000 bytes \(2 attempts\)$/);
  });

  test('a mirror that resets the connection before answering is rejected and the next source is used', async () => {
    await fallsThrough(
      (req) => req.socket.resetAndDestroy(),
      /\/bad\/train-images-idx3-ubyte\.gz: connection closed before a response \(ECONNRESET\) \(2 attempts\)\n {2}http:\/\/127\.0\.0\.1:\d+\/bad\/train-images-idx3-ubyte: connection closed before a response \(ECONNRESET\) \(2 attempts\)$/,
    );
  });

  test('a Content-Length smaller than the body is rejected (the file fails its hash) and the next source is used', async () => {
    await fallsThrough((req, res) => {
      const body = gzBodies().get(req.url!.replace(/^\/bad/, ''));
      if (!body) return void res.writeHead(404).end();
      // A hand-written response: the header declares half the bytes that follow.
      req.socket.end(
        Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: ${Math.floor(body.length / 2)}\r\n\r\n`), body]),
      );
      // Node's HTTP parser refuses the surplus bytes; had it not, the short gzip would fail to decode.
    }, /train-images-idx3-ubyte\.gz: (Parse Error: .*|corrupt or truncated gzip.*) \(2 attempts\)|train-images-idx3-ubyte\.gz: corrupt or truncated gzip/);
  });

  test('a redirect loop is cut after 5 redirects and the next source is used', async () => {
    await fallsThrough(
      (req, res) => res.writeHead(302, { location: req.url }).end(),
      /train-images-idx3-ubyte\.gz: more than 5 redirects/,
    );
  });
});

// --------------------------------------------------------------------------------------
// Run directories handed to evaluate/compare.

describe('run directory faults (evaluate, compare)', () => {
  const GOOD = path.join(TMP, 'run-good');

  before(async () => {
    const r = await regtrain(['run', SPEC, '--out', GOOD, '--quiet', ...ONE_EPOCH_SLICE]);
    assertClean(r, 0, 'making the reference run');
  });

  /** A copy of the good run with `mutate` applied. */
  const broken = (name: string, mutate: (dir: string) => void) =>
    copyOfRun(GOOD, path.join(TMP, `run-${name}`), mutate);
  // Every case is checked in process (test/hardening.faults.unit.test.ts); two through the real boundary here.
  test('a broken run directory (short weights.bin, metrics.json null) is refused by evaluate with exit 2 and one line', async () => {
    const short = broken('short-weights', (d) => fs.truncateSync(path.join(d, 'weights.bin'), 1000));
    const nul = broken('metrics-null', (d) => fs.writeFileSync(path.join(d, 'metrics.json'), 'null'));
    const [a, b] = await Promise.all([short, nul].map((d) => regtrain(['evaluate', d, '--backend', 'cpu'])));
    assertClean(a!, 2, 'short-weights');
    assert.equal(errorLine(a!), `error: ${short}/weights.bin: 1000 bytes, but model.json describes 31400`);
    assertClean(b!, 2, 'metrics-null');
    assert.equal(errorLine(b!), `error: ${nul}/metrics.json: expected a JSON object, got null`);
  });

  test('the unmodified reference run evaluates (exit 0), so the refusals above are about the faults', async () => {
    const r = await regtrain(['evaluate', GOOD, '--backend', 'cpu', '--json']);
    assertClean(r, 0, 'good run');
    assert.equal((JSON.parse(r.stdout) as { count: number }).count, 200);
  });

  test('compare with only broken run directories exits 2 with warnings, no stack', async () => {
    const nul = broken('compare-null', (d) => fs.writeFileSync(path.join(d, 'metrics.json'), 'null'));
    const r = await regtrain(['compare', nul, path.join(TMP, 'no-such-run')]);
    assertClean(r, 2, 'compare');
    assert.match(r.stderr, /warning: skipped .*run-compare-null: metrics.json: expected a JSON object, got null/);
    assert.match(r.stderr, /error: no complete runs to compare/);
  });
});

// --------------------------------------------------------------------------------------
// Saving: disk full, read-only output, two writers.

describe('saving faults', () => {
  test(
    'disk full while saving the model (tmpfs --out): exit 1, one line, the files written before are intact',
    { skip: NO_MOUNT },
    async () => {
      // 16 KiB: spec.yaml and the history fit, the 31 KB weights.bin does not.
      const out = path.join(tmpfs('out-full', '16k'), 'run');
      const r = await regtrain(['run', SPEC, '--out', out, '--quiet', ...ONE_EPOCH_SLICE]);
      assertClean(r, 1, 'disk full');
      assert.match(
        errorLine(r),
        new RegExp(
          `^error: ${out}/[A-Za-z0-9._/-]+: cannot write \\(no space left on device\\); files written before are intact$`,
        ),
      );
      const left = listDir(out);
      assert.ok(left.includes('spec.yaml'), left.join(','));
      assert.ok(!left.some((f) => f.endsWith('.tmp')), `temp files left: ${left.join(',')}`);
      assert.ok(!left.includes('.regtrain.lock'), 'the lock is released');
      assert.ok(
        !(left.includes('model.json') && !left.includes('weights.bin')),
        'never a model.json without its weights',
      );
      const v = await regtrain(['validate', path.join(out, 'spec.yaml')]);
      assertClean(v, 0, 'spec.yaml written before the fault still validates');
    },
  );

  test(
    'a read-only --out (read-only tmpfs) is bad input: exit 2, one line, nothing trained',
    { skip: NO_MOUNT },
    async () => {
      const out = path.join(tmpfs('out-ro', '1m', true), 'run');
      const r = await regtrain(['run', SPEC, '--out', out, '--quiet', ...ONE_EPOCH_SLICE]);
      assertClean(r, 2, 'read-only out');
      assert.equal(errorLine(r), `error: ${out}: cannot create the run directory (read-only file system)`);
    },
  );
});

// --------------------------------------------------------------------------------------
// Signals, with a mirror that dribbles bytes so a download is in progress when they arrive.

/** A mirror that sends 2 KB every 50 ms of a huge file, forever. */
async function slowMirror() {
  const timers = new Set<NodeJS.Timeout>();
  const server = await serve((_req, res) => {
    res.writeHead(200, { 'content-length': 30_000_000 });
    const t = setInterval(() => res.write(Buffer.alloc(2048, 7)), 50);
    timers.add(t);
    res.on('close', () => clearInterval(t));
  });
  return {
    server,
    close: async () => {
      for (const t of timers) clearInterval(t);
      await server.close();
    },
  };
}

function start(args: string[], extraEnv: Record<string, string> = {}): Running {
  return launch(args, { cwd: TMP, env: env(extraEnv), timeoutMs: 300_000 });
}

async function until(what: string, cond: () => boolean, ms = 30_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const partial = (dir: string) =>
  listDir(dir).filter((f) => f.endsWith('.part') || f.endsWith('.tmp') || /idx\d-ubyte$/.test(f));

describe('signals', () => {
  test('SIGINT during `data fetch` from a slow mirror: exit 130, one line, no partial file in the fresh cache', async () => {
    const mirror = await slowMirror();
    try {
      const dataDir = path.join(TMP, 'fetch-sigint');
      const p = start(['data', 'fetch', '--source', mirror.server.url, '--data-dir', dataDir]);
      await until('a .part file', () => listDir(dataDir).some((f) => f.endsWith('.part')));
      p.child.kill('SIGINT');
      const r = await p.done;
      assertClean(r, 130, 'fetch SIGINT');
      assert.equal(errorLine(r), 'interrupted (SIGINT): download of trainImages stopped; no partial file is kept');
      assert.deepEqual(partial(dataDir), []);
    } finally {
      await mirror.close();
    }
  });

  test("two `regtrain run` into one --out: the second refuses (exit 2); SIGTERM during the first one's download: exit 130, no run directory left, no partial data, lock released", async () => {
    const mirror = await slowMirror();
    try {
      const out = path.join(TMP, 'run-shared-out');
      const dataDir = path.join(TMP, 'run-sigterm-data');
      const first = start([
        'run',
        SPEC,
        '--out',
        out,
        '--source',
        mirror.server.url,
        '--data-dir',
        dataDir,
        ...ONE_EPOCH_SLICE,
      ]);
      await until('the first run downloading', () => listDir(dataDir).some((f) => f.endsWith('.part')));
      const second = await regtrain(['run', SPEC, '--out', out, '--quiet', ...ONE_EPOCH_SLICE]);
      assertClean(second, 2, 'second writer');
      assert.equal(errorLine(second), `error: --out ${out}: another regtrain run is writing to it`);

      first.child.kill('SIGTERM');
      const r = await first.done;
      assertClean(r, 130, 'run SIGTERM during download');
      assert.match(errorLine(r), /^interrupted \(SIGTERM\): download of trainImages stopped; no partial file is kept$/);
      assert.deepEqual(partial(dataDir), []);
      // It never trained: its run directory goes (compare would warn about the stub).
      assert.equal(fs.existsSync(out), false);
    } finally {
      await mirror.close();
    }
  });

  test('SIGTERM during training: exit 130, history and an incomplete-marked model saved, consistent, no lock or temp files', async () => {
    const out = path.join(TMP, 'run-sigterm-train');
    const p = start(['run', SPEC, '--out', out, '--json', ...ONE_EPOCH_SLICE, '--set', 'training.epochs=200']);
    await until('the first epoch', () => p.output().includes('"event":"epoch"'), 60_000);
    p.child.kill('SIGTERM');
    const r = await p.done;
    assertClean(r, 130, 'SIGTERM in training');
    assert.match(errorLine(r), /^interrupted \(SIGTERM\) after epoch \d+ of 200; /);
    const left = listDir(out);
    assert.ok(!left.some((f) => f.endsWith('.tmp') || f === '.regtrain.lock'), left.join(','));
    const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8')) as {
      status: string;
      stopReason: string;
      epochsRun: number;
    };
    assert.equal(metrics.status, 'incomplete');
    assert.equal(metrics.stopReason, 'interrupted');
    const history = JSON.parse(fs.readFileSync(path.join(out, 'history.json'), 'utf8')) as { epochs: unknown[] };
    assert.equal(history.epochs.length, metrics.epochsRun);
    assert.ok(metrics.epochsRun >= 1 && metrics.epochsRun < 200);
    // The saved model is loadable (byte counts match, finite), and evaluate refuses it as unfinished.
    const e = await regtrain(['evaluate', out, '--backend', 'cpu']);
    assertClean(e, 2, 'evaluate incomplete');
    assert.equal(
      errorLine(e),
      `error: ${out}: the run is incomplete (interrupted); evaluate needs a finished run; finish it first: node ${BIN} run --resume ${out} --backend cpu`,
    );
  });
});
