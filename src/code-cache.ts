/**
 * Loads the CLI bundle (dist/regtrain.js) with V8's compiled code kept on disk between starts: bin/regtrain calls
 * `requireWithCodeCache` instead of `require`. Bundled into dist/code-cache.js with env-switch.ts only (no imports).
 *
 * Why: compiling the 1.4 MB bundle and the functions a command runs is about 0.06 CPU-s of every start, on Node 20
 * (which has no compile cache) and on Node 22 and 24 alike, whose `module.enableCompileCache()` keeps only the code
 * compiled before the module runs (the top level), not the functions compiled while it runs. Here the cache is
 * written at the exit of a process that started without one, so it holds every function that process compiled.
 *
 * Where: `<os.tmpdir()>/regtrain-code-cache-<uid>/`, a directory of this user's alone (mode 0700; one that is not,
 * or a symbolic link, is not used). One file per command, bundle path and V8 version (each command compiles functions
 * of its own: a file written by `regtrain validate` would leave `run`'s to compile at every start), rewritten when the
 * bundle changes. A file starts with its key (the bundle's path, device, inode, size, modification and change times
 * in nanoseconds, V8's version and the architecture) and the CRC-32 of the data after it: V8 gets only data written
 * for this very file, whole (V8 checks its own version, its flags and the source's length, not the bytes).
 *
 * `REGTRAIN_CODE_CACHE=off` (or 0, false, no) loads the bundle with plain `require`. `NODE_DEBUG=regtrain-code-cache`
 * says on stderr what happened (hit, miss, refused, written).
 */
import * as fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { debuglog } from 'node:util';
import * as vm from 'node:vm';
import * as zlib from 'node:zlib';
import { switchedOff } from './env-switch';

const debug = debuglog('regtrain-code-cache');

/** Node's CommonJS internals this uses (public in practice, absent from @types/node's class). */
interface ModuleInternals {
  filename: string;
  paths: string[];
  loaded: boolean;
  exports: unknown;
}
type ModuleClass = {
  new (id: string, parent?: unknown): ModuleInternals;
  wrap(source: string): string;
  _nodeModulePaths(dir: string): string[];
  _cache: Record<string, unknown>;
};

function disabled(): boolean {
  return switchedOff('REGTRAIN_CODE_CACHE');
}

/** This user's cache directory, made if missing; null when it is not a directory of this user's alone. */
function cacheDirectory(): string | null {
  const uid = process.getuid?.();
  if (uid === undefined) return null; // no owner to check (Windows)
  const dir = path.join(os.tmpdir(), `regtrain-code-cache-${uid}`);
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return null;
  }
  try {
    const st = fs.lstatSync(dir);
    if (st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0) return dir;
    debug('not used: %s is not a directory of this user alone', dir);
    return null;
  } catch {
    return null;
  }
}

/** FNV-1a over the string's UTF-16 units, 32 bits, as 8 hex digits: a file name, not a check (the key is). */
function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** The cached data in `file` if its key is `key` and its bytes are those written (their CRC-32 in the header). */
function readCache(file: string, key: string): Buffer | undefined {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch {
    return undefined;
  }
  const prefix = Buffer.from(key + '\0');
  const newline = bytes.indexOf(0x0a, prefix.length);
  if (newline < 0 || !bytes.subarray(0, prefix.length).equals(prefix)) return undefined;
  const data = bytes.subarray(newline + 1);
  return bytes.toString('latin1', prefix.length, newline) === String(zlib.crc32(data)) ? data : undefined;
}

/** Writes the header (key, CRC-32 of the data) and the data to `file`, whole or not at all (a temporary file renamed
 * over it); errors are ignored: the next start compiles, as without a cache. */
function writeCache(file: string, key: string, data: Buffer): void {
  const temporary = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(temporary, Buffer.concat([Buffer.from(`${key}\0${zlib.crc32(data)}\n`), data]), { mode: 0o600 });
    fs.renameSync(temporary, file);
    debug('wrote %d bytes to %s', data.length, file);
  } catch (e) {
    debug('not written: %s', (e as Error).message);
    try {
      fs.unlinkSync(temporary);
    } catch {
      // never written
    }
  }
}

/**
 * `require(file)` for a CommonJS file, its compiled code read from and written to the cache. `variant` names the
 * work the process does (the CLI's command): each has its own file, holding the functions that work compiles.
 */
export function requireWithCodeCache(file: string, variant: string): unknown {
  const filename = path.resolve(file);
  // zlib.crc32: Node ≥ 20.15 (older Node loads the bundle without a cache).
  const dir = disabled() || typeof zlib.crc32 !== 'function' ? null : cacheDirectory();
  if (!dir) return require(filename);
  const st = fs.statSync(filename, { bigint: true });
  const source = fs.readFileSync(filename, 'utf8');
  const key = [filename, st.dev, st.ino, st.size, st.mtimeNs, st.ctimeNs, process.versions.v8, process.arch].join('\0');
  const name = /^[a-z][a-z-]{0,30}$/.test(variant) ? variant : 'other';
  const cacheFile = path.join(dir, `${name}-${fnv1a(`${filename}\0${process.versions.v8}\0${process.arch}`)}.v8cache`);
  const cachedData = readCache(cacheFile, key);

  const M = Module as unknown as ModuleClass;
  const script = new vm.Script(M.wrap(source), { filename, cachedData });
  const used = cachedData !== undefined && !script.cachedDataRejected;
  debug('%s for %s', used ? 'hit' : cachedData ? 'refused by V8' : 'miss', filename);
  if (!used) process.once('exit', () => writeCache(cacheFile, key, script.createCachedData()));

  // The module as Node's loader would make it, in require's cache, so that a later require of it finds this one.
  const mod = new M(filename, require.main);
  mod.filename = filename;
  mod.paths = M._nodeModulePaths(path.dirname(filename));
  M._cache[filename] = mod;
  const wrapper = script.runInThisContext() as (...args: unknown[]) => void;
  wrapper.call(mod.exports, mod.exports, createRequire(filename), mod, filename, path.dirname(filename));
  mod.loaded = true;
  return mod.exports;
}
