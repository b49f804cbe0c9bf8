/**
 * GEMM-backed `BatchMatMul` and `_FusedMatMul` kernels for tfjs's `cpu` and `wasm` backends.
 *
 * `installAcceleratedKernels(name)` replaces the backend's registered kernels with wrappers that run
 * a GEMM on the tensors' own memory and allocate the output through the backend the way its own
 * kernels do. The GEMM is OpenBLAS's cblas_sgemm when it loads (on the cpu backend's Float32Arrays;
 * for wasm, views of the module heap at each tensor's `memoryOffset`), else regtrain's WebAssembly
 * SIMD GEMM (gemm.ts: on tfjs-wasm's heap in place; for cpu, copied into its own memory and back).
 * `installedGemm(name)` says which one runs. Anything the wrapper does not handle (non-float32, a broadcast pattern other
 * than "equal batch or batch 1", a bias that is not a length-N vector, an activation other than
 * linear/relu/relu6, prelu weights, empty tensors) goes to the original kernel, which is kept.
 * `uninstallAcceleratedKernels(name)` puts the originals back.
 *
 * Numbers: BLAS and the wasm GEMM sum in a different order than tfjs's loops/XNNPACK, so results
 * agree to float32 rounding: |Δ| ≤ 1e-5 · max|C| on the test shapes (see test/accel.unit.test.ts and
 * test/gemm.test.ts), not bit for bit.
 */
import * as tf from '../tf';
import { wasmSimd, type Simd } from './simd';
import { loadBlas, type Blas } from './blas';
import { arrayGemm, chooseWasmGemm, heapGemm, type WasmGemmKind } from './gemm';
import { registerWasmConvKernels, wasmConvKernelWrappers } from './conv';
import { gemmThreads } from './gemm-pool';
import { InputError } from '../errors';

/** Which GEMM runs tfjs's matmuls on a backend. */
export type GemmKind = 'openblas' | WasmGemmKind;

type TensorInfo = tf.TensorInfo;

interface MatMulAttrs {
  transposeA: boolean;
  transposeB: boolean;
}
interface FusedAttrs extends MatMulAttrs {
  activation?: string | null;
  leakyreluAlpha?: number;
}
interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined | null>;
  backend: unknown;
  attrs?: Record<string, unknown>;
}

/** What a backend must give: float32 memory of a tensor (base array + element offset) and an output allocator. */
interface MemoryAccess {
  /** Base array and element offset of a float32 tensor's data, or null if not plainly available. */
  floats(t: TensorInfo): { base: Float32Array; offset: number } | null;
  /** Allocate a float32 output; returns its info and a getter for (base, offset) valid after all allocations. */
  alloc(shape: number[]): { info: TensorInfo; mem: () => { base: Float32Array; offset: number } };
}

interface WasmBackendLike {
  dataIdMap: { get(id: unknown): { memoryOffset: number | null; dtype: string } | undefined };
  wasm: { HEAPF32: Float32Array };
  makeOutput(shape: number[], dtype: string): TensorInfo;
}
interface CpuBackendLike {
  data: { get(id: unknown): { values?: unknown } | undefined };
  makeTensorInfo(shape: number[], dtype: string, values?: Float32Array): TensorInfo;
}

function wasmAccess(backend: WasmBackendLike): MemoryAccess {
  return {
    floats(t) {
      const d = backend.dataIdMap.get(t.dataId);
      if (!d || d.dtype !== 'float32' || d.memoryOffset == null || d.memoryOffset % 4 !== 0) return null;
      return { base: backend.wasm.HEAPF32, offset: d.memoryOffset >>> 2 };
    },
    alloc(shape) {
      const info = backend.makeOutput(shape, 'float32');
      // Re-read HEAPF32 at use time: a malloc may have grown (and replaced) the heap's buffer.
      return {
        info,
        mem: () => ({ base: backend.wasm.HEAPF32, offset: backend.dataIdMap.get(info.dataId)!.memoryOffset! >>> 2 }),
      };
    },
  };
}

function cpuAccess(backend: CpuBackendLike): MemoryAccess {
  return {
    floats(t) {
      const v = backend.data.get(t.dataId)?.values;
      return v instanceof Float32Array ? { base: v, offset: 0 } : null;
    },
    alloc(shape) {
      const size = shape.reduce((a, b) => a * b, 1);
      const values = new Float32Array(size);
      const info = backend.makeTensorInfo(shape, 'float32', values);
      return { info, mem: () => ({ base: values, offset: 0 }) };
    },
  };
}

interface Plan {
  m: number;
  n: number;
  k: number;
  batch: number;
  batchA: number;
  batchB: number;
  outShape: number[];
}

/** Shapes for C = op(A)·op(B) with leading batch dims, or null when we leave it to the original kernel. */
export function planMatMul(aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean): Plan | null {
  const ra = aShape.length;
  const rb = bShape.length;
  if (ra < 2 || rb < 2) return null;
  const m = transposeA ? aShape[ra - 1] : aShape[ra - 2];
  const kA = transposeA ? aShape[ra - 2] : aShape[ra - 1];
  const kB = transposeB ? bShape[rb - 1] : bShape[rb - 2];
  const n = transposeB ? bShape[rb - 2] : bShape[rb - 1];
  if (kA !== kB) return null; // the original kernel raises tfjs's own error message
  const outerA = aShape.slice(0, -2);
  const outerB = bShape.slice(0, -2);
  let outer: number[];
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  } catch {
    return null;
  }
  const prod = (s: number[]) => s.reduce((x, y) => x * y, 1);
  const batch = prod(outer);
  const batchA = prod(outerA);
  const batchB = prod(outerB);
  // Each operand must either be one matrix reused for every batch or have exactly the output's batch
  // layout (equal product ⇒ equal dims, since each dim is 1 or the output's).
  if (!(batchA === 1 || batchA === batch) || !(batchB === 1 || batchB === batch)) return null;
  if (m === 0 || n === 0 || kA === 0 || batch === 0) return null;
  return { m, n, k: kA, batch, batchA, batchB, outShape: [...outer, m, n] };
}

type Mem = { base: Float32Array; offset: number };

function runBlas(blas: Blas, p: Plan, tA: boolean, tB: boolean, a: Mem, b: Mem, c: Mem): void {
  const { m, n, k } = p;
  const lda = tA ? m : k;
  const ldb = tB ? k : n;
  // One product (every call of the lean steps) without making the list of products for it.
  const list = p.batch === 1 ? null : products(p, tA);
  for (let i = 0, count = list ? list.length : 1; i < count; i++) {
    const q = list?.[i];
    const qa = q ? q.a : 0;
    const qb = q ? q.b : 0;
    const qc = q ? q.c : 0;
    const qm = q ? q.m : m;
    blas.sgemmUnchecked(
      tA,
      tB,
      qm,
      n,
      k,
      1,
      a.base.subarray(a.offset + qa, a.offset + qa + qm * k),
      lda,
      b.base.subarray(b.offset + qb, b.offset + qb + k * n),
      ldb,
      0,
      c.base.subarray(c.offset + qc, c.offset + qc + qm * n),
      n,
    );
  }
}

/**
 * The plan as 2-D products: element offsets of each product's A, B and C from the operands' starts,
 * and its rows. When B is one matrix shared by a batch of untransposed A's, the A's are stacked into
 * one (batch·M)×K by K×N product.
 */
function products(p: Plan, tA: boolean): Array<{ a: number; b: number; c: number; m: number }> {
  const { m, n, k, batch, batchA, batchB } = p;
  if (batch > 1 && batchB === 1 && batchA === batch && !tA) return [{ a: 0, b: 0, c: 0, m: batch * m }];
  const out = [];
  for (let i = 0; i < batch; i++)
    out.push({ a: batchA === 1 ? 0 : i * m * k, b: batchB === 1 ? 0 : i * k * n, c: i * m * n, m });
  return out;
}

const FUSABLE = new Set(['linear', 'relu', 'relu6']);

/**
 * Adds the bias and applies relu/relu6 in one pass. Branch-free (v·(v > 0)): pre-activations are
 * positive or negative at random, and a mispredicted branch per element made this pass cost
 * as much as the layer's GEMM at batch 512. relu gives −0 for negative inputs, which equals 0.
 */
function applyBiasActivation(
  c: Float32Array,
  off: number,
  rows: number,
  n: number,
  bias: Float32Array | null,
  biasOff: number,
  act: string,
): void {
  const end = off + rows * n;
  if (act === 'relu') {
    if (bias) {
      for (let r = off; r < end; r += n) {
        for (let j = 0; j < n; j++) {
          const v = c[r + j]! + bias[biasOff + j]!;
          c[r + j] = v * +(v > 0);
        }
      }
    } else {
      for (let i = off; i < end; i++) {
        const v = c[i]!;
        c[i] = v * +(v > 0);
      }
    }
    return;
  }
  if (bias) {
    for (let r = off; r < end; r += n) {
      for (let j = 0; j < n; j++) c[r + j] += bias[biasOff + j]!;
    }
  }
  if (act === 'relu6') {
    for (let i = off; i < end; i++) c[i] = Math.min(6, Math.max(0, c[i]!));
  }
}

type KernelFunc = (args: KernelArgs) => TensorInfo | TensorInfo[];

/** Runs a planned product C = act(op(A)·op(B) + bias) on one backend's memory (operands as views). */
type Runner = (p: Plan, tA: boolean, tB: boolean, a: Mem, b: Mem, c: Mem, bias: Mem | null, act: string) => void;

/** A GEMM for a backend: the runner for a call's backend object, or null (then tfjs's kernel runs). */
interface Engine {
  kind: GemmKind;
  /** `passes`: simd.wat's bias and activation passes, when the caller has looked them up (else the runner does). */
  runner(backend: unknown, passes?: Simd | null): Runner | null;
}

/** Counters, for tests and benchmarks: how many calls took the OpenBLAS or wasm GEMM path vs fell back. */
export const accelStats = { blasCalls: 0, wasmGemmCalls: 0, fallbacks: 0 };

function count(kind: GemmKind): void {
  if (kind === 'openblas') accelStats.blasCalls++;
  else accelStats.wasmGemmCalls++;
}

function blasEngine(blas: Blas, backendName: string): Engine {
  // A runner per kernel call: the SIMD passes are looked up at its first bias (an environment read, REGTRAIN_SIMD,
  // costs microseconds). The lean step gives the passes it looked up once.
  const runner = (_backend: unknown, given?: Simd | null): Runner => {
    let passes = given;
    return (p, tA, tB, a, b, c, bias, act) => {
      runBlas(blas, p, tA, tB, a, b, c);
      if (!bias && act === 'linear') return;
      if (passes === undefined) passes = backendName === 'wasm' ? wasmSimd() : null;
      biasActivation(p, c, bias, act, act !== 'relu6' ? passes : null);
    };
  };
  return { kind: 'openblas', runner };
}

/** Bias and activation over the product C, rows of p.n: with simd.wat's pass on the wasm heap, else in JS. */
function biasActivation(p: Plan, c: Mem, bias: Mem | null, act: string, simd: Simd | null): void {
  if (simd) {
    // Byte addresses in the wasm heap (0 = no bias: malloc never returns address 0).
    simd.biasAct(
      c.base.byteOffset + 4 * c.offset,
      p.batch * p.m,
      p.n,
      bias ? bias.base.byteOffset + 4 * bias.offset : 0,
      act === 'relu' ? 1 : 0,
    );
  } else {
    applyBiasActivation(c.base, c.offset, p.batch * p.m, p.n, bias ? bias.base : null, bias ? bias.offset : 0, act);
  }
}

interface WasmModuleBackend {
  wasm: { asm?: { memory?: unknown }; _malloc(bytes: number): number };
}

/**
 * The wasm GEMM: on tfjs-wasm's heap (byte address = 4 × element index: HEAPF32 starts at 0), on
 * up to `threads` threads (gemm-pool.ts), or on copies for the cpu backend. Bias and relu run in the
 * GEMM's last pass; relu6 clamps after it.
 */
function wasmEngine(kind: WasmGemmKind, backendName: string, threads: number): Engine {
  const epilogue = (p: Plan, c: Mem, act: string): void => {
    if (act === 'relu6') applyBiasActivation(c.base, c.offset, p.batch * p.m, p.n, null, 0, act);
  };
  if (backendName === 'cpu') {
    return {
      kind,
      runner: () => {
        const g = arrayGemm(kind);
        if ('reason' in g) return null;
        return (p, tA, tB, a, b, c, bias, act) => {
          for (const q of products(p, tA)) {
            const at = { base: a.base, offset: a.offset + q.a };
            const bt = { base: b.base, offset: b.offset + q.b };
            g.gemm(
              tA,
              tB,
              q.m,
              p.n,
              p.k,
              at,
              tA ? q.m : p.k,
              bt,
              tB ? p.k : p.n,
              { base: c.base, offset: c.offset + q.c },
              p.n,
              bias,
              act === 'relu',
            );
          }
          epilogue(p, c, act);
        };
      },
    };
  }
  // One runner per tfjs-wasm module (the backend object stays; this saves a lookup per call).
  let last: { wasm: unknown; run: Runner | null } | null = null;
  return {
    kind,
    runner: (backend) => {
      const wasm = (backend as WasmModuleBackend).wasm;
      if (last && last.wasm === wasm) return last.run;
      last = { wasm, run: heapRunner(wasm) };
      return last.run;
    },
  };
  function heapRunner(wasm: WasmModuleBackend['wasm'] | undefined): Runner | null {
    const memory = wasm?.asm?.memory;
    if (!wasm || !memory || typeof wasm._malloc !== 'function') return null;
    const g = heapGemm(kind, memory as Parameters<typeof heapGemm>[1], (n) => wasm._malloc(n), threads);
    if ('reason' in g) return null;
    return (p, tA, tB, a, b, c, bias, act) => {
      const at = (m: Mem, off: number) => m.base.byteOffset + 4 * (m.offset + off);
      for (const q of products(p, tA)) {
        g.gemm(
          tA,
          tB,
          q.m,
          p.n,
          p.k,
          at(a, q.a),
          tA ? q.m : p.k,
          at(b, q.b),
          tB ? p.k : p.n,
          at(c, q.c),
          p.n,
          bias ? at(bias, 0) : 0,
          act === 'relu',
        );
      }
      epilogue(p, c, act);
    };
  }
}

/**
 * Which tensors may be rewritten in place on tfjs-wasm. Its own MatMul kernels (XNNPACK) create an
 * operator per weight tensor, with a packed copy of the weights, and keep it by the tensor's id until the
 * tensor is disposed: a tensor rewritten in place after one of them read it would be multiplied with its
 * old values from then on. Per tfjs-wasm backend object, the first tensor id no original kernel can have
 * read: the next id when the wrappers went in, moved on each time a wrapper hands a product to the original
 * kernel (a weight made before is replaced by a fresh tensor once, and rewritten in place after that).
 */
const untouchedFromId = new WeakMap<object, number>();

function markUntouchedFrom(backend: unknown): void {
  const b = backend as { dataIdNextNumber?: number } | null;
  if (b && typeof b === 'object') untouchedFromId.set(b, b.dataIdNextNumber ?? Number.POSITIVE_INFINITY);
}

function fellBack(backendName: string, backend: unknown): void {
  accelStats.fallbacks++;
  if (backendName === 'wasm') markUntouchedFrom(backend);
}

/**
 * Whether the float32 tensor with tfjs-wasm's internal id `id` on `backend` can be rewritten in place:
 * regtrain's GEMM runs this backend's matmuls, and the tensor was made after they went in and after the
 * last product they left to the original kernel (so no XNNPACK operator holds a packed copy of it).
 */
export function rewritableInPlace(backend: object, id: number): boolean {
  if (!installed.get('wasm')?.engine) return false;
  // A backend made after the wrappers went in has met no original kernel: every tensor on it counts.
  return id >= (untouchedFromId.get(backend) ?? 0);
}

interface Installed {
  originals: tf.KernelConfig[];
  gemm: GemmKind | null;
  engine: Engine | null;
  /** What was asked for, to tell a repeated install from a change of GEMM. */
  choice: GemmChoice;
  result: InstallResult;
}
const installed = new Map<string, Installed>();

function makeAccess(backendName: string, backend: unknown): MemoryAccess | null {
  if (backendName === 'wasm') return wasmAccess(backend as WasmBackendLike);
  if (backendName === 'cpu') return cpuAccess(backend as CpuBackendLike);
  return null;
}

function batchMatMulFunc(engine: Engine, backendName: string, original: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = args.attrs as unknown as MatMulAttrs;
    const acc = makeAccess(backendName, args.backend);
    const p =
      a.dtype === 'float32' && b.dtype === 'float32' ? planMatMul(a.shape, b.shape, !!transposeA, !!transposeB) : null;
    const am = p && acc ? acc.floats(a) : null;
    const bm = p && acc ? acc.floats(b) : null;
    const run = p && acc && am && bm ? engine.runner(args.backend) : null;
    if (!p || !acc || !run) {
      fellBack(backendName, args.backend);
      return original(args);
    }
    const out = acc.alloc(p.outShape);
    // Heap may have moved during alloc: fetch the input views again.
    run(p, !!transposeA, !!transposeB, acc.floats(a)!, acc.floats(b)!, out.mem(), null, 'linear');
    count(engine.kind);
    return out.info;
  };
}

function fusedMatMulFunc(engine: Engine, backendName: string, original: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, TensorInfo | null | undefined>;
    const attrs = args.attrs as unknown as FusedAttrs;
    const act = attrs.activation == null ? 'linear' : String(attrs.activation);
    const acc = makeAccess(backendName, args.backend);
    const p =
      a && b && a.dtype === 'float32' && b.dtype === 'float32' && preluActivationWeights == null && FUSABLE.has(act)
        ? planMatMul(a.shape, b.shape, !!attrs.transposeA, !!attrs.transposeB)
        : null;
    const biasOk =
      !bias ||
      (bias.dtype === 'float32' &&
        bias.shape.reduce((x, y) => x * y, 1) === p?.n &&
        bias.shape[bias.shape.length - 1] === p?.n);
    const inputsOk = p && acc && biasOk && acc.floats(a!) && acc.floats(b!) && (!bias || acc.floats(bias));
    const run = inputsOk ? engine.runner(args.backend) : null;
    if (!p || !acc || !run) {
      fellBack(backendName, args.backend);
      return original(args);
    }
    const out = acc.alloc(p.outShape);
    const cm = out.mem();
    run(
      p,
      !!attrs.transposeA,
      !!attrs.transposeB,
      acc.floats(a!)!,
      acc.floats(b!)!,
      cm,
      bias ? acc.floats(bias)! : null,
      act,
    );
    count(engine.kind);
    return out.info;
  };
}

interface WasmHeapBackend {
  dataIdMap: { get(id: unknown): { memoryOffset: number | null } | undefined };
  wasm: { HEAPU8: Uint8Array };
  makeOutput(shape: number[], dtype: string): TensorInfo;
}

/**
 * tfjs-wasm 4.22's Slice copies the WHOLE input out of the heap (`readSync`) before taking the slice,
 * so every batch that model.fit (or a loop) slices from a 60000×784 training set costs a 188 MB copy.
 * For a contiguous slice (e.g. rows of a batch along axis 0) this copies only the slice, heap to heap.
 * Other slices and strings go to the original kernel. Needs no BLAS.
 */
function wasmSliceFunc(original: KernelFunc): KernelFunc {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    const { begin, size } = args.attrs as unknown as { begin: number | number[]; size?: number | number[] };
    const bpe = x.dtype === 'float32' || x.dtype === 'int32' ? 4 : x.dtype === 'bool' ? 1 : 0;
    if (!bpe) return original(args);
    const [b, sz] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, begin, size);
    if (!tf.slice_util.isSliceContinous(x.shape, b, sz)) return original(args);
    const backend = args.backend as WasmHeapBackend;
    const out = backend.makeOutput(sz, x.dtype);
    const n = sz.reduce((p, q) => p * q, 1);
    if (n === 0) return out;
    const flat = tf.slice_util.computeFlatOffset(b, tf.util.computeStrides(x.shape));
    const xOff = backend.dataIdMap.get(x.dataId)?.memoryOffset;
    const oOff = backend.dataIdMap.get(out.dataId)?.memoryOffset;
    if (xOff == null || oOff == null) {
      (args.backend as { disposeData(id: unknown): void }).disposeData(out.dataId);
      return original(args);
    }
    const start = xOff + flat * bpe;
    backend.wasm.HEAPU8.copyWithin(oOff, start, start + n * bpe);
    return out;
  };
}

export interface InstallResult {
  /** Whether OpenBLAS runs the matmuls. */
  installed: boolean;
  /** Which GEMM runs the matmuls now: OpenBLAS, regtrain's wasm SIMD GEMM, or none (tfjs's own kernels). */
  gemm: GemmKind | null;
  /** Why OpenBLAS is (not) used. */
  reason: string;
  /** Why the wasm GEMM is (not) used, when OpenBLAS is not: e.g. 'wasm-relaxed-simd GEMM' or 'disabled by REGTRAIN_SIMD'. */
  gemmReason?: string;
  /** Kernel names now wrapped (BatchMatMul/_FusedMatMul; on wasm also Slice, even without a GEMM). */
  kernels?: string[];
}

/**
 * Which GEMM to install: 'auto' = OpenBLAS when it loads, else the wasm SIMD GEMM; 'openblas' or
 * 'wasm' = only that one (for comparisons); 'none' = neither (tfjs's own matmuls; on wasm the Slice
 * fix still goes in).
 */
export type GemmChoice = 'auto' | 'openblas' | 'wasm' | 'none';

/**
 * Register the GEMM kernels for `backendName` ('cpu' or 'wasm'), and on wasm the Slice fix (which
 * needs no GEMM, so it is installed even when `gemm` comes back null). `threads`: OpenBLAS's threads,
 * or the wasm GEMM's (1 or 2; default gemmThreads(): REGTRAIN_GEMM_THREADS, else 2 on 2+ CPUs).
 * Never throws, but for an InputError naming a malformed REGTRAIN_GEMM_THREADS. Safe to call before or
 * after the backend is initialised; the originals' setup/dispose functions are kept on the wrappers.
 * Calling it again with the same choice returns the first result; with another choice, reinstalls.
 */
export function installAcceleratedKernels(
  backendName: string,
  opts: { threads?: number; sliceFix?: boolean; gemm?: GemmChoice } = {},
): InstallResult {
  const choice = opts.gemm ?? 'auto';
  try {
    if (backendName !== 'cpu' && backendName !== 'wasm') {
      return { installed: false, gemm: null, reason: `no BLAS kernels for backend '${backendName}' (only cpu, wasm)` };
    }
    const inst = installed.get(backendName);
    if (inst && inst.choice === choice) {
      if (inst.gemm === 'openblas' && opts.threads) loadBlas({ threads: opts.threads });
      return { ...inst.result, reason: 'already installed' };
    }
    if (inst) uninstallAcceleratedKernels(backendName);
    const blas =
      choice === 'auto' || choice === 'openblas'
        ? loadBlas({ threads: opts.threads })
        : { ok: false as const, reason: `not chosen (gemm: '${choice}')` };
    let engine: Engine | null = null;
    const reason = blas.ok ? `${blas.library} (${blas.config}), ${blas.getThreads()} thread(s)` : blas.reason;
    let gemmReason: string | undefined;
    if (blas.ok) {
      engine = blasEngine(blas, backendName);
    } else if (choice === 'auto' || choice === 'wasm') {
      const wasm = chooseWasmGemm();
      if ('kind' in wasm) engine = wasmEngine(wasm.kind, backendName, opts.threads ?? gemmThreads());
      gemmReason = 'kind' in wasm ? `${wasm.kind} GEMM` : wasm.reason;
    } else {
      gemmReason = `not chosen (gemm: '${choice}')`;
    }
    const originals: tf.KernelConfig[] = [];
    const names: Array<[string, (o: KernelFunc) => KernelFunc]> = [];
    if (backendName === 'wasm' && opts.sliceFix !== false) names.push(['Slice', (o) => wasmSliceFunc(o)]);
    if (engine) {
      const e = engine;
      names.push(['BatchMatMul', (o) => batchMatMulFunc(e, backendName, o)]);
      names.push(['_FusedMatMul', (o) => fusedMatMulFunc(e, backendName, o)]);
      if (backendName === 'wasm') {
        registerWasmConvKernels(); // the direct filter gradient, kept as the fast one's fallback
        names.push(...wasmConvKernelWrappers(e.kind));
      }
    }
    for (const [name, wrap] of names) {
      const orig = tf.getKernel(name, backendName);
      if (!orig) continue;
      originals.push(orig);
      tf.unregisterKernel(name, backendName);
      tf.registerKernel({
        kernelName: name,
        backendName,
        kernelFunc: wrap(orig.kernelFunc as unknown as KernelFunc) as unknown as tf.KernelFunc,
        setupFunc: orig.setupFunc,
        disposeFunc: orig.disposeFunc,
      });
    }
    const kernels = originals.map((c) => c.kernelName);
    let result: InstallResult;
    if (engine && !kernels.includes('BatchMatMul')) {
      result = {
        installed: false,
        gemm: null,
        reason: `backend '${backendName}' has no MatMul kernels registered (is its package loaded?)`,
        kernels,
      };
    } else {
      result = {
        installed: engine?.kind === 'openblas',
        gemm: engine?.kind ?? null,
        reason,
        ...(gemmReason ? { gemmReason } : {}),
        kernels,
      };
    }
    if (originals.length > 0) installed.set(backendName, { originals, gemm: result.gemm, engine, choice, result });
    // The backend object if it is already made (tf.findBackend would start making it).
    if (backendName === 'wasm')
      markUntouchedFrom((tf.engine() as unknown as { registry: Record<string, unknown> }).registry.wasm);
    return result;
  } catch (e) {
    if (e instanceof InputError) throw e; // a malformed REGTRAIN_GEMM_THREADS
    return { installed: false, gemm: null, reason: `install failed: ${(e as Error).message}` };
  }
}

/** Which GEMM runs `backendName`'s matmuls: 'openblas', 'wasm-relaxed-simd', 'wasm-simd', or null (tfjs's own). */
export function installedGemm(backendName: string): GemmKind | null {
  return installed.get(backendName)?.gemm ?? null;
}

/** A float32 matrix in memory: its array and the element offset where it starts. */
export type MatrixAt = Mem;

/**
 * C (m×n, rows contiguous) = act(op(A)·op(B) + bias), with A m×k (k×m when tA) and B k×n (n×k when
 * tB) stored row-major without padding.
 */
export type DirectMatMul = (
  tA: boolean,
  tB: boolean,
  m: number,
  n: number,
  k: number,
  a: MatrixAt,
  b: MatrixAt,
  c: MatrixAt,
  bias: MatrixAt | null,
  act: 'linear' | 'relu',
) => void;

/**
 * The GEMM installed under `backendName`'s BatchMatMul/_FusedMatMul as a plain call, for the lean step:
 * the same runner those kernels call (so the same bits), without tfjs's dispatch, for the current
 * backend object. Null when no GEMM is installed there. `passes`: the SIMD passes for the bias and
 * activation, as the caller looked them up (wasmSimd()); by default the runner looks them up.
 */
export function installedMatMul(backendName: string, passes?: Simd | null): DirectMatMul | null {
  const engine = installed.get(backendName)?.engine;
  const run = engine && tf.getBackend() === backendName ? engine.runner(tf.backend(), passes) : null;
  if (!engine || !run) return null;
  return (tA, tB, m, n, k, a, b, c, bias, act) => {
    run({ m, n, k, batch: 1, batchA: 1, batchB: 1, outShape: [m, n] }, tA, tB, a, b, c, bias, act);
    count(engine.kind);
  };
}

/** Put the backend's original kernels back. Returns false if nothing was installed. */
export function uninstallAcceleratedKernels(backendName: string): boolean {
  const inst = installed.get(backendName);
  if (!inst) return false;
  for (const orig of inst.originals) {
    tf.unregisterKernel(orig.kernelName, backendName);
    tf.registerKernel(orig);
  }
  installed.delete(backendName);
  return true;
}

export function acceleratedKernelsInstalled(backendName: string): boolean {
  return installed.has(backendName);
}
