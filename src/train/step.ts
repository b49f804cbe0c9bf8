/**
 * The training-step seam: chooses what runs under it and builds it. The loop only ever sees a
 * TrainStep (./types).
 *
 * - The lean step (src/train/lean-step.ts: hand-written gradients, 43 tfjs kernels a step instead of
 *   model.fit's 281) when the model is Flatten + Dense layers with L1/L2 kernel penalties only, Dropout
 *   layers (the same masks as the reference step's) and at most one noise layer,
 *   on the input, and
 *   either tfjs-node runs it or fast matmul kernels are installed (OpenBLAS, else regtrain's own
 *   SIMD WebAssembly GEMM): on tfjs's own wasm kernels its extra small kernels cost more than
 *   they save.
 * - The lean CNN step (src/train/cnn-step.ts: the same, for Conv2D / MaxPooling2D / Reshape / Flatten /
 *   Dense models, every product on OpenBLAS or regtrain's SIMD WebAssembly GEMM, no tfjs op a step) for
 *   a convolutional model with those layers only, when one of those GEMMs is installed.
 * - Otherwise the reference step: tfjs autodiff over the whole loss, every layer the spec allows.
 * Both call the same optimizer update (./optimizers), so they differ only in how gradients are
 * computed: the same losses and weights to float32 rounding (test/accel.unit.test.ts).
 */
import * as os from 'node:os';
import * as tf from '../tf';
import { accelerationDisabled, BackendInfo } from '../backend';
import { createLeanStep, type LeanStep, type LeanStepResult } from './lean-step';
import { createCnnStep } from './cnn-step';
import { loadBlas, parseBlasThreads } from '../accel/blas';
import type { BuiltModel } from '../model';
import { termPenalty } from './penalties';
import type { NoiseSpec } from './noise';
import { ExperimentSpec } from '../spec';
import { optimizerChoice } from './optimizers/registry';
import { correctCount, crossEntropySum, forward, smoothedCrossEntropySums } from './forward';
import { Optimizer } from './optimizers';
import type { TrainStep } from './types';
import { applyConstraints, constraintTerms, type ConstraintTerm } from './constraints';
import { stepMovingAverage } from './moving-average';

/** What the loss adds beyond the model: label smoothing (training.labelSmoothing; 0 = none). */
export interface StepOptions {
  labelSmoothing?: number;
  /** Kernel and bias constraints, applied after each update (./constraints). */
  constraints?: readonly ConstraintTerm[];
}

/** The reference path: tfjs autodiff over data loss + penalties, then the optimizer's update. Works on every backend. */
export function createReferenceStep(built: BuiltModel, optimizer: Optimizer, opts: StepOptions = {}): TrainStep {
  const labelSmoothing = opts.labelSmoothing ?? 0;
  const vars = built.model.trainableWeights.map((w) => w.read() as tf.Variable);
  return {
    description: 'tfjs autodiff + optimizer',
    path: 'reference',
    run(x, y, dropoutSeed) {
      const lr = optimizer.learningRate();
      const batch = x.shape[0]!;
      let stats: tf.Tensor1D | undefined;
      const { value, grads } = tf.variableGrads(() => {
        const out = forward(built, x, true, dropoutSeed);
        let penalty = out.activitySum.div(batch) as tf.Scalar;
        for (const t of built.penalties) penalty = penalty.add(termPenalty(t.variable.read(), t));
        if (labelSmoothing > 0) {
          // Minimized: the smoothed cross-entropy; reported apart: the plain one and the difference.
          const sums = smoothedCrossEntropySums(out, y, labelSmoothing);
          const dataLoss = sums.data.div(batch) as tf.Scalar;
          const smoothedLoss = sums.smoothed.div(batch) as tf.Scalar;
          stats = tf.keep(
            tf.stack([dataLoss, penalty, correctCount(out.probs, y), smoothedLoss.sub(dataLoss)]) as tf.Tensor1D,
          );
          return smoothedLoss.add(penalty);
        }
        const dataLoss = crossEntropySum(out, y).div(batch) as tf.Scalar;
        stats = tf.keep(tf.stack([dataLoss, penalty, correctCount(out.probs, y)]) as tf.Tensor1D);
        return dataLoss.add(penalty);
      }, vars);
      value.dispose();
      // The gradient already holds the penalties' part: no l1/l2 to add. Clipping rewrites copies, all of them first (globalClipnorm).
      const clip = optimizer.clipping !== null;
      const gradients = vars.map((v) => {
        const g = grads[v.name]!.dataSync() as Float32Array;
        return { w: v.dataSync() as Float32Array, g: clip ? g.slice() : g, l1: 0, l2: 0 };
      });
      optimizer.clipGradients(gradients);
      vars.forEach((v, i) => {
        const out = new Float32Array(v.size);
        optimizer.update({ name: v.name, ...gradients[i]!, out }, lr);
        const next = tf.tensor(out, v.shape);
        v.assign(next);
        next.dispose();
      });
      tf.dispose(Object.values(grads));
      stepMovingAverage(optimizer, vars);
      applyConstraints(opts.constraints ?? []);
      optimizer.endStep();
      const [dataLoss, penalty, correct, smoothing] = stats!.dataSync();
      stats!.dispose();
      return {
        dataLoss: dataLoss!,
        penalty: penalty!,
        correct: correct!,
        ...(labelSmoothing > 0 ? { smoothing: smoothing! } : {}),
      };
    },
    optimizer,
    learningRate: () => optimizer.learningRate(),
    setLearningRate: (lr) => optimizer.setLearningRate(lr),
    optimizerState: () => optimizer.state(),
    setOptimizerState: (state) =>
      optimizer.setState(
        state,
        vars.map((v) => ({ name: v.name, size: v.size })),
      ),
    dispose: () => optimizer.dispose(),
  };
}

/** The BLAS thread count: REGTRAIN_BLAS_THREADS, else 1 below batch 128 and up to 2 from there. */
function blasThreads(batchSize: number): number {
  // Measured here (2 cores): at batch 32 a second BLAS thread does not pay for its hand-offs
  // (23k vs 23k samples/s); at batch 512 it does (102k vs 79k).
  return parseBlasThreads(process.env.REGTRAIN_BLAS_THREADS) ?? (batchSize >= 128 ? Math.min(2, os.cpus().length) : 1);
}

/**
 * Whether `spec`'s model trains on the autodiff (reference) step whatever the kernels, as createTrainStep
 * decides from the built model: for a dense model, a layer other than a leading Flatten, Dense and Dropout
 * (a noise layer only right after the flatten); for a CNN, a layer the lean CNN step does not cover; in
 * both, a bias, activity or orthogonal penalty. What `auto` weighs before the model exists (src/backend.ts).
 */
export function needsAutodiff(spec: ExperimentSpec): boolean {
  const layers = spec.model.layers;
  // A convolutional model: the lean CNN step's layers (./cnn-step.ts), without bias/activity/orthogonal penalties.
  if (layers.some((l) => l.conv2d || l.maxPooling2d)) {
    return layers.some((l) => {
      const w = l.conv2d ?? l.dense;
      if (!w) return !(l.reshape || l.flatten || l.maxPooling2d);
      if (l.conv2d && l.conv2d.activation !== 'relu' && l.conv2d.activation !== 'linear') return true;
      return w.biasRegularizer != null || w.activityRegularizer != null || w.kernelRegularizer?.orthogonal != null;
    });
  }
  return layers.some((l, i) =>
    l.flatten
      ? i !== 0
      : l.dropout
        ? false
        : i === 1 && layers[0]!.flatten && (l.gaussianNoise || l.gaussianDropout || l.alphaDropout)
          ? false
          : !l.dense ||
            l.dense.biasRegularizer != null ||
            l.dense.activityRegularizer != null ||
            l.dense.kernelRegularizer?.orthogonal != null,
  );
}

/** The model's only noise layer when it is on the input (index 1, after a leading flatten), else null. */
function leanInputNoise(built: BuiltModel): { layerIndex: number; noise: NoiseSpec } | null {
  const noise = built.noise;
  if (!noise || noise.size !== 1 || !noise.has(1)) return null;
  return built.model.layers[0]?.getClassName() === 'Flatten' ? { layerIndex: 1, noise: noise.get(1)! } : null;
}

export function createTrainStep(built: BuiltModel, spec: ExperimentSpec, backend: BackendInfo): TrainStep {
  const optimizer = new Optimizer(optimizerChoice(spec.optimizer));
  const labelSmoothing = spec.training.labelSmoothing ?? 0;
  const constraints = constraintTerms(built, spec);
  const fallback = (why: string): TrainStep => {
    const ref = createReferenceStep(built, optimizer, { labelSmoothing, constraints });
    return Object.assign(ref, { description: `${ref.description} (${why})` });
  };
  if (accelerationDisabled()) return fallback('REGTRAIN_ACCEL=off');
  if (!backend.gemm.kind && backend.name !== 'tensorflow')
    return fallback(`no fast matmul kernels: ${backend.blas.reason}; ${backend.gemm.reason}`);
  // The noise layers and the orthogonal regularizer have no hand-written gradients in the lean step,
  // except one noise layer on the input (right after the leading flatten), which needs no gradient.
  const inputNoise = leanInputNoise(built);
  if (built.noise?.size && !inputNoise) return fallback('noise layers after the input need autodiff');
  if (built.penalties.some((p) => p.orthogonal)) return fallback('the orthogonal regularizer needs autodiff');
  if (built.activity.length || built.penalties.some((p) => !p.name.endsWith('/kernel'))) {
    return fallback('activity or bias penalties need autodiff');
  }
  const penalties = built.penalties.map((p) => ({
    layerIndex: built.model.layers.findIndex((l) => p.name.startsWith(`${l.name}/`)),
    l1: p.l1,
    l2: p.l2,
  }));
  const spatial = built.model.layers.some((l) => ['Conv2D', 'MaxPooling2D'].includes(l.getClassName()));
  if (spatial) {
    // Convolutional models: the lean CNN step (./cnn-step.ts) on regtrain's GEMM, else autodiff.
    if (!backend.gemm.kind) return fallback('the lean CNN step needs OpenBLAS or the SIMD WebAssembly GEMM');
    const cnn = createCnnStep(built.model, optimizer, penalties, backend.gemm.kind, { labelSmoothing, constraints });
    if ('unsupported' in cnn) return fallback(cnn.unsupported);
    const cnnBlas = backend.gemm.kind === 'openblas' ? loadBlas() : null;
    const n = cnnBlas?.ok ? blasThreads(spec.training.batchSize) : 0;
    if (cnnBlas?.ok) cnnBlas.setThreads(n);
    const threads = n ? ` (${n} thread${n > 1 ? 's' : ''})` : '';
    return handWrittenStep(
      `lean CNN step (hand-written gradients) + ${cnn.kernels}${threads}`,
      optimizer,
      labelSmoothing,
      cnn,
    );
  }
  const lean = createLeanStep(built.model, optimizer, penalties, {
    labelSmoothing,
    constraints,
    ...(inputNoise ? { inputNoise } : {}),
  });
  if ('unsupported' in lean) return fallback(lean.unsupported);
  let kernels = '';
  const blas = backend.gemm.kind === 'openblas' ? loadBlas() : null;
  if (blas?.ok) {
    const n = blasThreads(spec.training.batchSize);
    blas.setThreads(n);
    kernels = ` + OpenBLAS matmuls (${n} thread${n > 1 ? 's' : ''})`;
  } else if (backend.gemm.kind) {
    kernels = ` + regtrain's ${backend.gemm.kind === 'wasm-relaxed-simd' ? 'relaxed-SIMD' : 'SIMD'} WebAssembly matmuls`;
  }
  return handWrittenStep(`lean step (hand-written gradients)${kernels}`, optimizer, labelSmoothing, {
    run: (x, y, dropoutSeed) => lean.run(x as tf.Tensor3D, y, dropoutSeed),
    variables: () => lean.variables(),
    dispose: () => lean.dispose(),
  });
}

/**
 * A hand-written step (dense or CNN) behind the loop's seam: its batch sums as means, the smoothing
 * apart from the data loss when the loss smooths, and the optimizer's state over its variables.
 */
function handWrittenStep(
  description: string,
  optimizer: Optimizer,
  labelSmoothing: number,
  inner: Pick<LeanStep, 'variables' | 'dispose'> & {
    run(x: tf.Tensor, y: tf.Tensor1D | tf.Tensor2D, dropoutSeed: number): LeanStepResult;
  },
): TrainStep {
  return {
    description,
    path: 'lean',
    run(x, y, dropoutSeed) {
      const r = inner.run(x, y, dropoutSeed);
      return {
        dataLoss: r.dataLoss / r.batchSize,
        penalty: r.penalty,
        correct: r.correct,
        ...(labelSmoothing > 0 ? { smoothing: (r.smoothedLoss - r.dataLoss) / r.batchSize } : {}),
      };
    },
    optimizer,
    learningRate: () => optimizer.learningRate(),
    setLearningRate: (lr) => optimizer.setLearningRate(lr),
    optimizerState: () => optimizer.state(),
    setOptimizerState: (state) => optimizer.setState(state, inner.variables()),
    dispose() {
      inner.dispose();
      optimizer.dispose();
    },
  };
}
