/**
 * The second thread of the wasm GEMM pool (gemm-pool.ts): instantiates the shared GEMM build on the
 * pool's shared memory, then sleeps on the job counter and takes blocks of each job until none is left.
 */
import { workerData } from 'node:worker_threads';
import { CTL, CTL_WORDS, READY, runBlocks, SEQ, STOP, type GemmExports } from './gemm-pool';

const { gemmModule, memory, scratch } = workerData as {
  gemmModule: object;
  memory: { buffer: SharedArrayBuffer };
  scratch: number;
};
const ex = new (
  globalThis as unknown as { WebAssembly: { Instance: new (m: object, i: object) => { exports: unknown } } }
).WebAssembly.Instance(gemmModule, {
  env: { memory },
}).exports as GemmExports;
const ctl = new Int32Array(memory.buffer, CTL, CTL_WORDS);
let seen = Atomics.load(ctl, SEQ);
Atomics.store(ctl, READY, 1);
for (;;) {
  Atomics.wait(ctl, SEQ, seen);
  seen = Atomics.load(ctl, SEQ);
  if (Atomics.load(ctl, STOP)) break;
  runBlocks(ctl, ex, scratch, true);
}
