import * as v8 from 'node:v8';
import { MAX_WASM_BYTES, readRegularFile } from '../fsutil';
import { switchedOff } from '../env-switch';
import type { HeapGemmOperands } from './blas';
import { createGemmPool, gemmThreads, instantiateGemm, type GemmPool } from './gemm-pool';
import { accelFile } from './files';

/**
 * regtrain's own single-precision GEMM in WebAssembly SIMD (gemm.wat), for when no native BLAS is
 * there: C = act(op(A)·op(B) + bias), act = identity or relu, op(X) = X or Xᵀ, row-major.
 *
 * Two builds of the same kernels: gemm-relaxed.wasm multiplies-and-adds with relaxed SIMD's
 * f32x4.relaxed_madd (one fused FMA on x64 CPUs with FMA3 and on arm64: ~1.6× the speed here), and
 * gemm.wasm with f32x4.mul then f32x4.add. The relaxed build is used when the runtime validates it.
 * Node 20's V8 (11.3) has relaxed SIMD complete but behind --experimental-wasm-relaxed-simd (it ships
 * by default from V8 11.4, Node 22): there we turn that flag on before compiling, which only lets
 * modules compiled afterwards use the new instructions, and check again. REGTRAIN_RELAXED_SIMD=off
 * keeps the plain build (and leaves V8's flags alone).
 *
 * Results: each C element is the float32 chain Σ over k in order (see gemm.wat), so identical on
 * every run and independent of blocking and alignment; the plain build equals the naive loop
 * `c = fround(c + fround(a·b))` bit for bit. The relaxed build rounds once per multiply-add where the
 * CPU fuses (FMA), so it differs from the plain build by float32 rounding.
 *
 * - `chooseWasmGemm()` picks the build (or says why there is none: not built, REGTRAIN_SIMD=off).
 * - `heapGemm(kind, memory, malloc, threads)` runs on a wasm memory the caller owns (tfjs-wasm's heap:
 *   tensors are read and written where they live; addresses are byte offsets); with 2 threads, large
 *   products go to the two-thread pool (gemm-pool.ts, the shared-memory builds gemm-shared*.wasm).
 * - `arrayGemm(kind)` runs on Float32Arrays (the cpu backend), copying them into a private memory.
 * Both return { reason } when the build cannot be compiled, the memory cannot be imported (shared), or
 * the smoke test fails.
 */

export type WasmGemmKind = 'wasm-simd' | 'wasm-relaxed-simd';

// The ES2022 lib has no WebAssembly types (they come with DOM); the few used here:
// eslint-disable-next-line @typescript-eslint/no-namespace -- an ambient declaration of a global, not a module
declare namespace WebAssembly {
  class Memory {
    constructor(desc: { initial: number; maximum?: number });
    readonly buffer: ArrayBuffer;
    grow(pages: number): number;
  }
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports: object);
    readonly exports: Record<string, unknown>;
  }
  function validate(bytes: Uint8Array): boolean;
}

/** On a caller's memory: byte addresses; `bias` 0 = none. */
export interface HeapGemm {
  kind: WasmGemmKind;
  gemm(...args: [...HeapGemmOperands, bias: number, relu: boolean]): void;
}

/** A float32 matrix operand: the array and the element offset where the matrix starts. */
export interface FloatsAt {
  base: Float32Array;
  offset: number;
}

/** On Float32Arrays (copied in and out of a private memory). */
export interface ArrayGemm {
  kind: WasmGemmKind;
  gemm(
    tA: boolean,
    tB: boolean,
    m: number,
    n: number,
    k: number,
    a: FloatsAt,
    lda: number,
    b: FloatsAt,
    ldb: number,
    c: FloatsAt,
    ldc: number,
    bias: FloatsAt | null,
    relu: boolean,
  ): void;
}

/**
 * How many GEMMs the wasm kernels ran (for tests and benchmarks: proof the path was taken); how many
 * of them went to the two-thread pool, how many row blocks the pool's worker ran, how many of its
 * blocks the main thread computed again (the worker was not scheduled in time), and how many products
 * ran on one thread while the pool backed off after that.
 */
export const wasmGemmStats = { calls: 0, pooled: 0, workerBlocks: 0, recomputed: 0, backedOff: 0 };

/**
 * Products run single-threaded after a pooled one in which the worker was late (a busy machine: the
 * second thread then costs copies and waiting and gains nothing), before the pool is tried again:
 * 32, doubled after each late one up to 1024, back to 32 once the worker is on time.
 */
const BACKOFF_MIN = 32;
const BACKOFF_MAX = 1024;

const modules = new Map<string, WebAssembly.Module | string>();

/** A build's module (compiled once), or why not; `shared`: the build importing a shared memory (gemm-pool.ts). */
function readModule(kind: WasmGemmKind, shared = false): WebAssembly.Module | string {
  const file = `gemm${shared ? '-shared' : ''}${kind === 'wasm-relaxed-simd' ? '-relaxed' : ''}.wasm`;
  const known = modules.get(file);
  if (known) return known;
  let result: WebAssembly.Module | string;
  try {
    const bytes = readRegularFile(accelFile(file), { maxBytes: MAX_WASM_BYTES });
    if (kind === 'wasm-relaxed-simd' && !WebAssembly.validate(bytes)) {
      // V8 11.3 (Node 20): relaxed SIMD is behind a flag; V8 ≥ 11.4 validates without it.
      v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
      if (!WebAssembly.validate(bytes)) throw new Error('this runtime has no relaxed SIMD');
    }
    result = new WebAssembly.Module(bytes);
  } catch (e) {
    result = (e as Error).message.split('\n')[0]!;
  }
  modules.set(file, result);
  return result;
}

const pools = new Map<WasmGemmKind, GemmPool | string>();

/** The two-thread pool for a build (one per process, started on first use), or why there is none. */
export function gemmPool(kind: WasmGemmKind): GemmPool | { reason: string } {
  let known = pools.get(kind);
  if (!known) {
    const module = readModule(kind, true);
    const made = typeof module === 'string' ? module : createGemmPool(module);
    known = 'reason' in (made as object) ? (made as { reason: string }).reason : (made as GemmPool);
    pools.set(kind, known);
  }
  return typeof known === 'string' ? { reason: known } : known;
}

/** The build to use: relaxed SIMD unless switched off (REGTRAIN_RELAXED_SIMD=off) or unavailable. */
export function chooseWasmGemm(): { kind: WasmGemmKind } | { reason: string } {
  if (switchedOff('REGTRAIN_SIMD')) return { reason: 'disabled by REGTRAIN_SIMD' };
  if (!switchedOff('REGTRAIN_RELAXED_SIMD') && typeof readModule('wasm-relaxed-simd') !== 'string')
    return { kind: 'wasm-relaxed-simd' };
  const plain = readModule('wasm-simd');
  if (typeof plain === 'string') return { reason: `no wasm GEMM (${plain})` };
  return { kind: 'wasm-simd' };
}

/** [[1,2],[3,4]]·[[5,6],[7,8]] + [1,−50] with relu = [[20,0],[44,0]] (exact in float32). */
function smokeTest(run: (a: Float32Array, b: Float32Array, bias: Float32Array, c: Float32Array) => void): boolean {
  const c = new Float32Array(4);
  run(new Float32Array([1, 2, 3, 4]), new Float32Array([5, 6, 7, 8]), new Float32Array([1, -50]), c);
  return c[0] === 20 && c[1] === 0 && c[2] === 44 && c[3] === 0;
}

// Weakly keyed: a lean CNN step's private memory (src/train/cnn-step.ts) goes when the step does.
const heapCache = new WeakMap<WebAssembly.Memory, Partial<Record<string, HeapGemm | string>>>();

/**
 * The GEMM on `memory` (tfjs-wasm's heap), with its packing scratch from `malloc` (kept for the
 * process's life: ~400 KB per build used). Cached per memory, build and thread count. With two
 * threads (default gemmThreads(): REGTRAIN_GEMM_THREADS, else 2 on a 2-CPU machine), products the
 * pool finds worth it run on gemm-pool.ts's two threads, with the same bits as on one.
 */
export function heapGemm(
  kind: WasmGemmKind,
  memory: WebAssembly.Memory,
  malloc: (bytes: number) => number,
  threads = gemmThreads(),
): HeapGemm | { reason: string } {
  const module = readModule(kind);
  if (typeof module === 'string') return { reason: module };
  const chosen = { kind, module };
  const perKind = heapCache.get(memory) ?? {};
  heapCache.set(memory, perKind);
  const key = `${kind}/${threads}`;
  const known = perKind[key];
  if (known) return typeof known === 'string' ? { reason: known } : known;
  let made: HeapGemm | string;
  try {
    const ex = instantiateGemm(chosen.module, memory);
    // The scratch, then 64 bytes for the smoke test's operands.
    const scratch = (malloc(ex.scratchBytes() + 64 + 16) + 15) & ~15;
    if (scratch <= 16) throw new Error('no memory for the GEMM scratch');
    const found = threads >= 2 ? gemmPool(kind) : null;
    const pool = found && !('reason' in found) ? found : null;
    let backoff = 0;
    let nextBackoff = BACKOFF_MIN;
    const g: HeapGemm = {
      kind: chosen.kind,
      gemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc, bias, relu) {
        wasmGemmStats.calls++;
        if (pool && ldc === n && pool.worth(m, n, k)) {
          if (backoff > 0) {
            backoff--;
            wasmGemmStats.backedOff++;
          } else if (pool.ready() && pool.idle()) {
            const r = pool.gemm(memory.buffer, tA, tB, m, n, k, a, lda, b, ldb, c, bias, relu);
            wasmGemmStats.pooled++;
            wasmGemmStats.workerBlocks += r.workerBlocks;
            wasmGemmStats.recomputed += r.recomputed;
            if (r.recomputed > 0 || r.workerBlocks === 0) {
              backoff = nextBackoff;
              nextBackoff = Math.min(BACKOFF_MAX, 2 * nextBackoff);
            } else nextBackoff = BACKOFF_MIN;
            return;
          }
        }
        ex.gemm(+tA, +tB, m, n, k, a, lda, b, ldb, c, ldc, bias, +relu, scratch);
      },
    };
    const tmp = scratch + ex.scratchBytes();
    const ok = smokeTest((a, b, bias, c) => {
      const f = new Float32Array(memory.buffer, tmp, 12);
      f.set(a, 0);
      f.set(b, 4);
      f.set(bias, 8);
      g.gemm(false, false, 2, 2, 2, tmp, 2, tmp + 16, 2, tmp + 40, 2, tmp + 32, true);
      c.set(new Float32Array(memory.buffer, tmp + 40, 4));
    });
    wasmGemmStats.calls--;
    if (!ok) throw new Error(`the ${chosen.kind} GEMM failed its smoke test`);
    made = g;
  } catch (e) {
    made = (e as Error).message.split('\n')[0]!; // e.g. a shared memory (threaded tfjs-wasm) we cannot import as declared
  }
  perKind[key] = made;
  return typeof made === 'string' ? { reason: made } : made;
}

const arrayCache: Partial<Record<WasmGemmKind, ArrayGemm | string>> = {};

/** The GEMM for Float32Arrays: operands are copied into a private wasm memory and C copied back. */
export function arrayGemm(kind: WasmGemmKind): ArrayGemm | { reason: string } {
  const module = readModule(kind);
  if (typeof module === 'string') return { reason: module };
  const chosen = { kind, module };
  const known = arrayCache[kind];
  if (known) return typeof known === 'string' ? { reason: known } : known;
  let made: ArrayGemm | string;
  try {
    const memory = new WebAssembly.Memory({ initial: 16 });
    const ex = instantiateGemm(chosen.module, memory);
    const scratch = 16; // address 0 stays unused: bias 0 means "no bias"
    const data = (scratch + ex.scratchBytes() + 15) & ~15;
    const g: ArrayGemm = {
      kind: chosen.kind,
      gemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc, bias, relu) {
        // Extents of each operand as stored (rows × leading dimension, the last row only as wide as used).
        const aLen = tA ? (k - 1) * lda + m : (m - 1) * lda + k;
        const bLen = tB ? (n - 1) * ldb + k : (k - 1) * ldb + n;
        const cLen = (m - 1) * ldc + n;
        const pa = data;
        const pb = (pa + 4 * aLen + 15) & ~15;
        const pbias = (pb + 4 * bLen + 15) & ~15;
        const pc = (pbias + 4 * (bias ? n : 0) + 15) & ~15;
        const end = pc + 4 * cLen;
        if (end > memory.buffer.byteLength) memory.grow(Math.ceil((end - memory.buffer.byteLength) / 65536));
        const f = new Float32Array(memory.buffer);
        f.set(a.base.subarray(a.offset, a.offset + aLen), pa >>> 2);
        f.set(b.base.subarray(b.offset, b.offset + bLen), pb >>> 2);
        if (bias) f.set(bias.base.subarray(bias.offset, bias.offset + n), pbias >>> 2);
        ex.gemm(+tA, +tB, m, n, k, pa, lda, pb, ldb, pc, ldc, bias ? pbias : 0, +relu, scratch);
        wasmGemmStats.calls++;
        // Rows of C between the n used columns (ldc > n) are not ours to overwrite: copy row by row then.
        if (ldc === n) c.base.set(f.subarray(pc >>> 2, (pc >>> 2) + cLen), c.offset);
        else
          for (let i = 0; i < m; i++)
            c.base.set(f.subarray((pc >>> 2) + i * ldc, (pc >>> 2) + i * ldc + n), c.offset + i * ldc);
      },
    };
    const ok = smokeTest((a, b, bias, c) =>
      g.gemm(
        false,
        false,
        2,
        2,
        2,
        { base: a, offset: 0 },
        2,
        { base: b, offset: 0 },
        2,
        { base: c, offset: 0 },
        2,
        { base: bias, offset: 0 },
        true,
      ),
    );
    wasmGemmStats.calls--;
    if (!ok) throw new Error(`the ${chosen.kind} GEMM failed its smoke test`);
    made = g;
  } catch (e) {
    made = (e as Error).message.split('\n')[0]!;
  }
  arrayCache[kind] = made;
  return typeof made === 'string' ? { reason: made } : made;
}
