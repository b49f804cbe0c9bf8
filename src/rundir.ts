import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FailureError, InputError } from './errors';
import { checkCreatableDir, sha256, utcStamp, writeFileAtomic } from './fsutil';
import { EpochRecord, HistoryFile, MetricsFile, RUN_FORMAT_VERSION } from './runformat';

export const MODEL_FILE = 'model.json';
export const WEIGHTS_FILE = 'weights.bin';
export const SPEC_FILE = 'spec.yaml';
export const HISTORY_JSON = 'history.json';
export const HISTORY_CSV = 'history.csv';
export const METRICS_FILE = 'metrics.json';
/** Held (O_EXCL) by the process writing a run directory, so a second writer refuses. */
export const LOCK_FILE = '.regtrain.lock';

function isEmptyDir(dir: string): boolean {
  return fs.readdirSync(dir).length === 0;
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
      if (!isEmptyDir(dir)) {
        const busy = fs.existsSync(path.join(dir, LOCK_FILE));
        throw new InputError(`--out ${opts.out}: ${busy ? 'another regtrain run is writing to it' : 'exists and is not empty; regtrain never overwrites a run'}`);
      }
    }
  } else {
    // The schema restricts names to [A-Za-z0-9._-], so a name can never leave runs/.
    const base = path.join(cwd, 'runs', `${opts.name}-${utcStamp()}`);
    dir = base;
    for (let i = 2; fs.existsSync(dir); i++) dir = `${base}-${i}`;
  }
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, LOCK_FILE), `${process.pid}\n`, { flag: 'wx' });
  } catch (err) {
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
    if (e.code === 'EEXIST') throw new InputError(`${dir}: another regtrain run is writing to it`);
    if (e.code === 'EACCES' || e.code === 'EROFS') throw new InputError(`${dir}: cannot create the run directory (${e.code === 'EROFS' ? 'read-only file system' : 'permission denied'})`);
    throw new FailureError(`${dir}: cannot create the run directory (${e.message})`);
  }
  return dir;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Claims an existing run directory (for --resume). A lock left by a process that no longer
 * exists (killed with SIGKILL, machine crash) is taken over.
 */
export function claimRunDir(dir: string): void {
  const lock = path.join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(lock, `${process.pid}\n`, { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new FailureError(`${lock}: cannot create (${(err as Error).message})`);
      const pid = Number.parseInt(fs.readFileSync(lock, 'utf8'), 10);
      if (Number.isInteger(pid) && pid > 0 && pidAlive(pid)) throw new InputError(`${dir}: another regtrain run (pid ${pid}) is writing to it`);
      fs.rmSync(lock, { force: true });
    }
  }
  throw new InputError(`${dir}: another regtrain run is writing to it`);
}

export function releaseRunDir(dir: string): void {
  fs.rmSync(path.join(dir, LOCK_FILE), { force: true });
}

/** Writes a file of the run atomically; disk-full and permission problems become one clear line. */
export function writeRunFile(dir: string, file: string, data: string | Uint8Array): void {
  try {
    writeFileAtomic(path.join(dir, file), data);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOSPC' ? 'no space left on device' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EROFS' ? 'read-only file system' : e.message;
    throw new FailureError(`${path.join(dir, file)}: cannot write (${why}); files written before are intact`);
  }
}

export function writeJson(dir: string, file: string, value: unknown): void {
  writeRunFile(dir, file, JSON.stringify(value, null, 2) + '\n');
}

const CSV_COLUMNS = ['epoch', 'loss', 'accuracy', 'val_loss', 'val_accuracy', 'data_loss', 'penalty', 'seconds'] as const;

export function writeHistory(dir: string, epochs: EpochRecord[]): void {
  const file: HistoryFile = { formatVersion: RUN_FORMAT_VERSION, epochs };
  writeJson(dir, HISTORY_JSON, file);
  const rows = epochs.map((e) => CSV_COLUMNS.map((c) => (e[c] === null ? '' : String(e[c]))).join(','));
  writeRunFile(dir, HISTORY_CSV, [CSV_COLUMNS.join(','), ...rows].join('\n') + '\n');
}

export function writeMetrics(dir: string, metrics: MetricsFile): void {
  writeJson(dir, METRICS_FILE, metrics);
}

// ---------- the model, in tfjs Layers format ----------

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
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weightData = tf.io.concatenateArrayBuffers(artifacts.weightData ?? new ArrayBuffer(0));
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
  if (typeof p !== 'string' || p === '' || path.isAbsolute(p) || p.split(/[\\/]/).some((seg) => seg === '..') || /[\\/]/.test(p)) {
    throw new InputError(`${path.join(dir, MODEL_FILE)}: weights path ${JSON.stringify(p)} points outside the run directory`);
  }
  const file = path.join(dir, p);
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch {
    throw new InputError(`${file}: missing (named by ${MODEL_FILE})`);
  }
  if (path.dirname(real) !== realDir) throw new InputError(`${file}: is a link that leads outside the run directory`);
  if (!fs.statSync(real).isFile()) throw new InputError(`${file}: not a regular file`);
  return real;
}

/**
 * Loads a saved model after checking model.json against what is on disk: paths stay
 * inside the directory, byte counts match the manifest, and every weight is finite.
 */
export async function loadModel(dir: string): Promise<{ model: tf.LayersModel; metadata: Record<string, unknown> }> {
  const file = path.join(dir, MODEL_FILE);
  let json: ModelJson;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as ModelJson;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new InputError(`${file}: ${e.code === 'ENOENT' ? 'missing (not a complete run directory)' : `not valid JSON (${e.message})`}`);
  }
  if (json === null || typeof json !== 'object' || typeof json.modelTopology !== 'object' || json.modelTopology === null || !Array.isArray(json.weightsManifest)) {
    throw new InputError(`${file}: not a tfjs Layers model (expected modelTopology and weightsManifest)`);
  }
  const realDir = fs.realpathSync(dir);
  const weightSpecs: tf.io.WeightsManifestEntry[] = [];
  const chunks: Buffer[] = [];
  for (const group of json.weightsManifest) {
    if (!group || !Array.isArray(group.paths) || !Array.isArray(group.weights)) throw new InputError(`${file}: malformed weightsManifest`);
    for (const p of group.paths) chunks.push(fs.readFileSync(weightFile(dir, realDir, p)));
    weightSpecs.push(...group.weights);
  }
  let expected = 0;
  for (const w of weightSpecs) {
    const bytes = BYTES_PER[w.dtype];
    if (!bytes || w.quantization || !Array.isArray(w.shape) || w.shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new InputError(`${file}: weight ${JSON.stringify(w.name)} has an unsupported dtype, shape or quantization`);
    }
    expected += bytes * w.shape.reduce((a, b) => a * b, 1);
  }
  const data = Buffer.concat(chunks);
  if (data.length !== expected) {
    throw new InputError(`${path.join(dir, WEIGHTS_FILE)}: ${data.length} bytes, but ${MODEL_FILE} describes ${expected}`);
  }
  let offset = 0;
  for (const w of weightSpecs) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    if (w.dtype === 'float32') {
      const values = new Float32Array(data.buffer.slice(data.byteOffset + offset, data.byteOffset + offset + 4 * n));
      if (values.some((v) => !Number.isFinite(v))) throw new InputError(`${path.join(dir, WEIGHTS_FILE)}: weight ${w.name} contains NaN or infinite values`);
    }
    offset += 4 * n;
  }
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.length);
  try {
    const model = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs, weightData }));
    const meta = json.userDefinedMetadata?.regtrain;
    return { model, metadata: meta && typeof meta === 'object' ? (meta as Record<string, unknown>) : {} };
  } catch (err) {
    throw new InputError(`${file}: tfjs cannot load this model (${(err as Error).message.split('\n')[0]})`);
  }
}

export function readJsonFile<T>(dir: string, file: string): T {
  const p = path.join(dir, file);
  try {
    return JSON.parse(fs.readFileSync(p, 'utf8')) as T;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new InputError(`${p}: ${e.code === 'ENOENT' ? 'missing (not a complete run directory)' : `unreadable (${e.message})`}`);
  }
}

// ---------- checkpoints and the run's origin (for --resume) ----------

export const CHECKPOINT_FILE = 'checkpoint.json';
export const ORIGIN_FILE = 'run.json';

/** Where a run came from, so `--resume` can tell whether the spec file changed since. */
export interface RunOrigin {
  formatVersion: number;
  specFile: string | null;
  sets: string[];
  /** SHA-256 of the resolved spec.yaml the run trains with. */
  specSha256: string;
}

export interface CheckpointTensor {
  group: 'weights' | 'optimizer' | 'best';
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  data: Float32Array | Int32Array;
}

interface CheckpointJson<S> {
  formatVersion: number;
  epoch: number;
  dataFile: string;
  sha256: string;
  tensors: (Omit<CheckpointTensor, 'data'> & { offset: number; bytes: number })[];
  state: S;
}

/**
 * Writes a checkpoint: the tensors into `checkpoint-<epoch>.bin`, then checkpoint.json
 * naming that file and its hash, then removes older .bin files. A crash at any point
 * leaves the previous checkpoint usable.
 */
export function writeCheckpoint<S>(dir: string, epoch: number, state: S, tensors: CheckpointTensor[]): void {
  const dataFile = `checkpoint-${epoch}.bin`;
  let offset = 0;
  const entries = tensors.map((t) => {
    const e = { group: t.group, name: t.name, shape: t.shape, dtype: t.dtype, offset, bytes: t.data.byteLength };
    offset += t.data.byteLength;
    return e;
  });
  const bin = new Uint8Array(offset);
  tensors.forEach((t, i) => bin.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), entries[i]!.offset));
  writeRunFile(dir, dataFile, bin);
  const json: CheckpointJson<S> = { formatVersion: RUN_FORMAT_VERSION, epoch, dataFile, sha256: sha256(bin), tensors: entries, state };
  writeJson(dir, CHECKPOINT_FILE, json);
  for (const f of fs.readdirSync(dir)) if (/^checkpoint-\d+\.bin$/.test(f) && f !== dataFile) fs.rmSync(path.join(dir, f), { force: true });
}

export function readCheckpoint<S>(dir: string): { epoch: number; state: S; tensors: CheckpointTensor[] } | null {
  const file = path.join(dir, CHECKPOINT_FILE);
  if (!fs.existsSync(file)) return null;
  const json = readJsonFile<CheckpointJson<S>>(dir, CHECKPOINT_FILE);
  if (json.formatVersion !== RUN_FORMAT_VERSION) throw new InputError(`${file}: format version ${json.formatVersion}, this regtrain reads ${RUN_FORMAT_VERSION}`);
  if (typeof json.dataFile !== 'string' || !/^checkpoint-\d+\.bin$/.test(json.dataFile)) throw new InputError(`${file}: names an invalid data file`);
  let bin: Buffer;
  try {
    bin = fs.readFileSync(path.join(dir, json.dataFile));
  } catch {
    throw new InputError(`${path.join(dir, json.dataFile)}: missing (named by ${CHECKPOINT_FILE})`);
  }
  if (sha256(bin) !== json.sha256) throw new InputError(`${path.join(dir, json.dataFile)}: does not match the hash in ${CHECKPOINT_FILE} (damaged checkpoint)`);
  const tensors = json.tensors.map((e) => {
    if (e.offset + e.bytes > bin.length) throw new InputError(`${file}: tensor ${e.name} lies outside ${json.dataFile}`);
    const buf = bin.buffer.slice(bin.byteOffset + e.offset, bin.byteOffset + e.offset + e.bytes);
    return { group: e.group, name: e.name, shape: e.shape, dtype: e.dtype, data: e.dtype === 'int32' ? new Int32Array(buf) : new Float32Array(buf) };
  });
  return { epoch: json.epoch, state: json.state, tensors };
}
