import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  fetchDataset,
  loadManifest,
  readSidecar,
  resolveDataDir,
  verifyCache,
  SIDECAR_FILE,
  STAMP_FILE,
  type FetchOptions,
  type FetchProgress,
} from '../src/data/fetch';
import { FailureError, InputError } from '../src/errors';
import { sha256 } from '../src/fsutil';
import { gzBodies, listDir, serve, tinyFiles, tinyManifest, tmpDir, writeTiny } from './fixtures/data/tiny';

const IDX_NAMES = Object.keys(tinyFiles()).sort();
/** Short timeouts and backoff so failure paths finish fast. */
const FAST: Partial<FetchOptions> = { timeoutMs: 300, retries: 1, backoffMs: 5 };

/** Serves the gzipped tiny files; other paths 404. */
function fileHandler(bodies = gzBodies()) {
  return (req: { url?: string }, res: import('node:http').ServerResponse): void => {
    const body = bodies.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
  };
}

async function rejectsFailure(p: Promise<unknown>, ...fragments: string[]): Promise<string> {
  let message = '';
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof FailureError, `expected FailureError, got ${String(err)}`);
    message = err.message;
    for (const f of fragments)
      assert.ok(err.message.includes(f), `message lacks ${JSON.stringify(f)}:\n${err.message}`);
    return true;
  });
  return message;
}

test('a fetch from a mirror stores verified, decompressed files and records their source', async () => {
  const server = await serve(fileHandler());
  try {
    const dataDir = tmpDir();
    const events: FetchProgress[] = [];
    const result = await fetchDataset({
      manifest: tinyManifest(),
      dataDir,
      sources: [server.url],
      onProgress: (e) => events.push(e),
      ...FAST,
    });
    assert.equal(result.files.length, 4);
    for (const f of result.files) {
      assert.equal(f.source, server.url);
      assert.equal(f.fromCache, false);
      assert.equal(sha256(fs.readFileSync(f.path)), f.sha256);
    }
    assert.deepEqual(listDir(dataDir), [...IDX_NAMES, SIDECAR_FILE].sort());
    assert.equal(readSidecar(dataDir)?.files.trainImages?.source, server.url);
    const last = events.filter((e) => e.name === 'trainImages').at(-1);
    assert.ok(last?.done && last.bytes === last.total && last.rate > 0);

    // A second fetch uses the cache (re-verified) without touching the network.
    const before = server.requests.length;
    const again = await fetchDataset({ manifest: tinyManifest(), dataDir, sources: [server.url], ...FAST });
    assert.ok(again.files.every((f) => f.fromCache && f.source === server.url));
    assert.equal(server.requests.length, before);
  } finally {
    await server.close();
  }
});

test('a 404 on the first mirror falls through to the second', async () => {
  const bodies = gzBodies();
  const server = await serve((req, res) => {
    const body = req.url?.startsWith('/second/') ? bodies.get(req.url.slice('/second'.length)) : undefined;
    if (!body) res.writeHead(404).end();
    else res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  try {
    const dataDir = tmpDir();
    const result = await fetchDataset({
      manifest: tinyManifest(),
      dataDir,
      sources: [`${server.url}first/`, `${server.url}second/`],
      ...FAST,
    });
    assert.ok(result.files.every((f) => f.source === `${server.url}second/`));
    assert.ok(server.requests.includes('/first/train-images-idx3-ubyte.gz'));
  } finally {
    await server.close();
  }
});

test('a file with the wrong hash is rejected, named with both hashes and its URL, and nothing is left in the cache', async () => {
  const files = tinyFiles();
  const bad = Buffer.from(files['train-labels-idx1-ubyte']!);
  bad[bad.length - 1] ^= 1;
  const server = await serve(fileHandler(gzBodies({ ...files, 'train-labels-idx1-ubyte': bad })));
  try {
    const dataDir = tmpDir();
    const expected = tinyManifest().files.find((f) => f.name === 'trainLabels')!.sha256;
    await rejectsFailure(
      fetchDataset({ manifest: tinyManifest(), dataDir, sources: [server.url], ...FAST }),
      'no verified copy of train-labels-idx1-ubyte',
      `expected sha256 ${expected}`,
      `${server.url}train-labels-idx1-ubyte.gz: sha256 mismatch: got ${sha256(bad)}`,
    );
    assert.ok(!listDir(dataDir).includes('train-labels-idx1-ubyte'));
    assert.ok(
      listDir(dataDir).every((f) => !f.endsWith('.part') && !f.endsWith('.tmp')),
      listDir(dataDir).join(','),
    );
  } finally {
    await server.close();
  }
});

test('a truncated gzip gives a clear error', async () => {
  const bodies = gzBodies();
  const gz = bodies.get('/train-images-idx3-ubyte.gz')!;
  bodies.set('/train-images-idx3-ubyte.gz', gz.subarray(0, gz.length - 20));
  const server = await serve(fileHandler(bodies));
  try {
    const dataDir = tmpDir();
    await rejectsFailure(
      fetchDataset({ manifest: tinyManifest(), dataDir, sources: [server.url], ...FAST }),
      `${server.url}train-images-idx3-ubyte.gz: corrupt or truncated gzip (unexpected end of file)`,
    );
    assert.ok(!listDir(dataDir).includes('train-images-idx3-ubyte'));
  } finally {
    await server.close();
  }
});

test('a server that stalls mid-body times out, is retried, then reported', async () => {
  const server = await serve((_req, res) => {
    res.writeHead(200, { 'content-length': 1000 });
    res.write(Buffer.alloc(10)); // then never another byte
  });
  try {
    const dataDir = tmpDir();
    const started = Date.now();
    await rejectsFailure(
      fetchDataset({
        manifest: tinyManifest(),
        dataDir,
        sources: [server.url],
        timeoutMs: 150,
        retries: 1,
        backoffMs: 5,
      }),
      `${server.url}train-images-idx3-ubyte.gz: stalled: no data for 0.15s (2 attempts)`,
    );
    assert.ok(Date.now() - started < 5000);
    assert.equal(server.requests.filter((r) => r === '/train-images-idx3-ubyte.gz').length, 2);
    assert.ok(
      listDir(dataDir).every((f) => !f.endsWith('.part')),
      listDir(dataDir).join(','),
    );
  } finally {
    await server.close();
  }
});

test('an HTML page answered with 200 is rejected as HTML, with or without its content type', async () => {
  const page = '<!DOCTYPE html><html><body>Sign in to continue</body></html>';
  const server = await serve((req, res) => {
    const headers = req.url?.startsWith('/typed/') ? { 'content-type': 'text/html; charset=utf-8' } : {};
    res.writeHead(200, headers).end(page);
  });
  try {
    const message = await rejectsFailure(
      fetchDataset({
        manifest: tinyManifest(),
        dataDir: tmpDir(),
        sources: [`${server.url}typed/`, `${server.url}untyped/`],
        ...FAST,
      }),
      `${server.url}typed/train-images-idx3-ubyte.gz: got an HTML page (Content-Type: text/html; charset=utf-8), not a data file`,
      `${server.url}untyped/train-images-idx3-ubyte.gz: sha256 mismatch: got ${sha256(Buffer.from(page))}, looks like an HTML page`,
    );
    assert.ok(!message.includes('\n\n'));
  } finally {
    await server.close();
  }
});

test('a body shorter than its Content-Length is retried and reported', async () => {
  const server = await serve((_req, res) => {
    res.writeHead(200, { 'content-length': 5000 });
    res.write(Buffer.alloc(100), () => res.socket?.destroy()); // then the server hangs up
  });
  try {
    await rejectsFailure(
      fetchDataset({ manifest: tinyManifest(), dataDir: tmpDir(), sources: [server.url], ...FAST }),
      `${server.url}train-images-idx3-ubyte.gz: connection closed after 100 of 5000 bytes (2 attempts)`,
    );
  } finally {
    await server.close();
  }
});

test('a 500 is retried with backoff and a redirect is followed', async () => {
  const bodies = gzBodies();
  let failures = 1;
  const server = await serve((req, res) => {
    if (req.url?.startsWith('/old/')) {
      res.writeHead(301, { location: `/${req.url.slice('/old/'.length)}` }).end();
      return;
    }
    if (failures-- > 0) {
      res.writeHead(500).end();
      return;
    }
    const body = bodies.get(req.url ?? '');
    if (!body) res.writeHead(404).end();
    else res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  try {
    const result = await fetchDataset({
      manifest: tinyManifest(),
      dataDir: tmpDir(),
      sources: [`${server.url}old/`],
      ...FAST,
    });
    assert.equal(result.files.length, 4);
    assert.equal(server.requests.filter((r) => r === '/train-images-idx3-ubyte.gz').length, 2);
  } finally {
    await server.close();
  }
});

test('an unreachable host is skipped for the remaining files after its first failure', async () => {
  const server = await serve(fileHandler());
  const dead = server.url;
  await server.close(); // nothing listens there now: ECONNREFUSED
  const local = writeTiny(tmpDir(), true);
  fs.rmSync(path.join(local, 't10k-labels-idx1-ubyte.gz'));
  const message = await rejectsFailure(
    fetchDataset({ manifest: tinyManifest(), dataDir: tmpDir(), sources: [dead, local], ...FAST }),
    'no verified copy of t10k-labels-idx1-ubyte',
    `${dead}: skipped (connect ECONNREFUSED`,
    `${local}: not found (t10k-labels-idx1-ubyte.gz, t10k-labels-idx1-ubyte)`,
  );
  assert.equal(message.split('\n').length, 3);
});

test('two concurrent fetches into one cache both succeed and leave it intact', async () => {
  const bodies = gzBodies();
  // Dribble each body in small delayed chunks so the two fetches overlap.
  const server = await serve((req, res) => {
    const body = bodies.get(req.url ?? '');
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length });
    let offset = 0;
    const step = Math.max(1, Math.ceil(body.length / 5));
    const tick = (): void => {
      res.write(body.subarray(offset, offset + step));
      offset += step;
      if (offset >= body.length) res.end();
      else setTimeout(tick, 5);
    };
    tick();
  });
  try {
    const dataDir = tmpDir();
    const opts = { manifest: tinyManifest(), dataDir, sources: [server.url], ...FAST };
    const [a, b] = await Promise.all([fetchDataset(opts), fetchDataset(opts)]);
    assert.deepEqual(
      a.files.map((f) => f.sha256),
      b.files.map((f) => f.sha256),
    );
    assert.ok(verifyCache(dataDir, tinyManifest()).every((s) => s.state === 'ok'));
    assert.deepEqual(listDir(dataDir), [...IDX_NAMES, SIDECAR_FILE].sort());
    assert.equal(Object.keys(readSidecar(dataDir)?.files ?? {}).length, 4);
    assert.equal(server.requests.filter((r) => r === '/train-images-idx3-ubyte.gz').length, 2);
  } finally {
    await server.close();
  }
});

test('a cached file replaced after verification is detected and fetched again', async () => {
  const source = writeTiny(tmpDir(), true);
  const dataDir = tmpDir();
  const manifest = tinyManifest();
  await fetchDataset({ manifest, dataDir, sources: [source] });
  const cached = path.join(dataDir, 'train-images-idx3-ubyte');
  fs.writeFileSync(cached, 'tampered');
  assert.equal(verifyCache(dataDir, manifest).find((s) => s.name === 'trainImages')?.state, 'mismatch');
  const result = await fetchDataset({ manifest, dataDir, sources: [source] });
  const images = result.files.find((f) => f.name === 'trainImages')!;
  assert.equal(images.fromCache, false);
  assert.equal(sha256(fs.readFileSync(cached)), images.sha256);
});

/** The cache's verified.json as written: the file names it vouches for, and each entry. */
function readStampFile(dataDir: string): Record<string, { sha256: string; mtimeNs: string; ctimeNs: string }> {
  const json = JSON.parse(fs.readFileSync(path.join(dataDir, STAMP_FILE), 'utf8')) as {
    files: Record<string, { sha256: string; mtimeNs: string; ctimeNs: string }>;
  };
  return json.files;
}

test('a file changed less than 2 s before its hash is not stamped; once settled, all four are', async () => {
  const dataDir = tmpDir();
  const manifest = tinyManifest();
  await fetchDataset({ manifest, dataDir, sources: [writeTiny(tmpDir(), true)] });
  // Just written: a change in the same clock tick would go unseen, so nothing is stamped yet.
  assert.ok(verifyCache(dataDir, manifest, { trustStamp: true }).every((s) => s.state === 'ok'));
  assert.equal(fs.existsSync(path.join(dataDir, STAMP_FILE)), false);
  verifyCache(dataDir, manifest, { settleMs: 0 });
  const stamp = readStampFile(dataDir);
  assert.deepEqual(Object.keys(stamp).sort(), IDX_NAMES);
  for (const f of manifest.files) assert.equal(stamp[f.file]!.sha256, f.sha256);
});

test('a run takes a stamped, unchanged file without hashing it; data verify hashes it all the same', async () => {
  const dataDir = tmpDir();
  const manifest = tinyManifest();
  await fetchDataset({ manifest, dataDir, sources: [writeTiny(tmpDir(), true)] });
  verifyCache(dataDir, manifest, { settleMs: 0 });
  // Other bytes of the same size, and the stamp rewritten to the file as it now is: only a hash can tell.
  const cached = path.join(dataDir, 'train-labels-idx1-ubyte');
  const bytes = fs.readFileSync(cached);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1]! + 1) % 10;
  fs.writeFileSync(cached, bytes);
  const st = fs.statSync(cached, { bigint: true });
  const stampPath = path.join(dataDir, STAMP_FILE);
  const json = JSON.parse(fs.readFileSync(stampPath, 'utf8')) as {
    files: Record<string, { mtimeNs: string; ctimeNs: string }>;
  };
  json.files['train-labels-idx1-ubyte'] = {
    ...json.files['train-labels-idx1-ubyte']!,
    mtimeNs: String(st.mtimeNs),
    ctimeNs: String(st.ctimeNs),
  };
  fs.writeFileSync(stampPath, JSON.stringify(json));
  const state = (opts: { trustStamp?: boolean }) =>
    verifyCache(dataDir, manifest, { ...opts, settleMs: 0 }).find((s) => s.name === 'trainLabels')!.state;
  assert.equal(state({ trustStamp: true }), 'ok');
  assert.equal(state({}), 'mismatch');
  // The hash that failed also took the file out of the stamp: the run now hashes it too.
  assert.equal(readStampFile(dataDir)['train-labels-idx1-ubyte'], undefined);
  assert.equal(state({ trustStamp: true }), 'mismatch');
});

test('a verified.json of another format is not trusted: the run hashes every file', async () => {
  const dataDir = tmpDir();
  const manifest = tinyManifest();
  await fetchDataset({ manifest, dataDir, sources: [writeTiny(tmpDir(), true)] });
  verifyCache(dataDir, manifest, { settleMs: 0 });
  const cached = path.join(dataDir, 'train-labels-idx1-ubyte');
  const bytes = fs.readFileSync(cached);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1]! + 1) % 10;
  fs.writeFileSync(cached, bytes);
  // An entry that matches the changed file, in a stamp of a format this regtrain does not know.
  const st = fs.statSync(cached, { bigint: true });
  const stampPath = path.join(dataDir, STAMP_FILE);
  const json = JSON.parse(fs.readFileSync(stampPath, 'utf8')) as {
    formatVersion: number;
    files: Record<string, { mtimeNs: string; ctimeNs: string }>;
  };
  json.formatVersion = 2;
  json.files['train-labels-idx1-ubyte'] = {
    ...json.files['train-labels-idx1-ubyte']!,
    mtimeNs: String(st.mtimeNs),
    ctimeNs: String(st.ctimeNs),
  };
  fs.writeFileSync(stampPath, JSON.stringify(json));
  const status = verifyCache(dataDir, manifest, { trustStamp: true }).find((s) => s.name === 'trainLabels')!;
  assert.equal(status.state, 'mismatch');
  assert.equal(status.actual, sha256(bytes));
});

test('a stamped file changed in place (same size, its mtime put back) is hashed again and refused', async () => {
  const dataDir = tmpDir();
  const manifest = tinyManifest();
  await fetchDataset({ manifest, dataDir, sources: [writeTiny(tmpDir(), true)] });
  const cached = path.join(dataDir, 'train-labels-idx1-ubyte');
  // A whole second as mtime, so that utimes can put it back to the nanosecond.
  fs.utimesSync(cached, 1_000_000_000, 1_000_000_000);
  verifyCache(dataDir, manifest, { settleMs: 0 });
  assert.equal(readStampFile(dataDir)['train-labels-idx1-ubyte']!.mtimeNs, '1000000000000000000');
  await new Promise((resolve) => setTimeout(resolve, 50)); // past the clock tick of the stamped ctime
  const bytes = fs.readFileSync(cached);
  bytes[bytes.length - 1] = (bytes[bytes.length - 1]! + 1) % 10;
  fs.writeFileSync(cached, bytes);
  fs.utimesSync(cached, 1_000_000_000, 1_000_000_000);
  assert.equal(fs.statSync(cached, { bigint: true }).mtimeNs, 1_000_000_000_000_000_000n);
  await rejectsFailure(
    fetchDataset({ manifest, dataDir, sources: [tmpDir()], offline: true }),
    `cache ${cached}: sha256 ${sha256(bytes).slice(0, 12)}… (changed since verified; re-fetching)`,
  );
});

test('a local directory may hold plain IDX files instead of .gz', async () => {
  const source = writeTiny(tmpDir(), false);
  const result = await fetchDataset({ manifest: tinyManifest(), dataDir: tmpDir(), sources: [source], offline: true });
  assert.ok(result.files.every((f) => f.source === source));
});

test('offline skips URL sources and says so', async () => {
  await rejectsFailure(
    fetchDataset({ manifest: tinyManifest(), dataDir: tmpDir(), sources: ['http://127.0.0.1:9/'], offline: true }),
    'http://127.0.0.1:9/: skipped (offline)',
  );
});

test('a source that is neither a URL nor a directory is bad input', async () => {
  await assert.rejects(
    fetchDataset({ manifest: tinyManifest(), dataDir: tmpDir(), sources: ['/no/such/dir'] }),
    (err: unknown) => {
      assert.ok(err instanceof InputError);
      assert.equal(err.message, 'source /no/such/dir: not an http(s) URL or an existing directory');
      return true;
    },
  );
});

test('the data dir comes from the option, then REGTRAIN_DATA_DIR, then XDG_CACHE_HOME, then ~/.cache', () => {
  assert.equal(resolveDataDir('/a', { REGTRAIN_DATA_DIR: '/b' }), '/a');
  assert.equal(resolveDataDir(undefined, { REGTRAIN_DATA_DIR: '/b', XDG_CACHE_HOME: '/c' }), '/b');
  assert.equal(resolveDataDir(undefined, { XDG_CACHE_HOME: '/c' }), '/c/regtrain/datasets/fashion-mnist');
  assert.match(
    resolveDataDir(undefined, { XDG_CACHE_HOME: 'relative' }),
    /\/\.cache\/regtrain\/datasets\/fashion-mnist$/,
  );
});

test('the real manifest describes four IDX files with decompressed sizes matching their dims', () => {
  const m = loadManifest();
  assert.deepEqual(
    m.files.map((f) => f.name),
    ['trainImages', 'trainLabels', 'testImages', 'testLabels'],
  );
  for (const f of m.files) {
    const header = 4 + 4 * f.dims.length;
    assert.equal(f.bytes, header + f.dims.reduce((a, b) => a * b, 1), f.file);
  }
  assert.equal(m.classNames.length, 10);
  assert.equal(m.mirrors.length, 2);
});
