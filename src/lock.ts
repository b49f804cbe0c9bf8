import * as fs from 'node:fs';
import * as os from 'node:os';
import * as crypto from 'node:crypto';
import { z } from 'zod';
import { readRegularFile, UnreadableFileError } from './fsutil';

/**
 * An exclusive lock file that survives its holder's death in a recognisable way and is taken
 * over atomically. The file holds who took it: pid, the process's start time and the kernel's
 * boot id (so a PID reused by an unrelated process — or by ourselves, as PID 1 in a restarted
 * container — is not mistaken for the holder), the host, and a random token naming this one
 * acquisition. The holder touches the file every HEARTBEAT_MS; a lock from another host or an
 * earlier boot, where no pid can be checked, is stale once its heartbeat is older than
 * staleAfterMs().
 *
 * Taking a stale lock over is a compare-and-swap: among the processes that saw the stale
 * token T, only the one that acquires the lock `<file>.takeover-T` (by the same rules) may
 * replace the file, and it does so only if the file still holds T, with one rename.
 */

const LockRecord = z.object({
  pid: z.number().int().positive(),
  /** Field 22 of /proc/<pid>/stat (clock ticks after boot); null where /proc is missing. */
  start: z.string().nullable(),
  boot: z.string().nullable(),
  host: z.string(),
  token: z.string().regex(/^[A-Za-z0-9-]+$/),
});
export type LockRecord = z.infer<typeof LockRecord>;

const HEARTBEAT_MS = 20_000;
/** A lock record is one short JSON line; /proc's stat and boot_id lines are shorter than this too. */
const MAX_LOCK_BYTES = 4096;
const MAX_PROC_FILE_BYTES = 4096;
const DEFAULT_STALE_SECONDS = 120;

/** The lock is held by a live process (or, on another host, one with a recent heartbeat). */
export class LockHeldError extends Error {
  constructor(
    readonly holder: LockRecord | null,
    message: string,
  ) {
    super(message);
  }
}

/** Locks this process holds: file → token and heartbeat timer. */
const held = new Map<string, { token: string; timer: NodeJS.Timeout }>();

function readProc(file: string): string | null {
  try {
    return readRegularFile(file, { maxBytes: MAX_PROC_FILE_BYTES }).toString('utf8');
  } catch {
    return null;
  }
}

/** A process's start time in clock ticks after boot, or null (no such process, or no /proc). */
export function processStartTime(pid: number): string | null {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null;
}

function bootId(): string | null {
  return readProc('/proc/sys/kernel/random/boot_id')?.trim() ?? null;
}

/** Seconds after which a lock whose holder cannot be checked (other host, earlier boot) counts as stale. */
export function staleAfterMs(): number {
  const env = Number(process.env.REGTRAIN_LOCK_STALE_SECONDS);
  return (Number.isFinite(env) && env > 0 ? env : DEFAULT_STALE_SECONDS) * 1000;
}

function myRecord(): LockRecord {
  return {
    pid: process.pid,
    start: processStartTime(process.pid),
    boot: bootId(),
    host: os.hostname(),
    token: crypto.randomBytes(12).toString('hex'),
  };
}

/** The record in a lock file; null when the file is gone. Unreadable content counts as a dead holder's. */
export function readLock(file: string): { record: LockRecord | null; mtimeMs: number } | null {
  let text: string;
  let mtimeMs: number;
  try {
    // Only a small regular file is a lock: a FIFO, a device or a huge file is never read (it could block or fill memory).
    const st = fs.lstatSync(file);
    mtimeMs = st.mtimeMs;
    if (!st.isFile() || st.size > MAX_LOCK_BYTES) return { record: null, mtimeMs };
    text = readRegularFile(file, { maxBytes: MAX_LOCK_BYTES }).toString('utf8');
  } catch (err) {
    const code = err instanceof UnreadableFileError ? err.code : (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    // Replaced by something that is not a small regular file between lstat and open: no holder's record.
    if (err instanceof UnreadableFileError && code === null) return { record: null, mtimeMs: Date.now() };
    throw err;
  }
  // Locks written before this format held only "<pid>\n".
  const legacy = /^(\d+)\n?$/.exec(text);
  if (legacy)
    return {
      record: { pid: Number(legacy[1]), start: null, boot: null, host: os.hostname(), token: `pid-${legacy[1]}` },
      mtimeMs,
    };
  try {
    const parsed = LockRecord.safeParse(JSON.parse(text));
    return { record: parsed.success ? parsed.data : null, mtimeMs };
  } catch {
    return { record: null, mtimeMs };
  }
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why a lock is live (a sentence fragment), or null when it is stale. */
export function liveHolder(lock: { record: LockRecord | null; mtimeMs: number }, now = Date.now()): string | null {
  const r = lock.record;
  // A half-written or foreign file: only its age can tell (a holder rewrites it each heartbeat).
  if (!r) return now - lock.mtimeMs < staleAfterMs() ? 'an unreadable lock with a recent heartbeat' : null;
  if ([...held.values()].some((h) => h.token === r.token)) return `this process (pid ${r.pid})`;
  const boot = bootId();
  const sameMachine = r.host === os.hostname() && (r.boot === null || boot === null || r.boot === boot);
  if (sameMachine) {
    // Our own pid with someone else's token: a previous life (PID 1 again in a restarted container).
    if (r.pid === process.pid) return null;
    const start = processStartTime(r.pid);
    if (start !== null) return r.start === null || r.start === start ? `pid ${r.pid}` : null;
    // No /proc entry: either no such process, or a system without /proc.
    return boot === null && pidExists(r.pid) ? `pid ${r.pid}` : null;
  }
  if (r.host === os.hostname()) return null; // same host, another boot: every process of that boot is gone
  const age = now - lock.mtimeMs;
  return age < staleAfterMs()
    ? `pid ${r.pid} on host ${r.host}, heartbeat ${Math.round(age / 1000)} s ago (taken over after ${staleAfterMs() / 1000} s)`
    : null;
}

/**
 * A lock from another host can only be judged by its heartbeat. A scheduler that starts a
 * member again after its node or pod died (OOM, node failure) would be refused until the
 * heartbeat is stale, and might give up retrying: so wait, as long as the heartbeat does not
 * move, until it is stale. Resolves at once for any other lock.
 */
export async function waitForSilentForeignLock(
  file: string,
  say: (line: string) => void,
  pollMs = 1000,
): Promise<void> {
  const first = readLock(file);
  if (!first?.record || first.record.host === os.hostname() || !liveHolder(first)) return;
  const left = Math.ceil((staleAfterMs() - (Date.now() - first.mtimeMs)) / 1000);
  say(
    `the lock is held by pid ${first.record.pid} on host ${first.record.host}; waiting up to ${left} s: taken over if its heartbeat stays silent, refused if it moves`,
  );
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, pollMs));
    const now = readLock(file);
    if (!now || now.mtimeMs !== first.mtimeMs || now.record?.token !== first.record.token || !liveHolder(now)) return;
  }
}

function heartbeat(file: string, token: string): NodeJS.Timeout {
  const timer = setInterval(() => {
    try {
      if (readLock(file)?.record?.token === token) fs.utimesSync(file, new Date(), new Date());
    } catch {
      // a heartbeat that cannot be written shows up as staleness to others; training goes on
    }
  }, HEARTBEAT_MS);
  timer.unref();
  return timer;
}

/**
 * Takes the lock `file` for this process, taking over a stale one. Throws LockHeldError when a
 * live process holds it (or is taking it over right now); other errors are the file system's.
 */
export function acquireLock(file: string, depth = 0): void {
  const me = myRecord();
  const tmp = `${file}.${me.token}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(me) + '\n', { flag: 'wx' });
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        fs.linkSync(tmp, file); // atomic create-if-absent, with the whole record already in it
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const seen = readLock(file);
      if (!seen) continue; // released meanwhile: try again
      const live = liveHolder(seen);
      if (live) throw new LockHeldError(seen.record, `held by ${live}`);
      if (depth >= 3) throw new LockHeldError(seen.record, 'being taken over by another process');
      const token = seen.record?.token ?? `m${Math.round(seen.mtimeMs)}`;
      const claim = `${file}.takeover-${token}`;
      try {
        acquireLock(claim, depth + 1);
      } catch (err) {
        if (err instanceof LockHeldError) throw new LockHeldError(seen.record, 'being taken over by another process');
        throw err;
      }
      try {
        const now = readLock(file);
        const nowToken = now ? (now.record?.token ?? `m${Math.round(now.mtimeMs)}`) : null;
        if (nowToken !== token) continue; // replaced or released meanwhile: look again
        fs.renameSync(tmp, file);
        break;
      } finally {
        releaseLock(claim);
      }
    }
    if (readLock(file)?.record?.token !== me.token) throw new LockHeldError(null, 'contended by other processes');
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  held.set(file, { token: me.token, timer: heartbeat(file, me.token) });
}

/** Drops a lock this process holds; a lock that is no longer ours (taken over) is left alone. */
export function releaseLock(file: string): void {
  const mine = held.get(file);
  if (!mine) return;
  clearInterval(mine.timer);
  held.delete(file);
  try {
    if (readLock(file)?.record?.token === mine.token) fs.rmSync(file, { force: true });
  } catch {
    // nothing left to release
  }
}

/** True while this process holds the lock. */
export function holdsLock(file: string): boolean {
  return held.has(file);
}
