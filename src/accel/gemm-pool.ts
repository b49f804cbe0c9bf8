import type { HeapGemmHead } from './blas';
import * as os from 'node:os';
import { Worker } from 'node:worker_threads';
import { InputError } from '../errors';
import { accelFile } from './files';

/**
 * The wasm GEMM on two threads: the main thread and one worker (gemm-worker.ts) share a wasm memory
 * (SharedArrayBuffer) and the rows of C between them.
 *
 * tfjs-wasm's heap is not shared, so a product that is worth it is copied in (op(A)'s rows, B, the
 * bias), run on both threads over blocks of C's rows, and C is copied back: ~1 MB of copies against
 * tens of MFLOP. Each block is the same single-threaded kernel on a slice of rows, and each C element
 * is still one float32 chain over k in order, so the result is bit for bit the single-threaded one
 * whatever the split and whichever thread computes a block.
 *
 * The main thread never depends on the worker being scheduled (the machine may be busy): blocks are
 * claimed from a shared counter, so a sleeping worker just claims none; a block the worker claimed
 * and has not finished when the main thread runs out of blocks is waited for about as long as a block
 * takes, then computed by the main thread too, into a second C of its own: the worker may still be
 * writing that block's rows of the job's C, and K is blocked (gemm.wat's KC), so those rows hold
 * partial sums until it finishes. C goes back to tfjs block by block, each from where it was finished.
 * While the worker is still inside such a block, products run single-threaded on tfjs's heap, so
 * nothing it reads or writes is reused under it.
 *
 * Protocol (Int32 control words at byte CTL of the shared memory):
 * - main, for job J (only when BUSY = 0): writes the job's parameters into slot J mod 2, stores
 *   TICKET = J·2¹⁶ (claims open), bumps SEQ and wakes the worker;
 * - a claim: (the worker first sets BUSY = 1) v = TICKET += 1 is block (v mod 2¹⁶) of job (v / 2¹⁶);
 *   a claim on an older job (a worker waking late) sees its block index past that job's block count
 *   and stops; a finished block b gets FLAGS[b] = J, then DONE += 1 wakes a waiting main thread;
 * - main returns when every FLAGS[b] = J, having waited for or recomputed the worker's last block.
 *
 * REGTRAIN_GEMM_THREADS: 1 = never (the single-threaded GEMM), 2 = up to two threads (the default
 * when the machine has two CPUs or more).
 */

// The ES2022 lib has no WebAssembly types (they come with DOM); the few used here:
// eslint-disable-next-line @typescript-eslint/no-namespace -- an ambient declaration of a global, not a module
declare namespace WebAssembly {
  class Memory {
    constructor(desc: { initial: number; maximum?: number; shared?: boolean });
    readonly buffer: ArrayBuffer | SharedArrayBuffer;
    grow(pages: number): number;
  }
  class Module {}
  class Instance {
    constructor(module: Module, imports: object);
    readonly exports: Record<string, unknown>;
  }
}

/** Control words (Int32 indices from CTL). */
export const SEQ = 0;
export const TICKET = 1;
export const DONE = 2;
export const READY = 3;
export const STOP = 4;
export const BUSY = 5;
/** Two parameter slots of PARAMS words each, from word SLOT0; then a finished-job flag per block. */
export const SLOT0 = 8;
export const PARAMS = 16;
const FLAGS = SLOT0 + 2 * PARAMS;
const MAX_BLOCKS = 16;
export const CTL_WORDS = FLAGS + MAX_BLOCKS;
/** Byte address of the control words; address 0 stays unused (bias 0 means none). */
export const CTL = 64;
/** Where the packing scratch of thread t starts: SCRATCH0 + t·scratchBytes (rounded to 64). */
const SCRATCH0 = CTL + 4 * CTL_WORDS + 64;
const JOB_MASK = 0x7fff;

/** Parameter slot layout (Int32 words). */
export const P = {
  tA: 0,
  tB: 1,
  m: 2,
  n: 3,
  k: 4,
  a: 5,
  lda: 6,
  b: 7,
  ldb: 8,
  c: 9,
  ldc: 10,
  bias: 11,
  relu: 12,
  rows: 13,
  blocks: 14,
} as const;

/** gemm.wat's exports (every build: plain, relaxed, shared). */
export interface GemmExports {
  gemm(
    tA: number,
    tB: number,
    m: number,
    n: number,
    k: number,
    a: number,
    lda: number,
    b: number,
    ldb: number,
    c: number,
    ldc: number,
    bias: number,
    relu: number,
    scratch: number,
  ): void;
  scratchBytes(): number;
}

/** An instance of a GEMM build on `memory` (its only import). */
export function instantiateGemm(module: WebAssembly.Module, memory: WebAssembly.Memory): GemmExports {
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as GemmExports;
}

/**
 * Runs block `block` of the job in slot `s` into C at `c` (the job's own C unless given), then marks
 * it finished for `job`.
 */
function runBlock(
  ctl: Int32Array,
  ex: GemmExports,
  scratch: number,
  s: number,
  job: number,
  block: number,
  c = ctl[s + P.c]!,
): void {
  const rows = ctl[s + P.rows]!;
  const tA = ctl[s + P.tA]!;
  const lda = ctl[s + P.lda]!;
  const ldc = ctl[s + P.ldc]!;
  const r0 = block * rows;
  const mr = Math.min(rows, ctl[s + P.m]! - r0);
  // Row r0 of op(A): row r0 of A, or column r0 of Aᵀ.
  const a = ctl[s + P.a]! + 4 * (tA ? r0 : r0 * lda);
  ex.gemm(
    tA,
    ctl[s + P.tB]!,
    mr,
    ctl[s + P.n]!,
    ctl[s + P.k]!,
    a,
    lda,
    ctl[s + P.b]!,
    ctl[s + P.ldb]!,
    c + 4 * r0 * ldc,
    ldc,
    ctl[s + P.bias]!,
    ctl[s + P.relu]!,
    scratch,
  );
  Atomics.store(ctl, FLAGS + block, job);
  Atomics.add(ctl, DONE, 1);
}

/**
 * Claims and runs blocks of the current job until none is left; returns how many it ran. The worker
 * (`worker` true) holds BUSY from before each claim until its block is done, and wakes the main thread
 * after each block.
 */
export function runBlocks(ctl: Int32Array, ex: GemmExports, scratch: number, worker: boolean): number {
  let ran = 0;
  for (;;) {
    if (worker) Atomics.store(ctl, BUSY, 1);
    const v = Atomics.add(ctl, TICKET, 1);
    const job = (v >>> 16) & JOB_MASK;
    const block = v & 0xffff;
    const s = SLOT0 + (job & 1) * PARAMS;
    if (block >= Atomics.load(ctl, s + P.blocks)) {
      if (worker) Atomics.store(ctl, BUSY, 0);
      return ran;
    }
    runBlock(ctl, ex, scratch, s, job, block);
    ran++;
    if (worker) {
      Atomics.store(ctl, BUSY, 0);
      Atomics.notify(ctl, DONE);
    }
  }
}

/** Threads for the wasm GEMM: REGTRAIN_GEMM_THREADS (1 or 2; more is capped at 2), else 2 on a machine with 2+ CPUs. */
export function gemmThreads(raw = process.env.REGTRAIN_GEMM_THREADS, cpus = os.availableParallelism()): number {
  if (raw === undefined || raw.trim() === '') return cpus >= 2 ? 2 : 1;
  if (!/^\s*\d+\s*$/.test(raw) || Number(raw) < 1)
    throw new InputError(`REGTRAIN_GEMM_THREADS=${raw}: expected a whole number of threads ≥ 1`);
  return Math.min(2, Number(raw));
}

/**
 * A product is split when it has at least this many multiply-adds (~1 ms on one thread) and MIN_ROWS
 * rows: at batch 512 the tutorial's five largest products, at batch 32 none (the copies and the
 * hand-off would eat what a second thread saves).
 */
export const MIN_MACS = 1 << 23;
const MIN_ROWS = 64;

export interface GemmPool {
  /** Whether the worker has started and takes blocks (before that, the main thread runs them all). */
  ready(): boolean;
  /** Whether the worker is outside any block (else the caller runs the product single-threaded). */
  idle(): boolean;
  /** Whether a product of this size is run on the pool. */
  worth(m: number, n: number, k: number): boolean;
  /**
   * C = act(op(A)·op(B) + bias) with the operands at byte addresses of `heap` (tfjs-wasm's memory,
   * leading dimensions as in gemm.wat, C's rows contiguous: ldc = n). Returns how many blocks the
   * worker ran, and how many it had claimed but the main thread computed (it was not scheduled in time).
   */
  gemm(
    heap: ArrayBuffer,
    ...args: [...HeapGemmHead, bias: number, relu: boolean]
  ): { workerBlocks: number; recomputed: number };
  /** Stops the worker. */
  close(): Promise<void>;
}

/**
 * A pool for the shared build `module` (gemm-shared*.wasm), or { reason }. The worker starts in the
 * background and does not keep the process alive.
 */
export function createGemmPool(module: WebAssembly.Module): GemmPool | { reason: string } {
  let memory: WebAssembly.Memory;
  let ex: GemmExports;
  try {
    memory = new WebAssembly.Memory({ initial: 64, maximum: 32768, shared: true });
    ex = instantiateGemm(module, memory);
  } catch (e) {
    return { reason: `no shared wasm memory (${(e as Error).message.split('\n')[0]})` };
  }
  const scratchStride = (ex.scratchBytes() + 63) & ~63;
  const dataStart = SCRATCH0 + 2 * scratchStride;
  const ctl = new Int32Array(memory.buffer, CTL, CTL_WORDS);
  let worker: Worker;
  try {
    worker = new Worker(accelFile('gemm-worker.js'), {
      workerData: { gemmModule: module, memory, scratch: SCRATCH0 + scratchStride },
    });
  } catch (e) {
    return { reason: `no worker thread (${(e as Error).message.split('\n')[0]})` };
  }
  worker.unref();
  let failed = false;
  worker.on('error', () => {
    failed = true;
  });
  const ensure = (bytes: number): void => {
    const have = memory.buffer.byteLength;
    if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
  };
  let job = 0;
  const pool: GemmPool = {
    ready: () => !failed && Atomics.load(ctl, READY) === 1,
    worth: (m, n, k) => m >= MIN_ROWS && m * n * k >= MIN_MACS,
    idle: () => Atomics.load(ctl, BUSY) === 0,
    gemm(heap, tA, tB, m, n, k, a, lda, b, ldb, c, bias, relu) {
      // Extents as stored (bytes), the last row only as wide as used.
      const aLen = 4 * (tA ? (k - 1) * lda + m : (m - 1) * lda + k);
      const bLen = 4 * (tB ? (n - 1) * ldb + k : (k - 1) * ldb + n);
      const pa = dataStart;
      const pb = (pa + aLen + 63) & ~63;
      const pbias = (pb + bLen + 63) & ~63;
      const pc = (pbias + (bias ? 4 * n : 0) + 63) & ~63;
      const pcStolen = (pc + 4 * m * n + 63) & ~63;
      ensure(pcStolen + 4 * m * n);
      const shared = new Uint8Array(memory.buffer);
      const src = new Uint8Array(heap);
      shared.set(src.subarray(a, a + aLen), pa);
      shared.set(src.subarray(b, b + bLen), pb);
      if (bias) shared.set(src.subarray(bias, bias + 4 * n), pbias);
      // Blocks of rows (a multiple of the kernel's 4), about 8 of them: small enough to balance two
      // threads on a busy machine, large enough that re-packing B per block costs a few percent.
      const rows = Math.max(32, (Math.ceil(m / 8) + 3) & ~3);
      const blocks = Math.ceil(m / rows);
      job = (job % JOB_MASK) + 1; // 1..JOB_MASK: a block flag of 0 is never a job's
      const s = SLOT0 + (job & 1) * PARAMS;
      const params = [+tA, +tB, m, n, k, pa, lda, pb, ldb, pc, n, bias ? pbias : 0, +relu, rows];
      params.forEach((v, i) => (ctl[s + i] = v));
      Atomics.store(ctl, s + P.blocks, blocks);
      Atomics.store(ctl, TICKET, job << 16);
      Atomics.add(ctl, SEQ, 1);
      Atomics.notify(ctl, SEQ);
      const t0 = performance.now();
      const mine = runBlocks(ctl, ex, SCRATCH0, false);
      // The worker's unfinished blocks: wait about as long as one of ours took, then compute it here.
      const patience = mine > 0 ? (1.5 * (performance.now() - t0)) / mine : 2;
      let stolen = 0;
      const out = new Uint8Array(heap);
      for (let blk = 0; blk < blocks; blk++) {
        const deadline = performance.now() + patience;
        let from = pc;
        for (let d = Atomics.load(ctl, DONE); Atomics.load(ctl, FLAGS + blk) !== job; d = Atomics.load(ctl, DONE)) {
          const left = deadline - performance.now();
          if (left <= 0) {
            runBlock(ctl, ex, SCRATCH0, s, job, blk, pcStolen);
            from = pcStolen;
            stolen++;
            break;
          }
          Atomics.wait(ctl, DONE, d, left);
        }
        const r0 = 4 * blk * rows * n;
        const bytes = 4 * Math.min(rows, m - blk * rows) * n;
        out.set(shared.subarray(from + r0, from + r0 + bytes), c + r0);
      }
      return { workerBlocks: blocks - mine - stolen, recomputed: stolen };
    },
    async close() {
      Atomics.store(ctl, STOP, 1);
      Atomics.add(ctl, SEQ, 1);
      Atomics.notify(ctl, SEQ);
      await worker.terminate();
    },
  };
  return pool;
}
