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
import * as tf from '@tensorflow/tfjs';

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
  attrs: { strides: number | [number, number]; pad: Pad; dataFormat?: string; dimRoundingMode?: 'floor' | 'round' | 'ceil'; dilations?: number | [number, number] },
): ConvGeometry {
  if (!dilationsAreOne(attrs.dilations)) {
    throw new Error(`${kernel} on wasm: dilations must be 1, got ${JSON.stringify(attrs.dilations)} (dilated convolution gradients are not supported)`);
  }
  if (attrs.dataFormat !== undefined && attrs.dataFormat !== 'NHWC' && attrs.dataFormat !== 'channelsLast') {
    throw new Error(`${kernel} on wasm: dataFormat must be NHWC, got ${attrs.dataFormat}`);
  }
  if (xShape.length !== 4 || filterShape.length !== 4) {
    throw new Error(`${kernel} on wasm: expected a rank-4 input and filter, got shapes [${xShape.join(',')}] and [${filterShape.join(',')}]`);
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
export function filterGradDirect(g: ConvGeometry, x: Float32Array, xOff: number, dy: Float32Array, dyOff: number, out: Float32Array, outOff: number): void {
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
  wasm: { HEAPF32: Float32Array };
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
  if (!d || d.dtype !== 'float32' || d.memoryOffset == null) throw new Error(`${kernel} on wasm: input '${name}' must be a float32 tensor, got ${t.dtype}`);
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
  tf.registerKernel({ kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: wasmConv2DBackpropFilter as unknown as tf.KernelFunc });
}
