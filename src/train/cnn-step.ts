/**
 * The lean training step for convolutional models: a tfjs Sequential of Conv2D (relu or linear),
 * MaxPooling2D, Reshape/Flatten and Dense layers (relu or linear hidden, softmax output), with L1/L2
 * kernel penalties and constraints, any of regtrain's optimizers, label smoothing, soft labels.
 *
 * What the dense lean step (./lean-step.ts) does for Dense stacks, for conv stacks: the forward and
 * backward passes written out over Float32Arrays, every product one GEMM (OpenBLAS, or regtrain's
 * SIMD WebAssembly GEMM), no tfjs op and no autodiff tape per step. The tfjs autodiff step it replaces
 * spent two thirds of its time outside the convolutions (about 60 small kernels and the tape's
 * bookkeeping, 25 ms a step at batch 32: issue 23).
 *
 * All of a step's memory (the weights, their gradients, each layer's output and gradient, the im2col
 * copies) lives in one private WebAssembly memory, so that the wasm GEMM and conv.wat's SIMD loops
 * read it where it is and OpenBLAS takes views of it; planned once per batch size. The model's
 * variables stay the truth between steps: each step starts from them when they were assigned since
 * the last one (a resume, weight averaging, a constraint) and assigns the updated weights back.
 *
 * Per layer (NHWC, B images):
 * - Conv2D: y = act(im2col(x)·W + b), W as (fH·fW·inC) × outC; dW = im2col(x)ᵀ·dz (the forward
 *   pass's copy, kept), db = Σ_rows dz, dx = col2im(dz·Wᵀ) (not for the first layer: the input needs none).
 * - MaxPooling2D: the forward pass records each window's first maximum (row-major, as TensorFlow and
 *   PyTorch); the gradient goes there, summed where windows overlap.
 * - Dense: y = act(x·W + b); dW = xᵀ·dz, db = Σ_rows dz, dx = dz·Wᵀ.
 * - ReLU: dz = dy·step(y), step(0) = 0, as tfjs.
 * - Loss: as the dense lean step (sparse or soft-label cross-entropy from the logits, float64 per
 *   sample; label smoothing); penalties l1·Σ|w| + l2·Σw² folded into the optimizer's update.
 * Agreement with the autodiff step: float32 rounding (other summation orders); test/cnn.step.test.ts.
 */
import * as tf from '../tf';
import { loadBlas, sgemmOnHeap } from '../accel/blas';
import {
  col2im,
  convGeometry,
  geometryArgs,
  geometryOf,
  im2col,
  im2colT,
  maxPoolForward,
  type ConvGeometry,
  type ConvSimd,
} from '../accel/conv';
import { heapGemm, type HeapGemm, type WasmGemmKind } from '../accel/gemm';
import { heapModuleLoader, simdOff } from '../accel/heap-module';
import type { Simd } from '../accel/simd';
import { applyConstraints, type ConstraintTerm } from './constraints';
import { softLossGradient, type LeanStepResult, type Penalty } from './lean-step';
import { stepMovingAverage } from './moving-average';
import { Optimizer } from './optimizers';
import { adamOnHeap } from './optimizers/adam';

// The ES2022 lib has no WebAssembly types (they come with DOM); the few used here:
// eslint-disable-next-line @typescript-eslint/no-namespace -- an ambient declaration of a global, not a module
declare namespace WebAssembly {
  class Memory {
    constructor(desc: { initial: number; maximum?: number });
    readonly buffer: ArrayBuffer;
    grow(pages: number): number;
  }
}

export interface CnnStep {
  /** `y`: int32 class indices [B], or float32 soft labels [B, C] (mixUp/cutMix). */
  run(x: tf.Tensor, y: tf.Tensor1D | tf.Tensor2D): LeanStepResult;
  variables(): { name: string; size: number }[];
  /** The last step's gradient of each variable (before the optimizer's penalty and clipping), by name: copies. */
  gradients(): Map<string, Float32Array>;
  /** Which GEMM runs the products, for the step's description. */
  kernels: string;
  dispose(): void;
}

/** C = op(A)·op(B) (+ bias per column, then relu): byte addresses in the step's memory; bias 0 = none. */
type Gemm = HeapGemm['gemm'];

interface Weighted {
  kernel: tf.Variable;
  bias: tf.Variable | null;
  relu: boolean;
  l1: number;
  l2: number;
  layerIndex: number;
}
type Layer =
  | ({
      kind: 'conv';
      filter: [number, number, number, number];
      strides: [number, number];
      pad: 'valid' | 'same';
    } & Weighted)
  | { kind: 'pool'; pool: [number, number]; strides: [number, number]; pad: 'valid' | 'same' }
  | ({ kind: 'dense' } & Weighted);

interface LayerLike {
  getClassName(): string;
  getConfig(): Record<string, unknown>;
  kernel?: { read(): tf.Variable } | null;
  bias?: { read(): tf.Variable } | null;
  activation?: { getClassName(): string } | null;
  biasRegularizer?: unknown;
  activityRegularizer?: unknown;
  outputShape: unknown;
  batchInputShape?: unknown;
}

const pair = (v: unknown): [number, number] => (Array.isArray(v) ? [v[0], v[1]] : [Number(v), Number(v)]);

/**
 * The plan of a model this step covers, or why not: Conv2D / MaxPooling2D / Dense / Reshape / Flatten,
 * channels last, dilation 1, relu or linear activations, a softmax Dense output.
 */
function planLayers(model: tf.Sequential, penalties: readonly Penalty[]): Layer[] | { unsupported: string } {
  const pen = new Map(penalties.map((p) => [p.layerIndex, p]));
  const out: Layer[] = [];
  const layers = model.layers as unknown as LayerLike[];
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i]!;
    const cls = layer.getClassName();
    if (cls === 'Reshape' || cls === 'Flatten') continue; // NHWC is row-major: the same memory
    const cfg = layer.getConfig();
    if (cls === 'MaxPooling2D') {
      if (cfg.dataFormat !== undefined && cfg.dataFormat !== 'channelsLast')
        return { unsupported: `layer ${i} MaxPooling2D: channels first` };
      out.push({
        kind: 'pool',
        pool: pair(cfg.poolSize),
        strides: pair(cfg.strides ?? cfg.poolSize),
        pad: cfg.padding === 'same' ? 'same' : 'valid',
      });
      continue;
    }
    if (cls !== 'Conv2D' && cls !== 'Dense')
      return {
        unsupported: `layer ${i} is ${cls}: the lean CNN step covers Conv2D, MaxPooling2D, Flatten, Reshape and Dense`,
      };
    if (layer.biasRegularizer || layer.activityRegularizer)
      return { unsupported: `layer ${i} has a bias/activity regularizer` };
    if (!layer.kernel) return { unsupported: `layer ${i} is not built` };
    const act = layer.activation ? layer.activation.getClassName() : 'linear';
    const last = i === layers.length - 1;
    if (last ? cls !== 'Dense' || act !== 'softmax' : act !== 'relu' && act !== 'linear')
      return { unsupported: `layer ${i} activation ${act}: need relu/linear hidden layers and a softmax Dense output` };
    const kernel = layer.kernel.read();
    if (!kernel.trainable) return { unsupported: `layer ${i} is frozen` };
    const p = pen.get(i);
    const w: Weighted = {
      kernel,
      bias: layer.bias ? layer.bias.read() : null,
      relu: act === 'relu',
      l1: p?.l1 ?? 0,
      l2: p?.l2 ?? 0,
      layerIndex: i,
    };
    if (cls === 'Dense') {
      out.push({ kind: 'dense', ...w });
      continue;
    }
    if (cfg.dataFormat !== undefined && cfg.dataFormat !== 'channelsLast')
      return { unsupported: `layer ${i} Conv2D: channels first` };
    if (pair(cfg.dilationRate ?? 1).some((d) => d !== 1)) return { unsupported: `layer ${i} Conv2D: dilated` };
    out.push({
      kind: 'conv',
      ...w,
      filter: kernel.shape as [number, number, number, number],
      strides: pair(cfg.strides ?? 1),
      pad: cfg.padding === 'same' ? 'same' : 'valid',
    });
  }
  if (!out.some((l) => l.kind === 'conv' || l.kind === 'pool'))
    return { unsupported: 'no Conv2D or MaxPooling2D layer (the dense lean step covers this model)' };
  for (const p of penalties)
    if ((p.l1 !== 0 || p.l2 !== 0) && !out.some((l) => l.kind !== 'pool' && l.layerIndex === p.layerIndex))
      return { unsupported: `penalty layer ${p.layerIndex} has no kernel` };
  return out;
}

/** A float32 tensor's memory on tfjs-wasm's heap (a view, valid until the next allocation there), or null. */
function wasmFloats(t: tf.Tensor): Float32Array | null {
  if (t.dtype !== 'float32' || tf.getBackend() !== 'wasm') return null;
  const b = tf.backend() as unknown as {
    dataIdMap?: { get(id: unknown): { memoryOffset: number } | undefined };
    wasm?: { HEAPF32: Float32Array };
  };
  const d = b.dataIdMap?.get(t.dataId);
  return d && b.wasm ? new Float32Array(b.wasm.HEAPF32.buffer, d.memoryOffset, t.size) : null;
}

/** A bump allocator over a private wasm memory: 16-byte aligned byte addresses, address 0 never given. */
class Arena {
  readonly memory = new WebAssembly.Memory({ initial: 16 });
  private top = 64;
  private view = new Float32Array(this.memory.buffer);
  alloc(bytes: number): number {
    const at = this.top;
    this.top = (at + bytes + 15) & ~15;
    const need = this.top - this.memory.buffer.byteLength;
    if (need > 0) this.memory.grow(Math.ceil(need / 65536));
    return at;
  }
  /** The whole memory as floats (a fresh view after growth). */
  f32(): Float32Array {
    if (this.view.buffer !== this.memory.buffer) this.view = new Float32Array(this.memory.buffer);
    return this.view;
  }
}

/**
 * CPU milliseconds per phase of the lean CNN steps while `cnnProfile.on` (the bench's --profile): where
 * a step's time goes, e.g. "forward 1 conv", "backward 3 pool", "update". Off, it costs one check per phase.
 */
export const cnnProfile = { on: false, ms: new Map<string, number>() };
function timed<T>(phase: string, fn: () => T): T {
  if (!cnnProfile.on) return fn();
  const c0 = process.cpuUsage();
  try {
    return fn();
  } finally {
    const c = process.cpuUsage(c0);
    cnnProfile.ms.set(phase, (cnnProfile.ms.get(phase) ?? 0) + (c.user + c.system) / 1000);
  }
}

const loadConvSimd = heapModuleLoader<ConvSimd>('conv.wasm');
const loadSimd = heapModuleLoader<Simd>('simd.wasm');

/** The GEMM on the arena: OpenBLAS (then a bias/relu pass), or the wasm GEMM (bias and relu fused). */
function arenaGemm(
  kind: 'openblas' | WasmGemmKind,
  arena: Arena,
  simd: Simd | null,
  threads?: number,
): { gemm: Gemm; label: string } | { reason: string } {
  if (kind === 'openblas') {
    const blas = loadBlas();
    if (!blas.ok) return { reason: blas.reason };
    const sgemm = sgemmOnHeap(blas, () => arena.f32());
    const gemm: Gemm = (tA, tB, m, n, k, a, lda, b, ldb, c, ldc, bias, relu) => {
      sgemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc);
      if (bias || relu) biasAct(arena, simd, c, m, n, bias, relu);
    };
    return { gemm, label: 'OpenBLAS' };
  }
  const g = heapGemm(kind, arena.memory as Parameters<typeof heapGemm>[1], (n) => arena.alloc(n), threads);
  if ('reason' in g) return g;
  return {
    gemm: (tA, tB, m, n, k, a, lda, b, ldb, c, ldc, bias, relu) =>
      g.gemm(tA, tB, m, n, k, a, lda, b, ldb, c, ldc, bias, relu),
    label: `regtrain's ${kind === 'wasm-relaxed-simd' ? 'relaxed-SIMD' : 'SIMD'} WebAssembly GEMM`,
  };
}

/** c[r][j] = act(c[r][j] + bias[j]) over rows × n floats at byte address c. */
function biasAct(arena: Arena, simd: Simd | null, c: number, rows: number, n: number, bias: number, relu: boolean) {
  if (simd) return simd.biasAct(c, rows, n, bias, relu ? 1 : 0);
  const h = arena.f32();
  const ci = c >>> 2;
  const bi = bias >>> 2;
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < n; j++) {
      const v = bias ? Math.fround(h[ci + r * n + j]! + h[bi + j]!) : h[ci + r * n + j]!;
      h[ci + r * n + j] = relu ? Math.max(v, 0) : v;
    }
}

/** Per-layer memory for one batch size (byte addresses in the arena). */
interface BatchPlan {
  B: number;
  input: number;
  /** Per layer: its output, the gradient at its output, the im2col copy (conv), the pool's argmax (pool), geometry. */
  out: number[];
  dOut: number[];
  col: number[];
  /** Per pool layer: the byte address of its int32 argmax indexes (elements from its input), else 0. */
  arg: number[];
  geo: Array<ConvGeometry | null>;
  /** Per layer: the rows and columns of its output seen as a matrix (B·positions × channels or units). */
  rows: number[];
  cols: number[];
}

/**
 * The lean CNN step on `kind`'s GEMM, or why the model is not one it covers. `penalties`: each
 * kernel's L1/L2 factors, as the model's kernelRegularizers say (createTrainStep checks them).
 */
export function createCnnStep(
  model: tf.Sequential,
  optimizer: Optimizer,
  penalties: Penalty[],
  kind: 'openblas' | WasmGemmKind,
  {
    labelSmoothing = 0,
    constraints = [],
    threads,
  }: { labelSmoothing?: number; constraints?: readonly ConstraintTerm[]; threads?: number } = {},
): CnnStep | { unsupported: string } {
  const layers = planLayers(model, penalties);
  if ('unsupported' in layers) return layers;
  const inputShape = (model.layers[0] as unknown as LayerLike).batchInputShape as (number | null)[] | undefined;
  if (!inputShape) return { unsupported: 'the model has no input shape' };
  const inputSize = inputShape.slice(1).reduce<number>((a, b) => a * (b ?? NaN), 1);
  // The shape each layer sees (per image, NHWC): the model's own outputShapes, Reshape/Flatten skipped.
  const shapes: number[][] = [];
  for (const l of model.layers) {
    const s = l.outputShape as (number | null)[];
    if (['Reshape', 'Flatten'].includes(l.getClassName())) continue;
    shapes.push(s.slice(1) as number[]);
  }
  const inShapeOf = (i: number): number[] => {
    if (i > 0) return shapes[i - 1]!;
    // The first weighted/pooling layer's input: the model's last Reshape before it, else the model's input.
    let s = inputShape.slice(1) as number[];
    for (const l of model.layers) {
      const cls = l.getClassName();
      if (cls !== 'Reshape' && cls !== 'Flatten') break;
      s = (l.outputShape as number[]).slice(1);
    }
    return s;
  };
  for (let i = 0; i < layers.length; i++) {
    const l = layers[i]!;
    if (l.kind !== 'dense' && inShapeOf(i).length !== 3)
      return {
        unsupported: `a ${l.kind === 'conv' ? 'Conv2D' : 'MaxPooling2D'} layer needs a height × width × channels input`,
      };
  }

  const arena = new Arena();
  const simd = simdOff() ? null : loadSimd(arena.memory);
  const convSimd = simdOff() ? null : loadConvSimd(arena.memory);
  const chosen = arenaGemm(kind, arena, simd, threads);
  if ('reason' in chosen) return { unsupported: `no GEMM: ${chosen.reason}` };
  const gemm = chosen.gemm;

  // On the SIMD path, the optimizer keeps its slots (Adam's moments) in the arena, where simd.adam reads them.
  if (simd) {
    optimizer.useSlotStore({
      allocate(size) {
        const at = arena.alloc(4 * size) >>> 2;
        return { view: () => arena.f32().subarray(at, at + size), dispose: () => {} };
      },
    });
  }
  const sumsAt = arena.alloc(16);
  const weighted = layers.filter((l): l is Extract<Layer, { kind: 'conv' | 'dense' }> => l.kind !== 'pool');
  const vars = weighted.flatMap((l) => [l.kernel, ...(l.bias ? [l.bias] : [])]);
  // Each variable's weights and gradient in the arena, and the data the arena last took from (or gave to) it.
  const wAt = new Map<tf.Variable, number>();
  const gAt = new Map<tf.Variable, number>();
  const synced = new Map<tf.Variable, unknown>();
  for (const v of vars) {
    wAt.set(v, arena.alloc(4 * v.size));
    gAt.set(v, arena.alloc(4 * v.size));
  }
  const dataIdOf = (v: tf.Variable): unknown => (v as unknown as { dataId: unknown }).dataId;

  const plans = new Map<number, BatchPlan>();
  const planFor = (B: number): BatchPlan => {
    const known = plans.get(B);
    if (known) return known;
    const p: BatchPlan = {
      B,
      input: arena.alloc(4 * B * inputSize),
      out: [],
      dOut: [],
      col: [],
      arg: [],
      geo: [],
      rows: [],
      cols: [],
    };
    layers.forEach((l, i) => {
      const inShape = inShapeOf(i);
      const outSize = shapes[i]!.reduce((a, b) => a * b, 1);
      const channels = shapes[i]![shapes[i]!.length - 1]!;
      p.out.push(arena.alloc(4 * B * outSize));
      p.dOut.push(arena.alloc(4 * B * outSize));
      p.rows.push((B * outSize) / channels);
      p.cols.push(channels);
      if (l.kind === 'conv') {
        const g = convGeometry('Conv2D', [B, ...inShape], l.filter, { strides: l.strides, pad: l.pad });
        p.geo.push(g);
        p.col.push(arena.alloc(4 * g.batch * g.outH * g.outW * g.fH * g.fW * g.inC));
        p.arg.push(0);
      } else if (l.kind === 'pool') {
        const info = tf.backend_util.computePool2DInfo(
          [B, ...inShape] as [number, number, number, number],
          l.pool,
          l.strides,
          1,
          l.pad,
        );
        p.geo.push(geometryOf(info));
        p.col.push(0);
        p.arg.push(arena.alloc(4 * B * outSize));
      } else {
        p.geo.push(null);
        p.col.push(0);
        p.arg.push(0);
      }
    });
    plans.set(B, p);
    return p;
  };

  /** A pool layer's argmax indexes (one per output value), viewed in the arena. */
  const argView = (p: BatchPlan, i: number): Int32Array => {
    const g = p.geo[i]!;
    return new Int32Array(arena.memory.buffer, p.arg[i]!, g.batch * g.outH * g.outW * g.outC);
  };
  /** Each variable's weights into the arena when the variable was assigned since the arena last saw it. */
  const pull = (): void => {
    for (const v of vars) {
      if (synced.get(v) === dataIdOf(v)) continue;
      arena.f32().set(v.dataSync() as Float32Array, wAt.get(v)! >>> 2);
      synced.set(v, dataIdOf(v));
    }
  };
  /** The arena's weights into the variables (tfjs keeps its own copy). */
  const push = (): void => {
    for (const v of vars) {
      const at = wAt.get(v)! >>> 2;
      const t = tf.tensor(arena.f32().subarray(at, at + v.size), v.shape);
      v.assign(t);
      t.dispose();
      synced.set(v, dataIdOf(v));
    }
  };

  /** dz ← dz·step(y) over n floats (the relu gradient, as tfjs's mul(dy, step(y))). */
  const reluGrad = (dz: number, y: number, n: number): void => {
    if (simd) return simd.reluGrad(dz, y, n);
    const h = arena.f32();
    for (let i = 0, d = dz >>> 2, a = y >>> 2; i < n; i++) h[d + i] = h[d + i]! * (h[a + i]! > 0 ? 1 : 0);
  };
  /** out[j] = Σ_r x[r][j], float32 in row order. */
  const colSum = (x: number, out: number, rows: number, cols: number): void => {
    const h = arena.f32();
    h.fill(0, out >>> 2, (out >>> 2) + cols);
    if (convSimd && cols % 4 === 0) return convSimd.colSum(x, out, rows, cols);
    for (let r = 0, xi = x >>> 2; r < rows; r++, xi += cols)
      for (let j = 0; j < cols; j++) h[(out >>> 2) + j] = h[(out >>> 2) + j]! + h[xi + j]!;
  };

  // The backward pass at a conv layer → max pool boundary in one pass (conv.wat; the same bits as the
  // passes apart), for pools whose windows do not overlap (strides = pool size, no padding), channels a
  // multiple of 4. (Its forward twin, the conv layer's bias and relu inside the pool's pass, measured no
  // faster than the two passes: 1.17 against 1.15 ms a step, so it is not done.)
  const plainPool = (p: BatchPlan, i: number): boolean => {
    const g = p.geo[i];
    return (
      layers[i]?.kind === 'pool' &&
      !!g &&
      g.strideH === g.fH &&
      g.strideW === g.fW &&
      g.padTop === 0 &&
      g.padLeft === 0 &&
      g.inC % 4 === 0
    );
  };
  /** Max pool i's gradient, the relu gradient and the bias gradient of the conv layer under it in one pass. */
  const gradInPool = (p: BatchPlan, i: number): boolean => {
    const under = layers[i - 1];
    return !!convSimd && i > 0 && under?.kind === 'conv' && !!under.bias && plainPool(p, i);
  };

  const forward = (p: BatchPlan): void => {
    layers.forEach((l, i) => timed(`forward ${i} ${l.kind}`, () => forwardLayer(p, l, i)));
  };
  const forwardLayer = (p: BatchPlan, l: Layer, i: number): void => {
    {
      const x = i === 0 ? p.input : p.out[i - 1]!;
      const y = p.out[i]!;
      if (l.kind === 'pool') {
        const g = p.geo[i]!;
        if (convSimd && g.inC % 4 === 0) {
          const { batch, inH, inW, inC, outH, outW, fH, fW, strideH, strideW, padTop, padLeft } = g;
          const pool = [batch, inH, inW, inC, outH, outW, fH, fW, strideH, strideW, padTop, padLeft] as const;
          convSimd.maxPoolFwd(x, y, p.arg[i]!, ...pool);
          return;
        }
        const h = arena.f32();
        maxPoolForward(g, h, x >>> 2, h, y >>> 2, argView(p, i));
        return;
      }
      const bias = l.bias ? wAt.get(l.bias)! : 0;
      if (l.kind === 'dense') {
        const [k, n] = l.kernel.shape as [number, number];
        gemm(false, false, p.B, n, k, x, k, wAt.get(l.kernel)!, n, y, n, bias, l.relu);
        return;
      }
      const g = p.geo[i]!;
      const K = g.fH * g.fW * g.inC;
      const h = arena.f32();
      const W = wAt.get(l.kernel)!;
      if (g.inC === 1) {
        // A thin input (the first layer's one channel): the transposed copy, filled by runs of outW
        // neighbouring pixels where im2col copies fW floats at a time (conv.ts im2colT), and Aᵀ in the GEMM.
        const rowOf = convSimd
          ? (colOff: number, kh: number, iw0: number, lo: number, hi: number) => {
              const { batch, inH, inW, outH, outW, strideH, padTop } = g;
              convSimd.im2colTRow(x, 4 * colOff, batch, inH, inW, outH, outW, strideH, padTop, kh, iw0, lo, hi);
            }
          : undefined;
        timed(`forward ${i} conv, of which im2col`, () => im2colT(g, h, x >>> 2, h, p.col[i]! >>> 2, rowOf));
        gemm(true, false, p.rows[i]!, g.outC, K, p.col[i]!, p.rows[i]!, W, g.outC, y, g.outC, bias, l.relu);
        return;
      }
      timed(`forward ${i} conv, of which im2col`, () =>
        convSimd && g.inC % 4 === 0
          ? convSimd.im2col(x, p.col[i]!, ...geometryArgs(g))
          : im2col(g, h, x >>> 2, h, p.col[i]! >>> 2),
      );
      gemm(false, false, p.rows[i]!, g.outC, K, p.col[i]!, K, W, g.outC, y, g.outC, bias, l.relu);
    }
  };

  const backward = (p: BatchPlan): void => {
    for (let i = layers.length - 1; i >= 0; i--) timed(`backward ${i} ${layers[i]!.kind}`, () => backwardLayer(p, i));
  };
  const backwardLayer = (p: BatchPlan, i: number): void => {
    {
      const l = layers[i]!;
      const dy = p.dOut[i]!;
      const dx = i > 0 ? p.dOut[i - 1]! : 0;
      if (l.kind === 'pool') {
        if (!dx) return;
        const g = p.geo[i]!;
        const under = layers[i - 1]!;
        if (under.kind === 'conv' && gradInPool(p, i)) {
          const { batch, inH, inW, inC, outH, outW, fH, fW } = g;
          const out = gAt.get(under.bias!)!;
          const relu = under.relu ? 1 : 0;
          convSimd!.poolReluGradColSum(
            dy,
            p.arg[i]!,
            p.out[i - 1]!,
            dx,
            out,
            relu,
            batch,
            inH,
            inW,
            inC,
            outH,
            outW,
            fH,
            fW,
          );
          return;
        }
        const nx = g.batch * g.inH * g.inW * g.inC;
        if (convSimd && nx % 4 === 0) return convSimd.maxPoolScatter(dx, nx, dy, p.arg[i]!, argView(p, i).length);
        const h = arena.f32();
        const arg = argView(p, i);
        const d0 = dx >>> 2;
        const y0 = dy >>> 2;
        h.fill(0, d0, d0 + g.batch * g.inH * g.inW * g.inC);
        for (let o = 0; o < arg.length; o++) h[d0 + arg[o]!] = h[d0 + arg[o]!]! + h[y0 + o]!;
        return;
      }
      const rows = p.rows[i]!;
      const n = p.cols[i]!;
      if (gradInPool(p, i + 1)) {
        // Done by the pool above (its gradient, this layer's relu gradient and bias gradient in one pass).
      } else if (l.relu && l.bias && convSimd && n % 4 === 0) {
        // The two passes in one (the same float32 operations in the same order), reading dz once.
        convSimd.reluGradColSum(dy, p.out[i]!, gAt.get(l.bias)!, rows, n);
      } else {
        if (l.relu) reluGrad(dy, p.out[i]!, rows * n);
        if (l.bias) colSum(dy, gAt.get(l.bias)!, rows, n);
      }
      const W = wAt.get(l.kernel)!;
      const gW = gAt.get(l.kernel)!;
      if (l.kind === 'dense') {
        const k = l.kernel.shape[0]!;
        const x = i === 0 ? p.input : p.out[i - 1]!;
        gemm(true, false, k, n, p.B, x, k, dy, n, gW, n, 0, false);
        if (dx) gemm(false, true, p.B, k, n, dy, n, W, n, dx, k, 0, false);
        return;
      }
      const g = p.geo[i]!;
      const K = g.fH * g.fW * g.inC;
      const col = p.col[i]!;
      // dW = colᵀ·dz: the thin layer's copy is stored transposed (K × rows) already.
      if (g.inC === 1) gemm(false, false, K, n, rows, col, rows, dy, n, gW, n, 0, false);
      else gemm(true, false, K, n, rows, col, K, dy, n, gW, n, 0, false);
      if (!dx) return;
      // The forward pass's im2col copy is spent: it takes dz·Wᵀ, which col2im sums into dx.
      gemm(false, true, rows, K, n, dy, n, W, n, col, K, 0, false);
      const h = arena.f32();
      timed(`backward ${i} conv, of which col2im`, () =>
        convSimd && g.inC % 4 === 0
          ? convSimd.col2im(col, dx, g.batch * g.inH * g.inW * g.inC, ...geometryArgs(g))
          : col2im(g, h, col >>> 2, h, dx >>> 2, convSimd ? (d, s, c) => convSimd.addTo(d, s, c) : undefined),
      );
    }
  };

  /** The optimizer's update of every variable, in place in the arena; returns the batch's penalty (at the weights before it). */
  const update = (lr: number): number => {
    const h = () => arena.f32();
    const view = (at: number, size: number) => h().subarray(at >>> 2, (at >>> 2) + size);
    const items = weighted.flatMap((l) => [
      { v: l.kernel, l1: Math.fround(l.l1), l2: Math.fround(l.l2), layer: l },
      ...(l.bias ? [{ v: l.bias, l1: 0, l2: 0, layer: null }] : []),
    ]);
    for (const { v } of items) optimizer.ensureSlots(v.name, v.size);
    let penalty = 0;
    if (optimizer.clipping !== null) {
      // Clipping needs every gradient first (globalClipnorm); it folds the penalties' gradients in.
      const grads = items.map(({ v, l1, l2 }) => ({
        w: view(wAt.get(v)!, v.size),
        g: view(gAt.get(v)!, v.size),
        l1,
        l2,
      }));
      optimizer.clipGradients(grads);
      items.forEach(({ v, layer }, j) => {
        const w = grads[j]!.w;
        const sums = optimizer.update({ name: v.name, w, g: grads[j]!.g, out: w, l1: 0, l2: 0 }, lr);
        if (layer) penalty += layer.l1 * sums.abs + layer.l2 * sums.sq;
      });
      return penalty;
    }
    for (const { v, l1, l2, layer } of items) {
      const adam = simd ? optimizer.adamStep(v.name, v.size, lr) : null;
      let sums: { abs: number; sq: number };
      if (simd && adam) {
        // As the dense lean step: one SIMD pass over the multiple of 4, the optimizer's JS loop over the rest.
        const w = wAt.get(v)!;
        const u = { name: v.name, w, g: gAt.get(v)!, out: w, size: v.size, l1, l2 };
        sums = adamOnHeap(simd, h(), u, adam, new Float64Array(arena.memory.buffer, sumsAt, 2));
      } else {
        const w = view(wAt.get(v)!, v.size);
        sums = optimizer.update({ name: v.name, w, g: view(gAt.get(v)!, v.size), out: w, l1, l2 }, lr);
      }
      if (layer) penalty += layer.l1 * sums.abs + layer.l2 * sums.sq;
    }
    return penalty;
  };

  let dz = new Float32Array(0);
  const run = (x: tf.Tensor, y: tf.Tensor1D | tf.Tensor2D): LeanStepResult => {
    const B = x.shape[0]!;
    if (x.size !== B * inputSize)
      throw new Error(`lean CNN step: a batch of shape [${x.shape.join(',')}] for an input of ${inputSize} values`);
    if (y.shape[0] !== B) throw new Error(`lean CNN step: ${y.shape[0]} labels for a batch of ${B}`);
    const lr = optimizer.learningRate();
    const labels = y.dataSync();
    const soft = y.rank === 2;
    const p = planFor(B);
    timed('input', () => {
      pull();
      // On tfjs-wasm straight from the batch's memory on its heap (one copy, not dataSync's two).
      arena.f32().set(wasmFloats(x) ?? (x.dataSync() as Float32Array), p.input >>> 2);
    });
    forward(p);
    const last = layers.length - 1;
    const C = p.cols[last]!;
    if (dz.length !== B * C) dz = new Float32Array(B * C);
    const logits = arena.f32().subarray(p.out[last]! >>> 2, (p.out[last]! >>> 2) + B * C);
    const r = soft
      ? softLossGradient(logits, softmaxRows(logits, B, C), labels, B, C, dz, labelSmoothing)
      : crossEntropyGradient(logits, labels, B, C, dz, labelSmoothing);
    arena.f32().set(dz, p.dOut[last]! >>> 2);
    backward(p);
    const penalty = timed('update', () => update(lr));
    timed('assign', push);
    // As the dense lean step: the moving average after the updates, then the constraints (which
    // assign the variables: the next step pulls their weights).
    stepMovingAverage(optimizer, vars);
    applyConstraints(constraints);
    optimizer.endStep();
    return { ...r, penalty, batchSize: B };
  };

  return {
    run,
    kernels: chosen.label,
    variables: () => vars.map((v) => ({ name: v.name, size: v.size })),
    gradients: () =>
      new Map(vars.map((v) => [v.name, arena.f32().slice(gAt.get(v)! >>> 2, (gAt.get(v)! >>> 2) + v.size)])),
    dispose: () => plans.clear(),
  };
}

/** Row-wise softmax in float32 (for the soft-label accuracy's argmax). */
function softmaxRows(z: Float32Array, B: number, C: number): Float32Array {
  const p = new Float32Array(B * C);
  for (let i = 0; i < B; i++) {
    let m = -Infinity;
    for (let j = 0; j < C; j++) m = Math.max(m, z[i * C + j]!);
    let s = 0;
    for (let j = 0; j < C; j++) s += Math.exp(z[i * C + j]! - m);
    for (let j = 0; j < C; j++) p[i * C + j] = Math.exp(z[i * C + j]! - m) / s;
  }
  return p;
}

/**
 * Sparse categorical cross-entropy from the logits, as the dense lean step's (float64 per sample,
 * rounded to float32 once): the batch's summed loss, smoothed loss and correct count; dz = (softmax(z) − q)/B
 * with q the (smoothed) one-hot target. Accuracy: the first maximum of the float32 probabilities.
 */
export function crossEntropyGradient(
  z: Float32Array,
  labels: ArrayLike<number>,
  B: number,
  C: number,
  dz: Float32Array,
  ls = 0,
): { dataLoss: number; smoothedLoss: number; correct: number } {
  let dataLoss = 0;
  let smoothedLoss = 0;
  let correct = 0;
  const invB = 1 / B;
  const uniform = ls / C;
  for (let i = 0; i < B; i++) {
    const o = i * C;
    const yi = labels[i]!;
    if (!(yi >= 0 && yi < C) || Math.floor(yi) !== yi)
      throw new Error(`lean CNN step: label ${yi} out of range 0..${C - 1}`);
    let m = -Infinity;
    for (let j = 0; j < C; j++) m = Math.max(m, z[o + j]!);
    let sum = 0;
    for (let j = 0; j < C; j++) sum += Math.exp(z[o + j]! - m);
    const lse = m + Math.log(sum);
    let best = 0;
    let bestP = -1;
    let qz = 0;
    for (let j = 0; j < C; j++) {
      const e = Math.exp(z[o + j]! - lse);
      const pj = Math.fround(e);
      if (pj > bestP) {
        bestP = pj;
        best = j;
      }
      const q = (j === yi ? 1 - ls : 0) + uniform;
      qz += q * z[o + j]!;
      dz[o + j] = (e - q) * invB;
    }
    if (best === yi) correct++;
    dataLoss += lse - z[o + yi]!;
    smoothedLoss += lse - qz;
  }
  return { dataLoss, smoothedLoss: ls === 0 ? dataLoss : smoothedLoss, correct };
}
