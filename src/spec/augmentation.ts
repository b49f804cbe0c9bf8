/**
 * The spec's `data.augmentation`: a list of steps applied, in order, to each training batch (never
 * to validation, test, evaluate or predict). Names and defaults are Keras 3's preprocessing layers
 * (RandomTranslation, RandomFlip, RandomRotation, RandomZoom, MixUp), camelCase as tfjs writes them;
 * `randomErasing` follows torchvision's RandomErasing (p, scale, ratio, value) and `cutMix` Keras-CV's
 * CutMix (alpha). The math is in src/data/augmentation/.
 */
import { z } from 'zod';

const FACTOR_ERROR = 'expected a number in [-1, 1] or [lower, upper] within [-1, 1]';
const unit = () => z.number({ error: FACTOR_ERROR }).min(-1, { error: FACTOR_ERROR }).max(1, { error: FACTOR_ERROR });
/**
 * Keras's factor: a number f means [−|f|, |f|]; a pair is [lower, upper] (Keras sorts it; regtrain
 * refuses a reversed pair instead, so that what is written is what runs).
 */
const factor = () =>
  z
    .union([unit(), z.tuple([unit(), unit()], { error: FACTOR_ERROR })], { error: FACTOR_ERROR })
    .refine((f) => typeof f === 'number' || f[0] <= f[1], { error: 'expected [lower, upper] with lower ≤ upper' });
export type Factor = number | [number, number];

/** The range a factor stands for. */
export function factorRange(f: Factor): [number, number] {
  return typeof f === 'number' ? [-Math.abs(f), Math.abs(f)] : f;
}

export const FILL_MODES = ['reflect', 'wrap', 'constant', 'nearest'] as const;
export type FillMode = (typeof FILL_MODES)[number];
const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `expected one of ${values.join(', ')}` });
const finite = (what: string) =>
  z.number({ error: `expected ${what}` }).refine(Number.isFinite, { error: `expected ${what}` });

/** What RandomTranslation, RandomRotation and RandomZoom share (Keras's defaults). */
const fillFields = {
  fillMode: oneOf(FILL_MODES).default('reflect'),
  interpolation: oneOf(['bilinear', 'nearest'] as const).default('bilinear'),
  fillValue: finite('a finite number').default(0),
};

const randomTranslation = z.strictObject({
  /** Fractions of the height and width: the shift is drawn uniformly from factor·size pixels. */
  heightFactor: factor(),
  widthFactor: factor(),
  ...fillFields,
});
const randomFlip = z.strictObject({
  mode: oneOf(['horizontal', 'vertical', 'horizontal_and_vertical'] as const).default('horizontal_and_vertical'),
});
const randomRotation = z.strictObject({
  /** A fraction of a full turn (2π): 0.1 draws angles in [−36°, 36°]; positive is counter-clockwise. */
  factor: factor(),
  ...fillFields,
});
const randomZoom = z.strictObject({
  /** Positive zooms out, negative zooms in; widthFactor null keeps the aspect ratio (the height's zoom for both). */
  heightFactor: factor(),
  widthFactor: factor().nullable().default(null),
  ...fillFields,
});

const PAIR_ERROR = 'expected [min, max] with 0 < min ≤ max';
const positivePair = (max: number | null) =>
  z
    .tuple(
      [
        z.number({ error: PAIR_ERROR }).positive({ error: PAIR_ERROR }),
        z.number({ error: PAIR_ERROR }).positive({ error: PAIR_ERROR }),
      ],
      { error: PAIR_ERROR },
    )
    .refine((p) => p[0] <= p[1] && Number.isFinite(p[1]), { error: PAIR_ERROR })
    .refine((p) => max === null || p[1] <= max, { error: `expected [min, max] with max ≤ ${max}` });
const randomErasing = z.strictObject({
  /** torchvision's defaults: erase with probability 0.5 a rectangle of 2–33% of the area, aspect ratio 0.3–3.3. */
  p: z
    .number({ error: 'expected a probability in [0, 1]' })
    .min(0, { error: 'expected a probability in [0, 1]' })
    .max(1, { error: 'expected a probability in [0, 1]' })
    .default(0.5),
  scale: positivePair(1).default([0.02, 0.33]),
  ratio: positivePair(null).default([0.3, 3.3]),
  /** The value written into the rectangle (in normalized units), or `random`: standard normal noise per pixel. */
  value: z
    .union([finite('a finite number or random'), z.literal('random')], { error: 'expected a finite number or random' })
    .default(0),
});
const ALPHA_ERROR = 'expected a positive number';
const alpha = (byDefault: number) =>
  z
    .number({ error: ALPHA_ERROR })
    .positive({ error: ALPHA_ERROR })
    .refine(Number.isFinite, { error: ALPHA_ERROR })
    .default(byDefault);
/** Keras 3's MixUp: one λ ~ Beta(alpha, alpha) per batch. */
const mixUp = z.strictObject({ alpha: alpha(0.2) });
/** Keras-CV's CutMix: λ ~ Beta(alpha, alpha) per image. */
const cutMix = z.strictObject({ alpha: alpha(1) });

export const AUGMENTATION_TYPES = [
  'randomTranslation',
  'randomFlip',
  'randomRotation',
  'randomZoom',
  'randomErasing',
  'mixUp',
  'cutMix',
] as const;
export type AugmentationType = (typeof AUGMENTATION_TYPES)[number];

/** A step is a map with exactly one key, its type: `- randomFlip: { mode: horizontal }`. */
export const augmentationStepSchema = z
  .strictObject(
    {
      randomTranslation: randomTranslation.optional(),
      randomFlip: randomFlip.optional(),
      randomRotation: randomRotation.optional(),
      randomZoom: randomZoom.optional(),
      randomErasing: randomErasing.optional(),
      mixUp: mixUp.optional(),
      cutMix: cutMix.optional(),
    },
    { error: `expected an augmentation step: one of ${AUGMENTATION_TYPES.join(', ')}` },
  )
  .superRefine((s, ctx) => {
    const kinds = Object.keys(s).filter((k) => s[k as AugmentationType] !== undefined);
    if (kinds.length !== 1)
      ctx.addIssue({
        code: 'custom',
        message: `expected exactly one augmentation step type (${AUGMENTATION_TYPES.join(', ')}), got ${kinds.length}`,
      });
  });
export type AugmentationStep = z.infer<typeof augmentationStepSchema>;

/**
 * Optional, with no default: a spec without augmentation resolves exactly as before augmentation
 * existed, so its echo, its spec.yaml and a study's directory hash (of the resolved spec) stay the same.
 */
export const augmentationSchema = z
  .array(augmentationStepSchema, { error: 'expected a list of augmentation steps' })
  .optional();

export type RandomTranslationSpec = z.infer<typeof randomTranslation>;
export type RandomFlipSpec = z.infer<typeof randomFlip>;
export type RandomRotationSpec = z.infer<typeof randomRotation>;
export type RandomZoomSpec = z.infer<typeof randomZoom>;
export type RandomErasingSpec = z.infer<typeof randomErasing>;
export type MixUpSpec = z.infer<typeof mixUp>;
export type CutMixSpec = z.infer<typeof cutMix>;

export function augmentationType(s: AugmentationStep): AugmentationType {
  for (const t of AUGMENTATION_TYPES) if (s[t] !== undefined) return t;
  throw new Error('augmentation step without a type (the schema should have refused it)');
}

/** Whether the steps mix images and labels (the batch then trains on soft labels). */
export function mixesLabels(steps: readonly AugmentationStep[]): boolean {
  return steps.some((s) => s.mixUp !== undefined || s.cutMix !== undefined);
}
