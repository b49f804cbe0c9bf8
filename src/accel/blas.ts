/**
 * OpenBLAS through koffi (an optional FFI package): single-precision GEMM on Float32Arrays.
 *
 * Nothing here throws at load time: `loadBlas()` reports `{ ok: false, reason }` when koffi is not
 * installed, no OpenBLAS shared library can be opened, or the environment disables it
 * (`REGTRAIN_BLAS=off`). Callers then keep tfjs's own kernels.
 *
 * Zero-copy: koffi passes a TypedArray argument as a pointer to its bytes (honouring `byteOffset`, so
 * `subarray` views and `new Float32Array(wasmMemory.buffer, offset, n)` views work, also over a
 * SharedArrayBuffer). The pointer is only used during the call, which is what koffi allows.
 *
 * Environment:
 * - `REGTRAIN_BLAS=off` (or `0`, `false`): never load.
 * - `REGTRAIN_BLAS_LIB=/path/libopenblas.so.0`: try this library first.
 * - `REGTRAIN_BLAS_THREADS=N`: OpenBLAS thread count (default: see `defaultThreads`); capped at the CPU count,
 *   and anything but a whole number ≥ 1 is refused (`loadBlas` then reports it as its reason).
 */
import * as os from 'node:os';
import { InputError } from '../errors';
import { switchedOff } from '../env-switch';

/** Minimal view of koffi's API that this module uses (koffi is optional, so no static import). */
interface KoffiLib {
  func(signature: string): (...args: unknown[]) => unknown;
}
interface Koffi {
  load(path: string): KoffiLib;
}

/** The sizes and operands shared by cblas_sgemm and our wrapper: M, N, K, alpha, A, lda, B, ldb, beta, C, ldc. */
type GemmOperands = [
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
];

type RawSgemm = (order: number, transA: number, transB: number, ...operands: GemmOperands) => void;

/** Row-major C = alpha·op(A)·op(B) + beta·C, op(X) = Xᵀ when its flag is set. A is M×K after op, B is K×N. */
export type Sgemm = (transA: boolean, transB: boolean, ...operands: GemmOperands) => void;

export interface Blas {
  ok: true;
  /** The library path that was opened. */
  library: string;
  /** `openblas_get_config()`, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... Cooperlake MAX_THREADS=64". */
  config: string;
  sgemm: Sgemm;
  /** Same as `sgemm` without argument checks (the caller guarantees the extents). */
  sgemmUnchecked: Sgemm;
  setThreads(n: number): void;
  getThreads(): number;
}

export type BlasLoadResult = Blas | { ok: false; reason: string };

const CblasRowMajor = 101;
const CblasNoTrans = 111;
const CblasTrans = 112;

/** Candidate sonames/paths, most specific last-resort paths after the loader's own search. */
export function candidateLibraries(): string[] {
  const triplet =
    process.arch === 'x64'
      ? 'x86_64-linux-gnu'
      : process.arch === 'arm64'
        ? 'aarch64-linux-gnu'
        : `${process.arch}-linux-gnu`;
  const list: string[] = [];
  const fromEnv = process.env.REGTRAIN_BLAS_LIB;
  if (fromEnv) list.push(fromEnv);
  list.push(
    'libopenblas.so.0',
    `/usr/lib/${triplet}/openblas-pthread/libopenblas.so.0`,
    `/usr/lib/${triplet}/libopenblas.so.0`,
    `/usr/lib/${triplet}/openblas-openmp/libopenblas.so.0`,
    `/usr/lib/${triplet}/openblas-serial/libopenblas.so.0`,
    'libopenblas.so',
    'libopenblas.dylib',
    '/opt/homebrew/opt/openblas/lib/libopenblas.dylib',
    '/usr/local/opt/openblas/lib/libopenblas.dylib',
  );
  return list;
}

/**
 * Default OpenBLAS threads: 1 (override with REGTRAIN_BLAS_THREADS). Measured on the 2-core box:
 * a lone 512×784×200 GEMM runs ~1.8× faster on 2 threads (101 → 177–194 GFLOP/s), but the whole
 * training step (lean, wasm) was faster on 1 thread at batch 32 (39.9k vs 22.6k samples/s) and at
 * batch 512 (81k vs 70k): the step's small GEMMs, the JS thread and other processes share 2 cores.
 */
export function defaultThreads(): number {
  return parseBlasThreads(process.env.REGTRAIN_BLAS_THREADS) ?? 1;
}

/**
 * REGTRAIN_BLAS_THREADS as a thread count: null when unset or empty; a whole number ≥ 1 is
 * capped at the number of CPUs (more threads than CPUs only add hand-offs, and a huge value
 * would be passed to OpenBLAS as is); anything else throws an InputError naming the variable.
 * The training step reads the variable through this too.
 */
export function parseBlasThreads(raw: string | undefined, cpus: number = os.availableParallelism()): number | null {
  if (raw === undefined || raw.trim() === '') return null;
  if (!/^\s*\d+\s*$/.test(raw) || Number(raw) < 1)
    throw new InputError(`REGTRAIN_BLAS_THREADS=${raw}: expected a whole number of threads ≥ 1`);
  return Math.min(Number(raw), Math.max(1, cpus));
}

let cached: BlasLoadResult | undefined;

function disabledByEnv(): boolean {
  return switchedOff('REGTRAIN_BLAS');
}

function requireKoffi(): Koffi | string {
  try {
    const k = require('koffi') as Koffi | { default: Koffi };
    return 'load' in k ? k : k.default;
  } catch (e) {
    return `koffi is not installed (${(e as Error).message.split('\n')[0]})`;
  }
}

/**
 * Opens the library at `path` with OPENBLAS_NUM_THREADS set to `threads` for the load only (this process's
 * environment as it was afterwards, so that processes regtrain starts do not inherit it). A threaded OpenBLAS starts
 * its worker threads as it loads, one per CPU but one unless OPENBLAS_NUM_THREADS says otherwise, and each spins
 * (sched_yield) for a while before it sleeps: about 0.1 CPU-s of every process that loads it, beside the main
 * thread on a core it shares, for threads regtrain never uses (1 unless REGTRAIN_BLAS_THREADS or a scheduler's budget
 * says more; openblas_set_num_threads starts more when asked).
 */
function loadStartingThreads(koffi: Koffi, path: string, threads: number): KoffiLib {
  const before = process.env.OPENBLAS_NUM_THREADS;
  process.env.OPENBLAS_NUM_THREADS = String(threads);
  try {
    return koffi.load(path);
  } finally {
    if (before === undefined) delete process.env.OPENBLAS_NUM_THREADS;
    else process.env.OPENBLAS_NUM_THREADS = before;
  }
}

function extentOk(arr: Float32Array, rows: number, cols: number, ld: number): boolean {
  if (rows === 0 || cols === 0) return true;
  return ld >= cols && (rows - 1) * ld + cols <= arr.length;
}

/**
 * Open OpenBLAS once (cached). Never throws. The result's `reason` lists each path tried when none
 * could be opened.
 */
export function loadBlas(opts: { threads?: number; reload?: boolean } = {}): BlasLoadResult {
  if (cached && !opts.reload) {
    if (cached.ok && opts.threads) cached.setThreads(opts.threads);
    return cached;
  }
  cached = tryLoad(opts.threads);
  return cached;
}

function tryLoad(threads?: number): BlasLoadResult {
  try {
    if (disabledByEnv()) return { ok: false, reason: 'disabled by REGTRAIN_BLAS' };
    const koffi = requireKoffi();
    if (typeof koffi === 'string') return { ok: false, reason: koffi };
    const errors: string[] = [];
    const want = threads ?? defaultThreads();
    for (const path of candidateLibraries()) {
      let lib: KoffiLib;
      try {
        lib = loadStartingThreads(koffi, path, want);
      } catch (e) {
        errors.push(`${path}: ${(e as Error).message.split('\n')[0]}`);
        continue;
      }
      let raw: RawSgemm;
      try {
        raw = lib.func(
          'void cblas_sgemm(int order, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)',
        ) as unknown as RawSgemm;
      } catch (e) {
        errors.push(`${path}: no cblas_sgemm (${(e as Error).message.split('\n')[0]})`);
        continue;
      }
      const optional = (sig: string): ((...a: unknown[]) => unknown) | undefined => {
        try {
          return lib.func(sig);
        } catch {
          return undefined;
        }
      };
      const setT = optional('void openblas_set_num_threads(int n)');
      const getT = optional('int openblas_get_num_threads()');
      const getConfig = optional('const char *openblas_get_config()');
      const sgemmUnchecked: Sgemm = (tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) =>
        raw(
          CblasRowMajor,
          tA ? CblasTrans : CblasNoTrans,
          tB ? CblasTrans : CblasNoTrans,
          m,
          n,
          k,
          alpha,
          a,
          lda,
          b,
          ldb,
          beta,
          c,
          ldc,
        );
      const sgemm: Sgemm = (tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) => {
        if (!(m >= 0 && n >= 0 && k >= 0)) throw new RangeError(`sgemm: bad sizes ${m}x${n}x${k}`);
        const okA = tA ? extentOk(a, k, m, lda) : extentOk(a, m, k, lda);
        const okB = tB ? extentOk(b, n, k, ldb) : extentOk(b, k, n, ldb);
        if (!okA || !okB || !extentOk(c, m, n, ldc)) {
          throw new RangeError(
            `sgemm: array too short or bad leading dimension (M=${m} N=${n} K=${k} lda=${lda} ldb=${ldb} ldc=${ldc})`,
          );
        }
        if (m === 0 || n === 0) return;
        sgemmUnchecked(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      };
      // Smoke test: [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]], through subarray views.
      const buf = new Float32Array(16);
      buf.set([1, 2, 3, 4], 1);
      buf.set([5, 6, 7, 8], 6);
      sgemm(false, false, 2, 2, 2, 1, buf.subarray(1, 5), 2, buf.subarray(6, 10), 2, 0, buf.subarray(11, 15), 2);
      if (buf[11] !== 19 || buf[12] !== 22 || buf[13] !== 43 || buf[14] !== 50 || buf[10] !== 0 || buf[15] !== 0) {
        errors.push(`${path}: smoke test gave wrong numbers ${Array.from(buf.subarray(10, 16)).join(',')}`);
        continue;
      }
      const blas: Blas = {
        ok: true,
        library: path,
        config: getConfig ? String(getConfig()) : 'unknown',
        sgemm,
        sgemmUnchecked,
        setThreads: (n: number) => {
          if (setT && Number.isInteger(n) && n > 0) setT(n);
        },
        getThreads: () => (getT ? Number(getT()) : 1),
      };
      blas.setThreads(want);
      return blas;
    }
    return { ok: false, reason: `no usable OpenBLAS: ${errors.join('; ')}` };
  } catch (e) {
    return { ok: false, reason: `BLAS load failed: ${(e as Error).message}` };
  }
}

/** A product's flags, sizes and operands on a wasm memory up to C (byte addresses, row-major, leading dimensions in floats). */
export type HeapGemmHead = [
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
];

/** The same with C's leading dimension. */
export type HeapGemmOperands = [...HeapGemmHead, ldc: number];

/** C = op(A)·op(B) on a wasm memory, no bias. */
export type HeapGemmFn = (...operands: HeapGemmOperands) => void;

/**
 * C = op(A)·op(B) through `blas` on a wasm memory, operands as byte addresses (row-major, leading
 * dimensions in floats): the views OpenBLAS needs, made of `heap()` (the whole memory as floats) at
 * each call, each as long as its operand. For tfjs-wasm's heap and the lean CNN step's arena.
 */
export function sgemmOnHeap(blas: Blas, heap: () => Float32Array): HeapGemmFn {
  return (tA, tB, m, n, k, a, lda, b, ldb, c, ldc) => {
    const h = heap();
    const view = (at: number, rows: number, ld: number, cols: number) =>
      h.subarray(at >>> 2, (at >>> 2) + (rows - 1) * ld + cols);
    blas.sgemmUnchecked(
      tA,
      tB,
      m,
      n,
      k,
      1,
      tA ? view(a, k, lda, m) : view(a, m, lda, k),
      lda,
      tB ? view(b, n, ldb, k) : view(b, k, ldb, n),
      ldb,
      0,
      view(c, m, ldc, n),
      ldc,
    );
  };
}
