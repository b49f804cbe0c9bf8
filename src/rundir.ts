import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as tf from './tf';
import { FailureError, InputError, errorMessage } from './errors';
import { acquireLock, liveHolder, readLock, releaseLock, LockHeldError } from './lock';
import { checkCreatableDir, readRegularFile, utcStamp, writeFileAtomic, UnreadableFileError } from './fsutil';
import { z } from 'zod';
import {
  EpochRecord,
  HistogramSchema,
  HistoryFile,
  HistoryFileSchema,
  MetricsFile,
  MetricsFileSchema,
  RunOrigin,
  RunOriginSchema,
  StudyFile,
  StudyFileSchema,
  MAX_HISTORY_BYTES,
  MAX_MODEL_JSON_BYTES,
  MAX_RUN_JSON_BYTES,
  RUN_FORMAT_VERSION,
  type Histogram,
} from './runformat';
import { layerType, TFJS_CLASS, type ExperimentSpec } from './spec';
import { layerShapes } from './spec/layers';
import { describeValue, inRegtrainWords, issueLine } from './zodwords';
import { regtrainCommand } from './invocation';

export const MODEL_FILE = 'model.json';
export const WEIGHTS_FILE = 'weights.bin';
export const SPEC_FILE = 'spec.yaml';
export const HISTORY_JSON = 'history.json';
export const HISTORY_CSV = 'history.csv';
export const METRICS_FILE = 'metrics.json';
/** Held by the process writing a run directory, so a second writer refuses (src/lock.ts). */
export const LOCK_FILE = '.regtrain.lock';

function isEmptyDir(dir: string): boolean {
  return fs.readdirSync(dir).length === 0;
}

/** Why a non-empty directory cannot become a new run: a live writer, an unfinished run, or anything else. */
function occupiedReason(dir: string): string {
  const lock = readLock(path.join(dir, LOCK_FILE));
  if (lock) {
    const live = liveHolder(lock);
    if (live) return 'another regtrain run is writing to it';
  } else if (fs.readdirSync(dir).every((f) => f.startsWith(`${LOCK_FILE}.`) && f.endsWith('.tmp'))) {
    // Another process is between writing its lock record and linking it into place (src/lock.ts acquireLock).
    return 'another regtrain run is writing to it';
  }
  if (fs.existsSync(path.join(dir, SPEC_FILE)) && !fs.existsSync(path.join(dir, METRICS_FILE))) {
    return `holds a run that stopped before finishing (its process is gone); continue it with: ${regtrainCommand()} run --resume ${dir}`;
  }
  return 'exists and is not empty; regtrain never overwrites a run';
}

/**
 * Creates and claims the run directory: `--out DIR` exactly, else `runs/<name>-<UTC stamp>`
 * under `cwd`. Never reuses a non-empty directory; the lock file makes a concurrent second
 * writer fail instead of interleaving files.
 */
export function createRunDir(opts: { out?: string; name: string; cwd?: string }): string {
  const cwd = opts.cwd ?? process.cwd();
  let dir: string;
  if (opts.out) {
    dir = path.resolve(cwd, opts.out);
    checkCreatableDir(dir, `--out ${opts.out}`);
    if (fs.existsSync(dir)) {
      if (!fs.statSync(dir).isDirectory()) throw new InputError(`--out ${opts.out}: exists and is not a directory`);
      if (!isEmptyDir(dir)) throw new InputError(`--out ${opts.out}: ${occupiedReason(dir)}`);
    }
  } else {
    // The schema restricts names to [A-Za-z0-9._-], so a name can never leave runs/.
    const base = path.join(cwd, 'runs', `${opts.name}-${utcStamp()}`);
    dir = base;
    for (let i = 2; fs.existsSync(dir); i++) dir = `${base}-${i}`;
  }
  try {
    fs.mkdirSync(dir, { recursive: true });
    takeLock(dir);
    // Two runs racing for one empty --out: the loser may take the lock after the winner released it.
    if (fs.readdirSync(dir).some((f) => f !== LOCK_FILE && !f.startsWith(`${LOCK_FILE}.`))) {
      releaseRunDir(dir);
      throw new InputError(`${dir}: another regtrain run wrote to it first`);
    }
  } catch (err) {
    if (err instanceof InputError) throw err;
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      // mkdir -p on a read-only file system reports ENOENT; ask the nearest existing ancestor why.
      let up = path.dirname(dir);
      while (!fs.existsSync(up) && path.dirname(up) !== up) up = path.dirname(up);
      try {
        fs.accessSync(up, fs.constants.W_OK);
      } catch (why) {
        e.code = (why as NodeJS.ErrnoException).code;
      }
    }
    if (e.code === 'EACCES' || e.code === 'EROFS')
      throw new InputError(
        `${dir}: cannot create the run directory (${e.code === 'EROFS' ? 'read-only file system' : 'permission denied'})`,
      );
    throw new FailureError(`${dir}: cannot create the run directory (${e.message})`);
  }
  return dir;
}

/** Takes the directory's lock; a live holder is bad input (exit 2), naming who holds it. */
function takeLock(dir: string): void {
  try {
    acquireLock(path.join(dir, LOCK_FILE));
  } catch (err) {
    if (err instanceof LockHeldError)
      throw new InputError(`${dir}: another regtrain run is writing to it (${err.message})`);
    throw err;
  }
}

/**
 * Claims an existing run directory (for --resume). A lock whose holder is gone (SIGKILL, OOM,
 * a dead node or pod, a PID since reused) is taken over atomically: of several processes
 * resuming at once, exactly one wins and the others are refused.
 */
export function claimRunDir(dir: string): void {
  try {
    takeLock(dir);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new FailureError(`${path.join(dir, LOCK_FILE)}: cannot create (${errorMessage(err)})`);
  }
}

export function releaseRunDir(dir: string): void {
  releaseLock(path.join(dir, LOCK_FILE));
}

/** Writes a file of the run atomically; disk-full and permission problems become one clear line. */
export function writeRunFile(dir: string, file: string, data: string | Uint8Array): void {
  try {
    writeFileAtomic(path.join(dir, file), data);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'ENOSPC'
        ? 'no space left on device'
        : e.code === 'EACCES'
          ? 'permission denied'
          : e.code === 'EROFS'
            ? 'read-only file system'
            : e.message;
    throw new FailureError(`${path.join(dir, file)}: cannot write (${why}); files written before are intact`);
  }
}

export function writeJson(dir: string, file: string, value: unknown): void {
  writeRunFile(dir, file, JSON.stringify(value, null, 2) + '\n');
}

const CSV_COLUMNS = [
  'epoch',
  'loss',
  'accuracy',
  'val_loss',
  'val_accuracy',
  'data_loss',
  'penalty',
  'lr',
  'seconds',
] as const;

export function writeHistory(dir: string, epochs: EpochRecord[]): void {
  const file: HistoryFile = { formatVersion: RUN_FORMAT_VERSION, epochs };
  writeJson(dir, HISTORY_JSON, file);
  // A run with label smoothing has a `smoothing` column last (loss = data_loss + smoothing + penalty).
  const columns: readonly (keyof EpochRecord)[] = epochs.some((e) => e.smoothing !== undefined)
    ? [...CSV_COLUMNS, 'smoothing']
    : CSV_COLUMNS;
  const rows = epochs.map((e) =>
    columns.map((c) => (e[c] === null || e[c] === undefined ? '' : String(e[c]))).join(','),
  );
  writeRunFile(dir, HISTORY_CSV, [columns.join(','), ...rows].join('\n') + '\n');
}

export function writeMetrics(dir: string, metrics: MetricsFile): void {
  writeJson(dir, METRICS_FILE, metrics);
}

// ---------- the model, in tfjs Layers format ----------

/** tfjs loads when a model is saved or loaded, not with this module: `status`, `plan` and `compare` read run directories without it. */
function loadTfjs(): Promise<typeof tf> {
  return import('./tf');
}

interface ModelJson {
  modelTopology: object;
  format: string;
  generatedBy?: string;
  convertedBy?: string | null;
  weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
  userDefinedMetadata?: Record<string, unknown>;
}

/**
 * Saves in the layout tfjs-node's `file://` handler writes (model.json + one weights shard),
 * so `tf.loadLayersModel('file://…/model.json')` reads it, without needing tfjs-node here.
 * The shard goes first: a model.json is only ever present with the weights it describes.
 */
export async function saveModel(model: tf.LayersModel, dir: string, metadata: Record<string, unknown>): Promise<void> {
  const tfjs = await loadTfjs();
  await model.save(
    tfjs.io.withSaveHandler(async (artifacts) => {
      const weightData = tfjs.io.concatenateArrayBuffers(artifacts.weightData ?? new ArrayBuffer(0));
      writeRunFile(dir, WEIGHTS_FILE, new Uint8Array(weightData));
      const json: ModelJson = {
        modelTopology: artifacts.modelTopology as object,
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [WEIGHTS_FILE], weights: artifacts.weightSpecs ?? [] }],
        userDefinedMetadata: { regtrain: metadata },
      };
      writeRunFile(dir, MODEL_FILE, JSON.stringify(json));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
}

const BYTES_PER: Record<string, number> = { float32: 4, int32: 4 };

/** A weights path must name a plain file inside the run directory (no traversal, no symlink out). */
function weightFile(dir: string, realDir: string, p: unknown): string {
  if (
    typeof p !== 'string' ||
    p === '' ||
    path.isAbsolute(p) ||
    p.split(/[\\/]/).some((seg) => seg === '..') ||
    /[\\/]/.test(p)
  ) {
    throw new InputError(
      `${path.join(dir, MODEL_FILE)}: weights path ${JSON.stringify(p)} points outside the run directory`,
    );
  }
  const file = path.join(dir, p);
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch {
    throw new InputError(`${file}: missing (named by ${MODEL_FILE})`);
  }
  if (path.dirname(real) !== realDir) throw new InputError(`${file}: is a link that leads outside the run directory`);
  return real;
}

/** The weight shapes, in tfjs's order, of the model a spec describes (what weights.bin must hold). */
export function expectedWeightShapes(spec: ExperimentSpec): number[][] {
  return layerShapes(spec.model.layers).shapes.flatMap((l) => l.weightShapes);
}

/**
 * model.json against the spec, before tfjs builds anything: a hostile or damaged topology
 * (a Dense layer of 1e9 units, another layer stack) would otherwise allocate first and fail later.
 */
function checkTopology(
  file: string,
  json: ModelJson,
  spec: ExperimentSpec,
  weightSpecs: tf.io.WeightsManifestEntry[],
): void {
  const topology = json.modelTopology as { class_name?: unknown; config?: { layers?: unknown } };
  const layers = topology.config?.layers;
  if (topology.class_name !== 'Sequential' || !Array.isArray(layers))
    throw new InputError(`${file}: expected a Sequential model with a list of layers`);
  const want = spec.model.layers;
  if (layers.length !== want.length)
    throw new InputError(`${file}: ${layers.length} layers, but spec.yaml describes ${want.length}`);
  want.forEach((l, i) => {
    const got = layers[i] as { class_name?: unknown; config?: { units?: unknown } } | null;
    const type = layerType(l);
    if (!got || got.class_name !== TFJS_CLASS[type])
      throw new InputError(
        `${file}: layer ${i} is ${JSON.stringify(got?.class_name ?? null)}, but spec.yaml has ${type} there`,
      );
    if (l.dense && got.config?.units !== l.dense.units)
      throw new InputError(
        `${file}: layer ${i} has ${JSON.stringify(got.config?.units ?? null)} units, but spec.yaml says ${l.dense.units}`,
      );
  });
  const shapes = expectedWeightShapes(spec);
  if (weightSpecs.length !== shapes.length)
    throw new InputError(
      `${file}: ${weightSpecs.length} weights in the manifest, but spec.yaml's model has ${shapes.length}`,
    );
  weightSpecs.forEach((w, i) => {
    const bytes = BYTES_PER[w.dtype];
    if (!bytes || w.quantization || !Array.isArray(w.shape) || w.shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new InputError(`${file}: weight ${JSON.stringify(w.name)} has an unsupported dtype, shape or quantization`);
    }
    if (JSON.stringify(w.shape) !== JSON.stringify(shapes[i]))
      throw new InputError(
        `${file}: weight ${JSON.stringify(w.name)} has shape [${w.shape.join(', ')}], but spec.yaml's model needs [${shapes[i]!.join(', ')}]`,
      );
  });
}

/**
 * Loads a saved model after checking model.json against the spec and what is on disk: the
 * topology and weight shapes match the spec (before anything is allocated), paths stay inside
 * the directory, the file holds exactly the manifest's bytes, and every weight is finite.
 */
export async function loadModel(
  dir: string,
  spec: ExperimentSpec,
): Promise<{ model: tf.LayersModel; metadata: Record<string, unknown> }> {
  const file = path.join(dir, MODEL_FILE);
  const raw = readJsonFile(dir, MODEL_FILE, MAX_MODEL_JSON_BYTES);
  const json = raw as ModelJson;
  if (
    json === null ||
    typeof json !== 'object' ||
    typeof json.modelTopology !== 'object' ||
    json.modelTopology === null ||
    !Array.isArray(json.weightsManifest)
  ) {
    throw new InputError(`${file}: not a tfjs Layers model (expected modelTopology and weightsManifest)`);
  }
  const realDir = fs.realpathSync(dir);
  const weightSpecs: tf.io.WeightsManifestEntry[] = [];
  const paths: string[] = [];
  for (const group of json.weightsManifest) {
    if (!group || !Array.isArray(group.paths) || !Array.isArray(group.weights))
      throw new InputError(`${file}: malformed weightsManifest`);
    for (const p of group.paths) paths.push(weightFile(dir, realDir, p));
    weightSpecs.push(...(group.weights as tf.io.WeightsManifestEntry[]));
  }
  checkTopology(file, json, spec, weightSpecs);
  const expected = weightSpecs.reduce((n, w) => n + BYTES_PER[w.dtype]! * w.shape.reduce((a, b) => a * b, 1), 0);
  if (paths.length !== 1)
    throw new InputError(`${file}: expected one weights file, the manifest names ${paths.length}`);
  let data: Buffer;
  try {
    // Checked against the manifest's size before reading: /dev/zero or a huge file is never read.
    data = readRegularFile(paths[0]!, { maxBytes: expected, exactBytes: expected });
  } catch (err) {
    if (err instanceof UnreadableFileError && /bytes, expected|more than/.test(err.reason)) {
      const size = fs.statSync(paths[0]!).size;
      throw new InputError(`${path.join(dir, WEIGHTS_FILE)}: ${size} bytes, but ${MODEL_FILE} describes ${expected}`);
    }
    throw err;
  }
  let offset = 0;
  for (const w of weightSpecs) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    if (w.dtype === 'float32') {
      const values = new Float32Array(data.buffer.slice(data.byteOffset + offset, data.byteOffset + offset + 4 * n));
      if (values.some((v) => !Number.isFinite(v)))
        throw new InputError(`${path.join(dir, WEIGHTS_FILE)}: weight ${w.name} contains NaN or infinite values`);
    }
    offset += 4 * n;
  }
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.length);
  try {
    const tfjs = await loadTfjs();
    const model = await tfjs.loadLayersModel(
      tfjs.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs, weightData }),
    );
    const meta = json.userDefinedMetadata?.regtrain;
    return { model, metadata: meta && typeof meta === 'object' ? (meta as Record<string, unknown>) : {} };
  } catch (err) {
    throw new InputError(`${file}: tfjs cannot load this model (${(err as Error).message.split('\n')[0]})`);
  }
}

/** Reads and parses a JSON file of a run directory (bounded, regular files only): unknown, for the caller's schema. */
export function readJsonFile(dir: string, file: string, maxBytes = MAX_RUN_JSON_BYTES): unknown {
  return parseJsonText(dir, file, maxBytes);
}

function parseJsonText(dir: string, file: string, maxBytes: number): unknown {
  const p = path.join(dir, file);
  let text: string;
  try {
    text = readRegularFile(p, { maxBytes }).toString('utf8');
  } catch (err) {
    if (err instanceof UnreadableFileError && err.code === 'ENOENT')
      throw new InputError(`${p}: missing (not a complete run directory)`);
    throw err;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new InputError(`${p}: not valid JSON (truncated or corrupt)`);
  }
}

/**
 * The one reader of each run-directory JSON file: bounded read, JSON, format version, then the
 * file's zod schema. Every problem is one InputError line naming the file and the dotted path.
 */
export function readRunJson<S extends z.ZodType>(
  dir: string,
  file: string,
  schema: S,
  opts: { version: number; maxBytes?: number },
): z.infer<S> {
  const p = path.join(dir, file);
  const value = parseJsonText(dir, file, opts.maxBytes ?? MAX_RUN_JSON_BYTES);
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new InputError(`${p}: expected a JSON object, got ${describeValue(value)}`);
  const v = (value as { formatVersion?: unknown }).formatVersion;
  if (v !== opts.version) {
    const which = typeof v === 'number' && v > opts.version ? 'a newer' : 'an older or unknown';
    throw new InputError(
      `${p}: run format version ${JSON.stringify(v ?? null)} is from ${which} regtrain (this one reads version ${opts.version})`,
    );
  }
  const parsed = schema.safeParse(value, { error: inRegtrainWords });
  if (!parsed.success) throw new InputError(`${p}: ${issueLine(parsed.error.issues[0]!, value)}`);
  return parsed.data as z.infer<S>;
}

/**
 * metrics.json. Histograms are checked one by one: a damaged histogram is left out with a
 * warning (it only feeds a chart), while any other damage refuses the file.
 */
export function readMetrics(dir: string): { metrics: MetricsFile; warnings: string[] } {
  const lenient = MetricsFileSchema.extend({
    histograms: z.array(z.unknown(), { error: 'expected a list of histograms' }),
  });
  const raw = readRunJson(dir, METRICS_FILE, lenient, { version: RUN_FORMAT_VERSION });
  const warnings: string[] = [];
  const histograms: Histogram[] = [];
  raw.histograms.forEach((h, i) => {
    const parsed = HistogramSchema.safeParse(h, { error: inRegtrainWords });
    if (parsed.success) histograms.push(parsed.data);
    else
      warnings.push(
        `${path.join(dir, METRICS_FILE)}: histograms.${i}.${issueLine(parsed.error.issues[0]!, h)}; that histogram is left out`,
      );
  });
  return { metrics: { ...raw, histograms }, warnings };
}

/**
 * Only the status metrics.json records, or null when there is none or it cannot be read: how far
 * a run got, for `status` and `run-member` (which then resume it, and a resume reads it in full).
 */
export function readRunStatus(dir: string): MetricsFile['status'] | null {
  try {
    const parsed = z
      .object({ status: MetricsFileSchema.shape.status })
      .safeParse(parseJsonText(dir, METRICS_FILE, MAX_RUN_JSON_BYTES));
    return parsed.success ? parsed.data.status : null;
  } catch {
    return null;
  }
}

export function readHistory(dir: string): HistoryFile {
  return readRunJson(dir, HISTORY_JSON, HistoryFileSchema, {
    version: RUN_FORMAT_VERSION,
    maxBytes: MAX_HISTORY_BYTES,
  });
}

export function readOrigin(dir: string): RunOrigin {
  return readRunJson(dir, ORIGIN_FILE, RunOriginSchema, { version: RUN_FORMAT_VERSION });
}

export const STUDY_FILE = 'study.json';
/** study.json's own format version (src/study.ts writes it as STUDY_FORMAT_VERSION). */
export const STUDY_RECORD_VERSION = 1;

/** study.json of a study directory; exit 2 naming the file (or saying the directory holds no study). */
export function readStudy(studyDir: string): StudyFile {
  if (!fs.existsSync(path.join(studyDir, STUDY_FILE)))
    throw new InputError(`${studyDir}: not a study directory (no ${STUDY_FILE}; create one with regtrain plan)`);
  return readRunJson(studyDir, STUDY_FILE, StudyFileSchema, { version: STUDY_RECORD_VERSION });
}

// ---------- the run's origin (for --resume) ----------

export const ORIGIN_FILE = 'run.json';

export type { RunOrigin } from './runformat';
