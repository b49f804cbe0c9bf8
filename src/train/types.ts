/**
 * The training vocabulary, each defined once: a data split (src/data/dataset.ts), what one
 * training step returns, the step seam itself, and the logs an epoch produces.
 */
import type * as tf from '../tf';
import type { Split } from '../data/dataset';
import type { Optimizer, OptimizerState } from './optimizers';
export type { Split };

/** What one optimizer update on one batch reports. */
export interface StepResult {
  /** Mean cross-entropy over the batch (before the penalty). */
  dataLoss: number;
  /** Kernel/bias penalties at the weights the batch was computed with, plus activity penalties (per sample, as tf.keras 2). */
  penalty: number;
  /** Correct predictions in the batch. */
  correct: number;
  /**
   * With training.labelSmoothing: the label-smoothed cross-entropy minus `dataLoss` (batch mean), so that
   * dataLoss + smoothing is the smoothed loss Keras reports; absent without label smoothing.
   */
  smoothing?: number;
}

/**
 * The training-step seam: forward, backward, penalties and the optimizer update on one batch.
 * Two implementations: the reference step (tfjs autodiff, every layer) and the lean step
 * (hand-written gradients for Flatten + Dense stacks, src/accel/). The loop only sees this.
 */
export interface TrainStep {
  /** Which path runs, e.g. "lean step (hand-written gradients) + OpenBLAS matmuls (1 thread)". */
  readonly description: string;
  /** Short name recorded in checkpoints: a resume says when it changes path. */
  readonly path: 'reference' | 'lean';
  /**
   * One optimizer update. `x` is [batch, 28, 28]; `y` int32 [batch] class indices, or float32
   * [batch, classes] soft labels (mixUp/cutMix): categorical cross-entropy from the logits.
   */
  run(x: tf.Tensor, y: tf.Tensor1D | tf.Tensor2D, dropoutSeed: number): StepResult;
  /** The optimizer the step updates with (weight averaging reads its EMA and fixes SWA's learning rate there). */
  readonly optimizer: Optimizer;
  /** The learning rate the next update uses. */
  learningRate(): number;
  setLearningRate(lr: number): void;
  optimizerState(): OptimizerState;
  /** Takes what optimizerState() gave (on either path); throws InputError when it does not fit. */
  setOptimizerState(state: OptimizerState): void;
  dispose(): void;
}

/** Everything the loop itself needs to continue exactly where it was. */
export interface LoopState {
  /** Completed epochs. */
  epoch: number;
  shuffleRng: number[];
  dropoutRng: number[];
  /** The augmentation stream (absent in checkpoints from before augmentation existed). */
  augmentationRng?: number[];
  /** A callback decided to stop after this epoch (a resume then trains no further). */
  stopTraining: 'epochs' | 'early-stopping' | 'interrupted' | 'non-finite-loss' | null;
}
