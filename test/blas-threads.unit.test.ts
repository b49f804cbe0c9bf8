import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { loadBlas } from '../src/accel/blas';

/** This process's threads (Node's own, libuv's and any a library started). */
const threadCount = (): number => fs.readdirSync('/proc/self/task').length;

// Nothing in this file loads OpenBLAS before this test: a library opened again does not start threads again.
const blas = (() => {
  const before = process.env.OPENBLAS_NUM_THREADS;
  process.env.OPENBLAS_NUM_THREADS = '3';
  const threads = threadCount();
  const loaded = loadBlas({ threads: 1 });
  return { loaded, started: threadCount() - threads, envAfter: process.env.OPENBLAS_NUM_THREADS, envBefore: before };
})();
process.env.OPENBLAS_NUM_THREADS = blas.envBefore;
if (blas.envBefore === undefined) delete process.env.OPENBLAS_NUM_THREADS;

const noBlas = blas.loaded.ok ? false : `OpenBLAS is not available: ${blas.loaded.reason}`;

test(
  'OpenBLAS loaded for 1 thread starts no worker thread, whatever OPENBLAS_NUM_THREADS says',
  { skip: noBlas },
  () => {
    // A threaded OpenBLAS starts OPENBLAS_NUM_THREADS − 1 workers as it loads (else one per CPU but one), each spinning
    // for a while before it sleeps: the load sets the variable to the threads regtrain uses.
    assert.equal(blas.started, 0);
    assert.equal(blas.loaded.ok && blas.loaded.getThreads(), 1);
  },
);

test("loading OpenBLAS leaves this process's OPENBLAS_NUM_THREADS as it was, for the processes it starts", () => {
  assert.equal(blas.envAfter, '3');
});

test(
  'OpenBLAS starts a worker thread when asked for 2 threads after loading with 1',
  { skip: noBlas || (os.availableParallelism() < 2 && 'one CPU here') },
  () => {
    assert.ok(blas.loaded.ok);
    const threads = threadCount();
    blas.loaded.setThreads(2);
    assert.equal(blas.loaded.getThreads(), 2);
    assert.equal(threadCount() - threads, 1);
    // And it multiplies with both: 64×64 ones times 64×64 twos is 128 everywhere.
    const a = new Float32Array(64 * 64).fill(1);
    const b = new Float32Array(64 * 64).fill(2);
    const c = new Float32Array(64 * 64);
    blas.loaded.sgemm(false, false, 64, 64, 64, 1, a, 64, b, 64, 0, c, 64);
    assert.ok(c.every((v) => v === 128));
    blas.loaded.setThreads(1);
  },
);
