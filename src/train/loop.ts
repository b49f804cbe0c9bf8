/**
 * The training loop, as tfjs-layers' fitLoop: epochs of shuffled mini-batches through the
 * training-step seam, validation at each epoch's end, and hooks for callbacks, which do
 * everything else (history, early stopping, learning-rate changes, checkpoints, logs).
 *
 * Epoch metrics follow Keras: `loss` is the sample-weighted mean over the epoch's batches of
 * data loss + penalties; `val_loss` adds the penalties at the epoch's end to the validation
 * cross-entropy; `lr` is the optimizer's learning rate at the epoch's end.
 */
import * as tf from '../tf';
import type { BuiltModel } from '../model';
import { penaltyValues } from './penalties';
import { weightStats } from './weight-stats';
import { Rng, type RunSeeds } from '../rng';
import type { EpochRecord } from '../runformat';
import { CallbackList, StopReason, TrainingContext } from './callbacks/callback';
import { SplitPass } from './forward';
import { Augmenter } from '../data/augmentation';
import type { AugmentationStep } from '../spec/augmentation';
import { NUM_CLASSES } from '../spec';
import { BatchGatherer } from '../data/dataset';
import type { LoopState, Split, TrainStep } from './types';

export interface FitOptions {
  epochs: number;
  batchSize: number;
  shuffle: boolean;
  /** The run's batch-shuffle and dropout streams (a resume continues its checkpoint's instead). */
  seeds: Pick<RunSeeds, 'shuffle' | 'dropout' | 'augmentation'>;
  /** Checked between batches; true abandons the epoch in progress (SIGINT/SIGTERM): the last checkpoint stays. */
  shouldStop?: () => boolean;
  /** The spec's data.augmentation: applied to each training batch, in order (none by default). */
  augmentation?: readonly AugmentationStep[];
  /** Continue from a checkpoint (weights, optimizer and callback states already restored by the caller). */
  resume?: LoopState;
}

export interface FitResult {
  stopReason: StopReason;
  /** Completed epochs. */
  epochs: number;
  /** Where the loss became non-finite; `step` null: the validation loss at the epoch's end. */
  nonFinite?: { epoch: number; step: number | null };
}

/**
 * How often (ms) the loop lets signal handlers and the progress bar run between batches. A turn of the event
 * loop costs ~10 µs: at every batch that was 2% of the tutorial's epoch (1,875 batches a second).
 */
const YIELD_EVERY_MS = 5;
const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function fit(
  built: BuiltModel,
  step: TrainStep,
  data: { train: Split; validation: Split | null },
  callbacks: CallbackList,
  opts: FitOptions,
): Promise<FitResult> {
  const resume = opts.resume;
  const shuffleRng = new Rng(resume ? resume.shuffleRng : opts.seeds.shuffle);
  const dropoutRng = new Rng(resume ? resume.dropoutRng : opts.seeds.dropout);
  const augmentationRng = new Rng(resume?.augmentationRng ?? opts.seeds.augmentation);
  const augmenter = opts.augmentation?.length ? new Augmenter(opts.augmentation, augmentationRng) : null;
  const { train, validation } = data;
  const n = train.count;
  const steps = Math.ceil(n / opts.batchSize);
  let completed = resume?.epoch ?? 0;
  const ctx: TrainingContext = {
    built,
    step,
    epochs: opts.epochs,
    stepsPerEpoch: steps,
    stopTraining: resume?.stopTraining ?? null,
    trainSeconds: 0,
    loopState: () => ({
      epoch: completed,
      shuffleRng: shuffleRng.state(),
      dropoutRng: dropoutRng.state(),
      // Only with augmentation on: a checkpoint without it stays as it was before augmentation existed.
      ...(augmenter ? { augmentationRng: augmentationRng.state() } : {}),
      stopTraining: ctx.stopTraining,
    }),
  };
  const batches = new BatchGatherer(train, opts.batchSize);
  let stopReason: StopReason = ctx.stopTraining ?? 'epochs';
  let nonFinite: FitResult['nonFinite'];

  const validationPass = validation && validation.count > 0 ? new SplitPass(validation) : null;
  try {
    await callbacks.trainBegin(ctx, completed);
    epochLoop: for (let epoch = completed + 1; epoch <= opts.epochs && !ctx.stopTraining; epoch++) {
      const started = process.hrtime.bigint();
      await callbacks.epochBegin(epoch, ctx);
      const order = opts.shuffle ? shuffleRng.permutation(n) : Int32Array.from({ length: n }, (_, i) => i);
      let lossSum = 0;
      let dataSum = 0;
      let penaltySum = 0;
      let smoothingSum: number | null = null;
      let correct = 0;
      let seen = 0;
      let lastYield = performance.now();
      for (let s = 0; s < steps; s++) {
        if (opts.shouldStop?.()) {
          stopReason = 'interrupted';
          break epochLoop;
        }
        const start = s * opts.batchSize;
        const b = Math.min(opts.batchSize, n - start);
        const batch = batches.gather(order, start, b);
        // Training batches only: mixUp/cutMix make the labels soft (b × classes).
        const soft = augmenter ? augmenter.apply(batch.images, batch.labels, b) : null;
        const { x, y: labels } = batches.tensors();
        const y = soft ? tf.tensor2d(soft, [b, NUM_CLASSES]) : labels;
        const r = step.run(x, y, dropoutRng.nextUint32());
        tf.dispose(soft ? [x, labels, y] : [x, y]);
        if (!Number.isFinite(r.dataLoss) || !Number.isFinite(r.penalty) || !Number.isFinite(r.smoothing ?? 0)) {
          stopReason = 'non-finite-loss';
          nonFinite = { epoch, step: s + 1 };
          break epochLoop;
        }
        dataSum += r.dataLoss * b;
        penaltySum += r.penalty * b;
        if (r.smoothing !== undefined) smoothingSum = (smoothingSum ?? 0) + r.smoothing * b;
        lossSum += (r.dataLoss + (r.smoothing ?? 0) + r.penalty) * b;
        correct += r.correct;
        seen += b;
        callbacks.batchEnd(s + 1, { loss: lossSum / seen }, ctx);
        if (performance.now() - lastYield >= YIELD_EVERY_MS) {
          await nextTick();
          lastYield = performance.now();
        }
      }
      // A stop asked for while the batches ran is seen before the epoch ends, as one after any earlier batch
      // (the loop yields every few ms, so the signal's handler may not have run yet): the epoch is not completed.
      await nextTick();
      if (opts.shouldStop?.()) {
        stopReason = 'interrupted';
        break;
      }
      ctx.trainSeconds = Number(process.hrtime.bigint() - started) / 1e9;

      const penalties = penaltyValues(built);
      const weightPenalty = Object.values(penalties).reduce((a, c) => a + c, 0);
      let valLoss: number | null = null;
      let valAccuracy: number | null = null;
      if (validationPass) {
        const v = validationPass.evaluate(built);
        valLoss = v.dataLoss + v.activityPenalty + weightPenalty;
        valAccuracy = v.accuracy;
        if (!Number.isFinite(valLoss)) {
          stopReason = 'non-finite-loss';
          nonFinite = { epoch, step: null };
          break;
        }
      }
      const logs: EpochRecord = {
        epoch,
        loss: lossSum / seen,
        accuracy: correct / seen,
        val_loss: valLoss,
        val_accuracy: valAccuracy,
        data_loss: dataSum / seen,
        ...(smoothingSum !== null ? { smoothing: smoothingSum / seen } : {}),
        penalty: penaltySum / seen,
        penalties,
        lr: step.learningRate(),
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
        weights: weightStats(built),
      };
      completed = epoch;
      await callbacks.epochEnd(epoch, logs, ctx);
    }
    if (stopReason === 'epochs' && ctx.stopTraining) stopReason = ctx.stopTraining;
    await callbacks.trainEnd({ stopReason, epochs: completed, ...(nonFinite ? { nonFinite } : {}) }, ctx);
  } finally {
    batches.dispose();
    validationPass?.dispose();
  }
  return { stopReason, epochs: completed, ...(nonFinite ? { nonFinite } : {}) };
}
