/**
 * The files of a run directory, as types. `run` writes them, `evaluate`, `compare`
 * and `--resume` read them. Bump RUN_FORMAT_VERSION when a field changes meaning.
 *
 *   runs/<name>-<UTC timestamp>/
 *     model.json, weights.bin   tfjs Layers format (tf.loadLayersModel('file://…/model.json'))
 *     spec.yaml                 the fully resolved spec (defaults filled in)
 *     history.json              HistoryFile
 *     history.csv               one row per epoch: epoch,loss,accuracy,val_loss,val_accuracy,data_loss,penalty,seconds
 *     metrics.json              MetricsFile (written last: its presence with status "complete" marks a finished run)
 */
export const RUN_FORMAT_VERSION = 1;

/** Statistics of one layer's kernel at one moment. */
export interface WeightStats {
  /** Layer name as in the model summary, e.g. "dense_1". */
  layer: string;
  l1: number; // Σ|w|
  l2: number; // sqrt(Σw²)
  /** Share of kernel weights with |w| < 1e-3 and < 1e-2 (0..1). */
  sparsity1e3: number;
  sparsity1e2: number;
  maxAbs: number;
}

/** One epoch, with Keras's log names. `loss` is the total (data loss + penalty), as Keras reports it. */
export interface EpochRecord {
  epoch: number; // 1-based
  loss: number;
  accuracy: number;
  val_loss: number | null;
  val_accuracy: number | null;
  /** Mean cross-entropy part of the loss over the epoch. */
  data_loss: number;
  /** Sum of all regularization penalties (end of epoch value). */
  penalty: number;
  /** Penalty per regularized layer and kind, e.g. { "dense_1/kernel/l1": 0.31 }. */
  penalties: Record<string, number>;
  /** The optimizer's learning rate at the epoch's end (absent in runs before regtrain 0.2). */
  lr?: number;
  seconds: number;
  weights: WeightStats[];
}

export interface HistoryFile {
  formatVersion: number;
  epochs: EpochRecord[];
}

export interface Histogram {
  layer: string;
  /** bins+1 edges, ascending. */
  edges: number[];
  counts: number[];
}

export interface MetricsFile {
  formatVersion: number;
  regtrainVersion: string;
  /** "complete" once training and the test evaluation finished; "incomplete" after an interruption. */
  status: 'complete' | 'incomplete' | 'failed';
  /** Why training ended: "epochs", "early-stopping", "interrupted", "non-finite-loss". */
  stopReason: string;
  name: string;
  seed: number;
  backend: { name: string; reason: string };
  versions: Record<string, string>;
  dataset: {
    source: string;
    sha256: Record<string, string>;
    normalization: { method: 'scale01' | 'standardize' | 'none'; mean: number; std: number };
    sizes: { train: number; validation: number; test: number };
  };
  epochsRun: number;
  bestEpoch: number | null;
  test: { loss: number; accuracy: number; count: number } | null;
  /**
   * The final model evaluated on the (non-validation) training data in inference mode,
   * so that train − test accuracy is an honest generalization gap (dropout off).
   */
  trainEval: { loss: number; accuracy: number; count: number } | null;
  seconds: { total: number; perEpoch: number[] };
  /** Peak resident memory of the training process, in MiB. */
  peakRssMB: number;
  finalWeights: WeightStats[];
  histograms: Histogram[];
  parameters: { total: number; trainable: number };
}
