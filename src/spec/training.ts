/**
 * The spec's training sections: zod schemas with Keras's names and defaults
 * (keras.optimizers.schedules, keras.callbacks), documented where they are declared, and the
 * fields every optimizer shares (learning rate, weight decay). Each optimizer's own schema is in
 * its file under src/train/optimizers/; src/spec.ts assembles them into the experiment spec.
 */
import { z } from 'zod';
import { float32BelowOne, float32Factor } from './float32';

export const num = (what = 'a number') => z.number({ error: `expected ${what}` });
export const positive = () =>
  num('a positive number').positive({ error: 'expected a positive number' }).superRefine(float32Factor(false));
export const nonNegative = () =>
  num('a finite number ≥ 0').min(0, { error: 'expected a finite number ≥ 0' }).superRefine(float32Factor(true));
/** Compared in float64 only (metric deltas, a schedule's decay base): no float32 check. */
const positive64 = () => num('a positive number').positive({ error: 'expected a positive number' });
const nonNegative64 = () => num('a finite number ≥ 0').min(0, { error: 'expected a finite number ≥ 0' });
export const bool = () => z.boolean({ error: 'expected true or false' });
export const positiveInt = () =>
  z
    .number({ error: 'expected a positive integer' })
    .int({ error: 'expected an integer' })
    .positive({ error: 'expected a positive integer' });
const nonNegativeInt = () =>
  z
    .number({ error: 'expected an integer ≥ 0' })
    .int({ error: 'expected an integer' })
    .min(0, { error: 'expected an integer ≥ 0' });
/** A factor in (0, 1): β₁, β₂, momentum-like values. */
export const unitOpen = () =>
  num('a number in (0, 1)')
    .gt(0, { error: 'expected a number in (0, 1)' })
    .lt(1, { error: 'expected a number in (0, 1)' })
    .superRefine(float32BelowOne);

export const MONITORS = ['val_loss', 'val_accuracy', 'loss', 'accuracy'] as const;
export type Monitor = (typeof MONITORS)[number];
const monitor = () => z.enum(MONITORS, { error: `expected one of ${MONITORS.join(', ')}` });
/** Keras's `mode`: "auto" minimizes losses and maximizes accuracies. */
const mode = () => z.enum(['auto', 'min', 'max'] as const, { error: 'expected one of auto, min, max' }).default('auto');

// ---------- learning-rate schedules (keras.optimizers.schedules); steps count optimizer updates ----------

const exponentialDecay = z.strictObject({
  initialLearningRate: positive(),
  decaySteps: positiveInt(),
  decayRate: positive64(),
  /** Keras's default: a smooth decay. */
  staircase: bool().default(false),
});
const piecewiseConstant = z
  .strictObject({
    boundaries: z
      .array(nonNegativeInt(), { error: 'expected a list of step numbers' })
      .min(1, { error: 'expected at least one boundary' }),
    values: z.array(positive(), { error: 'expected a list of learning rates' }),
  })
  .superRefine((o, ctx) => {
    if (o.values.length !== o.boundaries.length + 1)
      ctx.addIssue({
        code: 'custom',
        path: ['values'],
        message: `expected ${o.boundaries.length + 1} values (one more than the boundaries), got ${o.values.length}`,
      });
    if (o.boundaries.some((b, i) => i > 0 && b <= o.boundaries[i - 1]!))
      ctx.addIssue({ code: 'custom', path: ['boundaries'], message: 'expected strictly increasing step numbers' });
  });
const cosineDecay = z.strictObject({
  initialLearningRate: nonNegative(),
  decaySteps: positiveInt(),
  /** Keras's defaults: decay to 0, no warm-up. */
  alpha: num('a number in [0, 1]')
    .min(0, { error: 'expected a number in [0, 1]' })
    .max(1, { error: 'expected a number in [0, 1]' })
    .default(0),
  warmupSteps: nonNegativeInt().default(0),
  /** The peak reached after warmupSteps; null: no warm-up, the cosine starts at initialLearningRate. */
  warmupTarget: positive().nullable().default(null),
});

export const SCHEDULE_TYPES = ['exponentialDecay', 'piecewiseConstant', 'cosineDecay'] as const;
const schedule = z
  .strictObject(
    {
      exponentialDecay: exponentialDecay.optional(),
      piecewiseConstant: piecewiseConstant.optional(),
      cosineDecay: cosineDecay.optional(),
    },
    { error: `expected a positive number or one schedule: ${SCHEDULE_TYPES.join(', ')}` },
  )
  .superRefine((s, ctx) => {
    const kinds = SCHEDULE_TYPES.filter((k) => s[k] !== undefined);
    if (kinds.length !== 1)
      ctx.addIssue({
        code: 'custom',
        message: `expected exactly one schedule (${SCHEDULE_TYPES.join(', ')}), got ${kinds.length}`,
      });
  });

/** A constant learning rate or a schedule, as Keras's `learning_rate` argument takes either. */
export const learningRate = (defaultValue: number) =>
  z
    .union([positive(), schedule], {
      error: `expected a positive number or one schedule: ${SCHEDULE_TYPES.join(', ')}`,
    })
    .default(defaultValue);
export type LearningRateSpec = number | z.infer<typeof schedule>;

// ---------- optimizers (keras.optimizers), with decoupled weight decay ----------

/**
 * Decoupled weight decay as Keras 3 and PyTorch's AdamW apply it: before each update,
 * w ← w − lr·weightDecay·w, apart from the gradient. By default it touches every trainable
 * variable (kernels, biases, batch-norm γ/β), as Keras does. `excludeFromWeightDecay` lists
 * regular expressions, as Keras 3's `exclude_from_weight_decay(var_names=…)`: a variable is left
 * alone when one is found (re.search) in its short name (`kernel`, `bias`, `gamma`, `beta`), so
 * `[bias]` excludes every bias and `[dense_1]` nothing. regtrain's extension: a pattern with a `/`
 * is searched in the layer-qualified name instead (`dense_1/` excludes that whole layer,
 * `^dense_1/kernel$` one kernel); a Keras short name never holds a `/`, so no Keras pattern
 * changes meaning.
 */
export const weightDecay = (defaultValue: number) => nonNegative().default(defaultValue);
export const excludeFromWeightDecay = () =>
  z
    .array(
      z
        .string({ error: 'expected a regular expression' })
        .min(1, { error: 'expected a non-empty regular expression' })
        .superRefine((pattern, ctx) => {
          try {
            new RegExp(pattern);
          } catch (e) {
            ctx.addIssue({ code: 'custom', message: `not a valid regular expression: ${(e as Error).message}` });
          }
        }),
      { error: 'expected a list of regular expressions matched against variable names (kernel, bias, gamma, beta)' },
    )
    .default([]);

/**
 * The fields Keras 3's base optimizer gives every optimizer (keras/src/optimizers/base_optimizer.py),
 * absent from a resolved spec unless set, so specs written before them resolve as they did:
 * - Gradient clipping, of the loss gradient (data loss + penalties: Keras adds the regularization
 *   losses to the loss) before decoupled weight decay and the update: `clipnorm` rescales each
 *   variable's gradient to norm ≤ clipnorm, `globalClipnorm` all of them together to global norm
 *   ≤ globalClipnorm, `clipvalue` clips each element to [−clipvalue, clipvalue]. At most one.
 * - `useEma`: a moving average of the trainable weights after each update, average ←
 *   emaMomentum·average + (1 − emaMomentum)·w (the first update copies), written over the model every
 *   `emaOverwriteFrequency` updates (null: never during training) and at the end of training.
 *   Keras's defaults: no clipping, useEma false, emaMomentum 0.99, emaOverwriteFrequency null.
 *   regtrain refuses emaMomentum or emaOverwriteFrequency without `useEma: true` (Keras ignores them).
 */
export const baseOptimizerFields = {
  clipnorm: positive().optional(),
  clipvalue: positive().optional(),
  globalClipnorm: positive().optional(),
  useEma: bool().optional(),
  emaMomentum: num('a number in [0, 1]')
    .min(0, { error: 'expected a number in [0, 1]' })
    .max(1, { error: 'expected a number in [0, 1]' })
    .optional(),
  emaOverwriteFrequency: positiveInt().nullable().optional(),
};
export const CLIP_FIELDS = ['clipnorm', 'clipvalue', 'globalClipnorm'] as const;

/**
 * With useEma on, Keras's EMA defaults written out (momentum 0.99, no overwrite), so a resolved spec shows
 * them; always last and in this order, whatever order they were given in (a resume compares the resolved
 * spec's YAML with the run's, and a --set field would otherwise come before its default neighbour).
 */
export function withEmaDefaults<T extends { useEma?: boolean | undefined }>(o: T): T {
  if (!o.useEma) return o;
  const { emaMomentum, emaOverwriteFrequency, ...rest } = o as T & {
    emaMomentum?: number;
    emaOverwriteFrequency?: number | null;
  };
  return {
    ...rest,
    emaMomentum: emaMomentum ?? 0.99,
    emaOverwriteFrequency: emaOverwriteFrequency ?? null,
  } as unknown as T;
}

/** Keras's checks across the base fields: one clipping option at most; the EMA fields only with useEma. */
export function checkBaseOptimizer(
  o: { [K in keyof typeof baseOptimizerFields]?: z.infer<(typeof baseOptimizerFields)[K]> },
  ctx: z.RefinementCtx,
): void {
  const set = CLIP_FIELDS.filter((k) => o[k] !== undefined);
  if (set.length > 1)
    ctx.addIssue({
      code: 'custom',
      path: [set[1]!],
      message: `only one of clipnorm, clipvalue, globalClipnorm may be set (${set[0]} is set too)`,
    });
  for (const k of ['emaMomentum', 'emaOverwriteFrequency'] as const)
    if (o[k] !== undefined && o.useEma !== true)
      ctx.addIssue({ code: 'custom', path: [k], message: `${k} needs useEma: true` });
}

/**
 * keras.losses.CategoricalCrossentropy(label_smoothing=…) on the sparse labels: the target becomes
 * onehot·(1 − labelSmoothing) + labelSmoothing/classes. 0 (or absent) trains on the plain
 * cross-entropy; absent from a resolved spec unless set, so specs written before it resolve as they did.
 */
export const labelSmoothingSchema = num('a number from 0 to 1 (1 excluded)')
  .min(0, { error: 'expected a number ≥ 0 and < 1' })
  .lt(1, { error: 'expected a number ≥ 0 and < 1' })
  .optional();

// ---------- weight averaging ----------

/**
 * Stochastic weight averaging, regtrain's own addition (Keras has none), as PyTorch's
 * torch.optim.swa_utils defines it: from the end of epoch `startEpoch` on, the model's trainable
 * weights are averaged with equal weights at each epoch's end (AveragedModel); from the next epoch
 * the learning rate follows SWALR, annealing in `annealEpochs` epochs ("cos" or "linear") from the
 * rate in force at the end of epoch startEpoch to `learningRate`, constant within an epoch; at the
 * end of training the model takes the average and its batch-norm statistics are recomputed in one
 * pass over the training data (update_bn). PyTorch's defaults: annealEpochs 10, annealStrategy cos.
 * Absent (no SWA) unless set.
 */
export const swaSchema = z
  .strictObject({
    startEpoch: positiveInt(),
    learningRate: positive(),
    annealEpochs: nonNegativeInt().default(10),
    annealStrategy: z.enum(['cos', 'linear'], { error: 'expected cos or linear' }).default('cos'),
  })
  .optional();
export type SwaSpec = NonNullable<z.infer<typeof swaSchema>>;

/**
 * What a run's final weights are cannot be two things: an average (useEma, SWA) and the best
 * epoch's (earlyStopping.restoreBestWeights), or two averages. SWA sets the learning rate from
 * its start, which ReduceLROnPlateau would also change; and it must start within the run.
 */
export function weightAveragingIssues(spec: {
  optimizer: Record<string, { useEma?: boolean | undefined } | undefined>;
  training: {
    epochs: number;
    swa?: SwaSpec | undefined;
    earlyStopping: { restoreBestWeights: boolean } | null;
    reduceLrOnPlateau: unknown;
  };
}): { path: (string | number)[]; message: string }[] {
  const issues: { path: (string | number)[]; message: string }[] = [];
  const [kind, config] = Object.entries(spec.optimizer).find(([, o]) => o !== undefined) ?? [];
  const ema = config?.useEma === true;
  const { swa, earlyStopping, reduceLrOnPlateau, epochs } = spec.training;
  if (swa && swa.startEpoch > epochs)
    issues.push({
      path: ['training', 'swa', 'startEpoch'],
      message: `expected at most training.epochs (${epochs}), got ${swa.startEpoch}`,
    });
  if (swa && ema)
    issues.push({
      path: ['training', 'swa'],
      message: `SWA and optimizer.${kind}.useEma both average the weights: choose one`,
    });
  if (swa && reduceLrOnPlateau)
    issues.push({
      path: ['training', 'swa'],
      message: 'SWA sets the learning rate from its start epoch: it cannot be used with training.reduceLrOnPlateau',
    });
  if ((swa || ema) && earlyStopping?.restoreBestWeights)
    issues.push({
      path: ['training', 'earlyStopping', 'restoreBestWeights'],
      message: `the run ends with the ${swa ? 'SWA' : 'EMA'} average of the weights: restoreBestWeights would replace it`,
    });
  return issues;
}

// ---------- callbacks ----------

export const earlyStoppingSchema = z
  .strictObject({
    monitor: monitor().default('val_loss'),
    /** Keras's defaults: patience 0, minDelta 0, restoreBestWeights false. */
    patience: nonNegativeInt().default(0),
    minDelta: nonNegative64().default(0),
    restoreBestWeights: bool().default(false),
  })
  .nullable()
  .default(null);

/** keras.callbacks.ReduceLROnPlateau, with its defaults. */
export const reduceLrOnPlateauSchema = z
  .strictObject({
    monitor: monitor().default('val_loss'),
    factor: unitOpen().default(0.1),
    patience: nonNegativeInt().default(10),
    minDelta: nonNegative64().default(1e-4),
    cooldown: nonNegativeInt().default(0),
    minLr: nonNegative().default(0),
  })
  .nullable()
  .default(null);

/** keras.callbacks.ModelCheckpoint(save_best_only=True): RUN_DIR/best/ holds the best epoch's model. */
export const checkpointSchema = z
  .strictObject({
    saveBest: z
      .strictObject({
        monitor: monitor().default('val_loss'),
        mode: mode(),
      })
      .nullable()
      .default(null),
  })
  .prefault({});

/** TensorBoard event files in RUN_DIR/tensorboard/ (on by default). */
export const tensorboardSchema = bool().default(true);

/** "min" or "max" for a monitor, as Keras's mode "auto" decides it. */
export function monitorMode(monitorName: Monitor, mode: 'auto' | 'min' | 'max' = 'auto'): 'min' | 'max' {
  if (mode !== 'auto') return mode;
  return monitorName.endsWith('accuracy') ? 'max' : 'min';
}

export type EarlyStoppingSpec = z.infer<typeof earlyStoppingSchema>;
export type ReduceLrOnPlateauSpec = z.infer<typeof reduceLrOnPlateauSchema>;
export type CheckpointSpec = z.infer<typeof checkpointSchema>;
