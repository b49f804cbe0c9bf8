/**
 * What a spec's training will allocate, estimated from its shapes before anything is allocated,
 * against what a backend can address. Without this check a conv2d that passes the per-layer
 * limit (1M values per image) with batchSize 2000 needs 8 GB for one activation, and the wasm
 * backend dies at its 4 GiB heap with "table index is out of bounds" and a stack trace.
 *
 * One limit for every backend, 4 GiB: the wasm heap's maximum (32-bit addresses). The spec does
 * not know which backend `auto` picks, nor on which machine or cluster member it will run, so a
 * spec that validates should fit every backend; the cpu and tfjs-node backends keep tensors in
 * the process's own memory, where 4 GiB is also more than a default cluster member (`plan
 * --mem 2G`) has. The estimate is a lower bound of what must be live at once (tfjs and the
 * kernels add scratch on top), so a refused spec could not have run on wasm.
 */
import { type LayerShape, type LayerSpec } from './layers';
import { optimizerChoice, OPTIMIZER_TYPES, type OptimizerSpec } from '../train/optimizers/registry';

export const MAX_BACKEND_BYTES = 4 * 1024 ** 3;
const FLOAT_BYTES = 4;
const IMAGE_VALUES = 28 * 28;
/** As src/train/forward.ts: inference chunks of up to 5,000 images, fewer when a layer's output per chunk would pass 64 MB. */
const EVAL_CHUNK = 5000;
const EVAL_CHUNK_BYTES = 64 * 1024 * 1024;

const product = (s: number[]) => s.reduce((a, b) => a * b, 1);

export interface MemoryEstimate {
  /** Float32 values one image of a training batch needs: every layer's output (kept for the backward pass), the gradients of the widest layer's input and output, the largest conv's input patches (im2col). */
  perImage: number;
  /** Values that do not grow with the batch: parameters, their gradients, optimizer slots and weight averages, and the dataset's images. */
  fixed: number;
  /** Bytes of one training step with `batchSize` images. */
  trainingBytes: number;
  /** Bytes of one inference chunk (validation, evaluation, predict). */
  inferenceBytes: number;
  /** The largest batch that fits MAX_BACKEND_BYTES (0: none). */
  maxBatch: number;
}

export interface MemorySpec {
  model: { layers: LayerSpec[] };
  optimizer: OptimizerSpec;
  training: { batchSize: number; swa?: unknown };
  data: { validation: { size: number }; trainLimit: number | null; testLimit: number | null };
}

export function estimateMemory(spec: MemorySpec, shapes: LayerShape[]): MemoryEstimate {
  const outputs = shapes.map((s) => product(s.outputShape));
  const widest = Math.max(IMAGE_VALUES, ...outputs);
  const patches = Math.max(
    0,
    ...spec.model.layers.map((l, i) =>
      l.conv2d ? product(shapes[i]!.outputShape.slice(0, 2)) * product(shapes[i]!.weightShapes[0]!.slice(0, 3)) : 0,
    ),
  );
  const perImage = IMAGE_VALUES + outputs.reduce((a, b) => a + b, 0) + 2 * widest + patches;
  const params = shapes.reduce((n, s) => n + s.params, 0);
  // Each variable's slots (momentum; Adam's m, v and v̂) as its optimizer declares them.
  const { definition, config } = optimizerChoice(spec.optimizer);
  const slots = definition.slots(config).length;
  // Weight averaging keeps one more copy of the parameters: the EMA's averages, or SWA's running average.
  const averages = (config.useEma ? 1 : 0) + (spec.training.swa ? 1 : 0);
  const images = (spec.data.trainLimit ?? 60000) + spec.data.validation.size + (spec.data.testLimit ?? 10000);
  const fixed = params * (2 + slots + averages) + images * IMAGE_VALUES;
  const chunk = Math.max(1, Math.min(EVAL_CHUNK, Math.floor(EVAL_CHUNK_BYTES / (FLOAT_BYTES * widest))));
  const room = Math.floor(MAX_BACKEND_BYTES / FLOAT_BYTES) - fixed;
  return {
    perImage,
    fixed,
    trainingBytes: FLOAT_BYTES * (spec.training.batchSize * perImage + fixed),
    inferenceBytes:
      FLOAT_BYTES * (chunk * (IMAGE_VALUES + outputs.reduce((a, b) => a + b, 0)) + params + images * IMAGE_VALUES),
    maxBatch: Math.max(0, Math.floor(room / perImage)),
  };
}

/** "8.73 GB" (decimal, as memory figures are usually read), "512 MB". */
export function formatBytes(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${Math.ceil(n / 1e6)} MB`;
}

/** Refusals (path and message) for a spec whose training or inference would not fit; none when it fits. */
export function memoryIssues(spec: MemorySpec, shapes: LayerShape[]): { path: (string | number)[]; message: string }[] {
  // The spec's cross-field checks run even when a field failed its own: without a valid optimizer
  // there is no slot count, and the optimizer's own error says more.
  const optimizer = spec.optimizer as Partial<Record<string, unknown>> | undefined;
  if (typeof optimizer !== 'object' || optimizer === null || !OPTIMIZER_TYPES.some((k) => optimizer[k])) return [];
  const e = estimateMemory(spec, shapes);
  const limit = `the ${MAX_BACKEND_BYTES / 1024 ** 3} GiB a backend can address (the wasm heap's maximum)`;
  const issues: { path: (string | number)[]; message: string }[] = [];
  if (e.trainingBytes > MAX_BACKEND_BYTES) {
    const what =
      `training with batches of ${spec.training.batchSize} needs at least ${formatBytes(e.trainingBytes)} ` +
      `(${e.perImage} float32 values per image for activations, their gradients and conv patches; ${e.fixed} for parameters, gradients, optimizer slots and the images), more than ${limit}`;
    if (e.maxBatch >= 1)
      issues.push({ path: ['training', 'batchSize'], message: `${what}; use a batchSize of at most ${e.maxBatch}` });
    else issues.push({ path: ['model', 'layers'], message: `${what}, even with a batch of 1: make the model smaller` });
  }
  if (e.inferenceBytes > MAX_BACKEND_BYTES)
    issues.push({
      path: ['model', 'layers'],
      message: `inference needs at least ${formatBytes(e.inferenceBytes)} per chunk of images, more than ${limit}: make the model smaller`,
    });
  return issues;
}
