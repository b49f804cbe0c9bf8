/**
 * Hardening round 2, processes, signals and the data path: every command exits 130 on
 * SIGINT/SIGTERM/SIGHUP (run saves on SIGHUP like SIGTERM), --out below a file or through a
 * dangling link, --timeout past Node's timer limit, REGTRAIN_BLAS_THREADS, and data sources
 * that would hang or eat memory (gzip bombs, endless bodies, FIFOs, /dev/zero, huge files,
 * malformed file: URLs). Real processes, real signals, a real HTTP server on 127.0.0.1; bad input after the
 * first --out case is checked in this process (test/helpers/in-process.ts: the same program and error boundary).
 */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { parseBlasThreads } from '../src/accel/blas';
import { fetchDataset, verifyCache } from '../src/data/fetch';
import { FailureError } from '../src/errors';
import { serve, tinyFiles, tinyManifest, tmpDir, writeTiny } from './fixtures/data/tiny';
import { QUICK, launch, sliceFlags, type Running } from './helpers/cli';
import { seededDataDir } from './helpers/data';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

const TINY = ['--backend', 'wasm', ...sliceFlags({ train: 500, validation: 100, test: 300 })];
/** Signal numbers on Linux, for /proc/PID/status's SigCgt mask. */
const SIGNUM: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

let TMP = '';
let RUN = '';

function start(args: string[]): Running {
  const env = { ...process.env, REGTRAIN_DATA_DIR: path.join(TMP, 'cache'), XDG_CACHE_HOME: path.join(TMP, 'xdg') };
  return launch(args, { cwd: TMP, env });
}

const regtrain = (args: string[]) => start(args).done;

/** The same command in this process: its exit code and what it wrote to stdout and stderr. */
const regtrainHere = (args: string[]) =>
  regtrainInProcess(args, {
    cwd: TMP,
    env: { REGTRAIN_DATA_DIR: path.join(TMP, 'cache'), XDG_CACHE_HOME: path.join(TMP, 'xdg') },
  });

async function until(what: string, cond: () => boolean, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** True once the process catches `sig` (its SigCgt mask in /proc/PID/status has the bit). */
function catches(pid: number, sig: string): boolean {
  try {
    const line = /^SigCgt:\s*([0-9a-f]+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return line !== undefined && ((BigInt(`0x${line}`) >> BigInt(SIGNUM[sig]! - 1)) & 1n) === 1n;
  } catch {
    return false;
  }
}

before(async () => {
  TMP = scratchDir('regtrain-h2-process-');
  RUN = path.join(TMP, 'run');
  seededDataDir(path.join(TMP, 'cache'));
  const r = await regtrain(['run', QUICK, ...TINY, '--set', 'training.epochs=1', '--out', RUN, '-q']);
  assert.equal(r.code, 0, r.stderr);
});

describe('stop signals exit 130 in every command', () => {
  const commands: [string, () => string[]][] = [
    ['evaluate', () => ['evaluate', RUN, '--backend', 'wasm']],
    ['compare', () => ['compare', RUN]],
    ['validate', () => ['validate', QUICK]],
    ['data verify', () => ['data', 'verify']],
    ['data info', () => ['data', 'info']],
    ['plan', () => ['plan', QUICK]],
  ];
  for (const sig of ['SIGTERM', 'SIGHUP', 'SIGINT'] as const) {
    test(`${sig} sent as soon as the handler is in place: each of ${commands.length} commands exits 130 (not ${128 + SIGNUM[sig]!})`, async () => {
      for (const [name, args] of commands) {
        const p = start(args());
        // Node itself catches SIGINT and SIGTERM from its start (to restore the terminal), so the sign that
        // regtrain's handlers are in place is SIGHUP's bit: bin/regtrain installs all three at once.
        await until(
          `${name} to catch ${sig}`,
          () => p.child.exitCode !== null || catches(p.child.pid!, 'SIGHUP'),
          30_000,
        );
        p.child.kill(sig);
        const r = await p.done;
        assert.equal(r.signal, null, `${name}: killed by ${r.signal}`);
        assert.equal(r.code, 130, `${name}: exit ${r.code}\n${r.stderr}`);
        assert.ok(
          r.stderr.endsWith(`\ninterrupted (${sig})\n`) || r.stderr === `interrupted (${sig})\n`,
          `${name}: ${r.stderr}`,
        );
      }
    });
  }

  test('SIGHUP during training saves like SIGTERM: exit 130, an incomplete-marked run with its history, no lock', async () => {
    const out = path.join(TMP, 'run-sighup');
    const p = start(['run', QUICK, ...TINY, '--set', 'training.epochs=200', '--out', out, '--json']);
    await until('the first epoch', () => p.output().includes('"event":"epoch"'));
    p.child.kill('SIGHUP');
    const r = await p.done;
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /^SIGHUP: finishing the current batch, then saving/m);
    const metrics = JSON.parse(fs.readFileSync(path.join(out, 'metrics.json'), 'utf8')) as {
      status: string;
      stopReason: string;
      epochsRun: number;
    };
    assert.equal(metrics.status, 'incomplete');
    assert.equal(metrics.stopReason, 'interrupted');
    const history = JSON.parse(fs.readFileSync(path.join(out, 'history.json'), 'utf8')) as { epochs: unknown[] };
    assert.equal(history.epochs.length, metrics.epochsRun);
    assert.ok(!fs.readdirSync(out).includes('.regtrain.lock'));
  });
});

describe('--out, --timeout and REGTRAIN_BLAS_THREADS', () => {
  test('--out below a file, or through a dangling symlink, exits 2 naming the path', async () => {
    const file = path.join(TMP, 'a-file');
    fs.writeFileSync(file, 'x');
    const dangling = path.join(TMP, 'dangling');
    fs.symlinkSync(path.join(TMP, 'nowhere', 'x'), dangling);
    const cases: [string, string][] = [
      [`${file}/run`, `error: --out ${file}/run: ${file} is a file, so nothing can be created below it`],
      [`${file}/deeper/run`, `error: --out ${file}/deeper/run: ${file} is a file, so nothing can be created below it`],
      [dangling, `error: --out ${dangling}: ${dangling} is a symbolic link that leads nowhere`],
      [`${dangling}/run`, `error: --out ${dangling}/run: ${dangling} is a symbolic link that leads nowhere`],
    ];
    for (const [i, [out, line]] of cases.entries()) {
      // The first through a real process (its exit code, its whole stderr), the others in this process.
      const r = await (i === 0 ? regtrain : regtrainHere)(['run', QUICK, ...TINY, '--out', out]);
      assert.equal(r.code, 2, `${out}: ${r.stderr}`);
      assert.equal(r.stderr, `${line}\n`);
    }
  });

  test("data fetch --timeout past Node's timer limit (2^31 − 1 ms) is refused; the limit itself is accepted", async () => {
    const over = await regtrainHere(['data', 'fetch', '--offline', '--timeout', '2147484']);
    assert.equal(over.code, 2);
    assert.equal(
      over.stderr,
      'error: --timeout 2147484: at most 2147483 seconds (~24.8 days, the longest timer Node.js can set)\n',
    );
    const at = await regtrainHere(['data', 'fetch', '--offline', '--timeout', '2147483']);
    assert.equal(at.code, 0, at.stderr);
  });

  test('a timeout above the limit given to the library is capped, not turned into 1 ms (a 200 ms-slow mirror still works)', async () => {
    const files = tinyFiles();
    const server = await serve((req, res) => {
      const body = files[(req.url ?? '').slice(1)];
      if (!body) return void res.writeHead(404).end();
      setTimeout(() => res.writeHead(200, { 'content-length': body.length }).end(body), 200);
    });
    try {
      const r = await fetchDataset({
        manifest: tinyManifest(),
        dataDir: tmpDir(),
        sources: [server.url],
        timeoutMs: 2 ** 40,
        retries: 0,
      });
      assert.equal(r.files.length, 4);
    } finally {
      await server.close();
    }
  });

  test('REGTRAIN_BLAS_THREADS: unset → null, huge → the CPU count, malformed → refused naming the variable', () => {
    assert.equal(parseBlasThreads(undefined, 2), null);
    assert.equal(parseBlasThreads('', 2), null);
    assert.equal(parseBlasThreads('1', 2), 1);
    assert.equal(parseBlasThreads('2', 2), 2);
    assert.equal(parseBlasThreads('99999999999', 2), 2);
    assert.equal(parseBlasThreads('64', 8), 8);
    for (const bad of ['0', '-1', '1.5', 'abc', '1e3', '0x10']) {
      assert.throws(
        () => parseBlasThreads(bad, 2),
        { name: 'InputError', message: `REGTRAIN_BLAS_THREADS=${bad}: expected a whole number of threads ≥ 1` },
        bad,
      );
    }
  });
});

describe('data sources and cache files that would hang or exhaust memory', () => {
  const manifest = tinyManifest();
  const trainImages = manifest.files[0]!;
  /** What a source may send for the tiny train images: bytes + bytes/1000 + 1024 (gzip's worst case). */
  const cap = trainImages.bytes + Math.ceil(trainImages.bytes / 1000) + 1024;

  /** The message of the exit-1 failure a fetch ends in when no source gives a verified copy (a bad source is not bad input). */
  async function failure(p: Promise<unknown>): Promise<string> {
    let message = '';
    await assert.rejects(p, (err: unknown) => {
      assert.ok(err instanceof FailureError, `expected a FailureError (exit 1), got ${String(err)}`);
      assert.ok(err.message.startsWith('no verified copy of train-images-idx3-ubyte'), err.message);
      message = err.message;
      return true;
    });
    return message;
  }

  test("a gzip bomb in a source directory stops at the manifest's size", async () => {
    const src = writeTiny(tmpDir(), true);
    fs.writeFileSync(path.join(src, 'train-images-idx3-ubyte.gz'), zlib.gzipSync(Buffer.alloc(10 * 1024 * 1024)));
    fs.rmSync(path.join(src, 'train-images-idx3-ubyte'), { force: true });
    const message = await failure(fetchDataset({ manifest, dataDir: tmpDir(), sources: [src] }));
    assert.ok(
      message.includes(
        `${src}/train-images-idx3-ubyte.gz: decompresses to more than the ${trainImages.bytes} bytes the manifest gives`,
      ),
      message,
    );
  });

  test("a mirror sending an endless body without Content-Length is cut at the manifest's size", async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(4096, 1);
      const pump = () => {
        while (res.write(chunk)) if (res.destroyed) return;
        res.once('drain', pump);
      };
      res.on('error', () => undefined);
      pump();
    });
    try {
      const message = await failure(
        fetchDataset({ manifest, dataDir: tmpDir(), sources: [server.url], retries: 0, timeoutMs: 5000 }),
      );
      assert.ok(
        message.includes(`${server.url}train-images-idx3-ubyte.gz: sent more than the ${cap} bytes this file may have`),
        message,
      );
    } finally {
      await server.close();
    }
  });

  test('a Content-Length larger than the manifest allows is refused before the body', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200, { 'content-length': 99_999_999 });
      res.write(Buffer.alloc(10));
      res.on('error', () => undefined);
    });
    try {
      const message = await failure(
        fetchDataset({ manifest, dataDir: tmpDir(), sources: [server.url], retries: 0, timeoutMs: 2000 }),
      );
      assert.ok(
        message.includes(
          `train-images-idx3-ubyte.gz: Content-Length 99999999 is more than the ${cap} bytes this file may have`,
        ),
        message,
      );
    } finally {
      await server.close();
    }
  });

  test('a cached file that is a FIFO or a link to /dev/zero is refused in one line; a huge one is a mismatch, unread', () => {
    for (const make of ['fifo', 'zero'] as const) {
      const dir = writeTiny(tmpDir(), false);
      const file = path.join(dir, 'train-images-idx3-ubyte');
      fs.rmSync(file);
      if (make === 'fifo') execFileSync('mkfifo', [file]);
      else fs.symlinkSync('/dev/zero', file);
      const what =
        make === 'fifo' ? 'a FIFO (named pipe), not a regular file' : 'a character device, not a regular file';
      assert.throws(() => verifyCache(dir, manifest), {
        name: 'InputError',
        message: `data dir ${dir}: cannot read train-images-idx3-ubyte (${what}); remove it or choose another --data-dir`,
      });
    }
    const dir = writeTiny(tmpDir(), false);
    fs.truncateSync(path.join(dir, 'train-images-idx3-ubyte'), 1024 ** 3);
    const status = verifyCache(dir, manifest).find((s) => s.name === 'trainImages')!;
    assert.equal(status.state, 'mismatch');
    assert.equal(status.actual, `(1073741824 bytes, expected ${trainImages.bytes})`);
  });

  test('malformed file: URLs in --source are bad input in one line (exit 2)', async () => {
    const cases: [string, string][] = [
      ['file://host%zz/x', 'error: source file://host%zz/x: not a valid file: URL (Invalid URL)'],
      [
        'file:///tmp/%2Fx',
        'error: source file:///tmp/%2Fx: not a valid file: URL (File URL path must not include encoded / characters)',
      ],
      [
        'file://remote/tmp',
        'error: source file://remote/tmp: not a valid file: URL (File URL host must be "localhost" or empty on linux)',
      ],
    ];
    for (const [source, line] of cases) {
      const r = await regtrainHere(['data', 'fetch', '--source', source, '--data-dir', path.join(TMP, 'url-cache')]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `${line}\n`);
    }
  });
});
