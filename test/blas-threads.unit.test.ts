import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { loadBlas, type BlasLoadResult } from '../src/accel/blas';

/** This process's threads (Node's own, libuv's and any a library started). */
const threadCount = (): number => fs.readdirSync('/proc/self/task').length;

/** The thread count once it has held still for 100 ms (threads that a library starts and ends have ended). */
async function settledThreadCount(): Promise<number> {
  let last = threadCount();
  for (let still = 0; still < 5;) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    const now = threadCount();
    still = now === last ? still + 1 : 0;
    last = now;
  }
  return last;
}

interface Loaded {
  loaded: BlasLoadResult;
  started: number;
  envAfter: string | undefined;
}

// Nothing in this file loads OpenBLAS before this: a library opened again does not start threads again. Requiring
// koffi (as loading OpenBLAS does first) starts a short-lived thread of its own under Node 22, so koffi is required
// and the count left to settle before the count that matters.
let loading: Promise<Loaded> | undefined;
const loadOnce = (): Promise<Loaded> =>
  (loading ??= (async () => {
    try {
      require('koffi');
    } catch {
      // Not installed: loadBlas says so below, and the tests that need OpenBLAS skip.
    }
    const before = process.env.OPENBLAS_NUM_THREADS;
    process.env.OPENBLAS_NUM_THREADS = '3';
    try {
      const threads = await settledThreadCount();
      const loaded = loadBlas({ threads: 1 });
      return { loaded, started: threadCount() - threads, envAfter: process.env.OPENBLAS_NUM_THREADS };
    } finally {
      if (before === undefined) delete process.env.OPENBLAS_NUM_THREADS;
      else process.env.OPENBLAS_NUM_THREADS = before;
    }
  })());

test('OpenBLAS loaded for 1 thread starts no worker thread, whatever OPENBLAS_NUM_THREADS says', async (t) => {
  const { loaded, started } = await loadOnce();
  if (!loaded.ok) return t.skip(`OpenBLAS is not available: ${loaded.reason}`);
  // A threaded OpenBLAS starts OPENBLAS_NUM_THREADS − 1 workers as it loads (else one per CPU but one), each spinning
  // for a while before it sleeps: the load sets the variable to the threads regtrain uses.
  assert.equal(started, 0);
  assert.equal(loaded.getThreads(), 1);
});

test("loading OpenBLAS leaves this process's OPENBLAS_NUM_THREADS as it was, for the processes it starts", async () => {
  assert.equal((await loadOnce()).envAfter, '3');
});

test(
  'OpenBLAS starts a worker thread when asked for 2 threads after loading with 1',
  { skip: os.availableParallelism() < 2 && 'one CPU here' },
  async (t) => {
    const { loaded } = await loadOnce();
    if (!loaded.ok) return t.skip(`OpenBLAS is not available: ${loaded.reason}`);
    const threads = threadCount();
    loaded.setThreads(2);
    assert.equal(loaded.getThreads(), 2);
    assert.equal(threadCount() - threads, 1);
    // And it multiplies with both: 64×64 ones times 64×64 twos is 128 everywhere.
    const a = new Float32Array(64 * 64).fill(1);
    const b = new Float32Array(64 * 64).fill(2);
    const c = new Float32Array(64 * 64);
    loaded.sgemm(false, false, 64, 64, 64, 1, a, 64, b, 64, 0, c, 64);
    assert.ok(c.every((v) => v === 128));
    loaded.setThreads(1);
  },
);
