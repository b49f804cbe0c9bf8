/**
 * The checkpoint a run directory holds while training: `checkpoint-<epoch>.bin` (every float
 * array: weights, optimizer slots, callbacks' arrays) and `checkpoint.json` (the loop's, the
 * optimizer's and every callback's state, the path that trained, and the .bin's hash), its
 * body hashed too, so that neither file can change unnoticed. Its size does not grow with the
 * epochs: history lives in the append-only history log.
 *
 * Both files are written under temporary names and fsynced (the two at once, on libuv's threads:
 * one fsync's wait instead of two in a row), then the .bin renamed into place, then
 * checkpoint.json renamed over the old one, then older .bin files removed: a crash or a power
 * loss at any point leaves the previous checkpoint usable.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { FailureError, InputError } from './errors';
import { readRegularFile, sha256 } from './fsutil';
import { OPTIMIZER_TYPES } from './train/optimizers/registry';

export const CHECKPOINT_FILE = 'checkpoint.json';
/** Bumped when a field changes meaning; a checkpoint of another version is refused, not misread. */
export const CHECKPOINT_FORMAT_VERSION = 2;
/** checkpoint.json holds states, never weights: anything larger is not one of ours. */
const MAX_JSON_BYTES = 16 * 1024 * 1024;
const DATA_FILE = /^checkpoint-\d+\.bin$/;

const finite = z.number().refine(Number.isFinite);
const count = z.number().int().min(0);
const loopStateSchema = z.strictObject({
  epoch: count,
  shuffleRng: z.array(z.number().int()),
  dropoutRng: z.array(z.number().int()),
  augmentationRng: z.array(z.number().int()).optional(),
  stopTraining: z.enum(['epochs', 'early-stopping', 'interrupted', 'non-finite-loss']).nullable(),
});
const arrayEntrySchema = z.strictObject({
  /** "weights", "optimizer" or "callback:<name>". */
  group: z.string().regex(/^(weights|optimizer|callback:[A-Za-z]+)$/),
  name: z.string(),
  offset: count,
  length: count,
});
const bodySchema = z.strictObject({
  epoch: count,
  dataFile: z.string().regex(DATA_FILE),
  dataSha256: z.string().regex(/^[0-9a-f]{64}$/),
  backend: z.string(),
  trainingPath: z.enum(['lean', 'reference']),
  loop: loopStateSchema,
  optimizer: z.strictObject({ type: z.enum(OPTIMIZER_TYPES), iterations: count, learningRateScale: finite }),
  callbacks: z.record(z.string(), z.unknown()),
  arrays: z.array(arrayEntrySchema),
});
const fileSchema = z.strictObject({ formatVersion: z.number(), digest: z.string(), body: z.unknown() });

export type CheckpointBody = z.infer<typeof bodySchema>;
export type LoopStateJson = z.infer<typeof loopStateSchema>;

export interface NamedArray {
  group: string;
  name: string;
  data: Float32Array;
}

export interface Checkpoint {
  body: CheckpointBody;
  arrays: NamedArray[];
}

const digestOf = (body: unknown) => sha256(Buffer.from(JSON.stringify(body)));

export async function writeCheckpoint(
  dir: string,
  body: Omit<CheckpointBody, 'dataFile' | 'dataSha256' | 'arrays'>,
  arrays: NamedArray[],
): Promise<void> {
  const dataFile = `checkpoint-${body.epoch}.bin`;
  let offset = 0;
  const entries = arrays.map((a) => {
    const e = { group: a.group, name: a.name, offset, length: a.data.length };
    offset += a.data.length;
    return e;
  });
  const bin = new Float32Array(offset);
  arrays.forEach((a, i) => bin.set(a.data, entries[i]!.offset));
  const bytes = new Uint8Array(bin.buffer);
  const full: CheckpointBody = { ...body, dataFile, dataSha256: sha256(bytes), arrays: entries };
  const json = JSON.stringify({ formatVersion: CHECKPOINT_FORMAT_VERSION, digest: digestOf(full), body: full }) + '\n';
  const targets = [path.join(dir, dataFile), path.join(dir, CHECKPOINT_FILE)];
  const written = await Promise.allSettled([writeSynced(targets[0]!, bytes), writeSynced(targets[1]!, json)]);
  const failed = written.find((w) => w.status === 'rejected');
  if (failed) {
    for (const w of written) if (w.status === 'fulfilled') fs.rmSync(w.value, { force: true });
    throw failed.reason;
  }
  const temps = written.map((w) => (w as PromiseFulfilledResult<string>).value);
  // The .bin first: checkpoint.json never names a file that is not there.
  for (let i = 0; i < 2; i++) {
    try {
      fs.renameSync(temps[i]!, targets[i]!);
    } catch (err) {
      for (const t of temps.slice(i)) fs.rmSync(t, { force: true });
      throw writeFailure(targets[i]!, err);
    }
  }
  for (const f of fs.readdirSync(dir))
    if (DATA_FILE.test(f) && f !== dataFile) fs.rmSync(path.join(dir, f), { force: true });
}

function writeFailure(file: string, err: unknown): FailureError {
  const e = err as NodeJS.ErrnoException;
  const why =
    e.code === 'ENOSPC'
      ? 'no space left on device'
      : e.code === 'EACCES'
        ? 'permission denied'
        : e.code === 'EROFS'
          ? 'read-only file system'
          : e.message;
  return new FailureError(`${file}: cannot write (${why}); files written before are intact`);
}

/** Writes `data` to a new temporary file beside `file` and fsyncs it; returns the temporary's path. */
async function writeSynced(file: string, data: string | Uint8Array): Promise<string> {
  const tmp = path.join(
    path.dirname(file),
    `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`,
  );
  let handle: fs.promises.FileHandle | undefined;
  try {
    handle = await fs.promises.open(tmp, 'wx', 0o644);
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    return tmp;
  } catch (err) {
    await handle?.close().catch(() => undefined);
    fs.rmSync(tmp, { force: true });
    throw writeFailure(file, err);
  }
}

/** Removes the checkpoint files (a finished run needs none). */
export function removeCheckpoint(dir: string): void {
  for (const f of fs.readdirSync(dir))
    if (f === CHECKPOINT_FILE || DATA_FILE.test(f)) fs.rmSync(path.join(dir, f), { force: true });
}

/** Reads and verifies the checkpoint; null when there is none. Any damage is an InputError naming the file. */
export function readCheckpoint(dir: string): Checkpoint | null {
  const file = path.join(dir, CHECKPOINT_FILE);
  const stat = fs.lstatSync(file, { throwIfNoEntry: false });
  if (!stat) return null;
  if (!stat.isFile() || stat.size > MAX_JSON_BYTES)
    throw new InputError(`${file}: not a checkpoint (not a regular file of at most ${MAX_JSON_BYTES} bytes)`);
  const text = readRegularFile(file, { maxBytes: MAX_JSON_BYTES }).toString('utf8');
  let parsed: z.infer<typeof fileSchema>;
  try {
    parsed = fileSchema.parse(JSON.parse(text));
  } catch {
    throw new InputError(`${file}: damaged (not a checkpoint file); resume from scratch with a new run`);
  }
  if (parsed.formatVersion !== CHECKPOINT_FORMAT_VERSION)
    throw new InputError(
      `${file}: checkpoint format ${parsed.formatVersion}, this regtrain resumes format ${CHECKPOINT_FORMAT_VERSION} (start a new run)`,
    );
  if (digestOf(parsed.body) !== parsed.digest)
    throw new InputError(`${file}: damaged (its content does not match its digest)`);
  const checked = bodySchema.safeParse(parsed.body);
  if (!checked.success)
    throw new InputError(`${file}: damaged (${checked.error.issues[0]!.path.join('.') || 'body'} is invalid)`);
  const body = checked.data;
  if (body.loop.epoch !== body.epoch)
    throw new InputError(`${file}: damaged (epoch ${body.epoch} but the loop state says ${body.loop.epoch})`);
  const binPath = path.join(dir, body.dataFile);
  const binStat = fs.lstatSync(binPath, { throwIfNoEntry: false });
  const expected = body.arrays.reduce((n, a) => Math.max(n, a.offset + a.length), 0) * 4;
  if (!binStat?.isFile()) throw new InputError(`${binPath}: missing (named by ${CHECKPOINT_FILE})`);
  if (binStat.size !== expected)
    throw new InputError(`${binPath}: ${binStat.size} bytes, ${CHECKPOINT_FILE} describes ${expected}`);
  const bytes = readRegularFile(binPath, { maxBytes: expected, exactBytes: expected });
  if (sha256(bytes) !== body.dataSha256)
    throw new InputError(`${binPath}: does not match the hash in ${CHECKPOINT_FILE} (damaged checkpoint)`);
  const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const arrays = body.arrays.map((a) => ({
    group: a.group,
    name: a.name,
    data: all.slice(a.offset, a.offset + a.length),
  }));
  return { body, arrays };
}
