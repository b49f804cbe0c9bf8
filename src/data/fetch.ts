/**
 * Getting the dataset's files into the local cache, verified.
 *
 * Sources are tried in order until one yields a file whose DECOMPRESSED content has the
 * manifest's SHA-256: the cache itself, then local directories (Debian's package dir), then
 * HTTP(S) mirrors. The cache holds decompressed IDX files, written via temp + rename, plus a
 * `sources.json` sidecar recording where each file came from, and a `verified.json` stamp so that a
 * run does not hash again a file that has not changed since it was hashed (`data verify` always does).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import * as zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { z } from 'zod';
import { FailureError, InputError, InterruptedError, errorMessage } from '../errors';
import { packageRoot, readRegularFile, sha256, writeFileAtomic, UnreadableFileError } from '../fsutil';
import { FileContent } from './file-content';

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_RETRIES = 3;
export const DEFAULT_BACKOFF_MS = 1_000;
export const MAX_REDIRECTS = 5;
export const SIDECAR_FILE = 'sources.json';
export const STAMP_FILE = 'verified.json';
/**
 * A file is stamped only when its last change is at least this old at the end of its hash: a change in the
 * same clock tick as the one stamped would leave size, mtime and ctime as they were (git's "racy" entries).
 */
export const STAMP_SETTLE_MS = 2_000;
export const GZ_SUFFIX = '.gz';
/** The manifest and the sources.json sidecar are a few KiB; anything past this is not one. */
const MAX_SMALL_JSON_BYTES = 1024 * 1024;
/** Node's timers hold at most 2^31 − 1 ms (~24.8 days); a longer one fires after 1 ms. */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;
/** Source recorded for a verified cached file whose origin the sidecar does not know. */
export const UNKNOWN_ORIGIN = 'cache (origin unknown)';
/** Every gzip stream starts with these two bytes; used instead of trusting file names. */
const GZIP_MAGIC = [0x1f, 0x8b] as const;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Transient HTTP statuses worth retrying; other 4xx answers will not change. */
const RETRY_STATUSES = new Set([408, 425, 429]);
/** Write errors that no other source can fix: the cache itself cannot take the file. */
const CACHE_WRITE_CODES = new Set(['ENOSPC', 'EROFS', 'EACCES', 'EPERM', 'EDQUOT']);
/** Connection errors that say the host will not answer this run at all. */
const HOST_DEAD_CODES = new Set(['ENOTFOUND', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_FAIL']);

const FileSpecSchema = z.object({
  name: z.string().min(1),
  file: z.string().min(1),
  bytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  magic: z.number().int(),
  dims: z.array(z.number().int().nonnegative()).min(1),
});
const ManifestSchema = z.object({
  name: z.string().min(1),
  description: z.string().optional(),
  files: z.array(FileSpecSchema).min(1),
  mirrors: z.array(z.string()),
  localDirs: z.array(z.string()),
  classNames: z.array(z.string()).min(1),
});
export type FileSpec = z.infer<typeof FileSpecSchema>;
export type Manifest = z.infer<typeof ManifestSchema>;

export function defaultManifestPath(): string {
  return path.join(packageRoot(), 'data', 'fashion-mnist.json');
}

/** Reads and checks a dataset manifest; the packaged Fashion-MNIST one by default. */
export function loadManifest(file: string = defaultManifestPath()): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(readRegularFile(file, { maxBytes: MAX_SMALL_JSON_BYTES }).toString('utf8'));
  } catch (err) {
    throw new FailureError(`dataset manifest ${file}: ${errorMessage(err)}`);
  }
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new FailureError(
      `dataset manifest ${file}: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`,
    );
  }
  return parsed.data;
}

/** --data-dir, else $REGTRAIN_DATA_DIR, else the XDG cache dir (~/.cache when unset). */
export function resolveDataDir(dataDir?: string, env: NodeJS.ProcessEnv = process.env): string {
  if (dataDir) return path.resolve(dataDir);
  if (env.REGTRAIN_DATA_DIR) return path.resolve(env.REGTRAIN_DATA_DIR);
  // The XDG spec says to ignore a relative XDG_CACHE_HOME.
  const xdg =
    env.XDG_CACHE_HOME && path.isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : path.join(os.homedir(), '.cache');
  return path.join(xdg, 'regtrain', 'datasets', 'fashion-mnist');
}

// ---------------------------------------------------------------------------------------
// The sidecar: where each cached file came from and the hash it was verified against.

const SidecarEntrySchema = z.object({
  file: z.string(),
  sha256: z.string(),
  bytes: z.number(),
  source: z.string(),
  fetchedAt: z.string(),
});
const SidecarSchema = z.object({ dataset: z.string(), files: z.record(z.string(), SidecarEntrySchema) });
export type SidecarEntry = z.infer<typeof SidecarEntrySchema>;
export type Sidecar = z.infer<typeof SidecarSchema>;

/** The cache's sources.json, or null when missing or unreadable (it is informational only). */
export function readSidecar(dataDir: string): Sidecar | null {
  try {
    const parsed = SidecarSchema.safeParse(
      JSON.parse(
        readRegularFile(path.join(dataDir, SIDECAR_FILE), { maxBytes: MAX_SMALL_JSON_BYTES }).toString('utf8'),
      ),
    );
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------
// What a check of the cache finds.

export type CacheState = 'ok' | 'mismatch' | 'missing';
export interface CacheStatus {
  name: string;
  file: string;
  path: string;
  expected: string;
  /** SHA-256 of the cached file, null when missing. */
  actual: string | null;
  state: CacheState;
  /** Where the file came from, per the sidecar (null when unknown). */
  source: string | null;
  /** The verified content, only when state is 'ok'. */
  data: FileContent | null;
}

/** A cache or source file, bounded and regular (never /dev/zero or a FIFO); null when missing. */
function readIfExists(file: string, maxBytes: number): Buffer | null {
  try {
    return readRegularFile(file, { maxBytes });
  } catch (err) {
    if (err instanceof UnreadableFileError && err.code === 'ENOENT') return null;
    throw err;
  }
}

/** Whether `file` opens for reading now (else the full read below reports why, as for any cached file). */
function readable(file: string): boolean {
  try {
    fs.closeSync(fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY));
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------
// The stamp: which cached files were hashed, as what file on disk. A run trusts an entry only
// while the file is the very one hashed (same device, inode, size, mtime and ctime, to the ns)
// and the manifest still expects the hash it had; anything else is hashed again.

const StampEntrySchema = z.object({
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
  dev: z.string().regex(/^\d+$/),
  ino: z.string().regex(/^\d+$/),
  mtimeNs: z.string().regex(/^\d+$/),
  ctimeNs: z.string().regex(/^\d+$/),
});
const StampSchema = z.object({ formatVersion: z.literal(1), files: z.record(z.string(), StampEntrySchema) });
type StampEntry = z.infer<typeof StampEntrySchema>;
type Stamp = z.infer<typeof StampSchema>;

/** The cache's verified.json, or null when missing, unreadable or not one (then every file is hashed). */
function readStamp(dataDir: string): Stamp | null {
  try {
    const parsed = StampSchema.safeParse(
      JSON.parse(readRegularFile(path.join(dataDir, STAMP_FILE), { maxBytes: MAX_SMALL_JSON_BYTES }).toString('utf8')),
    );
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

function stampOf(st: fs.BigIntStats, sha: string): StampEntry {
  return {
    sha256: sha,
    bytes: Number(st.size),
    dev: String(st.dev),
    ino: String(st.ino),
    mtimeNs: String(st.mtimeNs),
    ctimeNs: String(st.ctimeNs),
  };
}

function sameStamp(a: StampEntry, b: StampEntry): boolean {
  return (
    a.sha256 === b.sha256 &&
    a.bytes === b.bytes &&
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.mtimeNs === b.mtimeNs &&
    a.ctimeNs === b.ctimeNs
  );
}

/** The stamp is a shortcut, never a requirement: a cache that cannot take it (read-only, full) is hashed each time. */
function writeStamp(dataDir: string, stamp: Stamp): void {
  try {
    writeFileAtomic(path.join(dataDir, STAMP_FILE), JSON.stringify(stamp, null, 2) + '\n');
  } catch {
    // nothing lost: the next load hashes again
  }
}

// ---------------------------------------------------------------------------------------
// Verifying the cache.

export interface VerifyOptions {
  /** Skip the hash of a file the stamp shows unchanged since it was hashed (runs); `data verify` leaves it off. */
  trustStamp?: boolean;
  /** For tests: how old a file's last change must be for it to be stamped (default STAMP_SETTLE_MS). */
  settleMs?: number;
}

/**
 * Checks every cached file against the manifest: hashes it, or with `trustStamp` accepts it when
 * the stamp shows it unchanged since a hash matched. Records what it hashed in the stamp. Never fetches.
 */
export function verifyCache(
  dataDir: string,
  manifest: Manifest = loadManifest(),
  opts: VerifyOptions = {},
): CacheStatus[] {
  const sidecar = readSidecar(dataDir);
  const stamp = readStamp(dataDir);
  const stamped: Record<string, StampEntry> = {};
  const statuses = manifest.files.map((spec): CacheStatus => {
    const file = path.join(dataDir, spec.file);
    const status = (actual: string | null, state: CacheState, data: FileContent | null): CacheStatus => {
      const entry = sidecar?.files[spec.name];
      return {
        name: spec.name,
        file: spec.file,
        path: file,
        expected: spec.sha256,
        actual,
        state,
        source: entry && entry.sha256 === actual ? entry.source : null,
        data,
      };
    };
    // Before the read: a change during or after it gives the file another ctime than the one stamped.
    let st: fs.BigIntStats | undefined;
    try {
      st = fs.statSync(file, { bigint: true, throwIfNoEntry: false });
    } catch {
      // An unreadable directory: the read below says so, as it always has.
    }
    const before = stamp?.files[spec.file];
    if (
      opts.trustStamp &&
      st?.isFile() &&
      Number(st.size) === spec.bytes &&
      before &&
      sameStamp(before, stampOf(st, spec.sha256)) &&
      readable(file)
    ) {
      // Unchanged since its hash matched: not read here; the dataset reads the images it uses (file-content.ts).
      stamped[spec.file] = before;
      return status(spec.sha256, 'ok', FileContent.onDisk(file, before));
    }
    let data: Buffer | null;
    try {
      data = readIfExists(file, spec.bytes);
    } catch (err) {
      // A directory, device, FIFO or unreadable file where a cached file belongs: the data dir is unusable as given.
      // A regular file of the wrong size is simply not the verified file: re-fetched like a changed one.
      if (
        !(err instanceof UnreadableFileError) ||
        err.code !== null ||
        /^(a directory|a FIFO|a char|a block|a socket)/.test(err.reason)
      ) {
        const why = err instanceof UnreadableFileError ? (err.code ?? err.reason) : errorMessage(err);
        throw new InputError(
          `data dir ${dataDir}: cannot read ${spec.file} (${why}); remove it or choose another --data-dir`,
        );
      }
      return status(`(${fs.statSync(file).size} bytes, expected ${spec.bytes})`, 'mismatch', null);
    }
    const now = st && data ? stampOf(st, spec.sha256) : null;
    const actual = data ? sha256(data) : null;
    const settled =
      st && Date.now() - Math.max(Number(st.mtimeMs), Number(st.ctimeMs)) >= (opts.settleMs ?? STAMP_SETTLE_MS);
    if (now && actual === spec.sha256 && settled) stamped[spec.file] = now;
    const state: CacheState = actual === null ? 'missing' : actual === spec.sha256 ? 'ok' : 'mismatch';
    return status(actual, state, state === 'ok' && data ? FileContent.inMemory(file, data) : null);
  });
  const next: Stamp = { formatVersion: 1, files: stamped };
  if (JSON.stringify(next) !== JSON.stringify(stamp ?? { formatVersion: 1, files: {} })) writeStamp(dataDir, next);
  return statuses;
}

// ---------------------------------------------------------------------------------------
// Fetching.

export interface FetchProgress {
  /** Logical name (trainImages, ...). */
  name: string;
  url: string;
  bytes: number;
  /** From Content-Length; null when the server does not say. */
  total: number | null;
  /** Bytes per second since the download started. */
  rate: number;
  done: boolean;
}

export interface FetchOptions {
  dataDir?: string;
  /** URL prefixes or directories; replaces the manifest's local dirs and mirrors. */
  sources?: string[];
  /** Skip HTTP(S) sources. */
  offline?: boolean;
  /** Hash every cached file, whatever the stamp says (`data fetch`); a run trusts the stamp. */
  rehash?: boolean;
  manifest?: Manifest;
  onProgress?: (e: FetchProgress) => void;
  /** Idle timeout: a download with no bytes for this long is abandoned. */
  timeoutMs?: number;
  /** Extra attempts after a transient failure, with exponential backoff. */
  retries?: number;
  backoffMs?: number;
}

export interface FetchedFile {
  name: string;
  file: string;
  path: string;
  sha256: string;
  bytes: number;
  /** The directory or URL the verified content came from. */
  source: string;
  fromCache: boolean;
  data: FileContent;
}

export interface FetchResult {
  dataDir: string;
  files: FetchedFile[];
}

interface Source {
  /** As given (URL prefix or absolute directory). */
  label: string;
  kind: 'url' | 'dir';
}

/** A file not present at a source (404, ENOENT): not worth reporting per name. */
class NotFound extends Error {}
/** A download failure; `retry` when trying again may help, `hostDead` when the host is unreachable. */
class DownloadError extends Error {
  constructor(
    message: string,
    readonly retry: boolean,
    readonly hostDead = false,
  ) {
    super(message);
  }
}

function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

function parseSources(given: string[] | undefined, manifest: Manifest): { sources: Source[]; notes: string[] } {
  const notes: string[] = [];
  if (given === undefined) {
    const sources: Source[] = [];
    for (const dir of manifest.localDirs) {
      if (fs.existsSync(dir)) sources.push({ label: path.resolve(dir), kind: 'dir' });
      else notes.push(`${dir}: not present`);
    }
    for (const url of manifest.mirrors) sources.push({ label: url, kind: 'url' });
    return { sources, notes };
  }
  const sources = given.map((s): Source => {
    if (isUrl(s)) {
      try {
        new URL(s);
      } catch {
        throw new InputError(`source ${s}: not a valid URL`);
      }
      return { label: s, kind: 'url' };
    }
    let dir: string;
    try {
      dir = s.startsWith('file:') ? fileURLToPath(s) : path.resolve(s);
    } catch (err) {
      throw new InputError(`source ${s}: not a valid file: URL (${errorMessage(err).split('\n')[0]})`);
    }
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory())
      throw new InputError(`source ${s}: not an http(s) URL or an existing directory`);
    return { label: dir, kind: 'dir' };
  });
  return { sources, notes };
}

function joinUrl(prefix: string, name: string): string {
  return prefix.endsWith('/') ? prefix + name : `${prefix}/${name}`;
}

const gunzip = promisify(zlib.gunzip);

/** Decompresses gzip content (detected by its magic bytes, not by name); plain IDX passes through. */
async function decode(raw: Buffer, maxBytes: number): Promise<Buffer> {
  if (raw.length < 2 || raw[0] !== GZIP_MAGIC[0] || raw[1] !== GZIP_MAGIC[1]) return raw;
  try {
    // Capped at the manifest's size: a gzip bomb stops there instead of filling memory.
    return await gunzip(raw, { maxOutputLength: maxBytes + 1 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError)
      throw new Error(`decompresses to more than the ${maxBytes} bytes the manifest gives`);
    throw new Error(`corrupt or truncated gzip (${errorMessage(err)})`);
  }
}

/** The most a source may send for a file: its size, plus gzip's worst-case overhead on incompressible data. */
function maxRawBytes(spec: FileSpec): number {
  return spec.bytes + Math.ceil(spec.bytes / 1000) + 1024;
}

function looksLikeHtml(data: Buffer): boolean {
  return /^\s*<(!doctype|html|head|body)/i.test(data.subarray(0, 256).toString('latin1'));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface DownloadSettings {
  /** Aborted by SIGINT/SIGTERM: the download stops and its partial file is removed. */
  abort: AbortSignal;
  timeoutMs: number;
  retries: number;
  backoffMs: number;
  onProgress?: (e: FetchProgress) => void;
  /** The most this file may be; a body past it (with or without Content-Length) is cut off. */
  maxBytes?: number;
}

/**
 * A connection-level failure, judged by its code: the message text differs between Node versions
 * (a reset before the answer reads "socket hang up" or "read ECONNRESET").
 */
function connectionError(err: NodeJS.ErrnoException): DownloadError {
  const code = err.code ?? '';
  if (code === 'ECONNRESET') return new DownloadError('connection closed before a response (ECONNRESET)', true);
  // A name that does not resolve will not resolve on retry either.
  return new DownloadError(err.message, code !== 'ENOTFOUND', HOST_DEAD_CODES.has(code));
}

/**
 * One GET of `url` streamed into `tmp`, following up to MAX_REDIRECTS redirects. An idle
 * timer (reset on every chunk) catches servers that stall before or during the body.
 */
function downloadOnce(url: string, tmp: string, name: string, s: DownloadSettings): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    let req: http.ClientRequest | undefined;
    let out: fs.WriteStream | undefined;
    /** Set while a 200 body streams in: the short-read error, or undefined once the body is complete. */
    let bodyCut: (() => DownloadError | undefined) | undefined;
    const onAbort = (): void =>
      fail(
        new InterruptedError(
          `interrupted (${String(s.abort.reason)}): download of ${name} stopped; no partial file is kept`,
        ),
      );
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      s.abort.removeEventListener('abort', onAbort);
      clearTimeout(timer);
      req?.destroy();
      // Reject only once the temp file is closed: a stream destroyed before its open() finished
      // would otherwise create the .part file after the caller has removed it.
      if (out && !out.closed) {
        out.once('close', () => reject(err));
        out.destroy();
      } else reject(err);
    };
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(
        () => fail(new DownloadError(`stalled: no data for ${s.timeoutMs / 1000}s`, true)),
        s.timeoutMs,
      );
    };
    const get = (u: string, redirectsLeft: number): void => {
      arm();
      const mod = u.startsWith('https:') ? https : http;
      req = mod.get(u, { headers: { 'user-agent': 'regtrain', 'accept-encoding': 'identity' } }, (res) => {
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if (REDIRECT_STATUSES.has(status) && location) {
          res.resume();
          if (redirectsLeft === 0) return fail(new DownloadError(`more than ${MAX_REDIRECTS} redirects`, false));
          return get(new URL(location, u).href, redirectsLeft - 1);
        }
        if (status === 404 || status === 410) {
          res.resume();
          return fail(new NotFound(`HTTP ${status}`));
        }
        if (status !== 200) {
          res.resume();
          return fail(new DownloadError(`HTTP ${status}`, status >= 500 || RETRY_STATUSES.has(status)));
        }
        const type = res.headers['content-type'] ?? '';
        if (/text\/html/i.test(type)) {
          res.resume();
          return fail(new DownloadError(`got an HTML page (Content-Type: ${type}), not a data file`, false));
        }
        const lengthHeader = res.headers['content-length'];
        const total = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
        if (total !== null && s.maxBytes !== undefined && total > s.maxBytes) {
          res.resume();
          return fail(
            new DownloadError(`Content-Length ${total} is more than the ${s.maxBytes} bytes this file may have`, false),
          );
        }
        const started = Date.now();
        let bytes = 0;
        const progress = (done: boolean): void => {
          const secs = Math.max((Date.now() - started) / 1000, 1e-3);
          s.onProgress?.({ name, url: u, bytes, total, rate: bytes / secs, done });
        };
        const short = (): DownloadError =>
          new DownloadError(`connection closed after ${bytes} of ${total ?? '?'} bytes`, true);
        bodyCut = () => (res.complete ? undefined : short());
        out = fs.createWriteStream(tmp, { flags: 'wx' });
        out.on('error', (err) => fail(err));
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (s.maxBytes !== undefined && bytes > s.maxBytes)
            return fail(new DownloadError(`sent more than the ${s.maxBytes} bytes this file may have`, false));
          arm();
          progress(false);
        });
        res.on('error', () => fail(short()));
        res.on('close', () => {
          if (!res.complete) fail(short());
        });
        out.on('finish', () => {
          if (settled) return;
          if (total !== null && bytes !== total)
            return fail(new DownloadError(`got ${bytes} bytes, Content-Length said ${total}`, true));
          settled = true;
          s.abort.removeEventListener('abort', onAbort);
          clearTimeout(timer);
          progress(true);
          resolve();
        });
        res.pipe(out);
      });
      // A reset in the middle of the body reaches the request first on Node 24 and only the response on Node 20/22:
      // both report the same short read.
      req.on('error', (err: NodeJS.ErrnoException) => fail(bodyCut?.() ?? connectionError(err)));
    };
    if (s.abort.aborted) return onAbort();
    s.abort.addEventListener('abort', onAbort, { once: true });
    get(url, MAX_REDIRECTS);
  });
}

/** Downloads with retries and exponential backoff; returns the raw bytes (the temp file is removed). */
async function download(url: string, dataDir: string, name: string, s: DownloadSettings): Promise<Buffer> {
  let last: DownloadError | undefined;
  for (let attempt = 0; attempt <= s.retries; attempt++) {
    if (attempt > 0) await sleep(s.backoffMs * 2 ** (attempt - 1));
    // Unique per process and attempt so concurrent fetches into one cache never share a temp file.
    const tmp = path.join(
      dataDir,
      `.${path.basename(new URL(url).pathname)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.part`,
    );
    try {
      await downloadOnce(url, tmp, name, s);
      return readRegularFile(tmp, { maxBytes: s.maxBytes ?? Number.MAX_SAFE_INTEGER });
    } catch (err) {
      if (!(err instanceof DownloadError) || !err.retry) throw err;
      last = err;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  const tries = s.retries + 1;
  throw new DownloadError(
    `${last?.message ?? 'failed'} (${tries} attempt${tries === 1 ? '' : 's'})`,
    false,
    last?.hostDead ?? false,
  );
}

function short(hash: string): string {
  return hash.slice(0, 12);
}

/**
 * Makes sure every manifest file is in the cache, verified, and returns the verified bytes.
 * Throws FailureError naming the file, the expected hash and every source tried when no
 * source gives a verified copy.
 */
export async function fetchDataset(opts: FetchOptions = {}): Promise<FetchResult> {
  const manifest = opts.manifest ?? loadManifest();
  const dataDir = resolveDataDir(opts.dataDir);
  const { sources, notes } = parseSources(opts.sources, manifest);
  try {
    fs.mkdirSync(dataDir, { recursive: true });
  } catch (err) {
    throw new InputError(`data dir ${dataDir}: cannot create it (${errorMessage(err)})`);
  }
  // While fetching, SIGINT/SIGTERM abort the download in progress (its .part file is removed) instead of
  // killing the process with the file half-written; the InterruptedError exits 130 at the CLI boundary.
  const abort = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => abort.abort(sig);
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const sig of signals) process.on(sig, onSignal);
  try {
    return await fetchInto(dataDir, manifest, sources, notes, opts, abort.signal);
  } finally {
    for (const sig of signals) process.off(sig, onSignal);
  }
}

async function fetchInto(
  dataDir: string,
  manifest: Manifest,
  sources: Source[],
  notes: string[],
  opts: FetchOptions,
  abort: AbortSignal,
): Promise<FetchResult> {
  const settings: DownloadSettings = {
    abort,
    timeoutMs: Math.min(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS),
    retries: opts.retries ?? DEFAULT_RETRIES,
    backoffMs: opts.backoffMs ?? DEFAULT_BACKOFF_MS,
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  };
  // Hosts that failed at the connection level are skipped for the rest of this run.
  const deadSources = new Map<string, string>();
  const cached = new Map(verifyCache(dataDir, manifest, { trustStamp: !opts.rehash }).map((c) => [c.name, c]));
  const files: FetchedFile[] = [];
  let sidecarChanged = false;

  for (const spec of manifest.files) {
    const target = path.join(dataDir, spec.file);
    const c = cached.get(spec.name);
    if (c?.state === 'ok' && c.data) {
      files.push({
        name: spec.name,
        file: spec.file,
        path: target,
        sha256: spec.sha256,
        bytes: c.data.length,
        source: c.source ?? UNKNOWN_ORIGIN,
        fromCache: true,
        data: c.data,
      });
      if (c.source === null) sidecarChanged = true;
      continue;
    }
    const tried: string[] = [...notes];
    if (c?.state === 'mismatch')
      tried.push(`cache ${target}: sha256 ${short(c.actual ?? '')}… (changed since verified; re-fetching)`);

    let got: FetchedFile | null = null;
    for (const src of sources) {
      if (src.kind === 'url' && opts.offline) {
        tried.push(`${src.label}: skipped (offline)`);
        continue;
      }
      const dead = deadSources.get(src.label);
      if (dead) {
        tried.push(`${src.label}: skipped (${dead})`);
        continue;
      }
      let missing = 0;
      const names = [spec.file + GZ_SUFFIX, spec.file];
      for (const n of names) {
        const where = src.kind === 'url' ? joinUrl(src.label, n) : path.join(src.label, n);
        try {
          let raw: Buffer | null;
          if (src.kind === 'url')
            raw = await download(where, dataDir, spec.name, { ...settings, maxBytes: maxRawBytes(spec) });
          else raw = readIfExists(where, maxRawBytes(spec));
          if (raw === null) throw new NotFound('not found');
          const data = await decode(raw, spec.bytes);
          if (data.length > spec.bytes)
            throw new Error(`${data.length} bytes, more than the ${spec.bytes} the manifest gives`);
          const actual = sha256(data);
          if (actual !== spec.sha256) {
            const hint = looksLikeHtml(data)
              ? ', looks like an HTML page'
              : data.length !== spec.bytes
                ? `, ${data.length} bytes, expected ${spec.bytes}`
                : '';
            throw new Error(`sha256 mismatch: got ${actual}${hint}`);
          }
          writeFileAtomic(target, data);
          got = {
            name: spec.name,
            file: spec.file,
            path: target,
            sha256: actual,
            bytes: data.length,
            source: src.label,
            fromCache: false,
            data: FileContent.inMemory(target, data),
          };
          break;
        } catch (err) {
          if (err instanceof NotFound) {
            missing++;
            continue;
          }
          if (err instanceof InputError || err instanceof FailureError || err instanceof InterruptedError) throw err;
          const code = (err as NodeJS.ErrnoException).code;
          if (code && CACHE_WRITE_CODES.has(code))
            throw new FailureError(
              `data dir ${dataDir}: cannot write ${spec.file} (${code === 'ENOSPC' ? 'no space left on device' : code === 'EROFS' ? 'read-only file system' : 'permission denied'}); nothing partial is kept`,
            );
          tried.push(`${where}: ${errorMessage(err)}`);
          if (err instanceof DownloadError && err.hostDead) {
            deadSources.set(src.label, err.message);
            break;
          }
        }
      }
      if (got) break;
      if (missing === names.length) tried.push(`${src.label}: not found (${names.join(', ')})`);
    }
    if (!got) {
      const list = tried.length > 0 ? tried.map((t) => `  ${t}`).join('\n') : '  (no sources)';
      throw new FailureError(
        `no verified copy of ${spec.file} (${spec.name}; expected sha256 ${spec.sha256}) from any source:\n${list}`,
      );
    }
    files.push(got);
    sidecarChanged = true;
  }

  if (sidecarChanged) {
    try {
      writeSidecar(dataDir, manifest, files);
    } catch (err) {
      throw new FailureError(
        `data dir ${dataDir}: cannot write ${SIDECAR_FILE} (${errorMessage(err)}); the verified data files are intact`,
      );
    }
  }
  return { dataDir, files };
}

function writeSidecar(dataDir: string, manifest: Manifest, files: FetchedFile[]): void {
  const previous = readSidecar(dataDir);
  const entries: Record<string, SidecarEntry> = { ...(previous?.files ?? {}) };
  const now = new Date().toISOString();
  for (const f of files) {
    const old = entries[f.name];
    // Keep the original origin and time for files that were only re-verified.
    if (f.fromCache && old && old.sha256 === f.sha256) continue;
    entries[f.name] = { file: f.file, sha256: f.sha256, bytes: f.bytes, source: f.source, fetchedAt: now };
  }
  writeFileAtomic(
    path.join(dataDir, SIDECAR_FILE),
    JSON.stringify({ dataset: manifest.name, files: entries }, null, 2) + '\n',
  );
}
