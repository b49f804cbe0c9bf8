import * as tf from './tf';
import { ExperimentSpec, LayerSpec, RegularizerSpec, layerType, IMAGE_SHAPE, TFJS_CLASS } from './spec';
import { layerShapes } from './spec/layers';
import { SpatialDropout2D } from './spatial-dropout';
import { ActivityRegularization } from './layers/activity-regularization';
import type { NoiseSpec } from './train/noise';
import type { OrthogonalSpec } from './spec/layers';
import { Rng, runSeeds, type RunSeeds } from './rng';
import type { AugmentationStep } from './spec/augmentation';
import { augmentationRows } from './data/augmentation';
import { fmtConstraint, type ConstraintTerm } from './train/constraints';
import { withThousands } from './thousands';

/** One penalized tensor: a kernel or bias with its Keras-style factors. */
export interface PenaltyTerm {
  /** e.g. "dense_1/kernel". */
  name: string;
  variable: tf.LayerVariable;
  l1: number;
  l2: number;
  /** Keras 3's orthogonal regularizer instead of l1/l2 (both 0 then). */
  orthogonal?: OrthogonalSpec;
}

/** An activity regularizer on a layer's output, or an activityRegularization layer's input (= its output); tfjs-layers cannot apply these itself; we do. */
export interface ActivityTerm {
  layerIndex: number;
  name: string;
  l1: number;
  l2: number;
}

export interface BuiltModel {
  model: tf.Sequential;
  /** Kernel and bias penalties, in layer order. */
  penalties: PenaltyTerm[];
  activity: ActivityTerm[];
  /** Layer index → dropout rate, for the layers the training step drops out itself. */
  dropout: Map<number, number>;
  /** The indexes in `dropout` that drop whole channels (spatialDropout2d). */
  spatialDropout: Set<number>;
  /** Layer index → a noise layer's settings (gaussianNoise, gaussianDropout, alphaDropout): the training step draws its noise (absent: none). */
  noise?: Map<number, NoiseSpec>;
  /** The layers with a kernel, dense and conv2d (for weight statistics), in order. */
  denseLayers: tf.layers.Layer[];
}

type Initializer = ReturnType<typeof tf.initializers.zeros>;

function initializer(name: string, seed: number): Initializer {
  switch (name) {
    case 'zeros':
      return tf.initializers.zeros();
    case 'ones':
      return tf.initializers.ones();
    case 'glorotUniform':
      return tf.initializers.glorotUniform({ seed });
    case 'glorotNormal':
      return tf.initializers.glorotNormal({ seed });
    case 'heUniform':
      return tf.initializers.heUniform({ seed });
    case 'heNormal':
      return tf.initializers.heNormal({ seed });
    case 'leCunUniform':
      return tf.initializers.leCunUniform({ seed });
    case 'leCunNormal':
      return tf.initializers.leCunNormal({ seed });
    default:
      throw new Error(`unknown initializer ${name}`);
  }
}

const tfRegularizer = (r: RegularizerSpec | null) =>
  r && (r.l1 > 0 || r.l2 > 0) ? tf.regularizers.l1l2({ l1: r.l1, l2: r.l2 }) : undefined;

/** The tfjs arguments dense and conv2d layers share; the initializers' seeds are drawn from `rng`, kernel first. */
function weightedLayerArgs(w: Omit<NonNullable<LayerSpec['dense']>, 'units'>, rng: Rng) {
  return {
    activation: w.activation,
    useBias: w.useBias,
    kernelInitializer: initializer(w.kernelInitializer, rng.nextUint32()),
    biasInitializer: initializer(w.biasInitializer, rng.nextUint32()),
    kernelRegularizer: tfRegularizer(w.kernelRegularizer),
    biasRegularizer: tfRegularizer(w.biasRegularizer),
  };
}

/** Keras's layer names where they differ from the spec's type. */
const KERAS_NAME: Record<string, string> = {
  batchNormalization: 'batch_normalization',
  maxPooling2d: 'max_pooling2d',
  averagePooling2d: 'average_pooling2d',
  globalAveragePooling2d: 'global_average_pooling2d',
  spatialDropout2d: 'spatial_dropout2d',
  gaussianNoise: 'gaussian_noise',
  gaussianDropout: 'gaussian_dropout',
  alphaDropout: 'alpha_dropout',
  layerNormalization: 'layer_normalization',
  activityRegularization: 'activity_regularization',
};

/** Keras's naming: flatten, dense, dense_1, dense_2, … (explicit names keep saved models reproducible). */
function namer(): (type: string) => string {
  const seen = new Map<string, number>();
  return (type) => {
    const n = seen.get(type) ?? 0;
    seen.set(type, n + 1);
    const base = KERAS_NAME[type] ?? type;
    return n === 0 ? base : `${base}_${n}`;
  };
}

/**
 * Builds the spec's Sequential model with seeded initializers (Glorot-uniform kernels and
 * zero biases by default, as Keras). Regularizers are recorded on the tfjs layers too, so a
 * saved model.json states them, but the training step computes the penalties itself. A run passes
 * the seeds it derived up front; a model built on its own (tests, benches) derives them from the spec.
 */
export function buildModel(spec: ExperimentSpec, seeds: Pick<RunSeeds, 'init'> = runSeeds(spec.seed)): BuiltModel {
  const rng = new Rng(seeds.init);
  const name = namer();
  const model = tf.sequential();
  const { shapes } = layerShapes(spec.model.layers);
  spec.model.layers.forEach((l: LayerSpec, index: number) => {
    const layerName = name(layerType(l));
    const inputShape = index === 0 ? { inputShape: [...IMAGE_SHAPE] } : {};
    if (l.flatten) {
      model.add(tf.layers.flatten({ name: layerName, ...inputShape }));
    } else if (l.dense) {
      const d = l.dense;
      model.add(
        tf.layers.dense({
          name: layerName,
          units: d.units,
          ...weightedLayerArgs(d, rng),
          ...inputShape,
        }),
      );
    } else if (l.dropout) {
      model.add(tf.layers.dropout({ name: layerName, rate: l.dropout.rate, ...inputShape }));
    } else if (l.batchNormalization) {
      const b = l.batchNormalization;
      model.add(
        tf.layers.batchNormalization({
          name: layerName,
          momentum: b.momentum,
          epsilon: b.epsilon,
          center: b.center,
          scale: b.scale,
          ...inputShape,
        }),
      );
    } else if (l.reshape) {
      // -1 resolved here: tfjs would leave that dimension unknown (None) in every later shape.
      model.add(tf.layers.reshape({ name: layerName, targetShape: shapes[index]!.outputShape, ...inputShape }));
    } else if (l.conv2d) {
      const c = l.conv2d;
      model.add(
        tf.layers.conv2d({
          name: layerName,
          filters: c.filters,
          kernelSize: c.kernelSize,
          strides: c.strides,
          padding: c.padding,
          dataFormat: 'channelsLast',
          ...weightedLayerArgs(c, rng),
          ...inputShape,
        }),
      );
    } else if (l.maxPooling2d || l.averagePooling2d) {
      const p = (l.maxPooling2d ?? l.averagePooling2d)!;
      const args = {
        name: layerName,
        poolSize: p.poolSize,
        strides: p.strides ?? p.poolSize,
        padding: p.padding,
        dataFormat: 'channelsLast' as const,
        ...inputShape,
      };
      model.add(l.maxPooling2d ? tf.layers.maxPooling2d(args) : tf.layers.averagePooling2d(args));
    } else if (l.globalAveragePooling2d) {
      model.add(tf.layers.globalAveragePooling2d({ name: layerName, dataFormat: 'channelsLast', ...inputShape }));
    } else if (l.spatialDropout2d) {
      model.add(new SpatialDropout2D({ name: layerName, rate: l.spatialDropout2d.rate, ...inputShape }));
    } else if (l.gaussianNoise) {
      model.add(tf.layers.gaussianNoise({ name: layerName, stddev: l.gaussianNoise.stddev, ...inputShape }));
    } else if (l.gaussianDropout) {
      model.add(tf.layers.gaussianDropout({ name: layerName, rate: l.gaussianDropout.rate, ...inputShape }));
    } else if (l.alphaDropout) {
      model.add(tf.layers.alphaDropout({ name: layerName, rate: l.alphaDropout.rate, ...inputShape }));
    } else if (l.layerNormalization) {
      const n = l.layerNormalization;
      model.add(
        tf.layers.layerNormalization({
          name: layerName,
          // tfjs resolves the axes in place when it builds the layer: give it a copy.
          axis: typeof n.axis === 'number' ? n.axis : [...n.axis],
          epsilon: n.epsilon,
          center: n.center,
          scale: n.scale,
          ...inputShape,
        }),
      );
    } else if (l.activityRegularization) {
      const a = l.activityRegularization;
      model.add(new ActivityRegularization({ name: layerName, l1: a.l1, l2: a.l2, ...inputShape }));
    }
  });
  return bindSpec(model, spec);
}

/**
 * Pairs a tfjs model (built here or loaded from a run directory) with the spec's
 * regularizers and dropout rates. Throws if the two do not describe the same layers.
 */
export function bindSpec(model: tf.Sequential | tf.LayersModel, spec: ExperimentSpec): BuiltModel {
  const layers = spec.model.layers;
  if (model.layers.length !== layers.length)
    throw new Error(`the model has ${model.layers.length} layers, its spec ${layers.length}`);
  const penalties: PenaltyTerm[] = [];
  const activity: ActivityTerm[] = [];
  const dropout = new Map<number, number>();
  const spatialDropout = new Set<number>();
  const noise = new Map<number, NoiseSpec>();
  const denseLayers: tf.layers.Layer[] = [];
  layers.forEach((l, index) => {
    const layer = model.layers[index]!;
    const type = layerType(l);
    if (layer.getClassName() !== TFJS_CLASS[type])
      throw new Error(`layer ${index} is ${layer.getClassName()} in the model but ${type} in the spec`);
    const kernelLayer = l.dense ?? l.conv2d;
    if (kernelLayer) {
      const cfg = layer.getConfig() as { units?: number; filters?: number; activation?: string; useBias?: boolean };
      const size = l.dense ? ({ units: l.dense.units } as const) : ({ filters: l.conv2d!.filters } as const);
      const said: Record<string, unknown> = {
        ...size,
        activation: kernelLayer.activation,
        useBias: kernelLayer.useBias,
      };
      for (const key of Object.keys(said)) {
        const got = cfg[key as keyof typeof cfg];
        if (got !== said[key])
          throw new Error(`layer ${index} has ${key} ${String(got)} in the model but ${String(said[key])} in the spec`);
      }
      denseLayers.push(layer);
      const [kernel, bias] = layer.trainableWeights;
      if (kernelLayer.kernelRegularizer && kernel)
        penalties.push({ name: `${layer.name}/kernel`, variable: kernel, ...kernelLayer.kernelRegularizer });
      if (kernelLayer.biasRegularizer && bias)
        penalties.push({ name: `${layer.name}/bias`, variable: bias, ...kernelLayer.biasRegularizer });
      if (kernelLayer.activityRegularizer)
        activity.push({ layerIndex: index, name: `${layer.name}/activity`, ...kernelLayer.activityRegularizer });
    } else if (l.dropout) {
      dropout.set(index, l.dropout.rate);
    } else if (l.spatialDropout2d) {
      dropout.set(index, l.spatialDropout2d.rate);
      spatialDropout.add(index);
    } else if (l.gaussianNoise) {
      noise.set(index, { kind: 'gaussianNoise', stddev: l.gaussianNoise.stddev });
    } else if (l.gaussianDropout) {
      noise.set(index, { kind: 'gaussianDropout', rate: l.gaussianDropout.rate });
    } else if (l.alphaDropout) {
      noise.set(index, { kind: 'alphaDropout', rate: l.alphaDropout.rate });
    } else if (l.activityRegularization) {
      const a = l.activityRegularization;
      if (a.l1 > 0 || a.l2 > 0)
        activity.push({ layerIndex: index, name: `${layer.name}/activity`, l1: a.l1, l2: a.l2 });
    }
  });
  return { model: model as tf.Sequential, penalties, activity, dropout, spatialDropout, noise, denseLayers };
}

export function parameterCounts(model: tf.LayersModel): { total: number; trainable: number } {
  const count = (ws: tf.LayerVariable[]) =>
    ws.reduce((n, w) => n + w.shape.reduce((a: number, b) => a * (b ?? 1), 1), 0);
  return { total: count(model.weights), trainable: count(model.trainableWeights) };
}

/** A noise layer's settings in the summary: it acts on training batches only. */
const noiseText = (n: NoiseSpec | undefined): string[] =>
  !n ? [] : [`training only: ${n.kind === 'gaussianNoise' ? `stddev=${n.stddev}` : `rate=${n.rate}`}`];

const fmtReg = (r: { l1: number; l2: number; orthogonal?: OrthogonalSpec }) =>
  r.orthogonal
    ? `Orthogonal(factor=${r.orthogonal.factor}, mode=${r.orthogonal.mode})`
    : r.l1 > 0 && r.l2 > 0
      ? `L1L2(l1=${r.l1}, l2=${r.l2})`
      : r.l1 > 0
        ? `L1(${r.l1})`
        : r.l2 > 0
          ? `L2(${r.l2})`
          : '-';

/**
 * A Keras-like summary table, with each layer's regularizers and constraints; augmentation steps
 * first, as Keras lists preprocessing layers at the front of a model (regtrain applies them to
 * training batches only); a `Loss:` line when label smoothing is on.
 */
export function modelSummary(
  built: BuiltModel,
  extras: {
    augmentation?: readonly AugmentationStep[];
    labelSmoothing?: number;
    constraints?: readonly ConstraintTerm[];
  } = {},
): string[] {
  const rows: string[][] = [['Layer (type)', 'Output Shape', 'Param #', 'Regularizers']];
  for (const a of augmentationRows(extras.augmentation ?? []))
    rows.push([a.name, '(None, 28, 28)', '0', `training only: ${a.fields}`]);
  built.model.layers.forEach((layer, i) => {
    const shape = `(None, ${(layer.outputShape as number[]).slice(1).join(', ')})`;
    const params = layer.countParams();
    const regs = [
      ...built.penalties
        .filter((p) => p.name.startsWith(`${layer.name}/`))
        .map((p) => `${p.name.split('/')[1]} ${fmtReg(p)}`),
      ...built.activity.filter((a) => a.layerIndex === i).map((a) => `activity ${fmtReg(a)}`),
      ...noiseText(built.noise?.get(i)),
      ...(extras.constraints ?? [])
        .filter((c) => c.layerIndex === i)
        .map((c) => `${c.name.split('/')[1]} ${fmtConstraint(c.constraint)}`),
    ].join('; ');
    rows.push([`${layer.name} (${layer.getClassName()})`, shape, withThousands(params), regs || '-']);
  });
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) =>
    r
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd();
  const rule = '─'.repeat(widths.reduce((a, b) => a + b + 2, -2));
  const { total, trainable } = parameterCounts(built.model);
  return [
    rule,
    line(rows[0]!),
    rule,
    ...rows.slice(1).map(line),
    rule,
    `Total params: ${withThousands(total)}  (trainable: ${withThousands(trainable)})`,
    ...(extras.labelSmoothing
      ? [
          `Loss: sparse categorical cross-entropy with label smoothing ${extras.labelSmoothing} (targets onehot·${1 - extras.labelSmoothing} + ${extras.labelSmoothing}/10)`,
        ]
      : []),
  ];
}
