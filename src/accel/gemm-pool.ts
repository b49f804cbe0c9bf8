import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { InputError } from '../errors';

/**
 * The wasm GEMM on two threads: the main thread and one worker (gemm-worker.ts) share a wasm memory
 * (SharedArrayBuffer) and the rows of C between them.
 *
 * tfjs-wasm's heap is not shared, so a product that is worth it is copied in (op(A)'s rows, B, the
 * bias), run on both threads over blocks of C's rows, and C is copied back: ~1 MB of copies against
 * tens of MFLOP. Each block is the same single-threaded kernel on a slice of rows, and each C element
 * is still one float32 chain over k in order, so the result is bit for bit the single-threaded one
 * whatever the split and whichever thread takes a block.
 *
 * Blocks are claimed from a shared counter, so a worker the OS has not scheduled yet (a busy machine,
 * or one still starting) only means the main thread takes more blocks: it never waits for a block
 * nobody has started. It waits only for blocks the worker has claimed and not finished.
 *
 * Protocol (Int32 control words at byte CTL of the shared memory):
 * - main, for job J: writes the job's parameters into slot J mod 2, then stores TICKET = J·2¹⁶
 *   (claims open), DONE = 0, bumps SEQ and wakes the worker;
 * - both: v = TICKET += 1; block (v mod 2¹⁶) of job (v / 2¹⁶) — a claim on an older job (a worker
 *   waking late) sees its block index past that job's block count and stops; parameters are read from
 *   the claimed job's slot, which is not rewritten before the job is done (job J+2 waits for J+1,
 *   which waited for J);
 * - whoever finishes a block adds 1 to DONE; main returns when DONE = the job's block count.
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
/** Two parameter slots of PARAMS words each, from word SLOT0. */
export const SLOT0 = 8;
export const PARAMS = 16;
/** Byte address of the control words; address 0 stays unused (bias 0 means none). */
export const CTL = 64;
/** Where the packing scratch of thread t starts: SCRATCH0 + t·scratchBytes (rounded to 64). */
const SCRATCH0 = CTL + 4 * (SLOT0 + 2 * PARAMS) + 64;
const JOB_MASK = 0x7fff;

/** Parameter slot layout (Int32 words). */
export const P = { tA: 0, tB: 1, m: 2, n: 3, k: 4, a: 5, lda: 6, b: 7, ldb: 8, c: 9, ldc: 10, bias: 11, relu: 12, rows: 13, blocks: 14 } as const;

export interface GemmExportsShared {
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

/**
 * Claims and runs blocks of the current job until none is left; returns how many it ran. Shared by
 * both threads (the worker imports it).
 */
export function runBlocks(ctl: Int32Array, ex: GemmExportsShared, scratch: number): number {
  let ran = 0;
  for (;;) {
    const v = Atomics.add(ctl, TICKET, 1);
    const job = (v >>> 16) & JOB_MASK;
    const block = v & 0xffff;
    const s = SLOT0 + (job & 1) * PARAMS;
    if (block >= Atomics.load(ctl, s + P.blocks)) return ran;
    const rows = ctl[s + P.rows]!;
    const m = ctl[s + P.m]!;
    const tA = ctl[s + P.tA]!;
    const lda = ctl[s + P.lda]!;
    const ldc = ctl[s + P.ldc]!;
    const r0 = block * rows;
    const mr = Math.min(rows, m - r0);
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
      ctl[s + P.c]! + 4 * r0 * ldc,
      ldc,
      ctl[s + P.bias]!,
      ctl[s + P.relu]!,
      scratch,
    );
    ran++;
    Atomics.add(ctl, DONE, 1);
    Atomics.notify(ctl, DONE);
  }
}

/** Threads for the wasm GEMM: REGTRAIN_GEMM_THREADS (1 or 2; more is capped at 2), else 2 on a machine with 2+ CPUs. */
export function gemmThreads(raw = process.env.REGTRAIN_GEMM_THREADS, cpus = os.availableParallelism()): number {
  if (raw === undefined || raw.trim() === '') return cpus >= 2 ? 2 : 1;
  if (!/^\s*\d+\s*$/.test(raw) || Number(raw) < 1) throw new InputError(`REGTRAIN_GEMM_THREADS=${raw}: expected a whole number of threads ≥ 1`);
  return Math.min(2, Number(raw));
}

/** A product is split when it has at least this many multiply-adds and MIN_ROWS rows. */
export const MIN_MACS = 1 << 21;
const MIN_ROWS = 64;

export interface GemmPool {
  /** Whether the worker has started and takes blocks (before that, the main thread runs them all). */
  ready(): boolean;
  /** Whether a product of this size is run on the pool. */
  worth(m: number, n: number, k: number): boolean;
  /**
   * C = act(op(A)·op(B) + bias) with the operands at byte addresses of `heap` (tfjs-wasm's memory,
   * leading dimensions as in gemm.wat, C's rows contiguous: ldc = n). Returns the blocks the worker ran.
   */
  gemm(
    heap: ArrayBuffer,
    tA: boolean,
    tB: boolean,
    m: number,
    n: number,
    k: number,
    a: number,
    lda: number,
    b: number,
    ldb: number,
    c: number,
    bias: number,
    relu: boolean,
  ): number;
  /** Stops the worker. */
  close(): Promise<void>;
}

/**
 * A pool for the shared build `module` (gemm-shared*.wasm), or { reason }. The worker starts in the
 * background and does not keep the process alive.
 */
export function createGemmPool(module: WebAssembly.Module): GemmPool | { reason: string } {
  let memory: WebAssembly.Memory;
  let ex: GemmExportsShared;
  try {
    memory = new WebAssembly.Memory({ initial: 64, maximum: 32768, shared: true });
    ex = new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as GemmExportsShared;
  } catch (e) {
    return { reason: `no shared wasm memory (${(e as Error).message.split('\n')[0]})` };
  }
  const scratchStride = (ex.scratchBytes() + 63) & ~63;
  const dataStart = SCRATCH0 + 2 * scratchStride;
  const ctl = new Int32Array(memory.buffer, CTL, SLOT0 + 2 * PARAMS);
  let worker: Worker;
  try {
    worker = new Worker(path.join(__dirname, 'gemm-worker.js'), { workerData: { gemmModule: module, memory, scratch: SCRATCH0 + scratchStride } });
  } catch (e) {
    return { reason: `no worker thread (${(e as Error).message.split('\n')[0]})` };
  }
  worker.unref();
  let failed = false;
  worker.on('error', () => {
    failed = true;
  });
  let job = 0;
  const ensure = (bytes: number): void => {
    const have = memory.buffer.byteLength;
    if (bytes > have) memory.grow(Math.ceil((bytes - have) / 65536));
  };
  const pool: GemmPool = {
    ready: () => !failed && Atomics.load(ctl, READY) === 1,
    worth: (m, n, k) => m >= MIN_ROWS && m * n * k >= MIN_MACS,
    gemm(heap, tA, tB, m, n, k, a, lda, b, ldb, c, bias, relu) {
      // Extents as stored (bytes), the last row only as wide as used.
      const aLen = 4 * (tA ? (k - 1) * lda + m : (m - 1) * lda + k);
      const bLen = 4 * (tB ? (n - 1) * ldb + k : (k - 1) * ldb + n);
      const pa = dataStart;
      const pb = (pa + aLen + 63) & ~63;
      const pbias = (pb + bLen + 63) & ~63;
      const pc = (pbias + (bias ? 4 * n : 0) + 63) & ~63;
      ensure(pc + 4 * m * n);
      const shared = new Uint8Array(memory.buffer);
      const src = new Uint8Array(heap);
      shared.set(src.subarray(a, a + aLen), pa);
      shared.set(src.subarray(b, b + bLen), pb);
      if (bias) shared.set(src.subarray(bias, bias + 4 * n), pbias);
      // Blocks of rows (a multiple of the kernel's 4), about 8 of them: small enough to balance two
      // threads on a busy machine, large enough that re-packing B per block costs a few percent.
      const rows = Math.max(32, (Math.ceil(m / 8) + 3) & ~3);
      const blocks = Math.ceil(m / rows);
      job = (job + 1) & JOB_MASK;
      const s = SLOT0 + (job & 1) * PARAMS;
      const params = [+tA, +tB, m, n, k, pa, lda, pb, ldb, pc, n, bias ? pbias : 0, +relu, rows];
      params.forEach((v, i) => (ctl[s + i] = v));
      Atomics.store(ctl, s + P.blocks, blocks);
      Atomics.store(ctl, DONE, 0);
      Atomics.store(ctl, TICKET, job << 16);
      Atomics.add(ctl, SEQ, 1);
      Atomics.notify(ctl, SEQ);
      const mine = runBlocks(ctl, ex, SCRATCH0);
      for (let d = Atomics.load(ctl, DONE); d < blocks; d = Atomics.load(ctl, DONE)) Atomics.wait(ctl, DONE, d);
      new Uint8Array(heap).set(new Uint8Array(memory.buffer, pc, 4 * m * n), c);
      return blocks - mine;
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
