import { z } from 'zod';

/**
 * The files of a run directory (and a study's study.json), as zod schemas: the single source
 * of truth for what `run` writes and what `evaluate`, `compare` and `--resume` read
 * (src/rundir.ts has one reader per file). Types come from the schemas.
 * Bump RUN_FORMAT_VERSION when a field changes meaning.
 *
 *   runs/<name>-<UTC timestamp>/
 *     model.json, weights.bin   tfjs Layers format (tf.loadLayersModel('file://…/model.json'))
 *     spec.yaml                 the fully resolved spec (defaults filled in)
 *     run.json                  RunOrigin: where the spec came from, and the backend + kernels it trains on (for --resume)
 *     history.json              HistoryFile
 *     history.csv               one row per epoch: epoch,loss,accuracy,val_loss,val_accuracy,data_loss,penalty,seconds
 *     metrics.json              MetricsFile (written last: its presence with status "complete" marks a finished run)
 */
export const RUN_FORMAT_VERSION = 1;

/**
 * Weight histograms use one fixed lattice of bin edges shared by every run: edges are multiples
 * of HISTOGRAM_BIN_WIDTH, symmetric around 0, reaching just past the layer's largest |w| (at most
 * HISTOGRAM_MAX_HALF_BINS bins each side; larger weights count in the outermost bins). Runs and
 * seeds therefore add up bin by bin. Older runs whose edges are not on the lattice are re-binned
 * by overlap when compared (src/compare.ts).
 */
export const HISTOGRAM_BIN_WIDTH = 0.005;
export const HISTOGRAM_MAX_HALF_BINS = 2000;
/** A histogram with more bins than this is not drawn (compare warns and leaves it out). */
export const MAX_HISTOGRAM_BINS = 100_000;

/** Size limits of run-directory files, checked before they are read. */
export const MAX_RUN_JSON_BYTES = 64 * 1024 * 1024;
export const MAX_HISTORY_BYTES = 512 * 1024 * 1024;
export const MAX_MODEL_JSON_BYTES = 16 * 1024 * 1024;

const num = z.number({ error: 'expected a number' });
/** JSON has no NaN or ±Infinity: the writer stores them as null, and the reader gives them back as NaN. */
const jsonNumber = z.union([num, z.null().transform(() => NaN)], { error: 'expected a number or null' });
const count = z
  .number({ error: 'expected a count' })
  .int({ error: 'expected a whole count' })
  .min(0, { error: 'expected a count ≥ 0' });
const text = z.string({ error: 'expected text' });
/** A layer's name is a label: a number written where a name belongs is read as its text. */
const layerName = z.union([z.string(), z.number().transform(String)], { error: 'expected a layer name' });

/** Statistics of one layer's kernel at one moment. */
export const WeightStatsSchema = z.object({
  /** Layer name as in the model summary, e.g. "dense_1". */
  layer: layerName,
  /** Σ|w| */
  l1: jsonNumber,
  /** sqrt(Σw²) */
  l2: jsonNumber,
  /** Share of kernel weights with |w| < 1e-3 and < 1e-2 (0..1). */
  sparsity1e3: jsonNumber,
  sparsity1e2: jsonNumber,
  maxAbs: jsonNumber,
});
export type WeightStats = z.infer<typeof WeightStatsSchema>;

/** One epoch, with Keras's log names. `loss` is the total (data loss + penalty), as Keras reports it. */
export const EpochRecordSchema = z.object({
  /** 1-based. */
  epoch: count.min(1, { error: 'expected an epoch number ≥ 1' }),
  loss: jsonNumber,
  accuracy: jsonNumber,
  val_loss: num.nullable(),
  val_accuracy: num.nullable(),
  /** Mean cross-entropy part of the loss over the epoch. */
  data_loss: jsonNumber,
  /**
   * With training.labelSmoothing: the mean over the epoch of the label-smoothed cross-entropy minus the plain
   * one, so loss = data_loss + smoothing + penalty (Keras's loss is the smoothed one). Absent without smoothing.
   */
  smoothing: jsonNumber.optional(),
  /** Sum of all regularization penalties (end of epoch value). */
  penalty: jsonNumber,
  /** Penalty per regularized layer and kind, e.g. { "dense_1/kernel/l1": 0.31 }. */
  penalties: z.record(z.string(), jsonNumber, { error: 'expected a map of penalties' }),
  /** The optimizer's learning rate at the epoch's end (absent in runs before regtrain 0.2). */
  lr: jsonNumber.optional(),
  seconds: jsonNumber,
  weights: z.array(WeightStatsSchema, { error: 'expected a list of layer statistics' }),
});
export type EpochRecord = z.infer<typeof EpochRecordSchema>;

export const HistoryFileSchema = z.object({
  formatVersion: num,
  epochs: z.array(EpochRecordSchema, { error: 'expected a list of epochs' }),
});
export type HistoryFile = z.infer<typeof HistoryFileSchema>;

export const HistogramSchema = z
  .object({
    layer: layerName,
    /** bins+1 edges, ascending. */
    edges: z
      .array(num.refine(Number.isFinite, { error: 'expected a finite number' }), { error: 'expected a list of edges' })
      .min(2, { error: 'expected at least 2 edges' })
      .max(MAX_HISTOGRAM_BINS + 1, { error: `expected at most ${MAX_HISTOGRAM_BINS + 1} edges` }),
    counts: z.array(count, { error: 'expected a list of counts' }),
  })
  .superRefine((h, ctx) => {
    if (h.counts.length !== h.edges.length - 1)
      ctx.addIssue({
        code: 'custom',
        path: ['counts'],
        message: `expected ${h.edges.length - 1} counts (one per bin), got ${h.counts.length}`,
      });
    for (let i = 1; i < h.edges.length; i++) {
      if (!(h.edges[i]! > h.edges[i - 1]!)) {
        ctx.addIssue({ code: 'custom', path: ['edges', i], message: 'expected ascending edges' });
        break;
      }
    }
  });
export type Histogram = z.infer<typeof HistogramSchema>;

/** An accuracy is always a finite number; a loss may have overflowed (null in JSON). */
const evaluation = z
  .object({
    loss: jsonNumber,
    accuracy: num
      .min(0, { error: 'expected an accuracy from 0 to 1' })
      .max(1, { error: 'expected an accuracy from 0 to 1' }),
    count,
  })
  .nullable();

/**
 * The test set's confusion matrix: matrix[true class][predicted class] image counts, one row and
 * one column per class name. Absent in runs written before regtrain stored it.
 */
export const ConfusionSchema = z
  .object({
    classNames: z
      .array(text, { error: 'expected a list of class names' })
      .min(2, { error: 'expected at least 2 class names' }),
    matrix: z.array(z.array(count, { error: 'expected a row of counts' }), { error: 'expected a list of rows' }),
  })
  .superRefine((c, ctx) => {
    const n = c.classNames.length;
    if (c.matrix.length !== n)
      ctx.addIssue({
        code: 'custom',
        path: ['matrix'],
        message: `expected ${n} rows (one per class), got ${c.matrix.length}`,
      });
    c.matrix.forEach((row, i) => {
      if (row.length !== n)
        ctx.addIssue({
          code: 'custom',
          path: ['matrix', i],
          message: `expected ${n} counts (one per class), got ${row.length}`,
        });
    });
  });
export type Confusion = z.infer<typeof ConfusionSchema>;

/** The confusion matrix of `predictions` against `labels` (class indexes), as metrics.json stores it. */
export function confusionOf(
  labels: ArrayLike<number>,
  predictions: ArrayLike<number>,
  classNames: string[],
): Confusion {
  const matrix = classNames.map(() => new Array<number>(classNames.length).fill(0));
  for (let i = 0; i < predictions.length; i++) matrix[labels[i]!]![predictions[i]!]!++;
  return { classNames: [...classNames], matrix };
}

const share = num.min(0, { error: 'expected a number from 0 to 1' }).max(1, { error: 'expected a number from 0 to 1' });

/**
 * How well the final model's test probabilities match how often it is right (src/evaluation/calibration.ts):
 * ECE over Guo et al.'s 15 equal-width confidence bins, the multi-class Brier score, the NLL without
 * Keras's clipping (null in JSON when a test image got p = 0 for its class), and the reliability
 * diagram's bins. Absent in runs written before regtrain measured it.
 */
export const CalibrationSchema = z.object({
  ece: share,
  brier: num
    .min(0, { error: 'expected a Brier score from 0 to 2' })
    .max(2, { error: 'expected a Brier score from 0 to 2' }),
  nll: jsonNumber,
  bins: z.array(
    z.object({
      lower: share,
      upper: share,
      count,
      confidence: share.nullable(),
      accuracy: share.nullable(),
    }),
    { error: 'expected a list of reliability bins' },
  ),
});
export type CalibrationRecord = z.infer<typeof CalibrationSchema>;

export const MetricsFileSchema = z.object({
  formatVersion: num,
  regtrainVersion: text,
  /** "complete" once training and the test evaluation finished; "incomplete" after an interruption. */
  status: z.enum(['complete', 'incomplete', 'failed'], { error: 'expected complete, incomplete or failed' }),
  /** Why training ended: "epochs", "early-stopping", "interrupted", "non-finite-loss". */
  stopReason: text,
  name: text,
  seed: count,
  backend: z.object({ name: text, reason: text }),
  versions: z.record(z.string(), text),
  dataset: z.object({
    source: text,
    sha256: z.record(
      z.string(),
      z.string({ error: 'expected a SHA-256 in hex' }).regex(/^[0-9a-f]{64}$/, { error: 'expected a SHA-256 in hex' }),
      {
        error: 'expected a map of file names to SHA-256',
      },
    ),
    normalization: z.object({
      method: z.enum(['scale01', 'standardize', 'none'], { error: 'expected scale01, standardize or none' }),
      mean: jsonNumber,
      std: jsonNumber,
    }),
    sizes: z.object({ train: count, validation: count, test: count }),
  }),
  epochsRun: count,
  bestEpoch: count.nullable(),
  test: evaluation,
  /**
   * The final model evaluated on the (non-validation) training data in inference mode,
   * so that train − test accuracy is an honest generalization gap (dropout off).
   */
  trainEval: evaluation,
  confusion: ConfusionSchema.optional(),
  /** The test set's calibration (absent in runs written before regtrain measured it). */
  calibration: CalibrationSchema.optional(),
  /**
   * The average the final weights are (optimizer useEma or training.swa), how it was taken; absent
   * when the run ends with its trained weights (or was written before regtrain averaged).
   */
  weightAveraging: z
    .discriminatedUnion('kind', [
      z.object({
        kind: z.literal('ema'),
        momentum: share,
        overwriteFrequency: count.nullable(),
        updates: count,
      }),
      z.object({
        kind: z.literal('swa'),
        startEpoch: count,
        snapshots: count,
        learningRate: jsonNumber,
        /** Training images of the batch-norm pass (update_bn); 0 without batch norm. */
        batchNormImages: count,
      }),
    ])
    .optional(),
  seconds: z.object({ total: jsonNumber, perEpoch: z.array(jsonNumber) }),
  /** Peak resident memory of the training process, in MiB (absent in the first runs of format 1). */
  peakRssMB: jsonNumber.optional(),
  finalWeights: z.array(WeightStatsSchema),
  histograms: z.array(HistogramSchema),
  parameters: z.object({ total: count, trainable: count }),
});
export type MetricsFile = z.infer<typeof MetricsFileSchema>;

/** run.json: where a run came from, so `--resume` can tell whether the spec file changed since. */
export const RunOriginSchema = z.object({
  formatVersion: num,
  specFile: text.nullable(),
  sets: z.array(text),
  /** SHA-256 of the resolved spec.yaml the run trains with. */
  specSha256: z
    .string({ error: 'expected a SHA-256 in hex' })
    .regex(/^[0-9a-f]{64}$/, { error: 'expected a SHA-256 in hex' }),
  /**
   * The backend and matmul kernels the run trains on (its latest segment): `--resume` and `run-member` keep
   * them unless --backend is given. Absent in runs written before regtrain recorded it (they resume on the spec's).
   */
  backend: z
    .object({
      name: z.enum(['tensorflow', 'wasm', 'cpu'], { error: 'expected tensorflow, wasm or cpu' }),
      kernels: z.enum(['openblas', 'wasm-relaxed-simd', 'wasm-simd', 'tfjs', 'tensorflow'], {
        error: 'expected openblas, wasm-relaxed-simd, wasm-simd, tfjs or tensorflow',
      }),
    })
    .optional(),
});
export type RunOrigin = z.infer<typeof RunOriginSchema>;

/** A study member's name, which is also its run directory's and spec file's (src/study.ts makes them). */
export const MEMBER_NAME = /^[A-Za-z0-9][A-Za-z0-9._=+-]{0,63}$/;

/** study.json's members: what `compare` needs to name groups and draw sweeps, what `run-member` needs to find one. */
export const StudyMemberSchema = z.object({
  name: z.string().regex(MEMBER_NAME, { error: 'expected a member name of letters, digits and ._=+- (at most 64)' }),
  variant: text,
  group: text,
  sweep: z.record(z.string(), z.unknown()),
  seed: count,
  repeat: count,
  overrides: z.array(z.object({ path: z.string(), value: z.unknown() })).default([]),
  /** specs/<name>.yaml and runs/<name>, relative to the study directory (regtrain finds both by the member's name). */
  spec: text.optional(),
  runDir: text.optional(),
});

/** study.json (src/study.ts writes it). */
export const StudyFileSchema = z.object({
  formatVersion: num,
  name: text,
  /** Hash of the resolved members (names and spec texts): the study's identity. Absent in studies planned before it existed. */
  studyHash: text.optional(),
  /** The spec file as given on the command line (for provenance; the specs/ files are what ran). */
  specFile: text.optional(),
  sets: z.array(z.string()).default([]),
  createdAt: text.optional(),
  baseline: text,
  variants: z.array(text),
  /** The swept paths and their values (absent or null: no sweep). */
  sweep: z
    .record(z.string(), z.array(z.unknown()))
    .nullish()
    .transform((v) => v ?? {}),
  repeats: count,
  members: z.array(StudyMemberSchema, { error: 'expected a list of members' }),
});
export type StudyFile = z.infer<typeof StudyFileSchema>;
