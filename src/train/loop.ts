/**
 * The training loop, as tfjs-layers' fitLoop: epochs of shuffled mini-batches through the
 * training-step seam, validation at each epoch's end, and hooks for callbacks, which do
 * everything else (history, early stopping, learning-rate changes, checkpoints, logs).
 *
 * Epoch metrics follow Keras: `loss` is the sample-weighted mean over the epoch's batches of
 * data loss + penalties; `val_loss` adds the penalties at the epoch's end to the validation
 * cross-entropy; `lr` is the optimizer's learning rate at the epoch's end.
 */
import * as tf from '@tensorflow/tfjs';
import { BuiltModel, penaltyValues } from '../model';
import { weightStats } from './weight-stats';
import { Rng } from '../rng';
import type { EpochRecord } from '../runformat';
import { CallbackList, StopReason, TrainingContext } from './callbacks/callback';
import { SplitPass } from './forward';
import { gatherBatch } from '../data/dataset';
import type { LoopState, Split, TrainStep } from './types';

const IMAGE_SIZE = 28 * 28;

export interface FitOptions {
  epochs: number;
  batchSize: number;
  shuffle: boolean;
  seed: number;
  /** Checked between batches; true abandons the epoch in progress (SIGINT/SIGTERM): the last checkpoint stays. */
  shouldStop?: () => boolean;
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

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function fit(
  built: BuiltModel,
  step: TrainStep,
  data: { train: Split; validation: Split | null },
  callbacks: CallbackList,
  opts: FitOptions,
): Promise<FitResult> {
  const resume = opts.resume;
  const shuffleRng = resume ? new Rng(resume.shuffleRng) : Rng.derive(opts.seed, 'shuffle');
  const dropoutRng = resume ? new Rng(resume.dropoutRng) : Rng.derive(opts.seed, 'dropout');
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
      stopTraining: ctx.stopTraining,
    }),
  };
  const xBuf = new Float32Array(opts.batchSize * IMAGE_SIZE);
  const yBuf = new Int32Array(opts.batchSize);
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
      let correct = 0;
      let seen = 0;
      for (let s = 0; s < steps; s++) {
        if (opts.shouldStop?.()) {
          stopReason = 'interrupted';
          break epochLoop;
        }
        const start = s * opts.batchSize;
        const b = Math.min(opts.batchSize, n - start);
        gatherBatch(train, order, start, b, xBuf, yBuf);
        const x = tf.tensor3d(b === opts.batchSize ? xBuf : xBuf.subarray(0, b * IMAGE_SIZE), [b, 28, 28]);
        const y = tf.tensor1d(b === opts.batchSize ? yBuf : yBuf.subarray(0, b), 'int32');
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
        callbacks.batchEnd(s + 1, { loss: lossSum / seen }, ctx);
        // Let signal handlers and the progress bar run between batches.
        await nextTick();
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
    await callbacks.trainEnd({ stopReason, epochs: completed }, ctx);
  } finally {
    validationPass?.dispose();
  }
  return { stopReason, epochs: completed, ...(nonFinite ? { nonFinite } : {}) };
}
