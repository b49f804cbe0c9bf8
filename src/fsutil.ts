import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { z } from 'zod';
import { InputError, errorMessage } from './errors';

/** The two fields regtrain reads from a package.json (its own, or one it passes while looking for it). */
const PackageJson = z.looseObject({ name: z.string().optional(), version: z.string().optional() });
const MAX_PACKAGE_JSON_BYTES = 1024 * 1024;
/** regtrain's own compiled kernels are a few KiB. */
export const MAX_WASM_BYTES = 16 * 1024 * 1024;

/** The folder holding regtrain's package.json (found from dist/src/, and from dist/ in the bundled CLI). */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const candidate = path.join(dir, 'package.json');
    if (fs.existsSync(candidate)) {
      try {
        if (
          PackageJson.parse(
            JSON.parse(readRegularFile(candidate, { maxBytes: MAX_PACKAGE_JSON_BYTES }).toString('utf8')),
          ).name === 'regtrain'
        )
          return dir;
      } catch {
        // not ours; keep walking up
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find regtrain's package.json above ${__dirname}`);
    dir = parent;
  }
}

/** regtrain's own version, as package.json states it. */
export function packageVersion(): string {
  const file = path.join(packageRoot(), 'package.json');
  const version = PackageJson.parse(
    JSON.parse(readRegularFile(file, { maxBytes: MAX_PACKAGE_JSON_BYTES }).toString('utf8')),
  ).version;
  if (version === undefined) throw new Error(`${file}: has no version`);
  return version;
}

/**
 * Writes a file so that readers see either the old content or the complete new one:
 * write to a unique temp name in the same folder, fsync, then rename over the target.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', 0o644);
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

export function sha256(data: Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** 20261127T160730Z: a UTC time that sorts and is safe in file names. */
export function utcStamp(d = new Date()): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

const FILE_KINDS: [(s: fs.Stats) => boolean, string][] = [
  [(s) => s.isDirectory(), 'a directory'],
  [(s) => s.isFIFO(), 'a FIFO (named pipe)'],
  [(s) => s.isCharacterDevice(), 'a character device'],
  [(s) => s.isBlockDevice(), 'a block device'],
  [(s) => s.isSocket(), 'a socket'],
];

/** A file regtrain was asked to read but will not: missing, not a regular file, too large, unreadable. */
export class UnreadableFileError extends InputError {
  constructor(
    readonly file: string,
    readonly reason: string,
    /** errno code when the OS refused (ENOENT, EACCES, …), else null. */
    readonly code: string | null,
  ) {
    super(`${file}: ${reason}`);
  }
}

const ERRNO_WORDS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ELOOP: 'a loop of symbolic links',
  ENOTDIR: 'a part of the path is not a directory',
  ENAMETOOLONG: 'the path is too long',
  EISDIR: 'a directory',
  EIO: 'input/output error',
};

/** Opens `file` without blocking (a FIFO with no writer would wait forever) and checks the opened file is a regular one. */
function openRegular(file: string): { fd: number; st: fs.Stats } {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (err) {
    throw unreadable(file, err);
  }
  try {
    const st = fs.fstatSync(fd);
    const kind = FILE_KINDS.find(([is]) => is(st));
    if (kind) throw new UnreadableFileError(file, `${kind[1]}, not a regular file`, null);
    return { fd, st };
  } catch (err) {
    fs.closeSync(fd);
    throw unreadable(file, err);
  }
}

function unreadable(file: string, err: unknown): UnreadableFileError {
  if (err instanceof UnreadableFileError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? null;
  return new UnreadableFileError(file, (code && ERRNO_WORDS[code]) ?? errorMessage(err), code);
}

/**
 * Reads a whole file that must be a regular file of at most `maxBytes` (or exactly `exactBytes`).
 * Opens without blocking, then checks the opened file itself: /dev/zero, a FIFO, a socket or a
 * directory is refused, and so is a file larger than allowed, before a byte is read. Reads until
 * end of file but never more than maxBytes + 1 bytes, so a file that grows while it is read (or a
 * /proc file, whose size says 0) cannot run the process out of memory. Every refusal is one
 * UnreadableFileError line naming the file; its exit code is 2 (bad input).
 */
export function readRegularFile(file: string, limit: { maxBytes: number; exactBytes?: number }): Buffer {
  const { fd, st } = openRegular(file);
  try {
    if (limit.exactBytes !== undefined && st.size !== limit.exactBytes)
      throw new UnreadableFileError(file, `${st.size} bytes, expected ${limit.exactBytes}`, null);
    if (st.size > limit.maxBytes)
      throw new UnreadableFileError(
        file,
        `${st.size} bytes is more than the ${limit.maxBytes} this file may have`,
        null,
      );
    let buf = Buffer.allocUnsafe(Math.min(limit.maxBytes, Math.max(st.size, 4096)) + 1);
    let n = 0;
    for (let r; (r = fs.readSync(fd, buf, n, buf.length - n, null)) > 0;) {
      n += r;
      if (n > limit.maxBytes) break;
      if (n === buf.length)
        buf = Buffer.concat(
          [buf, Buffer.allocUnsafe(Math.min(buf.length, limit.maxBytes + 1 - n))],
          Math.min(2 * buf.length, limit.maxBytes + 1),
        );
    }
    if (n > limit.maxBytes || (limit.exactBytes !== undefined && n !== limit.exactBytes))
      throw new UnreadableFileError(file, 'changed size while it was read', null);
    return buf.subarray(0, n);
  } catch (err) {
    throw unreadable(file, err);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The first `count` lines of a regular file (without their newlines), reading only as far as they
 * go: a file of any size costs at most `maxBytes` of memory. Fewer lines come back when the file
 * ends first; a file whose first `count` lines need more than `maxBytes` is refused, naming it.
 */
export function readFirstLines(file: string, count: number, maxBytes: number): string[] {
  const { fd } = openRegular(file);
  try {
    const chunks: Buffer[] = [];
    let total = 0;
    let found = 0;
    const chunk = Buffer.allocUnsafe(64 * 1024);
    for (let r; found < count && (r = fs.readSync(fd, chunk, 0, chunk.length, null)) > 0;) {
      let end = r;
      for (let i = 0; i < r; i++)
        if (chunk[i] === 0x0a && ++found === count) {
          end = i + 1;
          break;
        }
      if (total + end > maxBytes)
        throw new UnreadableFileError(
          file,
          `its first ${count} line(s) take more than the ${maxBytes} bytes they may`,
          null,
        );
      chunks.push(Buffer.from(chunk.subarray(0, end)));
      total += end;
    }
    const lines = Buffer.concat(chunks, total).toString('utf8').split('\n');
    return lines.slice(0, count);
  } catch (err) {
    throw unreadable(file, err);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `--out DIR` must be creatable: no ancestor may be a file, and no part of it a symlink that leads
 * nowhere (mkdir -p would fail with raw ENOTDIR/EEXIST/ENOENT text). Throws a one-line
 * InputError naming the offending path; returns quietly when the path is fine or does not exist yet.
 */
export function checkCreatableDir(dir: string, label: string): void {
  const abs = path.resolve(dir);
  const parts = abs.split(path.sep).filter(Boolean);
  let at = path.parse(abs).root;
  for (let i = 0; i < parts.length; i++) {
    at = path.join(at, parts[i]!);
    let lst: fs.Stats;
    try {
      lst = fs.lstatSync(at);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      throw new InputError(`${label}: cannot use ${at} (${(code && ERRNO_WORDS[code]) ?? errorMessage(err)})`);
    }
    if (lst.isSymbolicLink()) {
      let target: fs.Stats;
      try {
        target = fs.statSync(at);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new InputError(
          `${label}: ${at} is a symbolic link that leads nowhere${code === 'ELOOP' ? ' (a loop)' : ''}`,
        );
      }
      lst = target;
    }
    const last = i === parts.length - 1;
    if (!lst.isDirectory())
      throw new InputError(
        last
          ? `${label}: exists and is not a directory`
          : `${label}: ${at} is a file, so nothing can be created below it`,
      );
  }
}
