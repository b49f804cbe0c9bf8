/**
 * Convolution kernels for tfjs's wasm backend.
 *
 * tfjs-backend-wasm 4.22 registers Conv2D and Conv2DBackpropInput but no Conv2DBackpropFilter, so
 * the gradient of any conv2d kernel throws there ("Kernel 'Conv2DBackpropFilter' not registered").
 * `registerWasmConvKernels()` fills that gap. It is a missing kernel, not a speed-up, so it goes in
 * whenever the wasm backend is used (REGTRAIN_ACCEL=off included).
 *
 * Layout NHWC (tfjs's default and the only one the wasm Conv2D has), any strides, padding 'valid',
 * 'same' or explicit numbers as tfjs passes them (tfjs's own computeConv2DInfo resolves them),
 * dilations 1: tfjs refuses dilated conv gradients itself, and a dilations attribute other than 1
 * is rejected here with a clear error rather than computed wrongly.
 *
 * dW[kh,kw,ci,co] = Σ_{b,oh,ow} x[b, oh·sH + kh − padTop, ow·sW + kw − padLeft, ci] · dy[b,oh,ow,co]
 * summed in float64 in one fixed order (b, oh, ow), rounded to float32 once: identical on every run.
 */
import * as tf from '../tf';
import { loadBlas, sgemmOnHeap, type HeapGemmFn } from './blas';
import { heapModuleLoader, simdOff } from './heap-module';
import { heapGemm, type WasmGemmKind } from './gemm';

type TensorInfo = tf.TensorInfo;

/** The numbers a 2-D convolution's gradients need (NHWC, dilation 1). */
export interface ConvGeometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  fH: number;
  fW: number;
  strideH: number;
  strideW: number;
  padTop: number;
  padLeft: number;
}

type Pad = 'valid' | 'same' | number | number[][];

/** Attributes tfjs passes to Conv2DBackpropFilter (tfjs-core's conv2DBackpropFilter op / Conv2D's gradient). */
interface FilterGradAttrs {
  strides: number | [number, number];
  pad: Pad;
  dataFormat?: string;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
  dilations?: number | [number, number];
}

function dilationsAreOne(d: number | number[] | undefined): boolean {
  if (d === undefined) return true;
  return (typeof d === 'number' ? [d] : d).every((v) => v === 1);
}

/** The geometry from a kernel's shapes and attributes; throws a one-line error for what we do not compute. */
export function convGeometry(
  kernel: string,
  xShape: number[],
  filterShape: number[],
  attrs: {
    strides: number | [number, number];
    pad: Pad;
    dataFormat?: string;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    dilations?: number | [number, number];
  },
): ConvGeometry {
  if (!dilationsAreOne(attrs.dilations)) {
    throw new Error(
      `${kernel} on wasm: dilations must be 1, got ${JSON.stringify(attrs.dilations)} (dilated convolution gradients are not supported)`,
    );
  }
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC' && attrs.dataFormat !== 'channelsLast') {
    throw new Error(`${kernel} on wasm: dataFormat must be NHWC, got ${attrs.dataFormat}`);
  }
  if (xShape.length !== 4 || filterShape.length !== 4) {
    throw new Error(
      `${kernel} on wasm: expected a rank-4 input and filter, got shapes [${xShape.join(',')}] and [${filterShape.join(',')}]`,
    );
  }
  const info = tf.backend_util.computeConv2DInfo(
    xShape as [number, number, number, number],
    filterShape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad as Parameters<typeof tf.backend_util.computeConv2DInfo>[4],
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
  return geometryOf(info);
}

/** A tfjs conv or pooling info (NHWC) as the numbers the gradients need; for pooling inC = outC. */
export function geometryOf(info: tf.backend_util.Conv2DInfo): ConvGeometry {
  return {
    batch: info.batchSize,
    inH: info.inHeight,
    inW: info.inWidth,
    inC: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    outC: info.outChannels,
    fH: info.filterHeight,
    fW: info.filterWidth,
    strideH: info.strideHeight,
    strideW: info.strideWidth,
    padTop: info.padInfo.top,
    padLeft: info.padInfo.left,
  };
}

/**
 * dW (fH×fW×inC×outC, at `out[outOff…]`) from x (NHWC at `x[xOff…]`) and dy (N×outH×outW×outC at
 * `dy[dyOff…]`): float64 sums in the order (b, oh, ow), one rounding to float32 at the end.
 */
export function filterGradDirect(
  g: ConvGeometry,
  x: Float32Array,
  xOff: number,
  dy: Float32Array,
  dyOff: number,
  out: Float32Array,
  outOff: number,
): void {
  const { batch, inH, inW, inC, outH, outW, outC, fH, fW, strideH, strideW, padTop, padLeft } = g;
  const acc = new Float64Array(fH * fW * inC * outC);
  for (let b = 0; b < batch; b++) {
    const xb = xOff + b * inH * inW * inC;
    for (let oh = 0; oh < outH; oh++) {
      for (let ow = 0; ow < outW; ow++) {
        const d = dyOff + ((b * outH + oh) * outW + ow) * outC;
        for (let kh = 0; kh < fH; kh++) {
          const ih = oh * strideH + kh - padTop;
          if (ih < 0 || ih >= inH) continue;
          for (let kw = 0; kw < fW; kw++) {
            const iw = ow * strideW + kw - padLeft;
            if (iw < 0 || iw >= inW) continue;
            const xi = xb + (ih * inW + iw) * inC;
            const ai = (kh * fW + kw) * inC * outC;
            for (let ci = 0; ci < inC; ci++) {
              const xv = x[xi + ci]!;
              const a = ai + ci * outC;
              for (let co = 0; co < outC; co++) acc[a + co] += xv * dy[d + co]!;
            }
          }
        }
      }
    }
  }
  for (let i = 0; i < acc.length; i++) out[outOff + i] = acc[i]!;
}

interface WasmBackendLike {
  dataIdMap: { get(id: unknown): { memoryOffset: number | null; dtype: string } | undefined };
  wasm: { HEAPF32: Float32Array; asm?: { memory?: unknown }; _malloc(bytes: number): number; _free(ptr: number): void };
  makeOutput(shape: number[], dtype: string): TensorInfo;
}

interface KernelArgs {
  inputs: Record<string, TensorInfo | undefined | null>;
  backend: unknown;
  attrs?: Record<string, unknown>;
}

/** Element offset of a float32 tensor in the wasm heap; throws if it is not a plain float32 tensor there. */
function heapIndex(backend: WasmBackendLike, t: TensorInfo, kernel: string, name: string): number {
  const d = backend.dataIdMap.get(t.dataId);
  if (!d || d.dtype !== 'float32' || d.memoryOffset == null)
    throw new Error(`${kernel} on wasm: input '${name}' must be a float32 tensor, got ${t.dtype}`);
  return d.memoryOffset >>> 2;
}

/** Conv2DBackpropFilter for tfjs-wasm: inputs {x, dy}, attrs as tfjs-core's op passes them. */
export function wasmConv2DBackpropFilter(args: KernelArgs): TensorInfo {
  const kernel = 'Conv2DBackpropFilter';
  const backend = args.backend as WasmBackendLike;
  const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
  const attrs = args.attrs as unknown as FilterGradAttrs;
  const g = convGeometry(kernel, x.shape, attrs.filterShape, attrs);
  const want = [g.batch, g.outH, g.outW, g.outC];
  if (dy.shape.length !== 4 || dy.shape.some((v, i) => v !== want[i])) {
    throw new Error(
      `${kernel} on wasm: dy has shape [${dy.shape.join(',')}], expected [${want.join(',')}] for x [${x.shape.join(',')}] and filter [${attrs.filterShape.join(',')}]`,
    );
  }
  const out = backend.makeOutput([g.fH, g.fW, g.inC, g.outC], 'float32');
  // HEAPF32 is read after makeOutput: its malloc may have grown (and replaced) the heap.
  const heap = backend.wasm.HEAPF32;
  const xi = heapIndex(backend, x, kernel, 'x');
  const dyi = heapIndex(backend, dy, kernel, 'dy');
  const oi = backend.dataIdMap.get(out.dataId)!.memoryOffset! >>> 2;
  filterGradDirect(g, heap, xi, heap, dyi, heap, oi);
  return out;
}

/**
 * Registers the conv kernels tfjs-wasm lacks (Conv2DBackpropFilter) under the 'wasm' backend name.
 * Idempotent; a kernel tfjs itself registers (a later tfjs-wasm that has it) is left alone.
 * Safe before or after the wasm backend is initialised (the kernel registry is keyed by name).
 */
export function registerWasmConvKernels(): void {
  if (tf.getKernel('Conv2DBackpropFilter', 'wasm')) return;
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: wasmConv2DBackpropFilter as unknown as tf.KernelFunc,
  });
}

// ---------------------------------------------------------------------------------------------
// The fast path: the conv gradients as one GEMM each (im2col / col2im around it) and a max-pool
// gradient in one pass, installed by installAcceleratedKernels (kernels.ts) when a GEMM is there.

/** The GEMM of a kind on a wasm backend's heap, or null when it cannot run there. */
function heapGemmFn(kind: 'openblas' | WasmGemmKind, backend: WasmBackendLike): HeapGemmFn | null {
  if (kind === 'openblas') {
    const blas = loadBlas();
    if (!blas.ok) return null;
    return sgemmOnHeap(blas, () => backend.wasm.HEAPF32);
  }
  const memory = backend.wasm.asm?.memory;
  if (!memory) return null;
  const g = heapGemm(kind, memory as Parameters<typeof heapGemm>[1], (n) => backend.wasm._malloc(n));
  if ('reason' in g) return null;
  return (tA, tB, m, n, k, a, lda, b, ldb, c, ldc) => g.gemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc, 0, false);
}

/** conv.wat's loops, on a tfjs-wasm heap (byte addresses). */
export interface ConvSimd {
  addTo(dst: number, src: number, n: number): void;
  colSum(x: number, out: number, rows: number, cols: number): void;
  /** dx (nx floats, a multiple of 4) ← 0, then dx[arg[i]] += dy[i] for i < n: the max-pool gradient from maxPoolFwd's indexes. */
  maxPoolScatter(dx: number, nx: number, dy: number, arg: number, n: number): void;
  /** maxPoolForward with SIMD (channels a multiple of 4): `arg` an int32 array in the same memory. */
  maxPoolFwd(x: number, y: number, arg: number, ...geometry: PoolArgs): void;
  /** The max-pool gradient, each window's maximum found again in x (dx zeroed by the caller; no recorded indexes). */
  maxPoolGrad(x: number, dy: number, dx: number, ...geometry: PoolArgs): void;
  /** im2col with SIMD (channels a multiple of 4), the geometry's 12 numbers after the addresses. */
  im2col(x: number, col: number, ...geometry: PoolArgs): void;
  /** col2im with SIMD (channels a multiple of 4): dx (nx floats) zeroed, then the column entries added in im2col's order. */
  col2im(col: number, dx: number, nx: number, ...geometry: PoolArgs): void;
  /** dz ← dz·step(y) (rows × cols, cols a multiple of 4), then out[c] = Σ_r dz[r][c]: reluGrad and colSum in one pass. */
  reluGradColSum(dz: number, y: number, out: number, rows: number, cols: number): void;
  /**
   * Row (kh, kw) of im2colT for a one-channel input and stride 1 across (byte addresses x, col):
   * iw0 the input column of output column lo; zeros outside [lo, hi) and outside the input's rows.
   */
  im2colTRow(
    x: number,
    col: number,
    batch: number,
    inH: number,
    inW: number,
    outH: number,
    outW: number,
    sH: number,
    pT: number,
    kh: number,
    iw0: number,
    lo: number,
    hi: number,
  ): void;
  /**
   * maxPoolScatter, then reluGrad (relu: 1) and the bias gradient colSum of the conv layer under the
   * pool, in one pass, for pools whose windows do not overlap: dz (the layer's gradient) from the
   * pool's dy and arg and the layer's output y; out its bias gradient.
   */
  poolReluGradColSum(
    dy: number,
    arg: number,
    y: number,
    dz: number,
    out: number,
    relu: number,
    ...tiling: TileArgs
  ): void;
}

/** A pool whose windows tile its input (strides = window, no padding), as conv.wat's fused pass takes it. */
export type TileArgs = [
  batch: number,
  inH: number,
  inW: number,
  ch: number,
  outH: number,
  outW: number,
  fH: number,
  fW: number,
];

/** A geometry as conv.wat's loops take it: batch, inH, inW, channels, outH, outW, fH, fW, strides, top/left padding. */
export type PoolArgs = [...TileArgs, sH: number, sW: number, pT: number, pL: number];

/** A geometry's 12 numbers in conv.wat's order. */
export function geometryArgs(g: ConvGeometry): PoolArgs {
  const { batch, inH, inW, inC, outH, outW, fH, fW, strideH, strideW, padTop, padLeft } = g;
  return [batch, inH, inW, inC, outH, outW, fH, fW, strideH, strideW, padTop, padLeft];
}

const loadConvSimd = heapModuleLoader<ConvSimd>('conv.wasm');

/** conv.wasm on this backend's heap; null when not built, REGTRAIN_SIMD=off, or the memory cannot be imported (the JS loops serve). */
function convSimd(backend: WasmBackendLike): ConvSimd | null {
  if (simdOff()) return null;
  const memory = backend.wasm.asm?.memory;
  if (!memory) return null;
  return loadConvSimd(memory);
}

/** How many conv/pool gradients took the fast path (for tests and the bench: proof it ran). */
export const convStats = { forwardGemm: 0, filterGemm: 0, inputGemm: 0, maxPoolGrad: 0, colSum: 0, identity: 0 };

/**
 * Rows (b, oh, ow) × columns (kh, kw, ci) of the input patches, zeros where a patch reaches into the
 * padding: col[(b·outH + oh)·outW + ow][(kh·fW + kw)·inC + ci].
 */
export function im2col(g: ConvGeometry, x: Float32Array, xOff: number, col: Float32Array, colOff: number): void {
  const { batch, inH, inW, inC, outH, outW, fH, fW, strideH, strideW, padTop, padLeft } = g;
  const rowLen = fH * fW * inC;
  const run = fW * inC;
  let r = colOff;
  for (let b = 0; b < batch; b++) {
    const xb = xOff + b * inH * inW * inC;
    for (let oh = 0; oh < outH; oh++) {
      for (let ow = 0; ow < outW; ow++, r += rowLen) {
        const iw0 = ow * strideW - padLeft;
        // The whole filter row inside the input: its fW·inC values are contiguous in NHWC.
        const inside = iw0 >= 0 && iw0 + fW <= inW;
        let c = r;
        for (let kh = 0; kh < fH; kh++, c += run) {
          const ih = oh * strideH + kh - padTop;
          if (ih < 0 || ih >= inH) {
            col.fill(0, c, c + run);
          } else if (inside) {
            const xi = xb + (ih * inW + iw0) * inC;
            // Long runs: one memmove (same heap) beats an element loop; short ones (inC = 1) loop.
            if (run >= 16 && x === col) col.copyWithin(c, xi, xi + run);
            else for (let j = 0; j < run; j++) col[c + j] = x[xi + j]!;
          } else {
            for (let kw = 0; kw < fW; kw++) {
              const iw = iw0 + kw;
              const cc = c + kw * inC;
              if (iw < 0 || iw >= inW) col.fill(0, cc, cc + inC);
              else for (let ci = 0, xi = xb + (ih * inW + iw) * inC; ci < inC; ci++) col[cc + ci] = x[xi + ci]!;
            }
          }
        }
      }
    }
  }
}

/**
 * im2col's transpose: rows (kh, kw, ci) × columns (b, oh, ow), colT[(kh·fW + kw)·inC + ci][(b·outH + oh)·outW + ow],
 * zeros in the padding. For a thin input (inC = 1, the first layer) each row is filled by runs of
 * outW neighbouring pixels, where im2col copies fW·inC = 3 floats at a time (1.07 vs ~0.3 ms on the
 * CNN's first layer at batch 64).
 */
export function im2colT(
  g: ConvGeometry,
  x: Float32Array,
  xOff: number,
  col: Float32Array,
  colOff: number,
  rowOf?: (colOff: number, kh: number, iw0: number, lo: number, hi: number) => void,
): void {
  const { batch, inH, inW, inC, outH, outW, fH, fW, strideH, strideW, padTop, padLeft } = g;
  const rowLen = batch * outH * outW;
  for (let kh = 0; kh < fH; kh++) {
    for (let kw = 0; kw < fW; kw++) {
      // The ow range whose input column is inside: iw = ow·sW + kw − padLeft ∈ [0, inW).
      const lo = Math.min(outW, Math.max(0, Math.ceil((padLeft - kw) / strideW)));
      const hi = Math.max(lo, Math.min(outW, Math.floor((inW - 1 + padLeft - kw) / strideW) + 1));
      // rowOf (conv.wat im2colTRow, in the same heap) copies the whole row (kh, kw) of a one-channel,
      // stride-1 input in one call: the same bits.
      if (rowOf && inC === 1 && strideW === 1 && x === col) {
        rowOf(colOff + (kh * fW + kw) * rowLen, kh, lo + kw - padLeft, lo, hi);
        continue;
      }
      for (let ci = 0; ci < inC; ci++) {
        let r = colOff + ((kh * fW + kw) * inC + ci) * rowLen;
        for (let b = 0; b < batch; b++) {
          const xb = xOff + b * inH * inW * inC + ci;
          for (let oh = 0; oh < outH; oh++, r += outW) {
            const ih = oh * strideH + kh - padTop;
            if (ih < 0 || ih >= inH) {
              col.fill(0, r, r + outW);
              continue;
            }
            if (lo > 0) col.fill(0, r, r + lo);
            if (hi < outW) col.fill(0, r + hi, r + outW);
            const step = strideW * inC;
            const xi0 = xb + (ih * inW + lo * strideW + kw - padLeft) * inC;
            // A contiguous run (stride 1, one channel) in the same heap: one memmove (26 floats on the
            // CNN's first layer: 0.52 → 0.30 ms a call at batch 64), else the element loop.
            if (step === 1 && x === col && hi - lo >= 16) col.copyWithin(r + lo, xi0, xi0 + hi - lo);
            else for (let ow = lo, xi = xi0; ow < hi; ow++, xi += step) col[r + ow] = x[xi]!;
          }
        }
      }
    }
  }
}

/** The reverse of im2col: dx += each column entry at its input position, in the order (b, oh, ow, kh, kw, ci). */
export function col2im(
  g: ConvGeometry,
  col: Float32Array,
  colOff: number,
  dx: Float32Array,
  dxOff: number,
  addTo?: (dst: number, src: number, n: number) => void,
): void {
  const { batch, inH, inW, inC, outH, outW, fH, fW, strideH, strideW, padTop, padLeft } = g;
  dx.fill(0, dxOff, dxOff + batch * inH * inW * inC);
  const rowLen = fH * fW * inC;
  const run = fW * inC;
  let r = colOff;
  for (let b = 0; b < batch; b++) {
    const xb = dxOff + b * inH * inW * inC;
    for (let oh = 0; oh < outH; oh++) {
      for (let ow = 0; ow < outW; ow++, r += rowLen) {
        const iw0 = ow * strideW - padLeft;
        const inside = iw0 >= 0 && iw0 + fW <= inW;
        let c = r;
        for (let kh = 0; kh < fH; kh++, c += run) {
          const ih = oh * strideH + kh - padTop;
          if (ih < 0 || ih >= inH) continue;
          if (inside) {
            const xi = xb + (ih * inW + iw0) * inC;
            // addTo (conv.wat, byte addresses in the same heap) does the same float32 adds with SIMD.
            if (addTo && run >= 16) addTo(4 * xi, 4 * c, run);
            else for (let j = 0; j < run; j++) dx[xi + j] += col[c + j]!;
          } else {
            for (let kw = 0; kw < fW; kw++) {
              const iw = iw0 + kw;
              if (iw < 0 || iw >= inW) continue;
              const cc = c + kw * inC;
              for (let ci = 0, xi = xb + (ih * inW + iw) * inC; ci < inC; ci++) dx[xi + ci] += col[cc + ci]!;
            }
          }
        }
      }
    }
  }
}

type KernelFunc = (args: KernelArgs) => TensorInfo | TensorInfo[];

/** A GEMM per backend object, looked up once per tfjs-wasm module. */
function gemmCache(kind: 'openblas' | WasmGemmKind): (backend: WasmBackendLike) => HeapGemmFn | null {
  let last: { wasm: unknown; gemm: HeapGemmFn | null } | null = null;
  return (backend) => {
    if (last && last.wasm === backend.wasm) return last.gemm;
    last = { wasm: backend.wasm, gemm: heapGemmFn(kind, backend) };
    return last.gemm;
  };
}

function floatIndex(backend: WasmBackendLike, t: TensorInfo): number | null {
  const d = backend.dataIdMap.get(t.dataId);
  return d && d.dtype === 'float32' && d.memoryOffset != null && d.memoryOffset % 4 === 0 ? d.memoryOffset >>> 2 : null;
}

/** Conv2DBackpropFilter as dW = im2col(x)ᵀ · dy (one GEMM, k = N·outH·outW). */
function filterGradGemm(
  gemmOf: (b: WasmBackendLike) => HeapGemmFn | null,
  original: KernelFunc,
  thinTransposed: boolean,
): KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackendLike;
    const { x, dy } = args.inputs as { x: TensorInfo; dy: TensorInfo };
    const attrs = args.attrs as unknown as FilterGradAttrs;
    const gemm = gemmOf(backend);
    if (!gemm || floatIndex(backend, x) === null || floatIndex(backend, dy) === null) return original(args);
    const g = convGeometry('Conv2DBackpropFilter', x.shape, attrs.filterShape, attrs);
    const rows = g.batch * g.outH * g.outW;
    const cols = g.fH * g.fW * g.inC;
    if (dy.shape.join() !== [g.batch, g.outH, g.outW, g.outC].join() || rows === 0) return original(args);
    const out = backend.makeOutput([g.fH, g.fW, g.inC, g.outC], 'float32');
    const col = backend.wasm._malloc(4 * rows * cols);
    try {
      const heap = backend.wasm.HEAPF32;
      const o = backend.dataIdMap.get(out.dataId)!.memoryOffset!;
      if (thinTransposed && g.inC === 1) {
        im2colT(g, heap, floatIndex(backend, x)!, heap, col >>> 2);
        gemm(false, false, cols, g.outC, rows, col, rows, 4 * floatIndex(backend, dy)!, g.outC, o, g.outC);
      } else {
        im2col(g, heap, floatIndex(backend, x)!, heap, col >>> 2);
        gemm(true, false, cols, g.outC, rows, col, cols, 4 * floatIndex(backend, dy)!, g.outC, o, g.outC);
      }
    } finally {
      backend.wasm._free(col);
    }
    convStats.filterGemm++;
    return out;
  };
}

/**
 * Conv2D as y = im2col(x) · W, W seen as (fH·fW·inC) × outC: the rows (b, oh, ow) of the product are
 * y's NHWC layout, so the GEMM writes the output in place, no transposes. Only where im2col copies
 * whole filter rows (fW·inC ≥ 16 floats, one memmove each): for a thin input (the first layer's
 * inC = 1) the copy costs more than XNNPACK's direct convolution, which tfjs-wasm keeps.
 * The GEMM's sums (K = fH·fW·inC products, in k order) differ from XNNPACK's order: float32 rounding.
 */
function forwardGemm(gemmOf: (b: WasmBackendLike) => HeapGemmFn | null, original: KernelFunc): KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackendLike;
    const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
    const attrs = args.attrs as unknown as {
      strides: number | [number, number];
      pad: Pad;
      dataFormat?: string;
      dimRoundingMode?: 'floor' | 'round' | 'ceil';
      dilations?: number | [number, number];
    };
    if (!dilationsAreOne(attrs.dilations) || (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC'))
      return original(args);
    if (x.shape.length !== 4 || filter.shape.length !== 4) return original(args);
    if (filter.shape[1]! * filter.shape[2]! < 16) return original(args);
    const gemm = gemmOf(backend);
    if (!gemm || floatIndex(backend, x) === null || floatIndex(backend, filter) === null) return original(args);
    const g = convGeometry('Conv2D', x.shape, filter.shape, attrs);
    const rows = g.batch * g.outH * g.outW;
    const cols = g.fH * g.fW * g.inC;
    if (rows === 0 || cols === 0) return original(args);
    const out = backend.makeOutput([g.batch, g.outH, g.outW, g.outC], 'float32');
    const col = backend.wasm._malloc(4 * rows * cols);
    try {
      const heap = backend.wasm.HEAPF32;
      im2col(g, heap, floatIndex(backend, x)!, heap, col >>> 2);
      const o = backend.dataIdMap.get(out.dataId)!.memoryOffset!;
      gemm(false, false, rows, g.outC, cols, col, cols, 4 * floatIndex(backend, filter)!, g.outC, o, g.outC);
    } finally {
      backend.wasm._free(col);
    }
    convStats.forwardGemm++;
    return out;
  };
}

/**
 * Identity without a copy: the output shares the input's heap block (one more reference), as tfjs's
 * cpu backend and tfjs-wasm's own Reshape do; tfjs-wasm 4.22 copies, 37 times per CNN training step
 * (the autodiff's pass-through gradients). Tensors are immutable, so sharing is safe.
 */
function identityFunc(original: KernelFunc): KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackendLike & { incRef(id: unknown): void };
    const x = args.inputs.x as TensorInfo;
    if (x.dtype === 'string' || typeof backend.incRef !== 'function') return original(args);
    backend.incRef(x.dataId);
    convStats.identity++;
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

interface InputGradAttrs {
  strides: number | [number, number];
  pad: Pad;
  dataFormat?: string;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  inputShape: [number, number, number, number];
}

/** Conv2DBackpropInput as dx = col2im(dy · Wᵀ), W seen as (fH·fW·inC) × outC. */
function inputGradGemm(gemmOf: (b: WasmBackendLike) => HeapGemmFn | null, original: KernelFunc): KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackendLike;
    const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
    const attrs = args.attrs as unknown as InputGradAttrs;
    const gemm = gemmOf(backend);
    if (!gemm || floatIndex(backend, dy) === null || floatIndex(backend, filter) === null) return original(args);
    const g = convGeometry('Conv2DBackpropInput', attrs.inputShape, filter.shape, attrs);
    const rows = g.batch * g.outH * g.outW;
    const cols = g.fH * g.fW * g.inC;
    if (dy.shape.join() !== [g.batch, g.outH, g.outW, g.outC].join() || rows === 0 || cols === 0) return original(args);
    const out = backend.makeOutput(attrs.inputShape, 'float32');
    const col = backend.wasm._malloc(4 * rows * cols);
    try {
      gemm(
        false,
        true,
        rows,
        cols,
        g.outC,
        4 * floatIndex(backend, dy)!,
        g.outC,
        4 * floatIndex(backend, filter)!,
        g.outC,
        col,
        cols,
      );
      const heap = backend.wasm.HEAPF32;
      const simd = convSimd(backend);
      col2im(
        g,
        heap,
        col >>> 2,
        heap,
        backend.dataIdMap.get(out.dataId)!.memoryOffset! >>> 2,
        simd ? (d, s, n) => simd.addTo(d, s, n) : undefined,
      );
    } finally {
      backend.wasm._free(col);
    }
    convStats.inputGemm++;
    return out;
  };
}

/**
 * MaxPoolGrad in one pass over the pooling windows: each window's dy goes to the first position
 * (row-major within the window) holding its maximum, as tfjs's cpu backend, TensorFlow and PyTorch
 * do; dx sums them in float32 in window order. tfjs-wasm 4.22's own kernel differs in two ways
 * (its running maximum starts at FLT_MIN, not −∞, and it compares with ≥): ties go to the last
 * maximum, and a window whose values are all ≤ 0 loses its gradient. After a relu both only touch
 * inputs whose relu gradient is 0, so a relu → max-pool model gets the same weight gradients.
 */
export function maxPoolGradInto(
  p: ConvGeometry,
  x: Float32Array,
  xOff: number,
  dy: Float32Array,
  dyOff: number,
  dx: Float32Array,
  dxOff: number,
): void {
  const { batch, inH, inW, inC: ch, outH, outW, fH, fW, strideH, strideW, padTop, padLeft } = p;
  dx.fill(0, dxOff, dxOff + batch * inH * inW * ch);
  // Per window, all channels at once: the running maximum and its position per channel, scanning the
  // window's pixels in row-major order with the channels (contiguous in NHWC) innermost.
  const best = new Float32Array(ch);
  const at = new Int32Array(ch);
  for (let b = 0; b < batch; b++) {
    const xb = xOff + b * inH * inW * ch;
    for (let oh = 0; oh < outH; oh++) {
      const h0 = Math.max(0, oh * strideH - padTop);
      const h1 = Math.min(inH, oh * strideH - padTop + fH);
      for (let ow = 0; ow < outW; ow++) {
        const w0 = Math.max(0, ow * strideW - padLeft);
        const w1 = Math.min(inW, ow * strideW - padLeft + fW);
        for (let c = 0; c < ch; c++) {
          best[c] = -Infinity;
          at[c] = -1;
        }
        for (let h = h0; h < h1; h++) {
          for (let w = w0; w < w1; w++) {
            const r = xb + (h * inW + w) * ch;
            for (let c = 0; c < ch; c++) {
              const v = x[r + c]!;
              if (v > best[c]!) {
                best[c] = v;
                at[c] = r + c;
              }
            }
          }
        }
        const d = dyOff + ((b * outH + oh) * outW + ow) * ch;
        for (let c = 0; c < ch; c++) {
          const i = at[c]!;
          if (i >= 0) dx[dxOff - xOff + i] += dy[d + c]!;
        }
      }
    }
  }
}

/**
 * The max-pool forward pass (NHWC) that also records, per output value, the input index of its
 * window's first maximum (row-major within the window, strictly greater replaces: the position
 * maxPoolGradInto, TensorFlow and PyTorch send the gradient to), as an element offset from xOff.
 * The backward pass is then one scatter: dx[arg[i]] += dy[i].
 */
export function maxPoolForward(
  p: ConvGeometry,
  x: Float32Array,
  xOff: number,
  y: Float32Array,
  yOff: number,
  arg: Int32Array,
): void {
  const { batch, inH, inW, inC: ch, outH, outW, fH, fW, strideH, strideW, padTop, padLeft } = p;
  let o = 0;
  for (let b = 0; b < batch; b++) {
    const xb = xOff + b * inH * inW * ch;
    for (let oh = 0; oh < outH; oh++) {
      const h0 = Math.max(0, oh * strideH - padTop);
      const h1 = Math.min(inH, oh * strideH - padTop + fH);
      for (let ow = 0; ow < outW; ow++, o += ch) {
        const w0 = Math.max(0, ow * strideW - padLeft);
        const w1 = Math.min(inW, ow * strideW - padLeft + fW);
        // Per channel, the window's values ch apart: the running maximum in locals (the window's
        // first value to start, so that every window has a position), strictly greater replaces.
        for (let c = 0; c < ch; c++) {
          let at = xb + (h0 * inW + w0) * ch + c;
          let best = x[at]!;
          for (let h = h0; h < h1; h++) {
            for (let w = w0, r = xb + (h * inW + w0) * ch + c; w < w1; w++, r += ch) {
              const v = x[r]!;
              if (v > best) {
                best = v;
                at = r;
              }
            }
          }
          y[yOff + o + c] = best;
          arg[o + c] = at - xOff;
        }
      }
    }
  }
}

function maxPoolGradFunc(original: KernelFunc): KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackendLike;
    const { dy, input } = args.inputs as { dy: TensorInfo; input: TensorInfo };
    const attrs = args.attrs as unknown as {
      filterSize: number | [number, number];
      strides: number | [number, number];
      pad: Pad;
      dimRoundingMode?: 'floor' | 'round' | 'ceil';
    };
    if (input.shape.length !== 4 || floatIndex(backend, dy) === null || floatIndex(backend, input) === null)
      return original(args);
    const info = tf.backend_util.computePool2DInfo(
      input.shape as [number, number, number, number],
      attrs.filterSize,
      attrs.strides,
      1,
      attrs.pad as Parameters<typeof tf.backend_util.computePool2DInfo>[4],
      attrs.dimRoundingMode,
    );
    const out = backend.makeOutput(input.shape, 'float32');
    const p = geometryOf(info);
    const heap = backend.wasm.HEAPF32;
    const xi = floatIndex(backend, input)!;
    const dyi = floatIndex(backend, dy)!;
    const dxi = backend.dataIdMap.get(out.dataId)!.memoryOffset! >>> 2;
    const simd = p.inC % 4 === 0 ? convSimd(backend) : null;
    if (simd) {
      heap.fill(0, dxi, dxi + p.batch * p.inH * p.inW * p.inC);
      simd.maxPoolGrad(
        4 * xi,
        4 * dyi,
        4 * dxi,
        p.batch,
        p.inH,
        p.inW,
        p.inC,
        p.outH,
        p.outW,
        p.fH,
        p.fW,
        p.strideH,
        p.strideW,
        p.padTop,
        p.padLeft,
      );
    } else {
      maxPoolGradInto(p, heap, xi, heap, dyi, heap, dxi);
    }
    convStats.maxPoolGrad++;
    return out;
  };
}

/**
 * Sum over every axis but the last of a float32 tensor (what a conv or dense layer's bias gradient
 * asks for) as column sums in one SIMD pass, row by row: tfjs-wasm first transposes the whole
 * tensor so that the reduced axes come last. Anything else goes to tfjs's kernel.
 */
function sumFunc(original: KernelFunc): KernelFunc {
  return (args) => {
    const backend = args.backend as WasmBackendLike;
    const x = args.inputs.x as TensorInfo;
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((a, b) => a - b);
    const cols = x.shape[rank - 1] ?? 0;
    const leading = rank >= 2 && axes.length === rank - 1 && axes.every((a, i) => a === i);
    const simd = leading && cols % 4 === 0 && cols > 0 && x.dtype === 'float32' ? convSimd(backend) : null;
    const xi = simd ? floatIndex(backend, x) : null;
    if (!simd || xi === null) return original(args);
    const rows = tf.util.sizeFromShape(x.shape) / cols;
    const out = backend.makeOutput(keepDims ? [...x.shape.slice(0, -1).map(() => 1), cols] : [cols], 'float32');
    const o = backend.dataIdMap.get(out.dataId)!.memoryOffset!;
    backend.wasm.HEAPF32.fill(0, o >>> 2, (o >>> 2) + cols);
    simd.colSum(4 * floatIndex(backend, x)!, o, rows, cols);
    convStats.colSum++;
    return out;
  };
}

/**
 * The wrappers installAcceleratedKernels registers on wasm when a GEMM runs its matmuls: kernel
 * name and a function from the registered kernel (kept as the fallback) to its replacement.
 */
export function wasmConvKernelWrappers(
  kind: 'openblas' | WasmGemmKind,
): Array<[string, (original: KernelFunc) => KernelFunc]> {
  const gemmOf = gemmCache(kind);
  // The forward convolution only with OpenBLAS: the wasm GEMM on im2col's copy is slower than
  // XNNPACK's direct convolution there (2.55 vs 2.25 ms on the CNN's second layer, 1.73 with OpenBLAS).
  const forward: Array<[string, (original: KernelFunc) => KernelFunc]> =
    kind === 'openblas' ? [['Conv2D', (o) => forwardGemm(gemmOf, o)]] : [];
  return [
    ...forward,
    ['Identity', (o) => identityFunc(o)],
    // A thin input's filter gradient through im2colT with the wasm GEMM (3.55 → 2.6 ms on the CNN's
    // first layer); OpenBLAS's 9-row no-transpose product swung between 1.5 and 3 ms a step in the
    // CNN step's profile, so it keeps im2col with a transposed A (steady there).
    ['Conv2DBackpropFilter', (o) => filterGradGemm(gemmOf, o, kind !== 'openblas')],
    ['Conv2DBackpropInput', (o) => inputGradGemm(gemmOf, o)],
    ['MaxPoolGrad', (o) => maxPoolGradFunc(o)],
    ['Sum', (o) => sumFunc(o)],
  ];
}
