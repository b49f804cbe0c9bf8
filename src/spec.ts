import * as path from 'node:path';
import * as YAML from 'yaml';
import { z } from 'zod';
import { InputError, errorMessage } from './errors';
import { inRegtrainWords } from './zodwords';
import { readRegularFile, UnreadableFileError } from './fsutil';
import {
  checkpointSchema,
  earlyStoppingSchema,
  labelSmoothingSchema,
  reduceLrOnPlateauSchema,
  swaSchema,
  tensorboardSchema,
  type SwaSpec,
  weightAveragingIssues,
} from './spec/training';
import { optimizerSchema } from './train/optimizers/registry';
import { layerSchema, layerShapes, type LayerSpec } from './spec/layers';
import { memoryIssues, type MemorySpec } from './spec/memory';
import { augmentationSchema } from './spec/augmentation';
export type { LearningRateSpec } from './spec/training';
export {
  IMAGE_SHAPE,
  MAX_UNITS,
  LAYER_TYPES,
  TFJS_CLASS,
  layerType,
  type LayerType,
  type LayerSpec,
  type RegularizerSpec,
} from './spec/layers';

/**
 * The experiment spec. This zod schema is the single source of truth: the TypeScript
 * type, the defaults `validate` prints, and every error message come from it.
 * Defaults follow Keras where Keras has one (batch 32, shuffle, Glorot-uniform kernels,
 * zero biases, linear activation, SGD momentum 0).
 */

export const SPEC_VERSION = 1;
export const NUM_CLASSES = 10;
/** Images in Fashion-MNIST's training file. */
export const TRAIN_FILE_IMAGES = 60000;
export const MAX_PARAMETERS = 50_000_000;

// ---------- building blocks with uniform messages ("expected …"; the formatter adds "got …") ----------

const intRange = (min: number, max: number, below: string) =>
  z
    .number({ error: below })
    .int({ error: 'expected an integer' })
    .min(min, { error: below })
    .max(max, { error: `expected at most ${max}` });
const positiveInt = (max: number) => intRange(1, max, 'expected a positive integer');
const oneOf = <T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `expected one of ${values.join(', ')}` });

const overrideMap = z.record(z.string(), z.unknown(), { error: 'expected a map of dotted paths to values' });

const sweepList = z
  .array(z.unknown(), { error: 'expected a list of values' })
  .min(1, { error: 'expected at least one value' });

/** A swept path whose values follow another swept key's, index for index (no grid dimension of its own). */
const sweepAlongside = z.strictObject(
  {
    alongside: z.string({ error: 'expected the dotted path of another sweep key' }),
    values: sweepList,
  },
  { error: 'expected a list of values, or { alongside: KEY, values: [...] }' },
);
export type SweepAlongside = z.infer<typeof sweepAlongside>;

const sweepEntry = z.union([sweepList, sweepAlongside], {
  error: 'expected a list of values, or { alongside: KEY, values: [...] }',
});

export const experimentSpec = z
  .strictObject({
    /** Spec format version; a spec from a newer regtrain is refused rather than misread. */
    version: z
      .literal(SPEC_VERSION, { error: `expected ${SPEC_VERSION} (this regtrain reads spec version ${SPEC_VERSION})` })
      .default(SPEC_VERSION),
    /** Names the run directory, so it may not contain path separators. */
    name: z.string({ error: 'expected a name' }).regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
      error: 'expected 1–64 letters, digits, ".", "_" or "-", starting with a letter or digit',
    }),
    /** One seed drives initializers, the validation split, shuffling and dropout. */
    seed: intRange(0, 2 ** 32 - 1, 'expected an integer from 0 to 4294967295').default(1234),
    /** auto: tfjs-node if it loads, else wasm, else cpu. */
    backend: oneOf(['auto', 'tfjs-node', 'wasm', 'cpu'] as const).default('auto'),
    data: z
      .strictObject({
        normalize: oneOf(['scale01', 'standardize', 'none'] as const).default('scale01'),
        validation: z
          .strictObject({
            size: intRange(0, 60000, 'expected an integer ≥ 0').default(5000),
            /** false = the tutorial's way: the validation images are also trained on (a leak). */
            holdout: z.boolean({ error: 'expected true or false' }).default(true),
            /** Take the validation images after a seeded shuffle instead of the first N. */
            shuffle: z.boolean({ error: 'expected true or false' }).default(false),
            stratify: z.boolean({ error: 'expected true or false' }).default(false),
          })
          .prefault({}),
        trainLimit: positiveInt(60000).nullable().default(null),
        testLimit: positiveInt(10000).nullable().default(null),
        /** Applied in order to each training batch only (src/spec/augmentation.ts). */
        augmentation: augmentationSchema,
      })
      .prefault({}),
    model: z.strictObject(
      {
        layers: z
          .array(layerSchema, { error: 'expected a list of layers' })
          .min(1, { error: 'expected at least one layer' }),
      },
      { error: 'expected a map with a list of layers' },
    ),
    optimizer: optimizerSchema,
    loss: z
      .literal('sparseCategoricalCrossentropy', { error: 'expected sparseCategoricalCrossentropy' })
      .default('sparseCategoricalCrossentropy'),
    training: z
      .strictObject({
        /** Keras's fit() defaults: 1 epoch, batch 32, shuffled. */
        epochs: positiveInt(100000).default(1),
        batchSize: positiveInt(60000).default(32),
        shuffle: z.boolean({ error: 'expected true or false' }).default(true),
        labelSmoothing: labelSmoothingSchema,
        earlyStopping: earlyStoppingSchema,
        reduceLrOnPlateau: reduceLrOnPlateauSchema,
        /** Stochastic weight averaging (regtrain's own, PyTorch's swa_utils), absent unless set. */
        swa: swaSchema,
        checkpoint: checkpointSchema,
        tensorboard: tensorboardSchema,
      })
      .prefault({}),
    /** Study: named partial overrides of this spec, each a map of dotted paths to values. */
    variants: z
      .record(
        z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, {
          error: 'expected a variant name of letters, digits, ".", "_" or "-"',
        }),
        overrideMap,
      )
      .nullable()
      .default(null),
    /**
     * Study: a grid over dotted paths, e.g. `model.layers.1.dense.kernelRegularizer.l1: [0, 1e-4, 1e-3]`;
     * or, for a path that moves with another instead of multiplying the grid,
     * `training.epochs: { alongside: data.trainLimit, values: [60, 15] }` (one value per value of that key).
     */
    sweep: z.record(z.string(), sweepEntry).nullable().default(null),
    /** Study: seeds per variant (seed, seed+1, …). */
    repeats: positiveInt(1000).default(1),
  })
  .superRefine(checkModel);

export type ExperimentSpec = z.infer<typeof experimentSpec>;

/** Checks that span fields: shapes, the class count, parameter budget, early stopping's monitor. */
function checkModel(
  spec: {
    model: { layers: LayerSpec[] };
    data: { validation: { size: number; holdout: boolean }; trainLimit: number | null; testLimit: number | null };
    optimizer: MemorySpec['optimizer'] & Record<string, { useEma?: boolean | undefined } | undefined>;
    training: {
      batchSize: number;
      epochs: number;
      earlyStopping: { monitor: string; restoreBestWeights: boolean } | null;
      reduceLrOnPlateau: { monitor: string } | null;
      checkpoint: { saveBest: { monitor: string } | null };
      swa?: SwaSpec | undefined;
    };
  },
  ctx: z.RefinementCtx,
): void {
  for (const issue of weightAveragingIssues(spec)) ctx.addIssue({ code: 'custom', ...issue });
  const layers = spec.model.layers;
  const { shapes, issues } = layerShapes(layers);
  for (const issue of issues)
    ctx.addIssue({ code: 'custom', path: ['model', 'layers', ...issue.path], message: issue.message });
  const params = shapes.reduce((n, s) => n + s.params, 0);
  if (params > MAX_PARAMETERS)
    ctx.addIssue({
      code: 'custom',
      path: ['model', 'layers'],
      message: `the model has ${params} parameters, more than the limit of ${MAX_PARAMETERS}`,
    });
  // Memory only for a model whose shapes are known: a shape error comes first and says more.
  else if (issues.length === 0) for (const m of memoryIssues(spec, shapes)) ctx.addIssue({ code: 'custom', ...m });
  const lastIndex = layers.length - 1;
  const last = layers[lastIndex];
  if (last && !last.dense) {
    ctx.addIssue({
      code: 'custom',
      path: ['model', 'layers', lastIndex],
      message: `the last layer must be dense with ${NUM_CLASSES} units and softmax (one output per class)`,
    });
  } else if (last?.dense) {
    if (last.dense.units !== NUM_CLASSES)
      ctx.addIssue({
        code: 'custom',
        path: ['model', 'layers', lastIndex, 'dense', 'units'],
        message: `the last layer must have ${NUM_CLASSES} units (one per class), got ${last.dense.units}`,
      });
    if (last.dense.activation !== 'softmax')
      ctx.addIssue({
        code: 'custom',
        path: ['model', 'layers', lastIndex, 'dense', 'activation'],
        message: `the last layer must use softmax (sparseCategoricalCrossentropy takes probabilities, as Keras's from_logits=False), got ${last.dense.activation}`,
      });
  }
  const monitored: [string[], string | undefined][] = [
    [['training', 'earlyStopping', 'monitor'], spec.training.earlyStopping?.monitor],
    [['training', 'reduceLrOnPlateau', 'monitor'], spec.training.reduceLrOnPlateau?.monitor],
    [['training', 'checkpoint', 'saveBest', 'monitor'], spec.training.checkpoint.saveBest?.monitor],
  ];
  for (const [at, monitor] of monitored) {
    if (monitor?.startsWith('val_') && spec.data.validation.size === 0)
      ctx.addIssue({ code: 'custom', path: at, message: `monitoring ${monitor} needs data.validation.size > 0` });
  }
  // trainLimit counts the images trained on; the validation images come from the rest of the 60,000 (src/data/dataset.ts).
  const { size, holdout } = spec.data.validation;
  if (holdout && size >= TRAIN_FILE_IMAGES) {
    ctx.addIssue({
      code: 'custom',
      path: ['data', 'validation', 'size'],
      message: `expected fewer than the ${TRAIN_FILE_IMAGES} training images (holdout leaves none to train on), got ${size}`,
    });
  } else if (holdout && spec.data.trainLimit !== null && spec.data.trainLimit > TRAIN_FILE_IMAGES - size) {
    ctx.addIssue({
      code: 'custom',
      path: ['data', 'trainLimit'],
      message: `expected at most the ${TRAIN_FILE_IMAGES - size} images left after the ${size} held-out validation images, got ${spec.data.trainLimit}`,
    });
  }
}

// ---------- errors with dotted paths and YAML positions ----------

export interface SpecIssue {
  path: (string | number)[];
  message: string;
  /** "spec.yaml:9:16", or "--set training.epochs=abc". */
  where: string;
}

export class SpecError extends InputError {
  constructor(readonly issues: SpecIssue[]) {
    super(issues.map(formatIssue).join('\n'));
  }
}

export function formatIssue(i: SpecIssue): string {
  const where = i.where ? ` (${i.where})` : '';
  return i.path.length ? `! ${i.path.join('.')}: ${i.message}${where}` : `! ${i.message}${where}`;
}

/** Where a value came from: its YAML node, or the --set flag that put it there. */
interface Origin {
  file: string;
  doc: YAML.Document.Parsed | null;
  lines: YAML.LineCounter;
  sets: { path: string[]; flag: string }[];
}

function locate(origin: Origin, p: (string | number)[], key?: string): string {
  const set = [...origin.sets]
    .reverse()
    .find(
      (s) =>
        s.path.length <= p.length + (key ? 1 : 0) &&
        s.path.every((seg, k) => String([...p, ...(key ? [key] : [])][k]) === seg),
    );
  if (set) return set.flag;
  const inFile = fileLocation(origin, p, key);
  // A --set below the offending node made it wrong (e.g. optimizer.adam.… on an SGD spec): name it first.
  const below = p.length
    ? [...origin.sets].reverse().find((s) => s.path.length > p.length && p.every((seg, k) => s.path[k] === String(seg)))
    : undefined;
  return below ? `${below.flag}, onto ${inFile}` : inFile;
}

function fileLocation(origin: Origin, p: (string | number)[], key?: string): string {
  if (!origin.doc) return origin.file;
  // Walk down to the deepest node that exists; point at the offending key itself where there is one.
  let node: unknown = origin.doc.contents;
  let offset: number | undefined = (node as YAML.Node | null)?.range?.[0];
  const segments = key ? [...p, key] : p;
  for (let k = 0; k < segments.length; k++) {
    const seg = segments[k]!;
    if (YAML.isMap(node)) {
      const pair = node.items.find((it) => YAML.isScalar(it.key) && String(it.key.value) === String(seg));
      if (!pair) break;
      const isLast = k === segments.length - 1;
      const keyNode = pair.key as YAML.Node;
      offset = (isLast && key !== undefined) || !pair.value ? keyNode.range?.[0] : (pair.value as YAML.Node).range?.[0];
      node = pair.value;
    } else if (YAML.isSeq(node)) {
      const item = node.items[Number(seg)] as YAML.Node | undefined;
      if (!item) break;
      offset = item.range?.[0];
      node = item;
    } else break;
  }
  if (offset === undefined) return origin.file;
  const { line, col } = origin.lines.linePos(offset);
  return `${origin.file}:${line}:${col}`;
}

function getAt(value: unknown, p: (string | number)[]): unknown {
  let v = value;
  for (const seg of p) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[String(seg)];
  }
  return v;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'a map';
  return String(v);
}

/** Levenshtein distance, for "did you mean" hints on unknown keys. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1),
      );
  return d[a.length]![b.length]!;
}

export function didYouMean(key: string, known: string[]): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const dist = editDistance(key, k);
    if (dist < bestD) [best, bestD] = [k, dist];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(best.length / 3)) ? ` (did you mean '${best}'?)` : '';
}

/** The keys a strict object at `p` knows, found by walking the schema along the path. */
function knownKeysAt(p: (string | number)[]): string[] {
  let s: z.ZodType = experimentSpec;
  for (const seg of p) {
    s = peelSchema(s);
    if (s instanceof z.ZodObject) s = (s.shape as Record<string, z.ZodType>)[String(seg)] ?? s;
    else if (s instanceof z.ZodArray) s = s.element as z.ZodType;
    else if (s instanceof z.ZodRecord) s = s.valueType as z.ZodType;
  }
  s = peelSchema(s);
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}

function issuesFromZod(error: z.ZodError, raw: unknown, origin: Origin): SpecIssue[] {
  const out: SpecIssue[] = [];
  const pathKey = (p: PropertyKey[]) => p.map(String).join('.');
  // An unknown key already explains why a layer has no known type; don't say it twice.
  const unknownAt = new Set(error.issues.filter((i) => i.code === 'unrecognized_keys').map((i) => pathKey(i.path)));
  for (const issue of error.issues) {
    const p = issue.path.map((x) => (typeof x === 'symbol' ? String(x) : x));
    if (issue.code === 'custom' && unknownAt.has(pathKey(issue.path))) continue;
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeysAt(p);
      for (const key of issue.keys) {
        const what =
          known.includes('dense') && known.includes('flatten')
            ? 'unknown layer type'
            : known.includes('mixUp') && known.includes('randomFlip')
              ? 'unknown augmentation step'
              : 'unknown key';
        out.push({ path: [...p, key], message: `${what}${didYouMean(key, known)}`, where: locate(origin, p, key) });
      }
      continue;
    }
    if (issue.code === 'invalid_union') {
      // A number that fits no branch (a learning rate of .nan or -1): say what a number must be.
      const value = getAt(raw, p);
      const numberIssue =
        typeof value === 'number'
          ? issue.errors.flat().find((e) => e.code !== 'invalid_type' || e.expected === 'number')
          : undefined;
      out.push({
        path: p,
        message: numberIssue ? `${numberIssue.message}, got ${describe(value)}` : issue.message,
        where: locate(origin, p),
      });
      continue;
    }
    const value = getAt(raw, p);
    const msg = issue.message;
    const got =
      issue.code === 'custom' || issue.code === 'invalid_key' || / got /.test(msg) ? '' : `, got ${describe(value)}`;
    out.push({ path: p, message: `${msg}${got}`, where: locate(origin, p) });
  }
  return out;
}

// ---------- overrides (--set, variants, sweeps) ----------

export interface Override {
  path: string[];
  value: unknown;
  /** How to name it in errors, e.g. "--set training.epochs=3". */
  label: string;
}

/** `training.epochs=3` → path and a value parsed as a YAML scalar (so 1e-3, true, null, [28, 28] work). */
export function parseSetFlag(flag: string): Override {
  const eq = flag.indexOf('=');
  const key = eq < 0 ? '' : flag.slice(0, eq).trim();
  if (eq < 0 || !/^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/.test(key)) {
    throw new InputError(`--set ${flag}: expected PATH=VALUE with a dotted path, e.g. --set training.epochs=3`);
  }
  const value = parsePlainYaml(flag.slice(eq + 1), `--set ${flag}`, key.split('.'));
  return { path: key.split('.'), value: value === undefined ? null : value, label: `--set ${flag}` };
}

/** A path segment that would walk into Object.prototype (`--set __proto__.x=1` would change every object). */
const FORBIDDEN_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype']);
/** A list index as written canonically: 0, 1, 12 (not 01, +1, 1.0). */
const CANONICAL_INDEX = /^(0|[1-9]\d*)$/;

/** Strips wrappers (default, nullable, prefault, pipe/preprocess) down to the object/array/record/leaf schema. */
function peelSchema(s: z.ZodType): z.ZodType {
  for (let guard = 0; guard < 10; guard++) {
    const def = (
      s as unknown as { _zod: { def: { type: string; innerType?: z.ZodType; out?: z.ZodType; in?: z.ZodType } } }
    )._zod.def;
    if (def.innerType) s = def.innerType;
    else if (def.type === 'pipe')
      s = (
        def.out && (def.out as unknown as { _zod: { def: { type: string } } })._zod.def.type !== 'transform'
          ? def.out
          : def.in
      )!;
    else break;
  }
  return s;
}

const isPlainMap = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Returns a deep copy of `raw` with each override's value placed at its path. A path must name
 * a field the schema knows (maps on the way that the document leaves out are created, as their
 * defaults would be) or an existing list element by its canonical index; anything else is refused
 * naming the override, so a typo never lands on a field nobody reads. Studies use the same rule.
 */
export function applyOverrides(raw: unknown, overrides: Override[]): unknown {
  const root = structuredClone(raw ?? {}) as Record<string, unknown>;
  for (const o of overrides) placeOverride(root, o);
  return root;
}

function placeOverride(root: Record<string, unknown>, o: Override): void {
  let container: Record<string, unknown> | unknown[] = root;
  let schema: z.ZodType | null = experimentSpec;
  o.path.forEach((seg, k) => {
    const here = o.path.slice(0, k).join('.') || 'the spec';
    if (FORBIDDEN_SEGMENTS.has(seg)) throw new InputError(`${o.label}: '${seg}' is not a spec key`);
    const s = schema ? peelSchema(schema) : null;
    let child: z.ZodType | null;
    let key: string | number;
    if (s instanceof z.ZodArray || s instanceof z.ZodTuple || (s === null && Array.isArray(container))) {
      if (!/^\d+$/.test(seg)) throw new InputError(`${o.label}: ${here} is a list; expected an index, got '${seg}'`);
      if (!CANONICAL_INDEX.test(seg))
        throw new InputError(`${o.label}: ${here}: '${seg}' is not written as a list index (write ${Number(seg)})`);
      if (!Array.isArray(container))
        throw new InputError(`${o.label}: ${here} is not a list in the spec, so it has no item ${seg}`);
      // An index past the end would leave holes (or, far past it, a huge sparse list): only existing items are set.
      if (Number(seg) >= container.length)
        throw new InputError(`${o.label}: ${here} has ${container.length} items; index ${seg} is past the end`);
      key = Number(seg);
      child =
        s instanceof z.ZodArray
          ? (s.element as z.ZodType)
          : s instanceof z.ZodTuple
            ? ((s._zod.def.items[key] as z.ZodType | undefined) ?? null)
            : null;
    } else if (s instanceof z.ZodObject) {
      const known = Object.keys(s.shape as object);
      // Worded as an unknown key in a spec file is, at the override that named it.
      if (!known.includes(seg))
        throw new SpecError([
          { path: o.path.slice(0, k + 1), message: `unknown key${didYouMean(seg, known)}`, where: o.label },
        ]);
      key = seg;
      child = (s.shape as Record<string, z.ZodType>)[seg]!;
    } else if (s instanceof z.ZodRecord || s === null || s instanceof z.ZodUnknown || s instanceof z.ZodAny) {
      // Free-form maps (variants, sweep): any key; the values are checked when the spec is validated.
      key = seg;
      child = s instanceof z.ZodRecord ? (s.valueType as z.ZodType) : null;
    } else {
      throw new InputError(`${o.label}: ${here} is a single value, so it has no field '${seg}'`);
    }
    const c = container as Record<string | number, unknown>;
    if (k === o.path.length - 1) {
      c[key] = structuredClone(o.value);
      return;
    }
    // Going deeper: a map the document leaves out (or sets to null/a shorthand) becomes one;
    // a list must already be there, since only its existing items can be addressed.
    const next = child === null ? null : peelSchema(child);
    if (next instanceof z.ZodArray || next instanceof z.ZodTuple) {
      if (!Array.isArray(c[key]))
        throw new InputError(
          `${o.label}: ${o.path.slice(0, k + 1).join('.')} is not a list in the spec, so it has no item ${o.path[k + 1]}`,
        );
    } else if (!isPlainMap(c[key]) && !(next === null && Array.isArray(c[key]))) {
      c[key] = {};
    }
    container = c[key] as Record<string, unknown> | unknown[];
    schema = child;
  });
}

// ---------- YAML with plain values only ----------

/** The core schema's tags for plain values; anything else (!!omap, !!set, !!binary, !!timestamp, custom tags) is refused. */
const PLAIN_TAGS = new Set(
  ['str', 'int', 'float', 'bool', 'null', 'map', 'seq'].map((t) => `tag:yaml.org,2002:${t}`).concat(['!']),
);
const shortTag = (tag: string) => tag.replace(/^tag:yaml\.org,2002:/, '!!');
/** Stop listing after this many: a document made only of tagged values gets a bounded message. */
const MAX_NON_PLAIN_REPORTED = 10;

interface NonPlain {
  path: (string | number)[];
  message: string;
  offset: number | undefined;
}

/**
 * Values that are not a plain YAML scalar, map or list: explicit tags other than the core
 * schema's, keys that are maps or lists. Each is reported once at its node (a `!!binary` value
 * is one problem, not one per decoded byte); what lies inside it is not looked at.
 */
export function nonPlainValues(doc: YAML.Document.Parsed): NonPlain[] {
  const out: NonPlain[] = [];
  const walk = (node: unknown, p: (string | number)[]): void => {
    if (out.length >= MAX_NON_PLAIN_REPORTED || node === null || node === undefined || YAML.isAlias(node)) return;
    const n = node as YAML.Node;
    if (n.tag !== undefined && !PLAIN_TAGS.has(n.tag)) {
      out.push({
        path: p,
        message: `the YAML tag ${shortTag(n.tag)} is not supported: write a plain value, map or list`,
        offset: n.range?.[0],
      });
      return;
    }
    if (YAML.isMap(node)) {
      for (const pair of node.items) {
        const key = pair.key as YAML.Node | null;
        if (
          key !== null &&
          !(
            YAML.isScalar(key) &&
            (key.tag === undefined || PLAIN_TAGS.has(key.tag)) &&
            (key.value === null || ['string', 'number', 'boolean'].includes(typeof key.value))
          )
        ) {
          out.push({
            path: p,
            message: 'a map key must be a plain value, not a map, list or tagged value',
            offset: key.range?.[0],
          });
          continue;
        }
        walk(pair.value, [...p, String(key?.value ?? '')]);
      }
    } else if (YAML.isSeq(node)) {
      node.items.forEach((item, i) => walk(item, [...p, i]));
    } else if (
      YAML.isScalar(node) &&
      !(node.value === null || ['string', 'number', 'boolean'].includes(typeof node.value))
    ) {
      out.push({ path: p, message: 'not a plain YAML value', offset: node.range?.[0] });
    }
  };
  walk(doc.contents, []);
  return out;
}

/** `%YAML 1.1` switches the parser to YAML 1.1, where yes/no, 010 and 1:20 silently become true/false, 8 and 80. */
function yaml11Problem(doc: YAML.Document.Parsed): string | null {
  const v = doc.directives?.yaml;
  return v?.explicit && v.version !== '1.2'
    ? `%YAML ${v.version} is not supported (regtrain reads YAML 1.2, where yes, 010 and 1:20 keep their plain meaning)`
    : null;
}

/**
 * Parses one small YAML value (a --set value, a run directory's spec.yaml for compare) with the
 * same rules as a spec file: YAML 1.2 plain values only, no warnings on stderr. Throws an
 * InputError of one line starting with `label`.
 */
export function parsePlainYaml(text: string, label: string, at: string[] = []): unknown {
  // As deep as a spec file may be, whatever the runtime's stack (a --set value is YAML too).
  checkYamlNesting(text, label);
  const doc = YAML.parseDocument(text, { uniqueKeys: true, logLevel: 'error' });
  const first = doc.errors[0];
  if (first)
    throw new InputError(
      `${label}: the value is not valid YAML (${first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')})`,
    );
  const old = yaml11Problem(doc);
  if (old) throw new InputError(`${label}: ${old}`);
  const bad = nonPlainValues(doc)[0];
  const where = [...at, ...(bad?.path ?? [])];
  if (bad) throw new InputError(`${label}: ${where.length ? `${where.join('.')}: ` : ''}${bad.message}`);
  try {
    return doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new InputError(
      `${label}: the value is not valid YAML (${err instanceof RangeError ? 'nested too deeply' : errorMessage(err).split('\n')[0]})`,
    );
  }
}

// ---------- loading ----------

export interface LoadedSpec {
  spec: ExperimentSpec;
  /** The document after overrides, before defaults: what studies expand further. */
  raw: Record<string, unknown>;
  file: string;
}

export const MAX_SPEC_BYTES = 1024 * 1024;
/** Deepest nesting of maps and lists a spec may have; real specs need about 6. */
export const MAX_YAML_DEPTH = 64;
/** Most YAML aliases a spec may use (the same bound the value conversion already has). */
export const MAX_YAML_ALIASES = 100;

/** Reads a spec file, parses the YAML, applies --set overrides, validates. Throws InputError/SpecError. */
export function loadSpec(file: string, sets: Override[] = []): LoadedSpec {
  // A regular file of at most 1 MiB: /dev/zero, a FIFO or a huge file is refused before reading.
  let text: string;
  try {
    text = readRegularFile(file, { maxBytes: MAX_SPEC_BYTES }).toString('utf8');
  } catch (err) {
    if (err instanceof UnreadableFileError && err.reason.startsWith('a directory'))
      throw new InputError(`${file}: is a directory, expected a YAML spec file`);
    throw err;
  }
  return parseSpec(text, path.basename(file), sets, path.basename(file).replace(/\.ya?ml$/i, ''));
}

/**
 * Refuses YAML nested deeper than MAX_YAML_DEPTH before the parser sees it: the YAML parser and composer
 * recurse once per level, so without this the limit (and the error) would be the runtime's stack depth.
 * Works on the lexer's tokens (a loop, no recursion): depth = open flow brackets + open block collections,
 * the latter known by the column where each starts (a list may start at its parent key's column).
 */
function checkYamlNesting(text: string, label: string): void {
  const blocks: { col: number; list: boolean }[] = [];
  let flow = 0;
  let line = 1;
  let col = 0;
  let lineStart = true;
  /** Column of the first token of the current key or value, the start of a map if a ':' follows. */
  let keyCol: number | undefined;
  let scalarNext = false;
  let blockScalar = false;
  let aliases = 0;
  const open = (at: number): void => {
    if (blocks.length + flow > MAX_YAML_DEPTH)
      throw new SpecError([
        { path: [], message: `YAML nesting deeper than ${MAX_YAML_DEPTH} levels`, where: `${label}:${line}:${at + 1}` },
      ]);
  };
  /** A '-' or a key at column `at`: the next entry of the innermost collection, or the first of a new one. */
  const entry = (at: number, list: boolean): void => {
    const top = blocks[blocks.length - 1];
    if (top && (top.col > at || (top.col === at && (top.list || !list)))) return;
    blocks.push({ col: at, list });
    open(at);
  };
  for (const token of new YAML.Lexer().lex(text)) {
    // Marker tokens have no width: '\x02' document, '\x18' flow error, '\x1f' a scalar's text follows.
    if (token === '\x02' || token === '\x18') continue;
    if (token === '\x1f') {
      scalarNext = true;
      continue;
    }
    const type = scalarNext ? 'scalar' : YAML.CST.tokenType(token);
    scalarNext = false;
    // The YAML library resolves long alias chains in quadratic time (3,000 took 85 s): a spec needs a few at most.
    if (type === 'alias' && ++aliases > MAX_YAML_ALIASES)
      throw new SpecError([
        {
          path: [],
          message: `more than ${MAX_YAML_ALIASES} YAML aliases (*name)`,
          where: `${label}:${line}:${col + 1}`,
        },
      ]);
    if (type === 'block-scalar-header') blockScalar = true;
    if (type === 'scalar' && blockScalar)
      blockScalar = false; // the body of | or >: text, not structure
    else if (type === 'doc-start') blocks.length = flow = 0;
    else if (type !== 'newline' && type !== 'space' && type !== 'comment' && type !== 'byte-order-mark') {
      const blockLevel = flow === 0; // inside brackets, indentation and block indicators mean nothing
      if (type === 'flow-map-start' || type === 'flow-seq-start') {
        flow++;
        open(col);
      } else if (type === 'flow-map-end' || type === 'flow-seq-end') flow = Math.max(0, flow - 1);
      if (blockLevel) {
        if (lineStart) {
          // Dedent closes collections; at a list's own column only a '-' continues it.
          for (
            let top = blocks[blocks.length - 1];
            top && (top.col > col || (top.col === col && top.list && type !== 'seq-item-ind'));
            top = blocks[blocks.length - 1]
          )
            blocks.pop();
          keyCol = undefined;
        }
        keyCol ??= col;
        if (type === 'seq-item-ind' || type === 'explicit-key-ind') {
          entry(col, type === 'seq-item-ind');
          keyCol = undefined;
        } else if (type === 'map-value-ind') {
          entry(keyCol, false);
          keyCol = undefined;
        }
      }
      lineStart = false;
    }
    const newlines = token.split('\n').length - 1;
    if (newlines > 0) {
      line += newlines;
      col = token.length - token.lastIndexOf('\n') - 1;
      if (col === 0) lineStart = true;
    } else col += token.length;
  }
}

/** Parses spec text (named `label` in messages). `defaultName` fills in `name` when the spec has none. */
export function parseSpec(text: string, label: string, sets: Override[] = [], defaultName?: string): LoadedSpec {
  if (text.includes('\u0000')) throw new InputError(`${label}: not a YAML text file (it contains NUL bytes)`);
  checkYamlNesting(text, label);
  const lines = new YAML.LineCounter();
  // logLevel 'error': YAML warnings (unknown tags, collection keys) must not reach stderr as Node warnings.
  const doc = YAML.parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true, logLevel: 'error' });
  const origin: Origin = { file: label, doc, lines, sets: sets.map((s) => ({ path: s.path, flag: s.label })) };
  const yamlProblems = [...doc.errors];
  if (yamlProblems.length) {
    throw new SpecError(
      yamlProblems.map((e) => {
        const pos = e.linePos?.[0];
        // The parser is recursive: a few thousand nested brackets overflow its stack.
        const msg = /Maximum call stack/.test(e.message)
          ? 'nested too deeply'
          : e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
        return { path: [], message: `invalid YAML: ${msg}`, where: pos ? `${label}:${pos.line}:${pos.col}` : label };
      }),
    );
  }
  const old = yaml11Problem(doc);
  if (old) throw new SpecError([{ path: [], message: `invalid YAML: ${old}`, where: `${label}:1:1` }]);
  const nonPlain = nonPlainValues(doc);
  if (nonPlain.length) {
    throw new SpecError(
      nonPlain.map((n) => ({
        path: n.path,
        message: n.message,
        where:
          n.offset === undefined ? label : `${label}:${lines.linePos(n.offset).line}:${lines.linePos(n.offset).col}`,
      })),
    );
  }
  let parsed: unknown;
  try {
    parsed = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    const msg = err instanceof RangeError ? 'nested too deeply' : (err as Error).message.split('\n')[0];
    // Alias problems carry no position: point at the first unresolved alias, else the first alias.
    let where = label;
    let first: YAML.Alias | undefined;
    YAML.visit(doc, {
      Alias: (_, a) => {
        first ??= a;
        if (a.resolve(doc) !== undefined) return undefined;
        first = a;
        return YAML.visit.BREAK;
      },
    });
    if (first?.range) {
      const { line, col } = lines.linePos(first.range[0]);
      where = `${label}:${line}:${col}`;
    }
    throw new SpecError([{ path: [], message: `invalid YAML: ${msg}`, where }]);
  }
  if (parsed === null || parsed === undefined)
    throw new SpecError([{ path: [], message: 'the spec is empty', where: label }]);
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new SpecError([
      {
        path: [],
        message: `expected a map of settings at the top level, got ${describe(parsed)}`,
        where: `${label}:1:1`,
      },
    ]);
  }
  const withName =
    defaultName !== undefined &&
    (parsed as Record<string, unknown>).name === undefined &&
    /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(defaultName)
      ? { ...parsed, name: defaultName }
      : parsed;
  const raw = applyOverrides(withName, sets) as Record<string, unknown>;
  return { spec: validateSpec(raw, origin), raw, file: label };
}

/** Validates an already-parsed spec object (used by studies for each expanded variant). */
export function validateSpec(raw: unknown, origin: Origin | string = '(spec)'): ExperimentSpec {
  const o: Origin =
    typeof origin === 'string' ? { file: origin, doc: null, lines: new YAML.LineCounter(), sets: [] } : origin;
  const result = experimentSpec.safeParse(raw, { error: inRegtrainWords });
  if (!result.success) throw new SpecError(issuesFromZod(result.error, raw, o));
  return result.data;
}

/** The resolved spec as YAML (what `validate` prints and a run directory keeps). */
export function specToYaml(spec: ExperimentSpec): string {
  return YAML.stringify(spec, { lineWidth: 0 });
}
