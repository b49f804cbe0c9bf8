/**
 * A lean training step for a tfjs Sequential model of Dense layers (optionally a leading Flatten), with
 * a final softmax Dense, sparse categorical cross-entropy and any of regtrain's optimizers (SGD with
 * optional momentum/Nesterov, Adam, AdamW; weight decay): the optimizer module's own update, fused
 * with the penalty gradient. It lives in train/ and calls the kernels of src/accel/ (which imports
 * nothing from train/).
 *
 * It runs the same math as `model.fit` / `model.trainOnBatch` + `optimizer.minimize`, but with hand-
 * written gradients instead of the autodiff tape: no per-batch metric tensors, and no gradient for the input batch (autodiff computes dL/dx of the first layer
 * and throws it away: at batch 512 that is a 512×200×784 GEMM, a sixth of the step's FLOPs).
 *
 * Two ways to run it, with the same bits: through tfjs ops (forward through tf.fused.matMul with each
 * layer's own kernel, bias and activation; gradients through tf.matMul/step/mul), so the GEMM
 * installed with installAcceleratedKernels() runs them when there is one and tfjs's own kernels
 * otherwise; or, on tfjs-wasm with an installed GEMM, that GEMM called directly on the tensors' heap
 * memory with the same arguments (runDirect: of tfjs's kernels only the softmax runs, where the ops
 * dispatch 37 a step for the tutorial's model, and at batch 32 those cost more than the products).
 *
 * Semantics, matched to tfjs-layers 4.22:
 * - Loss: sparse categorical cross-entropy from the output layer's logits z, as TF-Keras computes it
 *   (and as the reference step does, src/train/forward.ts): logsumexp(z) − z_y, gradient
 *   (softmax(z) − onehot)/B, in JS per sample in float64 from the float32 logits, then rounded to
 *   float32. No clipping: a sample the model puts below p_y = 1e-7 gets the full gradient. With label
 *   smoothing ls, the targets are q = onehot·(1 − ls) + ls/C (Keras's CategoricalCrossentropy): loss
 *   logsumexp(z) − Σ q_j z_j, gradient (softmax(z) − q)/B.
 * - Penalties: Keras l1·Σ|w| + l2·Σw² on kernels; gradient l1·sign(w) + 2·l2·w with sign(0) = 0, as
 *   Keras (tfjs's own Abs gradient would give −l1 at w = 0; the reference path computes Σ w·sign(w)
 *   to get Keras's gradient, and this step does the same).
 * - ReLU gradient: dy·step(z) with step(0) = 0, as tfjs (mask taken from the layer output a = relu(z):
 *   a > 0 ⇔ z > 0).
 * - The update: the optimizer module's (src/train/optimizers.ts: SGD, momentum, Adam, AdamW, weight
 *   decay), the same code the reference step calls, fused here with the penalty gradient in one pass
 *   per weight tensor over the tensor's own memory.
 * - Gradient clipping and the EMA of the weights (the optimizer's clipnorm/clipvalue/globalClipnorm,
 *   useEma): the optimizer's own code, as the reference step calls it (src/train/optimizers/clipping.ts,
 *   src/train/moving-average.ts), on views of the tensors' own memory (the gradients clipped in place,
 *   no copies), with SIMD passes on tfjs-wasm (the EMA's averages then live on the wasm heap, as the
 *   slots); with clipping, the updates wait for the whole backward pass.
 * - Constraints (kernelConstraint/biasConstraint): applied to each weight after the update, as Keras
 *   (src/train/constraints.ts, the same code the reference step calls).
 * - Dropout (Dropout layers on the input and between Dense layers): inverted dropout as tf.dropout, keep
 *   with probability 1 − rate and scale what is kept by 1/(1 − rate), the identity at inference (the step
 *   only trains). The masks are the reference step's own draws (`dropoutMultiplier`: tfjs's seeded
 *   randomUniform with the same seed, dropoutSeed + layer index), so both paths drop the same units and an
 *   exact resume redraws them; the backward pass multiplies by the same mask.
 * - Accuracy: argmax(p) (first maximum) == y, as tfjs's sparseCategoricalAccuracy.
 *
 * Agreement with trainOnBatch: float32 rounding only (different summation orders); verified ≤ 1e-5
 * relative on weights and losses after 5 steps (test/accel.unit.test.ts).
 */
import * as tf from '../tf';
import { wasmSimd, type Simd } from '../accel/simd';
import { installedMatMul, rewritableInPlace, type DirectMatMul, type MatrixAt } from '../accel/kernels';
import { emaPass, Optimizer, type ClipPasses } from './optimizers';
import { jsClipPasses } from './optimizers/clipping';
import { adamOnHeap } from './optimizers/adam';
import { applyConstraints, type ConstraintTerm } from './constraints';
import { stepMovingAverage } from './moving-average';
import { trainingNoise, type NoiseSpec } from './noise';

/** Per-batch results. `dataLoss` is the SUM over the batch of per-sample cross-entropy (no penalty):
 *  divide by `batchSize` for the batch mean Keras reports (before adding the penalty). */
export interface LeanStepResult {
  dataLoss: number;
  /** The SUM over the batch of the label-smoothed cross-entropy, what the step minimizes (= dataLoss without smoothing). */
  smoothedLoss: number;
  correct: number;
  batchSize: number;
  /** Kernel penalties at the weights before this step's update. */
  penalty: number;
}

export interface LeanStep {
  /**
   * `y`: int32 class indices [B], or float32 soft labels [B, C] (mixUp/cutMix); `dropoutSeed`: the batch's
   * seed for `inputNoise` and the dropout masks (each layer draws with dropoutSeed + its index, as forward()).
   */
  run(x: tf.Tensor2D | tf.Tensor3D, y: tf.Tensor1D | tf.Tensor2D, dropoutSeed?: number): LeanStepResult;
  /** The model's trainable variables this step updates, with their sizes (for optimizer state checks). */
  variables(): { name: string; size: number }[];
  /** Frees the step's scratch tensors (the model's weights and the optimizer are untouched). */
  dispose(): void;
}

export interface Penalty {
  layerIndex: number;
  l1: number;
  l2: number;
}

interface DenseLike {
  getClassName(): string;
  kernel: { read(): tf.Variable } | null;
  bias: { read(): tf.Variable } | null;
  activation: { getClassName(): string } | null;
  kernelRegularizer?: { getConfig?(): Record<string, unknown> } | null;
  biasRegularizer?: unknown;
  activityRegularizer?: unknown;
  units?: number;
  /** A Dropout layer's fields. */
  rate?: number;
  noiseShape?: unknown;
  seed?: unknown;
}

/** A Dropout layer the step applies: its index in the model (its seed's offset) and rate. */
interface DropoutPlan {
  layerIndex: number;
  rate: number;
}

/** A layer's gradients, held until the backward pass ends (gradient clipping). */
interface PendingUpdate {
  d: DensePlan;
  gK: tf.Tensor;
  gB: tf.Tensor | null;
}

interface DensePlan {
  layerIndex: number;
  /** The Dropout layers on this layer's output, in order (before the next Dense layer). */
  dropout: DropoutPlan[];
  kernel: tf.Variable;
  bias: tf.Variable | null;
  act: 'relu' | 'linear' | 'softmax';
  l1: number;
  l2: number;
}

/**
 * The float32 memory of a tensor on the cpu or wasm backend (a view, not a copy), or null. With
 * `exclusive`, only if no other tensor shares the data (so writing to it changes only this tensor).
 * Valid until the next tensor allocation (a wasm malloc may move the heap).
 */
function ownFloats(t: tf.Tensor, exclusive: boolean): Float32Array | null {
  if (t.dtype !== 'float32') return null;
  const name = tf.getBackend();
  const backend = tf.backend() as unknown as {
    dataIdMap?: { get(id: unknown): { memoryOffset: number; refCount: number } | undefined };
    wasm?: { HEAPF32: Float32Array };
    data?: { get(id: unknown): { values?: unknown; refCount: number } | undefined };
  };
  if (name === 'wasm' && backend.dataIdMap && backend.wasm) {
    const d = backend.dataIdMap.get(t.dataId);
    if (!d || (exclusive && d.refCount !== 1)) return null;
    return new Float32Array(backend.wasm.HEAPF32.buffer, d.memoryOffset, t.size);
  }
  if (name === 'cpu' && backend.data) {
    const d = backend.data.get(t.dataId);
    if (!d || !(d.values instanceof Float32Array) || (exclusive && d.refCount !== 1)) return null;
    return d.values.length === t.size ? d.values : null;
  }
  return null;
}

/** The parts of tfjs-wasm's backend the direct step reads: where each tensor's data is, and the heap. */
interface WasmHeapBackend {
  dataIdMap: { get(id: unknown): { id: number; memoryOffset: number; refCount: number } | undefined };
  wasm: { HEAPF32: Float32Array; HEAP32: Int32Array };
}

/** tfjs-wasm's backend when it is the current one (its heap views are Emscripten's, remade when the heap grows). */
function wasmHeapBackend(): WasmHeapBackend | null {
  if (tf.getBackend() !== 'wasm') return null;
  const b = tf.backend() as unknown as Partial<WasmHeapBackend>;
  return b.dataIdMap && b.wasm ? (b as WasmHeapBackend) : null;
}

/**
 * The byte address of a float32 tensor's data on tfjs-wasm's heap, or null (as ownFloats, without
 * making a view: the direct step passes addresses to the GEMM and the SIMD passes).
 */
function heapAddress(b: WasmHeapBackend, t: tf.Tensor, exclusive: boolean): number | null {
  if (t.dtype !== 'float32') return null;
  const d = b.dataIdMap.get(t.dataId);
  if (!d || (exclusive && d.refCount !== 1)) return null;
  return d.memoryOffset;
}

/** Int32 labels [B] where they are on tfjs-wasm's heap (a view: valid until the next allocation), or null. */
function heapLabels(b: WasmHeapBackend, y: tf.Tensor): Int32Array | null {
  if (y.dtype !== 'int32') return null;
  const d = b.dataIdMap.get(y.dataId);
  if (!d) return null;
  return b.wasm.HEAP32.subarray(d.memoryOffset >>> 2, (d.memoryOffset >>> 2) + y.size);
}

/**
 * A view of a kept tensor's memory on the wasm heap, made again only when the heap has grown (a
 * kept tensor's address does not change; a grown heap has a new buffer and detaches old views).
 */
function cachedView(t: tf.Tensor): () => Float32Array {
  let view: Float32Array | null = null;
  return () => {
    const b = wasmHeapBackend();
    if (view && b && view.buffer === b.wasm.HEAPF32.buffer) return view;
    view = ownFloats(t, false)!;
    return view;
  };
}

/**
 * Inverted dropout's multiplier for `size` values, exactly as tf.dropout (tfjs-core 4.22) computes it
 * for a training batch: u = randomUniform(shape, 0, 1, 'float32', seed), then floor(u + keep) / keep
 * with keep = 1 − rate in float32: 0 for a dropped value, float32(1/keep) for a kept one. The uniform
 * draws are tfjs's own (seeded alea, in row-major order whatever the shape), so with the reference
 * step's seed this is the reference step's mask bit for bit.
 */
export function dropoutMultiplier(size: number, rate: number, seed: number): Float32Array {
  const draw = tf.randomUniform([size], 0, 1, 'float32', seed);
  const u = draw.dataSync() as Float32Array;
  draw.dispose();
  const keep = Math.fround(1 - rate);
  const scale = Math.fround(1 / keep);
  const m = new Float32Array(size);
  for (let i = 0; i < size; i++) m[i] = Math.floor(Math.fround(u[i]! + keep)) === 0 ? 0 : scale;
  return m;
}

/** x·m elementwise in float32, in place (a dropout multiplier or its gradient). */
function multiplyInPlace(x: Float32Array, m: Float32Array): void {
  for (let i = 0; i < x.length; i++) x[i] = x[i]! * m[i]!;
}

/** Read {l1, l2} per Dense layer from the model's kernelRegularizers (tfjs L1L2). */
export function penaltiesFromModel(model: tf.Sequential): Penalty[] | { unsupported: string } {
  const out: Penalty[] = [];
  model.layers.forEach((layer, i) => {
    const reg = (layer as unknown as DenseLike).kernelRegularizer;
    if (!reg) return;
    const cfg = reg.getConfig ? reg.getConfig() : {};
    out.push({ layerIndex: i, l1: Number(cfg.l1 ?? 0), l2: Number(cfg.l2 ?? 0) });
  });
  return out;
}

/** Layers with hand-written gradients nowhere in this step: models with them take the reference (autodiff) step. */
const SPATIAL_LAYERS = new Set([
  'Reshape',
  'Conv2D',
  'MaxPooling2D',
  'AveragePooling2D',
  'GlobalAveragePooling2D',
  'SpatialDropout2D',
]);

/**
 * `direct` (default true): on tfjs-wasm with a GEMM installed (installAcceleratedKernels) and the SIMD
 * passes, call that GEMM on the tensors' memory instead of through tfjs's matmul ops (the same bits);
 * false always goes through the ops.
 */
export function createLeanStep(
  model: tf.Sequential,
  optimizer: Optimizer,
  penalties: Penalty[],
  {
    direct = true,
    labelSmoothing = 0,
    constraints = [],
    inputNoise,
  }: {
    direct?: boolean;
    labelSmoothing?: number;
    constraints?: readonly ConstraintTerm[];
    /**
     * A noise layer (gaussianNoise, gaussianDropout, alphaDropout) on the input, before the first Dense
     * layer: no gradient flows through it (the step takes none for the input), so the step only noises
     * the batch, with the seed the reference step's forward pass would use (noiseSeed + layerIndex).
     */
    inputNoise?: { layerIndex: number; noise: NoiseSpec };
  } = {},
): LeanStep | { unsupported: string } {
  const layers = model.layers as unknown as DenseLike[];
  let flatten = false;
  const dense: DensePlan[] = [];
  const fromModel = penaltiesFromModel(model);
  if ('unsupported' in fromModel) return fromModel;
  const pen = new Map(penalties.map((p) => [p.layerIndex, p]));
  for (const p of penalties) {
    if (!(p.l1 >= 0 && p.l2 >= 0)) return { unsupported: `penalty for layer ${p.layerIndex} must be non-negative` };
  }
  // The model's own regularizers and the given penalties must say the same thing (else fit and this differ).
  for (const m of fromModel) {
    const p = pen.get(m.layerIndex);
    if (
      !p ? m.l1 !== 0 || m.l2 !== 0 : Math.fround(p.l1) !== Math.fround(m.l1) || Math.fround(p.l2) !== Math.fround(m.l2)
    ) {
      return {
        unsupported: `penalties do not match layer ${m.layerIndex}'s kernelRegularizer (l1=${m.l1}, l2=${m.l2})`,
      };
    }
  }
  for (const p of penalties) {
    if ((p.l1 !== 0 || p.l2 !== 0) && !fromModel.some((m) => m.layerIndex === p.layerIndex)) {
      return { unsupported: `penalty given for layer ${p.layerIndex}, which has no kernelRegularizer` };
    }
  }
  const spatial = layers.findIndex((l) => SPATIAL_LAYERS.has(l.getClassName()));
  if (spatial >= 0)
    return {
      unsupported: `layer ${spatial} is ${layers[spatial]!.getClassName()}: convolution, pooling and reshape layers train on the autodiff step`,
    };
  // What runs on the batch before the first Dense layer, in the model's order: the input noise, dropout.
  const inputStage: Array<{ layerIndex: number; noise: NoiseSpec } | DropoutPlan> = [];
  for (let i = 0; i < layers.length; i++) {
    const layer = layers[i]!;
    const cls = layer.getClassName();
    if (cls === 'Flatten') {
      if (dense.length > 0 || flatten) return { unsupported: 'Flatten is only supported as the first layer' };
      flatten = true;
      continue;
    }
    if (i === inputNoise?.layerIndex && dense.length === 0) {
      inputStage.push(inputNoise);
      continue;
    }
    if (cls === 'Dropout') {
      if (layer.noiseShape != null || layer.seed != null)
        return { unsupported: `layer ${i} is a Dropout with a noiseShape or seed` };
      const plan = { layerIndex: i, rate: layer.rate ?? 0 };
      if (dense.length === 0) inputStage.push(plan);
      else dense[dense.length - 1]!.dropout.push(plan);
      continue;
    }
    if (cls !== 'Dense') return { unsupported: `layer ${i} is ${cls}: the lean step covers Flatten and Dense layers` };
    if (layer.biasRegularizer || layer.activityRegularizer)
      return { unsupported: `layer ${i} has a bias/activity regularizer` };
    if (!layer.kernel) return { unsupported: `layer ${i} is not built` };
    const actName = layer.activation ? layer.activation.getClassName() : 'linear';
    const last = i === layers.length - 1;
    if (last ? actName !== 'softmax' : actName !== 'relu' && actName !== 'linear') {
      return { unsupported: `layer ${i} activation ${actName}: need relu/linear hidden layers and a softmax output` };
    }
    const p = pen.get(i);
    dense.push({
      layerIndex: i,
      dropout: [],
      kernel: layer.kernel.read(),
      bias: layer.bias ? layer.bias.read() : null,
      act: actName as DensePlan['act'],
      l1: p ? p.l1 : 0,
      l2: p ? p.l2 : 0,
    });
  }
  if (dense.length === 0) return { unsupported: 'no Dense layer' };
  for (const p of penalties) {
    if (!dense.some((d) => d.layerIndex === p.layerIndex))
      return { unsupported: `penalty layer ${p.layerIndex} is not a Dense layer` };
  }
  for (const d of dense) {
    if (!d.kernel.trainable) return { unsupported: `layer ${d.layerIndex} is frozen` };
  }
  const trainable = dense.flatMap((d) => [d.kernel, ...(d.bias ? [d.bias] : [])]);
  let dz = new Float32Array(0);
  let ones: tf.Tensor2D | null = null;
  const onesRow = (B: number): tf.Tensor2D => {
    if (ones && ones.shape[1] === B) return ones;
    ones?.dispose();
    const fresh = tf.keep(tf.ones([1, B]) as tf.Tensor2D);
    ones = fresh;
    return fresh;
  };

  // On tfjs-wasm with the SIMD passes, the optimizer keeps its slots on the wasm heap, where
  // the Adam pass reads them (a kept tensor each, its view made again when the heap has grown).
  // The SIMD passes, looked up once: REGTRAIN_SIMD is read as the step is made (an environment read costs
  // microseconds, at every step ~1% of the tutorial's epoch), as it decides where the slots live.
  const stepSimd: Simd | null = tf.getBackend() === 'wasm' ? wasmSimd() : null;
  const heapSlots = stepSimd !== null;
  if (heapSlots) {
    optimizer.useSlotStore({
      allocate(size) {
        const t = tf.keep(tf.zeros([size]));
        return { view: cachedView(t), dispose: () => t.dispose() };
      },
    });
  }
  // 16 bytes of the wasm heap where the SIMD pass leaves its two float64 sums.
  let scratchTensor: tf.Tensor | null = null;
  let scratchView: Float64Array | null = null;
  const scratchSums = (): Float64Array => {
    if (!scratchTensor) scratchTensor = tf.keep(tf.zeros([4]));
    const f = scratchView && wasmHeapBackend()?.wasm.HEAPF32;
    if (f && scratchView!.buffer === f.buffer) return scratchView!;
    const v = ownFloats(scratchTensor, false)!;
    scratchView = new Float64Array(v.buffer, v.byteOffset, 2);
    return scratchView;
  };
  /**
   * The optimizer's update of one variable with the penalty gradient l1·sign(w) + 2·l2·w folded in,
   * in one pass over the tensors' memory: on cpu in place; on wasm in place where no XNNPACK operator
   * can hold a packed copy of the weight (rewritableInPlace: regtrain's GEMM runs the matmuls), else
   * into a fresh tensor that is then assigned (a stale packed copy gave wrong losses from step 2 on).
   * In place, no tensor is made, assigned and disposed per weight per step (3% of the tutorial's epoch).
   * Elsewhere (tfjs-node, or shared data) through copies. Plain SGD on wasm runs as a SIMD loop
   * (simd.wat), bit-identical to the optimizer's JS loop. Returns Σ|w| and Σw² at the old weights; the
   * SIMD loop leaves a sum at 0 when `penalty` has no factor for it (the other paths always sum).
   */
  const applyUpdate = (
    v: tf.Variable,
    g: tf.Tensor,
    l1: number,
    l2: number,
    lr: number,
    penalty: { l1: number; l2: number } = { l1, l2 },
  ): { abs: number; sq: number } => {
    const backendName = tf.getBackend();
    const simd = backendName === 'wasm' ? stepSimd : null;
    // Allocations first (slots, the sums' scratch): they may grow the wasm heap and detach every view taken before.
    optimizer.ensureSlots(v.name, v.size);
    if (backendName === 'wasm') scratchSums();
    const wasm = backendName === 'wasm' ? wasmHeapBackend() : null;
    const zeroCopy = wasm
      ? heapAddress(wasm, v, true) !== null && heapAddress(wasm, g, false) !== null
      : backendName === 'cpu' && ownFloats(v, true) && ownFloats(g, false);
    if (!zeroCopy) {
      const out = new Float32Array(v.size);
      const sums = optimizer.update(
        { name: v.name, w: v.dataSync() as Float32Array, g: g.dataSync() as Float32Array, out, l1, l2 },
        lr,
      );
      const next = tf.tensor(out, v.shape);
      v.assign(next);
      next.dispose();
      return sums;
    }
    let fresh: tf.Tensor | null = null;
    if (wasm && !rewritableInPlace(wasm, wasm.dataIdMap.get(v.dataId)!.id)) {
      const b = wasm as unknown as { makeOutput(shape: number[], dtype: string): tf.TensorInfo };
      fresh = tf.engine().makeTensorFromTensorInfo(b.makeOutput(v.shape.slice(), 'float32'));
    }
    let sums: { abs: number; sq: number };
    // Slot views and addresses only after the allocation above (it may grow the heap).
    const adam = simd && heapSlots ? optimizer.adamStep(v.name, v.size, lr) : null;
    const sgdDecay = optimizer.plainSgdDecay(v.name);
    if (wasm && simd && (adam || sgdDecay !== null)) {
      const w = heapAddress(wasm, v, false)!;
      const u = {
        name: v.name,
        w,
        g: heapAddress(wasm, g, false)!,
        out: fresh ? heapAddress(wasm, fresh, true)! : w,
        size: v.size,
        l1,
        l2,
      };
      if (adam) {
        // Adam's moments live on the wasm heap (heapSlots): one SIMD pass, the JS loop for the tail.
        sums = adamOnHeap(simd, wasm.wasm.HEAPF32, u, adam, scratchSums());
      } else {
        // SIMD over the multiple of 4, the optimizer's JS loop over the last few (none for a multiple of 4).
        const n4 = v.size & ~3;
        const scratch = scratchSums();
        const wanted = (penalty.l1 !== 0 ? 1 : 0) | (penalty.l2 !== 0 ? 2 : 0);
        simd.sgd(u.w, u.g, u.out, n4, l1, Math.fround(2 * l2), Math.fround(-lr), sgdDecay!, scratch.byteOffset, wanted);
        sums = { abs: scratch[0]!, sq: scratch[1]! };
        if (n4 !== v.size) {
          const heap = wasm.wasm.HEAPF32;
          const tail = (at: number) => heap.subarray((at >>> 2) + n4, (at >>> 2) + v.size);
          const t = optimizer.update({ name: v.name, w: tail(u.w), g: tail(u.g), out: tail(u.out), l1, l2 }, lr);
          sums = { abs: sums.abs + t.abs, sq: sums.sq + t.sq };
        }
      }
    } else {
      const W = ownFloats(v, false)!;
      sums = optimizer.update(
        { name: v.name, w: W, g: ownFloats(g, false)!, out: fresh ? ownFloats(fresh, true)! : W, l1, l2 },
        lr,
      );
    }
    if (fresh) {
      v.assign(fresh);
      fresh.dispose();
    }
    return sums;
  };

  /**
   * dA · step(a), the relu gradient: on wasm one SIMD pass over dA's own memory (a fresh tensor only
   * this step holds), with tfjs's results bit for bit; else tfjs's mul and step.
   */
  const reluGrad = (dA: tf.Tensor2D, a: tf.Tensor2D): tf.Tensor2D => {
    const simd = tf.getBackend() === 'wasm' ? stepSimd : null;
    const D = simd ? ownFloats(dA, true) : null;
    const A = D ? ownFloats(a, false) : null;
    if (!simd || !D || !A) return tf.mul(dA, tf.step(a));
    simd.reluGrad(D.byteOffset, A.byteOffset, D.length);
    return dA;
  };

  /**
   * From the logits z and probabilities p (B×C), the batch's summed cross-entropy and correct
   * count; writes dL/dz (mean over the batch) into `dz`, which may be z's own memory. `soft`:
   * labels are B×C probabilities (mixUp/cutMix), the categorical cross-entropy −Σ_j t_j·log softmax(z)_j
   * with gradient (softmax(z)·Σt − t)/B, the autodiff gradient of that loss; accuracy compares the
   * first maxima of p and t, as Keras's categorical accuracy.
   */
  const lossGradient = (
    z: Float32Array,
    p: ArrayLike<number>,
    labels: ArrayLike<number>,
    B: number,
    C: number,
    dz: Float32Array,
    soft = false,
  ): { dataLoss: number; smoothedLoss: number; correct: number } => {
    if (soft) return softLossGradient(z, p, labels, B, C, dz, labelSmoothing);
    let dataLoss = 0;
    let smoothedLoss = 0;
    let correct = 0;
    const invB = 1 / B;
    // Label smoothing: targets q_j = (1 − ls)·δ_jy + ls/C; loss −Σ q_j log p_j = lse − Σ q_j z_j, dz_j = (p_j − q_j)/B.
    const ls = labelSmoothing;
    const uniform = ls / C;
    for (let i = 0; i < B; i++) {
      const o = i * C;
      const yi = labels[i]!;
      if (!(yi >= 0 && yi < C) || Math.floor(yi) !== yi)
        throw new Error(`lean step: label ${yi} out of range 0..${C - 1}`);
      // Accuracy: first index of the maximum probability, as tfjs's argMax.
      let best = 0;
      for (let j = 1; j < C; j++) if (p[o + j]! > p[o + best]!) best = j;
      if (best === yi) correct++;
      // −log softmax(z)_y = logsumexp(z) − z_y, shifted by the maximum; dz_j = (softmax(z)_j − δ_jy)/B.
      let m = -Infinity;
      for (let j = 0; j < C; j++) m = Math.max(m, z[o + j]!);
      let sum = 0;
      for (let j = 0; j < C; j++) sum += Math.exp(z[o + j]! - m);
      const lse = m + Math.log(sum);
      dataLoss += lse - z[o + yi]!;
      if (ls === 0) {
        for (let j = 0; j < C; j++) dz[o + j] = (Math.exp(z[o + j]! - lse) - (j === yi ? 1 : 0)) * invB;
        continue;
      }
      let qz = 0;
      for (let j = 0; j < C; j++) {
        const q = (j === yi ? 1 - ls : 0) + uniform;
        qz += q * z[o + j]!;
        dz[o + j] = (Math.exp(z[o + j]! - lse) - q) * invB;
      }
      smoothedLoss += lse - qz;
    }
    return { dataLoss, smoothedLoss: ls === 0 ? dataLoss : smoothedLoss, correct };
  };

  /** The step through tfjs ops (any backend; the kernels installed under them when there are some). */
  const runOps = (
    x: tf.Tensor2D | tf.Tensor3D,
    labels: ArrayLike<number>,
    lr: number,
    soft: boolean,
    masks: Float32Array[][],
  ): Omit<LeanStepResult, 'batchSize'> => {
    const B = x.shape[0];
    let result = { dataLoss: 0, smoothedLoss: 0, correct: 0 };
    let batchPenalty = 0;
    const pending: PendingUpdate[] = [];
    tf.tidy(() => {
      // Forward, keeping each layer's input.
      let h: tf.Tensor2D = flatten ? tf.reshape(x, [B, -1]) : (x as tf.Tensor2D);
      if (h.rank !== 2) throw new Error(`lean step: input of rank ${x.rank} needs a Flatten layer`);
      const inputs: tf.Tensor2D[] = [];
      dense.forEach((d, li) => {
        inputs.push(h);
        const act = d.act === 'softmax' ? 'linear' : d.act;
        h = tf.fused.matMul({
          a: h,
          b: d.kernel as tf.Tensor2D,
          bias: d.bias ?? undefined,
          activation: act,
        }) as tf.Tensor2D;
        // This layer's dropout: the next layer's input is the dropped output (tf.dropout's mul(x, multiplier)).
        for (const m of masks[li]!) h = tf.mul(h, tf.tensor2d(m, h.shape));
      });
      // h: the softmax layer's logits.
      const C = h.shape[1];
      if (dz.length !== B * C) dz = new Float32Array(B * C);
      result = lossGradient(h.dataSync() as Float32Array, tf.softmax(h).dataSync(), labels, B, C, dz, soft);
      let dZ: tf.Tensor2D = tf.tensor2d(dz, [B, C]);
      // Backward, top layer first; each layer's weight is updated after its input gradient is taken.
      for (let li = dense.length - 1; li >= 0; li--) {
        const d = dense[li]!;
        const a = inputs[li]!;
        const gK: tf.Tensor = tf.matMul(a, dZ, true, false);
        // Bias gradient Σ_rows dZ as ones(1×B)·dZ: a GEMV through the (BLAS) MatMul kernel; the wasm
        // backend's Sum over axis 0 transposes first and costs more than the weight-gradient GEMM.
        const gB = d.bias ? tf.reshape(tf.matMul(onesRow(B), dZ), [dZ.shape[1]]) : null;
        let dPrev: tf.Tensor2D | null = null;
        if (li > 0) {
          let dA: tf.Tensor2D = tf.matMul(dZ, d.kernel as tf.Tensor2D, false, true);
          // Through the previous layer's dropout (the same multipliers, last first), then its relu: step(a)
          // of the dropped output a is step(z)·mask, and mask is 0 wherever it differs from step(z).
          const dropped = masks[li - 1]!;
          for (let k = dropped.length - 1; k >= 0; k--) dA = tf.mul(dA, tf.tensor2d(dropped[k]!, dA.shape));
          dPrev = dense[li - 1]!.act === 'relu' ? reluGrad(dA, a) : dA;
        }
        if (clipping) pending.push({ d, gK, gB });
        else batchPenalty += update(d, gK, gB, lr);
        if (dPrev) dZ = dPrev;
      }
      if (clipping) batchPenalty += clippedUpdates(pending, lr);
    });
    return { ...result, penalty: batchPenalty };
  };

  /**
   * The optimizer's update of a layer's kernel (with its penalty gradient) and bias; returns the
   * batch's penalty, taken at the weights it was computed with (Keras logs data loss + it).
   */
  const update = (d: DensePlan, gK: tf.Tensor, gB: tf.Tensor | null, lr: number): number => {
    const sums = applyUpdate(d.kernel, gK, Math.fround(d.l1), Math.fround(d.l2), lr, d);
    if (d.bias && gB) applyUpdate(d.bias, gB, 0, 0, lr);
    return d.l1 * sums.abs + d.l2 * sums.sq;
  };

  /**
   * With gradient clipping (the optimizer's clipnorm, clipvalue or globalClipnorm), the updates wait
   * for the whole backward pass (globalClipnorm needs every gradient): the gradients, with the kernel
   * penalty's gradient folded in, are clipped in place in their tensors' memory (the step's own
   * scratch or fresh tensors: nothing else reads them), then each variable is updated from its clipped
   * gradient with l1 = l2 = 0. Where the memory is out of reach (tfjs-node), through copies. Returns
   * the batch's penalty, as `update`.
   */
  const clipping = optimizer.clipping !== null;
  const clippedUpdates = (pending: readonly PendingUpdate[], lr: number): number => {
    const entries = pending.flatMap(({ d, gK, gB }) => [
      { v: d.kernel, g: gK, l1: Math.fround(d.l1), l2: Math.fround(d.l2), d },
      ...(d.bias && gB ? [{ v: d.bias, g: gB, l1: 0, l2: 0, d: null }] : []),
    ]);
    const simd = tf.getBackend() === 'wasm' ? stepSimd : null;
    if (simd) scratchSums(); // allocated before the views below are taken
    const views = entries.map((e) => ({ w: ownFloats(e.v, false), g: ownFloats(e.g, false) }));
    let penalty = 0;
    if (views.every((x) => x.w && x.g)) {
      optimizer.clipGradients(
        entries.map((e, i) => ({ w: views[i]!.w!, g: views[i]!.g!, l1: e.l1, l2: e.l2 })),
        simd ? simdClipPasses(simd) : undefined,
      );
      for (const e of entries) {
        const sums = applyUpdate(e.v, e.g, 0, 0, lr, e.d ?? { l1: 0, l2: 0 });
        if (e.d) penalty += e.d.l1 * sums.abs + e.d.l2 * sums.sq;
      }
      return penalty;
    }
    const grads = entries.map((e) => ({
      ...e,
      w: e.v.dataSync() as Float32Array,
      g: Float32Array.from(e.g.dataSync()),
    }));
    optimizer.clipGradients(grads);
    for (const { v, g, d } of grads) {
      const clipped = tf.tensor(g, v.shape);
      const sums = applyUpdate(v, clipped, 0, 0, lr, d ?? { l1: 0, l2: 0 });
      clipped.dispose();
      if (d) penalty += d.l1 * sums.abs + d.l2 * sums.sq;
    }
    return penalty;
  };

  /** The clipping passes of simd.wat over the heap's memory (the multiple of 4), the JS ones over the tail. */
  const simdClipPasses = (simd: Simd): ClipPasses => ({
    foldAndSumSquares(x, sum) {
      const n4 = x.g.length & ~3;
      const out = scratchSums();
      const fold = x.l1 || x.l2 ? 1 : 0;
      simd.clipSumSq(x.w.byteOffset, x.g.byteOffset, n4, fold, x.l1, Math.fround(2 * x.l2), out.byteOffset);
      const head = out[0]!;
      const tail = jsClipPasses.foldAndSumSquares({ ...x, w: x.w.subarray(n4), g: x.g.subarray(n4) }, sum);
      return sum ? head + tail : 0;
    },
    clamp(g, c) {
      const n4 = g.length & ~3;
      simd.clipScale(g.byteOffset, n4, 0, c, 0);
      jsClipPasses.clamp(g.subarray(n4), c);
    },
    scaleDivide(g, c, d) {
      const n4 = g.length & ~3;
      simd.clipScale(g.byteOffset, n4, 1, c, d);
      jsClipPasses.scaleDivide(g.subarray(n4), c, d);
    },
    scale(g, sc) {
      const n4 = g.length & ~3;
      simd.clipScale(g.byteOffset, n4, 2, sc, 0);
      jsClipPasses.scale(g.subarray(n4), sc);
    },
  });

  /**
   * Scratch of the direct step for a batch size: each layer's output and the gradient at its
   * pre-activation (B × units), its weight gradients, and a row of B ones for the bias gradient.
   * Kept tensors (tfjs owns the memory), made once per batch size (an epoch has at most two).
   */
  interface Scratch {
    outputs: tf.Tensor[];
    dZ: tf.Tensor[];
    gK: tf.Tensor[];
    gB: Array<tf.Tensor | null>;
    ones: tf.Tensor;
  }
  const scratchByBatch = new Map<number, Scratch>();
  const scratchFor = (B: number): Scratch => {
    let s = scratchByBatch.get(B);
    if (!s) {
      // tf.keep: the step may run inside a caller's tf.tidy.
      const units = dense.map((d) => d.kernel.shape[1]!);
      s = {
        outputs: units.map((n) => tf.keep(tf.zeros([B, n]))),
        dZ: units.map((n) => tf.keep(tf.zeros([B, n]))),
        gK: dense.map((d) => tf.keep(tf.zeros(d.kernel.shape))),
        gB: dense.map((d) => (d.bias ? tf.keep(tf.zeros(d.bias.shape)) : null)),
        ones: tf.keep(tf.ones([B])),
      };
      scratchByBatch.set(B, s);
    }
    return s;
  };

  /**
   * The same step with the installed GEMM called directly on the tensors' memory (wasm backend with
   * the SIMD passes): the same products with the same arguments as runOps's matMuls, so the same bits,
   * without 36 of the 37 kernel dispatches a step (at batch 32 they cost more than the products).
   */
  const runDirect = (
    matMul: DirectMatMul,
    x: tf.Tensor2D | tf.Tensor3D,
    y: tf.Tensor1D | tf.Tensor2D,
    lr: number,
    soft: boolean,
    masks: Float32Array[][],
  ): Omit<LeanStepResult, 'batchSize'> | null => {
    const B = x.shape[0];
    const inputUnits = dense[0]!.kernel.shape[0]!;
    if (x.size !== B * inputUnits || (!flatten && x.rank !== 2)) return null;
    const wasm = wasmHeapBackend();
    if (!wasm || heapAddress(wasm, x, false) === null) return null;
    const s = scratchFor(B);
    // The GEMM's operands as the whole heap and an offset (no view made per operand); the heap is read
    // at each use: any allocation (softmax's output, an update's fresh weights) may grow it. Four
    // reused objects: the GEMM reads them during the call only.
    const operands = [0, 1, 2, 3].map((): MatrixAt => ({ base: wasm.wasm.HEAPF32, offset: 0 }));
    const at = (i: number, t: tf.Tensor): MatrixAt => {
      const m = operands[i]!;
      m.base = wasm.wasm.HEAPF32;
      m.offset = heapAddress(wasm, t, false)! >>> 2;
      return m;
    };
    const addr = (t: tf.Tensor): number => heapAddress(wasm, t, false)!;
    for (let li = 0; li < dense.length; li++) {
      const d = dense[li]!;
      const [k, n] = d.kernel.shape as [number, number];
      const input = li === 0 ? x : s.outputs[li - 1]!;
      matMul(
        false,
        false,
        B,
        n,
        k,
        at(0, input),
        at(1, d.kernel),
        at(2, s.outputs[li]!),
        d.bias ? at(3, d.bias) : null,
        d.act === 'relu' ? 'relu' : 'linear',
      );
      for (const m of masks[li]!) multiplyInPlace(ownFloats(s.outputs[li]!, false)!, m);
    }
    const last = dense.length - 1;
    const C = dense[last]!.kernel.shape[1]!;
    const result = tf.tidy(() => {
      const p = tf.softmax(s.outputs[last] as tf.Tensor2D);
      // Views after the softmax's allocation (it may grow the heap); the labels where they are (no copy).
      const labels = heapLabels(wasm, y) ?? y.dataSync();
      const probs = ownFloats(p, false) ?? p.dataSync();
      return lossGradient(
        ownFloats(s.outputs[last]!, false)!,
        probs,
        labels,
        B,
        C,
        ownFloats(s.dZ[last]!, false)!,
        soft,
      );
    });
    let batchPenalty = 0;
    const pending: PendingUpdate[] = [];
    const simd = stepSimd!;
    for (let li = last; li >= 0; li--) {
      const d = dense[li]!;
      const [k, n] = d.kernel.shape as [number, number];
      const input = li === 0 ? x : s.outputs[li - 1]!;
      // gK = inputᵀ·dZ; gB = ones(1×B)·dZ; the previous layer's dZ = (dZ·Kᵀ)·step(its output).
      matMul(true, false, k, n, B, at(0, input), at(1, s.dZ[li]!), at(2, s.gK[li]!), null, 'linear');
      if (d.bias) matMul(false, false, 1, n, B, at(0, s.ones), at(1, s.dZ[li]!), at(2, s.gB[li]!), null, 'linear');
      if (li > 0) {
        const dPrev = s.dZ[li - 1]!;
        matMul(false, true, B, k, n, at(0, s.dZ[li]!), at(1, d.kernel), at(2, dPrev), null, 'linear');
        const dropped = masks[li - 1]!;
        for (let j = dropped.length - 1; j >= 0; j--) multiplyInPlace(ownFloats(dPrev, false)!, dropped[j]!);
        if (dense[li - 1]!.act === 'relu') simd.reluGrad(addr(dPrev), addr(input), B * k);
      }
      if (clipping) pending.push({ d, gK: s.gK[li]!, gB: s.gB[li] ?? null });
      else batchPenalty += update(d, s.gK[li]!, s.gB[li] ?? null, lr);
    }
    if (clipping) batchPenalty += clippedUpdates(pending, lr);
    return { ...result, penalty: batchPenalty };
  };

  const run = (x: tf.Tensor2D | tf.Tensor3D, y: tf.Tensor1D | tf.Tensor2D, dropoutSeed = 0): LeanStepResult => {
    // The input stage, as forward() runs it: the noise layer's draw and the input dropout's for the
    // flattened batch (the values come in the same order), each seeded with dropoutSeed + its index.
    let input = x;
    const made: tf.Tensor[] = [];
    try {
      for (const s of inputStage) {
        const seed = dropoutSeed + s.layerIndex;
        const next = (
          'noise' in s
            ? trainingNoise(input, s.noise, seed)
            : s.rate > 0
              ? tf.tidy(() => tf.mul(input, tf.tensor(dropoutMultiplier(input.size, s.rate, seed), input.shape)))
              : input
        ) as typeof x;
        if (next !== input) made.push(next);
        input = next;
      }
      return runOn(input, y, dropoutSeed);
    } finally {
      tf.dispose(made);
    }
  };

  const runOn = (x: tf.Tensor2D | tf.Tensor3D, y: tf.Tensor1D | tf.Tensor2D, dropoutSeed: number): LeanStepResult => {
    const lr = optimizer.learningRate();
    const B = x.shape[0];
    const soft = y.rank === 2;
    if (y.shape[0] !== B) throw new Error(`lean step: ${y.shape[0]} labels for a batch of ${B}`);
    const matMul = direct && stepSimd ? installedMatMul('wasm', stepSimd) : null;
    // Each layer's dropout multipliers for this batch (rate 0 is the identity, as forward()'s `rate > 0`).
    const masks = dense.map((d) =>
      d.dropout
        .filter((p) => p.rate > 0)
        .map((p) => dropoutMultiplier(B * d.kernel.shape[1]!, p.rate, dropoutSeed + p.layerIndex)),
    );
    const result = (matMul && runDirect(matMul, x, y, lr, soft, masks)) || runOps(x, y.dataSync(), lr, soft, masks);
    // Keras averages (useEma) after the step's updates, then constrains: each weight right after its update
    // in Keras, here after the whole step's updates (each constraint reads only its own weight).
    // The EMA on views of the weights' memory; on tfjs-wasm with the SIMD passes the averages are on the heap (heapSlots).
    const simd = heapSlots ? stepSimd : null;
    stepMovingAverage(
      optimizer,
      trainable,
      (v) => ownFloats(v, false) ?? (v.dataSync() as Float32Array),
      simd
        ? (a, w, m, rest) => {
            const n4 = a.buffer === w.buffer ? a.length & ~3 : 0;
            simd.ema(a.byteOffset, w.byteOffset, n4, m, rest);
            emaPass(a, w, m, rest, n4);
          }
        : undefined,
    );
    applyConstraints(constraints);
    optimizer.endStep();
    return { ...result, batchSize: B };
  };

  const dispose = (): void => {
    for (const sc of scratchByBatch.values())
      tf.dispose([...sc.outputs, ...sc.dZ, ...sc.gK, ...sc.gB.filter((t): t is tf.Tensor => t !== null), sc.ones]);
    scratchByBatch.clear();
    scratchTensor?.dispose();
    scratchTensor = null;
    ones?.dispose();
    ones = null;
  };
  const variables = () => trainable.map((v) => ({ name: v.name, size: v.size }));

  return { run, variables, dispose };
}

/**
 * lossGradient's soft-label form (see there): `t` is B×C. With label smoothing `ls` the targets are
 * q = t·(1 − ls) + ls/C (Keras smooths any y_true): the smoothed loss and gradient use q, `dataLoss`
 * stays the unsmoothed −Σ t·log p. Float64 per sample, as the hard-label path.
 */
export function softLossGradient(
  z: Float32Array,
  p: ArrayLike<number>,
  t: ArrayLike<number>,
  B: number,
  C: number,
  dz: Float32Array,
  ls = 0,
): { dataLoss: number; smoothedLoss: number; correct: number } {
  if (t.length !== B * C) throw new Error(`lean step: ${t.length} soft labels for a batch of ${B}×${C}`);
  let dataLoss = 0;
  let smoothedLoss = 0;
  let correct = 0;
  const invB = 1 / B;
  const uniform = ls / C;
  for (let i = 0; i < B; i++) {
    const o = i * C;
    let best = 0;
    let target = 0;
    for (let j = 1; j < C; j++) {
      if (p[o + j]! > p[o + best]!) best = j;
      if (t[o + j]! > t[o + target]!) target = j;
    }
    if (best === target) correct++;
    let m = -Infinity;
    for (let j = 0; j < C; j++) m = Math.max(m, z[o + j]!);
    let sum = 0;
    for (let j = 0; j < C; j++) sum += Math.exp(z[o + j]! - m);
    const lse = m + Math.log(sum);
    let mass = 0;
    for (let j = 0; j < C; j++) {
      const tj = t[o + j]!;
      if (tj !== 0) dataLoss += tj * (lse - z[o + j]!);
      const qj = ls === 0 ? tj : tj * (1 - ls) + uniform;
      mass += qj;
      if (qj !== 0) smoothedLoss += qj * (lse - z[o + j]!);
    }
    for (let j = 0; j < C; j++) {
      const qj = ls === 0 ? t[o + j]! : t[o + j]! * (1 - ls) + uniform;
      dz[o + j] = (Math.exp(z[o + j]! - lse) * mass - qj) * invB;
    }
  }
  return { dataLoss, smoothedLoss: ls === 0 ? dataLoss : smoothedLoss, correct };
}
