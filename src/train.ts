import * as tf from '@tensorflow/tfjs';

type NamedTensor = { name: string; tensor: tf.Tensor };
import { BuiltModel, penaltyOf, penaltyValues, weightStats } from './model';
import { Rng } from './rng';
import { EpochRecord } from './runformat';
import { ExperimentSpec, NUM_CLASSES } from './spec';
import { InputError } from './errors';

/** Keras's epsilon: probabilities are clipped to [ε, 1−ε] before the log. */
export const EPSILON = 1e-7;
const IMAGE_SIZE = 28 * 28;
/** Inference runs in chunks this large: big enough to amortize per-kernel overhead, small enough for memory. */
const EVAL_CHUNK = 2000;

export interface Split {
  images: Float32Array;
  labels: Int32Array;
  count: number;
}

// ---------- the training step: the one seam that owns forward, backward, penalties and the update ----------

export interface StepResult {
  /** Mean cross-entropy over the batch. */
  dataLoss: number;
  /** Kernel/bias penalties plus activity penalties (per sample, as tf.keras 2) for this batch. */
  penalty: number;
  /** Correct predictions in the batch. */
  correct: number;
}

export interface TrainStep {
  /** Describes the path in use, e.g. "tfjs optimizer.minimize". */
  readonly description: string;
  /** One SGD update on a batch. `x` is [batch, 28, 28], `y` int32 [batch]. */
  run(x: tf.Tensor, y: tf.Tensor1D, dropoutSeed: number): StepResult;
  /**
   * Optimizer state for checkpoints, in one form for every path: a copy of each momentum
   * accumulator, named `<variable>/momentum` (none for plain SGD). The caller disposes them.
   */
  optimizerWeights(): Promise<NamedTensor[]>;
  /** Takes what optimizerWeights() gave (on any path); throws InputError when it does not fit. */
  setOptimizerWeights(w: NamedTensor[]): Promise<void>;
  dispose(): void;
}

/**
 * The model's forward pass, layer by layer, so that the step can apply what tfjs-layers
 * does not: activity regularizers (tfjs throws on them) and a fresh dropout mask per batch
 * (a seeded tfjs Dropout layer would reuse one mask for every batch).
 */
export function forward(built: BuiltModel, x: tf.Tensor, training: boolean, dropoutSeed = 0): { probs: tf.Tensor2D; activitySum: tf.Scalar } {
  let h = x;
  let activitySum: tf.Scalar = tf.scalar(0);
  built.model.layers.forEach((layer, i) => {
    const rate = built.dropout.get(i);
    if (rate !== undefined) {
      if (training && rate > 0) h = tf.dropout(h, rate, undefined, dropoutSeed + i);
    } else {
      h = layer.apply(h, { training }) as tf.Tensor;
    }
    for (const a of built.activity) if (a.layerIndex === i) activitySum = activitySum.add(penaltyOf(h, a.l1, a.l2));
  });
  return { probs: h as tf.Tensor2D, activitySum };
}

/** Sparse categorical cross-entropy on probabilities, summed over the batch (Keras: −log clip(p_y, ε, 1−ε)). */
export function crossEntropySum(probs: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  const oneHot = tf.oneHot(labels, NUM_CLASSES);
  return tf.neg(tf.sum(tf.mul(tf.log(tf.clipByValue(probs, EPSILON, 1 - EPSILON)), oneHot))) as tf.Scalar;
}

export function correctCount(probs: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.sum(tf.cast(tf.equal(tf.argMax(probs, 1), labels), 'float32'));
}

export function makeOptimizer(sgd: ExperimentSpec['optimizer']['sgd']): tf.Optimizer {
  // tfjs's momentum (accum = m·accum + g; w −= lr·accum) equals Keras's (v = m·v − lr·g; w += v) for a fixed lr.
  return sgd.momentum > 0 ? tf.train.momentum(sgd.learningRate, sgd.momentum, sgd.nesterov) : tf.train.sgd(sgd.learningRate);
}

/** The plain path: tfjs autodiff and optimizer over the whole loss. Works on every backend. */
export function createReferenceStep(built: BuiltModel, sgd: ExperimentSpec['optimizer']['sgd']): TrainStep {
  const optimizer = makeOptimizer(sgd);
  const vars = built.model.trainableWeights.map((w) => w.read() as tf.Variable);
  return {
    description: 'tfjs autodiff + optimizer',
    run(x, y, dropoutSeed) {
      let stats: tf.Tensor1D | undefined;
      const batch = x.shape[0]!;
      const cost = optimizer.minimize(
        () => {
          const { probs, activitySum } = forward(built, x, true, dropoutSeed);
          const dataLoss = crossEntropySum(probs, y).div(batch) as tf.Scalar;
          let penalty = activitySum.div(batch) as tf.Scalar;
          for (const t of built.penalties) penalty = penalty.add(penaltyOf(t.variable.read(), t.l1, t.l2));
          stats = tf.keep(tf.stack([dataLoss, penalty, correctCount(probs, y)]) as tf.Tensor1D);
          return dataLoss.add(penalty);
        },
        false,
        vars,
      );
      cost?.dispose();
      const [dataLoss, penalty, correct] = stats!.dataSync();
      stats!.dispose();
      return { dataLoss: dataLoss!, penalty: penalty!, correct: correct! };
    },
    async optimizerWeights() {
      // tfjs lists its iteration count first (plain SGD and momentum do not use it) and hands
      // out its live accumulators: return copies of the accumulators only.
      const [iterations, ...accumulators] = await optimizer.getWeights();
      iterations?.tensor.dispose();
      return accumulators.map(({ name, tensor }) => ({ name, tensor: tensor.clone() }));
    },
    async setOptimizerWeights(w) {
      // tfjs matches accumulators to variables by position: order them like the variables.
      const byName = new Map(w.map((t) => [t.name, t.tensor]));
      const accumulators = sgd.momentum > 0 ? vars.map((v) => ({ name: `${v.name}/momentum`, tensor: byName.get(`${v.name}/momentum`) })) : [];
      const missing = accumulators.find((a) => !a.tensor || !tf.util.arraysEqual(a.tensor.shape, vars.find((v) => `${v.name}/momentum` === a.name)!.shape));
      if (missing) throw new InputError(`the checkpoint has no momentum state for ${missing.name.replace(/\/momentum$/, '')}`);
      const iterations = tf.scalar(0, 'int32');
      await optimizer.setWeights([{ name: 'iter', tensor: iterations }, ...(accumulators as NamedTensor[])]);
      iterations.dispose();
    },
    dispose() {
      optimizer.dispose();
    },
  };
}

// ---------- evaluation ----------

export interface Evaluation {
  /** Mean cross-entropy. */
  dataLoss: number;
  /** Mean activity penalty per sample (zero without activity regularizers). */
  activityPenalty: number;
  correct: number;
  count: number;
  accuracy: number;
  predictions: Int32Array;
}

/** Inference-mode pass over a split (dropout off, batch-norm moving statistics). */
export function evaluateSplit(built: BuiltModel, split: Split): Evaluation {
  let ceSum = 0;
  let actSum = 0;
  let correct = 0;
  const predictions = new Int32Array(split.count);
  for (let start = 0; start < split.count; start += EVAL_CHUNK) {
    const n = Math.min(EVAL_CHUNK, split.count - start);
    const [ce, act, ok, pred] = tf.tidy(() => {
      const x = tf.tensor3d(split.images.subarray(start * IMAGE_SIZE, (start + n) * IMAGE_SIZE), [n, 28, 28]);
      const y = tf.tensor1d(split.labels.subarray(start, start + n), 'int32');
      const { probs, activitySum } = forward(built, x, false);
      return [crossEntropySum(probs, y), activitySum, correctCount(probs, y), tf.argMax(probs, 1)];
    });
    ceSum += ce.dataSync()[0]!;
    actSum += act.dataSync()[0]!;
    correct += ok.dataSync()[0]!;
    predictions.set(pred.dataSync() as Int32Array, start);
    tf.dispose([ce, act, ok, pred]);
  }
  const count = split.count;
  return { dataLoss: ceSum / count, activityPenalty: actSum / count, correct, count, accuracy: count ? correct / count : 0, predictions };
}

/** Kernel and bias penalties at the current weights. */
export function weightPenalty(built: BuiltModel): number {
  return Object.values(penaltyValues(built)).reduce((a, b) => a + b, 0);
}

// ---------- the loop ----------

export type StopReason = 'epochs' | 'early-stopping' | 'interrupted' | 'non-finite-loss';

/**
 * Everything besides the model's weights and the optimizer's state that training needs to
 * continue exactly where it was: a resumed run ends with the same history and weights.
 */
export interface TrainState {
  /** Completed epochs. */
  epoch: number;
  shuffleRng: number[];
  dropoutRng: number[];
  monitor: { best: number; bestEpoch: number; wait: number } | null;
  /** The best epoch's weights (early stopping with restoreBestWeights), in model.weights order. */
  bestWeights: Float32Array[] | null;
  history: EpochRecord[];
}

export interface TrainEvents {
  onEpochStart?(epoch: number, epochs: number, steps: number): void;
  /** After each batch: 1-based step, the epoch's steps, the running mean loss. */
  onBatch?(step: number, steps: number, runningLoss: number): void;
  /** After each epoch, with the state to checkpoint; training waits for it. */
  onEpochEnd?(record: EpochRecord, state: TrainState): void | Promise<void>;
}

export interface TrainOptions {
  training: ExperimentSpec['training'];
  seed: number;
  /** Checked between batches; true finishes the current batch and stops (SIGINT/SIGTERM). */
  shouldStop?: () => boolean;
  /** Continue from a checkpoint (weights and optimizer state already restored by the caller). */
  resume?: TrainState;
}

export interface TrainResult {
  history: EpochRecord[];
  stopReason: StopReason;
  /** Early stopping's best epoch by its monitor (the weights the model ends with when restoreBestWeights), else null. */
  bestEpoch: number | null;
  /** Where training found a non-finite loss, for the error message. */
  /** `step` null: the validation loss at the epoch's end. */
  nonFinite?: { epoch: number; step: number | null };
}

interface Monitor {
  mode: 'min' | 'max';
  best: number;
  bestEpoch: number;
  wait: number;
}

/** Copies of all model weights (trainable and batch-norm statistics), in model.weights order. */
export function snapshot(model: tf.LayersModel): Float32Array[] {
  return model.weights.map((w) => (w.read().dataSync() as Float32Array).slice());
}

export function restore(model: tf.LayersModel, weights: Float32Array[]): void {
  const tensors = model.weights.map((w, i) => tf.tensor(weights[i]!, w.shape as number[]));
  model.setWeights(tensors);
  tf.dispose(tensors);
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Trains with mini-batch SGD, reporting through events (the caller prints). Epoch metrics
 * follow Keras: `loss` is the sample-weighted mean over the epoch's batches of data loss +
 * penalties; `val_loss` adds the penalties at the epoch's end to the validation cross-entropy.
 */
export async function train(built: BuiltModel, step: TrainStep, data: { train: Split; validation: Split | null }, opts: TrainOptions, events: TrainEvents = {}): Promise<TrainResult> {
  const { epochs, batchSize, shuffle, earlyStopping: es } = opts.training;
  const resume = opts.resume;
  const shuffleRng = resume ? new Rng(resume.shuffleRng) : Rng.derive(opts.seed, 'shuffle');
  const dropoutRng = resume ? new Rng(resume.dropoutRng) : Rng.derive(opts.seed, 'dropout');
  const { train: trainSplit, validation } = data;
  const n = trainSplit.count;
  const steps = Math.ceil(n / batchSize);
  const xBuf = new Float32Array(batchSize * IMAGE_SIZE);
  const yBuf = new Int32Array(batchSize);
  const history: EpochRecord[] = resume ? [...resume.history] : [];
  const mode = es?.monitor.endsWith('accuracy') ? 'max' : 'min';
  const monitor: Monitor | null = es ? { mode, best: mode === 'max' ? -Infinity : Infinity, bestEpoch: 0, wait: 0, ...(resume?.monitor ?? {}) } : null;
  let bestWeights: Float32Array[] | null = resume?.bestWeights ?? null;
  const state = (epoch: number): TrainState => ({
    epoch,
    shuffleRng: shuffleRng.state(),
    dropoutRng: dropoutRng.state(),
    monitor: monitor ? { best: monitor.best, bestEpoch: monitor.bestEpoch, wait: monitor.wait } : null,
    bestWeights,
    history: [...history],
  });
  let stopReason: StopReason = 'epochs';
  let nonFinite: TrainResult['nonFinite'];

  epochLoop: for (let epoch = (resume?.epoch ?? 0) + 1; epoch <= epochs; epoch++) {
    const started = process.hrtime.bigint();
    const order = shuffle ? shuffleRng.permutation(n) : Int32Array.from({ length: n }, (_, i) => i);
    events.onEpochStart?.(epoch, epochs, steps);
    let lossSum = 0;
    let dataSum = 0;
    let penaltySum = 0;
    let correct = 0;
    let seen = 0;
    for (let s = 0; s < steps; s++) {
      if (opts.shouldStop?.()) {
        stopReason = 'interrupted';
        break epochLoop;
      }
      const start = s * batchSize;
      const b = Math.min(batchSize, n - start);
      for (let k = 0; k < b; k++) {
        const idx = order[start + k]!;
        xBuf.set(trainSplit.images.subarray(idx * IMAGE_SIZE, (idx + 1) * IMAGE_SIZE), k * IMAGE_SIZE);
        yBuf[k] = trainSplit.labels[idx]!;
      }
      const x = tf.tensor3d(b === batchSize ? xBuf : xBuf.subarray(0, b * IMAGE_SIZE), [b, 28, 28]);
      const y = tf.tensor1d(b === batchSize ? yBuf : yBuf.subarray(0, b), 'int32');
      const r = step.run(x, y, dropoutRng.nextUint32());
      x.dispose();
      y.dispose();
      if (!Number.isFinite(r.dataLoss) || !Number.isFinite(r.penalty)) {
        stopReason = 'non-finite-loss';
        nonFinite = { epoch, step: s + 1 };
        break epochLoop;
      }
      dataSum += r.dataLoss * b;
      penaltySum += r.penalty * b;
      lossSum += (r.dataLoss + r.penalty) * b;
      correct += r.correct;
      seen += b;
      events.onBatch?.(s + 1, steps, lossSum / seen);
      // Let signal handlers and the progress bar run between batches.
      await nextTick();
    }

    const penalties = penaltyValues(built);
    const weightPenaltyNow = Object.values(penalties).reduce((a, c) => a + c, 0);
    let valLoss: number | null = null;
    let valAccuracy: number | null = null;
    if (validation && validation.count > 0) {
      const v = evaluateSplit(built, validation);
      valLoss = v.dataLoss + v.activityPenalty + weightPenaltyNow;
      valAccuracy = v.accuracy;
      if (!Number.isFinite(valLoss)) {
        stopReason = 'non-finite-loss';
        nonFinite = { epoch, step: null };
        break;
      }
    }
    const record: EpochRecord = {
      epoch,
      loss: lossSum / seen,
      accuracy: correct / seen,
      val_loss: valLoss,
      val_accuracy: valAccuracy,
      data_loss: dataSum / seen,
      penalty: penaltySum / seen,
      penalties,
      seconds: Number(process.hrtime.bigint() - started) / 1e9,
      weights: weightStats(built),
    };
    history.push(record);

    let stopEarly = false;
    if (monitor && es) {
      const current = { loss: record.loss, accuracy: record.accuracy, val_loss: record.val_loss, val_accuracy: record.val_accuracy }[es.monitor];
      if (current !== null && current !== undefined) {
        const improved = monitor.mode === 'min' ? current < monitor.best - es.minDelta : current > monitor.best + es.minDelta;
        if (improved) {
          monitor.best = current;
          monitor.bestEpoch = epoch;
          monitor.wait = 0;
          if (es.restoreBestWeights) bestWeights = snapshot(built.model);
        } else if (++monitor.wait >= es.patience && epoch < epochs) {
          // Keras stops once `wait >= patience` epochs passed without improvement.
          stopEarly = true;
        }
      }
    }
    await events.onEpochEnd?.(record, state(epoch));
    if (stopEarly) {
      stopReason = 'early-stopping';
      break;
    }
  }

  if (bestWeights && stopReason !== 'interrupted' && stopReason !== 'non-finite-loss') {
    // Unlike Keras 2 (which restores only after an early stop), restore whenever asked.
    restore(built.model, bestWeights);
  }
  const bestEpoch = monitor?.bestEpoch || null;
  return { history, stopReason, bestEpoch, ...(nonFinite ? { nonFinite } : {}) };
}
