/**
 * The spec's layers: zod schemas with tfjs-layers' camelCase names and Keras's defaults, and the
 * shape rules that check a layer stack before anything is built (output shapes, parameter
 * counts and weight shapes by Keras's formulas). src/spec.ts assembles them into the experiment spec.
 */
import { z } from 'zod';
import { float32BelowOne, float32Factor } from './float32';

/** Fashion-MNIST images are 28×28, one channel. */
export const IMAGE_SHAPE = [28, 28] as const;
/** Refused before anything is allocated (a typo like `units: 1e9` must not eat the machine). */
export const MAX_UNITS = 65536;
export const MAX_FILTERS = 4096;
/** No map is wider than the 784 values of an image, so neither is a kernel, pool or stride. */
export const MAX_WINDOW = 784;
/** Values per image of a conv2d layer's output: 28×28×1024 fits, 28×28×4096 (12 MiB per image) does not. */
export const MAX_MAP_VALUES = 1_000_000;

const num = (what = 'a number') => z.number({ error: `expected ${what}` });
const nonNegative = () =>
  num('a finite number ≥ 0').min(0, { error: 'expected a finite number ≥ 0' }).superRefine(float32Factor(true));
const positiveInt = (max: number) =>
  z
    .number({ error: 'expected a positive integer' })
    .int({ error: 'expected an integer' })
    .min(1, { error: 'expected a positive integer' })
    .max(max, { error: `expected at most ${max}` });
const rate = () =>
  num('a rate in [0, 1)')
    .min(0, { error: 'expected a rate in [0, 1)' })
    .lt(1, { error: 'expected a rate in [0, 1)' })
    .superRefine(float32BelowOne);
const bool = () => z.boolean({ error: 'expected true or false' });
const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `expected one of ${values.join(', ')}` });

/** tfjs and tf.keras 2 give a bare `l1`/`l2`/`l1l2` a factor of 0.01 (Keras 3's bare `L1L2()` means zero). */
const SHORTHAND_FACTOR = 0.01;
const REGULARIZER_SHORTHANDS: Record<string, { l1?: number; l2?: number }> = {
  l1: { l1: SHORTHAND_FACTOR },
  l2: { l2: SHORTHAND_FACTOR },
  l1l2: { l1: SHORTHAND_FACTOR, l2: SHORTHAND_FACTOR },
};

/** Penalty = l1·Σ|w| + l2·Σw² (Keras's form: no ½ on the L2 term). Either factor defaults to 0. */
const regularizer = z
  .preprocess(
    (v) => (typeof v === 'string' && v in REGULARIZER_SHORTHANDS ? { ...REGULARIZER_SHORTHANDS[v] } : v),
    z.strictObject(
      {
        l1: nonNegative().default(0),
        l2: nonNegative().default(0),
      },
      { error: 'expected {l1, l2} or one of l1, l2, l1l2' },
    ),
  )
  .nullable()
  .default(null);
/** Keras 3's OrthogonalRegularizer (keras.regularizers.OrthogonalRegularizer): its defaults. */
export const ORTHOGONAL_MODES = ['rows', 'columns'] as const;
const orthogonalSchema = z.strictObject({
  factor: nonNegative().default(0.01),
  mode: oneOf(ORTHOGONAL_MODES).default('rows'),
});
export type OrthogonalSpec = z.infer<typeof orthogonalSchema>;
/**
 * A kernel's regularizer: {l1, l2} as above, or Keras 3's orthogonal regularizer
 * (`orthogonal`, or `{orthogonal: {factor, mode}}`), which Keras allows on rank-2 kernels only
 * (dense; the shape check refuses it on conv2d). One or the other: Keras takes one regularizer per weight.
 */
const kernelRegularizer = z
  .preprocess(
    (v) =>
      v === 'orthogonal'
        ? { orthogonal: {} }
        : typeof v === 'string' && v in REGULARIZER_SHORTHANDS
          ? { ...REGULARIZER_SHORTHANDS[v] }
          : v,
    z
      .strictObject(
        {
          l1: nonNegative().default(0),
          l2: nonNegative().default(0),
          orthogonal: orthogonalSchema.optional(),
        },
        { error: 'expected {l1, l2}, {orthogonal: {factor, mode}} or one of l1, l2, l1l2, orthogonal' },
      )
      .superRefine((r, ctx) => {
        if (r.orthogonal && (r.l1 > 0 || r.l2 > 0))
          ctx.addIssue({
            code: 'custom',
            message: 'expected either {l1, l2} or orthogonal, not both (Keras takes one regularizer per weight)',
          });
      }),
  )
  .nullable()
  .default(null);
export type RegularizerSpec = { l1: number; l2: number; orthogonal?: OrthogonalSpec };

/** Keras's weight constraints (keras.constraints), by tfjs's names. */
export const CONSTRAINT_TYPES = ['maxNorm', 'unitNorm', 'nonNeg', 'minMaxNorm'] as const;
/** The axis (or axes) the norm is taken over: Keras's default 0, a Dense kernel's inputs to each unit. */
const constraintAxis = z
  .union(
    [
      z.number().int().min(0),
      z
        .array(z.number().int().min(0), { error: 'expected an axis (an integer ≥ 0) or a list of them' })
        .min(1, { error: 'expected at least one axis' }),
    ],
    { error: 'expected an axis (an integer ≥ 0) or a list of them' },
  )
  .default(0);
const positiveFloat = () =>
  num('a positive number').positive({ error: 'expected a positive number' }).superRefine(float32Factor(false));
/**
 * A weight constraint, applied to the weight after each optimizer update (Keras's defaults):
 * `maxNorm` {maxValue: 2, axis: 0}, `unitNorm` {axis: 0}, `nonNeg`, `minMaxNorm` {minValue: 0,
 * maxValue: 1, rate: 1, axis: 0}; a bare name means its defaults. Absent: no constraint (and absent
 * from the resolved spec, so specs written before constraints resolve as they did).
 */
export const constraintSchema = z
  .preprocess(
    (v) => (typeof v === 'string' && (CONSTRAINT_TYPES as readonly string[]).includes(v) ? { [v]: {} } : v),
    z
      .strictObject(
        {
          maxNorm: z.strictObject({ maxValue: positiveFloat().default(2), axis: constraintAxis }).optional(),
          unitNorm: z.strictObject({ axis: constraintAxis }).optional(),
          nonNeg: z.strictObject({}).optional(),
          minMaxNorm: z
            .strictObject({
              minValue: nonNegative().default(0),
              maxValue: positiveFloat().default(1),
              rate: num('a rate from 0 to 1')
                .min(0, { error: 'expected a rate from 0 to 1' })
                .max(1, { error: 'expected a rate from 0 to 1' })
                .default(1),
              axis: constraintAxis,
            })
            .optional(),
        },
        { error: `expected one of ${CONSTRAINT_TYPES.join(', ')}, or a map with one of them and its settings` },
      )
      .superRefine((c, ctx) => {
        const kinds = Object.keys(c).filter((k) => c[k as keyof typeof c] !== undefined);
        if (kinds.length !== 1)
          ctx.addIssue({
            code: 'custom',
            message: `expected exactly one constraint (${CONSTRAINT_TYPES.join(', ')}), got ${kinds.length}`,
          });
        if (c.minMaxNorm && c.minMaxNorm.minValue > c.minMaxNorm.maxValue)
          ctx.addIssue({
            code: 'custom',
            path: ['minMaxNorm', 'minValue'],
            message: `expected at most maxValue (${c.minMaxNorm.maxValue}), got ${c.minMaxNorm.minValue}`,
          });
      }),
  )
  .optional();
export type ConstraintSpec = NonNullable<z.infer<typeof constraintSchema>>;

const ACTIVATIONS = [
  'linear',
  'relu',
  'relu6',
  'elu',
  'selu',
  'sigmoid',
  'hardSigmoid',
  'tanh',
  'softmax',
  'softplus',
  'softsign',
  'swish',
  'mish',
  'gelu',
] as const;
const INITIALIZERS = [
  'glorotUniform',
  'glorotNormal',
  'heUniform',
  'heNormal',
  'leCunUniform',
  'leCunNormal',
  'zeros',
  'ones',
] as const;

/** Keras's int-or-pair arguments (kernel_size=3 or (3, 5)): height, width. */
const window = (max: number) =>
  z.union(
    [
      positiveInt(max),
      z.tuple([positiveInt(max), positiveInt(max)], { error: 'expected a positive integer or [height, width]' }),
    ],
    {
      error: 'expected a positive integer or [height, width]',
    },
  );
export type Window = number | [number, number];
const padding = () => oneOf(['valid', 'same'] as const).default('valid');

const flattenLayer = z.strictObject({
  /** Fashion-MNIST images are 28×28; stated here for Keras readers, and checked. */
  inputShape: z.tuple([num(), num()], { error: 'expected [28, 28]' }).default([28, 28]),
});
/** What dense and conv2d layers share: activation, bias, initializers and regularizers (Keras's defaults: no activation, i.e. linear). */
const weightedLayerFields = {
  activation: oneOf(ACTIVATIONS).default('linear'),
  useBias: bool().default(true),
  kernelInitializer: oneOf(INITIALIZERS).default('glorotUniform'),
  biasInitializer: oneOf(INITIALIZERS).default('zeros'),
  kernelRegularizer,
  biasRegularizer: regularizer,
  activityRegularizer: regularizer,
  kernelConstraint: constraintSchema,
  biasConstraint: constraintSchema,
};
const denseLayer = z.strictObject({
  units: positiveInt(MAX_UNITS),
  ...weightedLayerFields,
});
const dropoutLayer = z.strictObject({ rate: rate() });
/** What batch and layer normalization share, with Keras's defaults: ε 0.001, a learned β and γ. */
const normalizationFields = {
  epsilon: num('a positive number')
    .positive({ error: 'expected a positive number' })
    .superRefine(float32Factor(false))
    .default(0.001),
  center: bool().default(true),
  scale: bool().default(true),
};
const batchNormLayer = z.strictObject({
  /** Keras defaults. */
  momentum: rate().default(0.99),
  ...normalizationFields,
});
/** Keras's Reshape: the per-image shape, one entry may be -1 (inferred from the others). */
const reshapeLayer = z.strictObject({
  targetShape: z
    .array(
      z
        .number({ error: 'expected a positive integer or -1' })
        .int({ error: 'expected a positive integer or -1' })
        .refine((d) => d === -1 || (d >= 1 && d <= MAX_WINDOW), {
          error: `expected a positive integer up to ${MAX_WINDOW} or -1`,
        }),
      { error: 'expected a list such as [28, 28, 1]' },
    )
    .min(1, { error: 'expected 1 to 3 dimensions' })
    .max(3, { error: 'expected 1 to 3 dimensions' })
    .refine((s) => s.filter((d) => d === -1).length <= 1, { error: 'expected at most one -1' }),
});
/** Keras's Conv2D (channels last, dilation 1, groups 1). */
const conv2dLayer = z.strictObject({
  filters: positiveInt(MAX_FILTERS),
  kernelSize: window(MAX_WINDOW),
  strides: window(MAX_WINDOW).default(1),
  padding: padding(),
  ...weightedLayerFields,
});
/** Keras's MaxPooling2D / AveragePooling2D: pool 2×2, strides = the pool (null), valid padding. */
const poolingLayer = z.strictObject({
  poolSize: window(MAX_WINDOW).default(2),
  strides: window(MAX_WINDOW).nullable().default(null),
  padding: padding(),
});
const globalAveragePoolingLayer = z.strictObject({});
/** Keras's SpatialDropout2D: drops whole channels (feature maps) instead of single values. */
const spatialDropoutLayer = z.strictObject({ rate: rate() });
/** Keras's GaussianNoise: `stddev` is required, and Keras refuses values outside [0, 1]. */
const gaussianNoiseLayer = z.strictObject({
  stddev: num('a number from 0 to 1')
    .min(0, { error: 'expected a number from 0 to 1' })
    .max(1, { error: 'expected a number from 0 to 1' })
    .superRefine(float32Factor(true)),
});
/** Keras's GaussianDropout and AlphaDropout: `rate` required; Keras takes 1 too, which divides by 1 − rate = 0. */
const gaussianDropoutLayer = z.strictObject({ rate: rate() });
const alphaDropoutLayer = z.strictObject({ rate: rate() });
/** An axis as Keras counts them: 0 is the batch, -1 the last; checked against the input's rank in layerShapes. */
const normAxis = z.number().int();
/** Keras 3's LayerNormalization: axis -1, epsilon 1e-3, center and scale (rms_scaling is not offered). */
const layerNormLayer = z.strictObject({
  axis: z
    .union([normAxis, z.array(normAxis).min(1, { error: 'expected at least one axis' })], {
      error: 'expected an axis (an integer) or a non-empty list of them',
    })
    .default(-1),
  ...normalizationFields,
});
/** Keras's ActivityRegularization: the identity, adding l1·Σ|x| + l2·Σx² of its input to the loss; both default to 0. */
const activityRegularizationLayer = z.strictObject({
  l1: nonNegative().default(0),
  l2: nonNegative().default(0),
});

export const LAYER_TYPES = [
  'flatten',
  'dense',
  'dropout',
  'batchNormalization',
  'reshape',
  'conv2d',
  'maxPooling2d',
  'averagePooling2d',
  'globalAveragePooling2d',
  'spatialDropout2d',
  'gaussianNoise',
  'gaussianDropout',
  'alphaDropout',
  'layerNormalization',
  'activityRegularization',
] as const;
export type LayerType = (typeof LAYER_TYPES)[number];

/** A layer is a map with exactly one key, its type: `- dense: { units: 10 }`. */
export const layerSchema = z
  .strictObject(
    {
      flatten: flattenLayer.optional(),
      dense: denseLayer.optional(),
      dropout: dropoutLayer.optional(),
      batchNormalization: batchNormLayer.optional(),
      reshape: reshapeLayer.optional(),
      conv2d: conv2dLayer.optional(),
      maxPooling2d: poolingLayer.optional(),
      averagePooling2d: poolingLayer.optional(),
      globalAveragePooling2d: globalAveragePoolingLayer.optional(),
      spatialDropout2d: spatialDropoutLayer.optional(),
      gaussianNoise: gaussianNoiseLayer.optional(),
      gaussianDropout: gaussianDropoutLayer.optional(),
      alphaDropout: alphaDropoutLayer.optional(),
      layerNormalization: layerNormLayer.optional(),
      activityRegularization: activityRegularizationLayer.optional(),
    },
    // Not the whole list of types: with 15 it passes the 300 characters an error line is kept under.
    {
      error: `expected a layer: a map from one layer type to its settings, e.g. { dense: { units: 10 } } (${LAYER_TYPES.length} types: ${LAYER_TYPES.slice(0, 4).join(', ')}, …)`,
    },
  )
  .superRefine((l, ctx) => {
    const kinds = Object.keys(l).filter((k) => l[k as LayerType] !== undefined);
    if (kinds.length !== 1)
      ctx.addIssue({
        code: 'custom',
        message: `expected exactly one layer type (${LAYER_TYPES.join(', ')}), got ${kinds.length}`,
      });
  });
export type LayerSpec = z.infer<typeof layerSchema>;
export type Conv2dSpec = z.infer<typeof conv2dLayer>;
export type PoolingSpec = z.infer<typeof poolingLayer>;

/** A constraint's axes must exist in its weight: a kernel of `kernelRank` dimensions, a bias of 1. */
function constraintAxisIssues(
  l: { kernelConstraint?: ConstraintSpec; biasConstraint?: ConstraintSpec; useBias: boolean },
  kernelRank: number,
  at: (...p: string[]) => (string | number)[],
): { path: (string | number)[]; message: string }[] {
  const issues: { path: (string | number)[]; message: string }[] = [];
  for (const [field, rank, what] of [
    ['kernelConstraint', kernelRank, 'kernel'],
    ['biasConstraint', 1, 'bias'],
  ] as const) {
    const c = l[field];
    if (!c) continue;
    const [kind, config] = Object.entries(c).find(([, v]) => v !== undefined)!;
    if (field === 'biasConstraint' && !l.useBias)
      issues.push({ path: at(field), message: 'the layer has no bias (useBias: false)' });
    if (!config || !('axis' in config)) continue;
    const axes = typeof config.axis === 'number' ? [config.axis] : config.axis;
    const bad = axes.find((a) => a >= rank);
    if (bad !== undefined)
      issues.push({
        path: at(field, kind, 'axis'),
        message: `expected axes below ${rank} (the ${what} has ${rank} dimension${rank > 1 ? 's' : ''}), got ${bad}`,
      });
  }
  return issues;
}

export function layerType(l: LayerSpec): LayerType {
  for (const t of LAYER_TYPES) if (l[t] !== undefined) return t;
  throw new Error('layer without a type (the schema should have refused it)');
}

/** The tfjs-layers class each layer type builds (what a saved model.json names). */
export const TFJS_CLASS: Record<LayerType, string> = {
  flatten: 'Flatten',
  dense: 'Dense',
  dropout: 'Dropout',
  batchNormalization: 'BatchNormalization',
  reshape: 'Reshape',
  conv2d: 'Conv2D',
  maxPooling2d: 'MaxPooling2D',
  averagePooling2d: 'AveragePooling2D',
  globalAveragePooling2d: 'GlobalAveragePooling2D',
  spatialDropout2d: 'SpatialDropout2D',
  gaussianNoise: 'GaussianNoise',
  gaussianDropout: 'GaussianDropout',
  alphaDropout: 'AlphaDropout',
  layerNormalization: 'LayerNormalization',
  activityRegularization: 'ActivityRegularization',
};

// ---------- shapes (Keras's rules, channels last) ----------

export const pair = (w: Window): [number, number] => (typeof w === 'number' ? [w, w] : w);
const product = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
/** 1×1×32, or "800" for a flat vector. */
export const fmtShape = (shape: readonly number[]) => shape.join('×');

/**
 * One spatial dimension after a window of size k moved with stride s (Keras's conv_output_length):
 * valid: ⌊(n − k) / s⌋ + 1 (0 when the window does not fit); same: ⌈n / s⌉.
 */
export function windowOutput(n: number, k: number, s: number, pad: 'valid' | 'same'): number {
  return pad === 'same' ? Math.ceil(n / s) : n < k ? 0 : Math.floor((n - k) / s) + 1;
}

export interface LayerShape {
  /** Per image (no batch dimension). */
  outputShape: number[];
  /** Keras's count: trainable and non-trainable (batch norm's moving statistics). */
  params: number;
  /** The layer's weights in tfjs's order (kernel, bias; gamma, beta, moving mean, moving variance; layer norm's gamma, beta). */
  weightShapes: number[][];
}

export interface ShapeIssue {
  /** Relative to model.layers. */
  path: (string | number)[];
  message: string;
}

const NEEDS_MAP = new Set<LayerType>([
  'conv2d',
  'maxPooling2d',
  'averagePooling2d',
  'globalAveragePooling2d',
  'spatialDropout2d',
]);

/**
 * Walks the layer stack from the 28×28 input: each layer's output shape, parameter count and
 * weight shapes, and the first shape a layer cannot take (with the shapes involved). After that
 * the shapes are guesses, so later shape problems are not reported (they are often the same mistake).
 */
export function layerShapes(layers: LayerSpec[]): { shapes: LayerShape[]; issues: ShapeIssue[] } {
  let shape: number[] = [...IMAGE_SHAPE];
  const shapes: LayerShape[] = [];
  const issues: ShapeIssue[] = [];
  layers.forEach((l, i) => {
    // A layer the schema refused (no known type) is passed through: its own error says why.
    const type = LAYER_TYPES.find((t) => l[t] !== undefined);
    if (type === undefined) {
      shapes.push({ outputShape: shape, params: 0, weightShapes: [] });
      return;
    }
    const at = (...p: string[]) => [i, type, ...p];
    const input = shape;
    let params = 0;
    const weightShapes: number[][] = [];
    if (NEEDS_MAP.has(type) && input.length !== 3) {
      const got =
        input.length === 2
          ? `got ${fmtShape(input)}: put reshape { targetShape: [${input.join(', ')}, 1] } before it`
          : `got a flat vector of ${input[0]} values: put it before the flatten layer, or reshape the vector to height, width, channels`;
      issues.push({ path: at(), message: `${type} needs a height×width×channels input, ${got}` });
      shape = input.length === 2 ? [...input, 1] : [input[0]!, 1, 1];
    }
    const map = shape;
    const [h, w, c] = map as [number, number, number];
    if (l.flatten) {
      const [a, b] = l.flatten.inputShape;
      if (a !== IMAGE_SHAPE[0] || b !== IMAGE_SHAPE[1])
        issues.push({ path: at('inputShape'), message: `expected [28, 28] (Fashion-MNIST images), got [${a}, ${b}]` });
      shape = [product(input)];
    } else if (l.dense) {
      let n = input[0]!;
      if (input.length !== 1) {
        issues.push({
          path: at(),
          message:
            i === 0
              ? 'a flatten layer must come before the first dense layer (inputs are 28×28 images)'
              : `a dense layer needs a flat input, but layer ${i - 1} outputs ${fmtShape(input)}: put a flatten or globalAveragePooling2d layer before it`,
        });
        n = product(input);
      }
      weightShapes.push([n, l.dense.units]);
      if (l.dense.useBias) weightShapes.push([l.dense.units]);
      const orthogonal = l.dense.kernelRegularizer?.orthogonal;
      if (orthogonal) {
        // Keras divides by the number of pairs, size·(size − 1)/2: 0/0 for a single row or column.
        const [what, size] = orthogonal.mode === 'rows' ? ['rows', n] : ['columns', l.dense.units];
        if (size < 2)
          issues.push({
            path: at('kernelRegularizer', 'orthogonal', 'mode'),
            message: `the kernel (${n}×${l.dense.units}) has ${size} ${what.slice(0, -1)}: orthogonality needs at least 2 ${what}`,
          });
      }
      issues.push(...constraintAxisIssues(l.dense, 2, at));
      shape = [l.dense.units];
    } else if (l.batchNormalization) {
      const channels = input[input.length - 1]!;
      if (l.batchNormalization.scale) weightShapes.push([channels]);
      if (l.batchNormalization.center) weightShapes.push([channels]);
      weightShapes.push([channels], [channels]);
    } else if (l.layerNormalization) {
      const ln = l.layerNormalization;
      // Keras counts the batch as axis 0: an input of `rank` dimensions per image has axes 1..rank.
      const rank = input.length;
      const axes = typeof ln.axis === 'number' ? [ln.axis] : ln.axis;
      const resolved: number[] = [];
      for (const a of axes) {
        const r = a < 0 ? a + rank + 1 : a;
        const range = rank === 1 ? 'axis 1 or -1' : `an axis from 1 to ${rank} or from -${rank} to -1`;
        if (r < 1 || r > rank) {
          issues.push({
            path: at('axis'),
            message: `expected ${range} (the layer's input is ${fmtShape(input)} per image, axis 0 the batch), got ${a}`,
          });
          break;
        }
        const same = resolved.indexOf(r);
        if (same >= 0) {
          issues.push({ path: at('axis'), message: `axis ${a} is axis ${axes[same]} again` });
          break;
        }
        resolved.push(r);
      }
      const paramShape = resolved.map((r) => input[r - 1]!);
      if (ln.scale) weightShapes.push(paramShape);
      if (ln.center) weightShapes.push(paramShape);
    } else if (l.reshape) {
      const target = l.reshape.targetShape;
      const have = product(input);
      const known = product(target.filter((d) => d !== -1));
      if (target.includes(-1)) {
        if (have % known !== 0) {
          issues.push({
            path: at('targetShape'),
            message: `cannot reshape ${have} values (${fmtShape(input)}) into [${target.join(', ')}]: ${have} is not a multiple of ${known}`,
          });
          shape = target.map((d) => (d === -1 ? 1 : d));
        } else shape = target.map((d) => (d === -1 ? have / known : d));
      } else {
        if (known !== have)
          issues.push({
            path: at('targetShape'),
            message: `cannot reshape ${have} values (${fmtShape(input)}) into ${fmtShape(target)} = ${known} values`,
          });
        shape = [...target];
      }
    } else if (l.conv2d) {
      const k = pair(l.conv2d.kernelSize);
      const s = pair(l.conv2d.strides);
      const out = [
        windowOutput(h, k[0], s[0], l.conv2d.padding),
        windowOutput(w, k[1], s[1], l.conv2d.padding),
      ] as const;
      if (out[0] < 1 || out[1] < 1)
        issues.push({
          path: at('kernelSize'),
          message: `a ${fmtShape(k)} kernel does not fit a ${fmtShape(map)} map (the output would be ${fmtShape(out)})`,
        });
      weightShapes.push([k[0], k[1], c, l.conv2d.filters]);
      if (l.conv2d.useBias) weightShapes.push([l.conv2d.filters]);
      if (l.conv2d.kernelRegularizer?.orthogonal)
        issues.push({
          path: at('kernelRegularizer', 'orthogonal'),
          message: 'the orthogonal regularizer needs a 2-dimensional kernel (a dense layer); a conv2d kernel has 4',
        });
      issues.push(...constraintAxisIssues(l.conv2d, 4, at));
      shape = [Math.max(1, out[0]), Math.max(1, out[1]), l.conv2d.filters];
    } else if (l.maxPooling2d || l.averagePooling2d) {
      const p = (l.maxPooling2d ?? l.averagePooling2d)!;
      const k = pair(p.poolSize);
      const s = pair(p.strides ?? p.poolSize);
      const out = [windowOutput(h, k[0], s[0], p.padding), windowOutput(w, k[1], s[1], p.padding)] as const;
      if (out[0] < 1 || out[1] < 1)
        issues.push({
          path: at('poolSize'),
          message: `a ${fmtShape(k)} pool does not fit a ${fmtShape(map)} map (the output would be ${fmtShape(out)})`,
        });
      shape = [Math.max(1, out[0]), Math.max(1, out[1]), c];
    } else if (l.globalAveragePooling2d) {
      shape = [c];
    }
    // dropout, spatialDropout2d, the noise layers and activityRegularization keep the shape.
    params = weightShapes.reduce((n, ws) => n + product(ws), 0);
    if (l.conv2d && product(shape) > MAX_MAP_VALUES)
      issues.push({
        path: at(),
        message: `the output ${fmtShape(shape)} has ${product(shape)} values per image, more than the limit of ${MAX_MAP_VALUES}`,
      });
    shapes.push({ outputShape: shape, params, weightShapes });
  });
  return { shapes, issues: issues.slice(0, 1) };
}
