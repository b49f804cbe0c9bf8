/**
 * Writes TensorBoard event files: `logDir/events.out.tfevents.<unix seconds>.<host>`, a TFRecord
 * file of Event protos that starts with the file version and a SessionLog START.
 *
 * Each scalar or histogram is one record appended at once with a synchronous write (so a killed
 * process loses nothing the kernel has), never rewriting what is there; `flush()` fsyncs. A writer
 * opened again on the same folder (a resumed run) starts a new file, as TensorFlow's writers do;
 * TensorBoard reads the files of a folder in name order as one run.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FailureError } from '../../errors';
import { histogramOf } from './histogram';
import { encodeEvent, FILE_VERSION, type EventContent } from './messages';
import { frameRecord } from './record';

export interface TensorBoardWriterOptions {
  /** Seconds since the Unix epoch (fractional) for each event's wall_time and the file name; default the system clock. */
  wallTime?: () => number;
  /** The host part of the file name; default os.hostname(). Characters other than letters, digits, '.', '_' and '-' become '_'. */
  host?: string;
  /**
   * The first step this writer will log (default 0). The file's SessionLog START carries it: when a
   * resumed run passes the step it resumes at, TensorBoard drops what the interrupted run had
   * logged at that step and after (its purge of orphaned data after a restart).
   */
  startStep?: number;
}

/** Written into the first event's source_metadata, where TensorBoard keeps the writer's name. */
const SOURCE_WRITER = 'regtrain';
/** Same-second reopenings get a suffix (.1, .2, …); beyond this many something else is wrong. */
const MAX_NAME_ATTEMPTS = 1000;

function describeIoError(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  switch (e.code) {
    case 'ENOSPC':
      return 'no space left on device';
    case 'EDQUOT':
      return 'disk quota exceeded';
    case 'EROFS':
      return 'read-only file system';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EIO':
      return 'input/output error';
    case 'ENOTDIR':
    case 'EEXIST':
      return 'a file is in the way of the folder';
    default:
      return e.message;
  }
}

function checkStep(step: number): void {
  if (!Number.isSafeInteger(step)) throw new RangeError(`TensorBoard step must be an integer, got ${step}`);
}

function checkTag(tag: string): void {
  if (typeof tag !== 'string' || tag === '')
    throw new RangeError(`TensorBoard tag must be a non-empty string, got ${JSON.stringify(tag)}`);
}

export class TensorBoardWriter {
  /** Bytes of whole records in the file; a failed write is cut back to this. */
  private size = 0;
  private fd: number | undefined;
  /** Set when a failed write could not be cut back: the file's end is unknown, so nothing more is written. */
  private broken: FailureError | undefined;

  private constructor(
    /** The events file this writer appends to. */
    readonly file: string,
    fd: number,
    private readonly wallTime: () => number,
  ) {
    this.fd = fd;
  }

  /**
   * Creates `logDir` if needed and a new events file in it, writes the file version and a
   * SessionLog START, and fsyncs. Throws a FailureError naming the folder or file if it cannot.
   */
  static open(logDir: string, options: TensorBoardWriterOptions = {}): TensorBoardWriter {
    const wallTime = options.wallTime ?? (() => Date.now() / 1000);
    const host = (options.host ?? os.hostname()).replace(/[^A-Za-z0-9._-]/g, '_') || 'localhost';
    const startStep = options.startStep ?? 0;
    checkStep(startStep);
    try {
      fs.mkdirSync(logDir, { recursive: true });
    } catch (err) {
      throw new FailureError(`${logDir}: cannot create the TensorBoard folder (${describeIoError(err)})`);
    }
    const now = wallTime();
    // TensorFlow's EventsWriter pads the seconds to ten digits, so names sort by time.
    const base = path.join(logDir, `events.out.tfevents.${String(Math.floor(now)).padStart(10, '0')}.${host}`);
    const { file, fd } = createExclusive(base);
    const writer = new TensorBoardWriter(file, fd, wallTime);
    try {
      writer.append(now, 0, { fileVersion: FILE_VERSION, sourceWriter: SOURCE_WRITER });
      writer.append(wallTime(), startStep, { sessionStart: true });
      writer.flush();
      syncFolder(logDir);
    } catch (err) {
      writer.closeQuietly();
      throw err;
    }
    return writer;
  }

  /** Appends one scalar (stored as float32, as Summary.Value.simple_value is a float; NaN and ±Infinity are kept). */
  scalar(tag: string, value: number, step: number): void {
    checkTag(tag);
    checkStep(step);
    this.append(this.wallTime(), step, { summary: [{ tag, simpleValue: value }] });
  }

  /**
   * Appends the histogram of `values` in TensorFlow's default buckets (see histogram.ts). NaN or
   * infinite values are refused with a FailureError and nothing is written; the writer stays usable.
   */
  histogram(tag: string, values: ArrayLike<number>, step: number): void {
    checkTag(tag);
    checkStep(step);
    const histogram = histogramOf(values, `${this.file}: histogram "${tag}" at step ${step}`);
    this.append(this.wallTime(), step, { summary: [{ tag, histogram }] });
  }

  /** Makes everything written so far durable (fsync). */
  flush(): void {
    const fd = this.openFd();
    try {
      fs.fsyncSync(fd);
    } catch (err) {
      throw new FailureError(`${this.file}: cannot sync the TensorBoard events (${describeIoError(err)})`);
    }
  }

  /**
   * As flush(), on libuv's threads: the promise settles once everything written before the call is
   * durable (a FailureError if it cannot be). Do not close the writer before it settles.
   */
  flushInBackground(): Promise<void> {
    const fd = this.openFd();
    return new Promise((resolve, reject) =>
      fs.fsync(fd, (err) =>
        err
          ? reject(new FailureError(`${this.file}: cannot sync the TensorBoard events (${describeIoError(err)})`))
          : resolve(),
      ),
    );
  }

  /** Flushes and closes the file; closing again does nothing. */
  close(): void {
    if (this.fd === undefined) return;
    try {
      if (!this.broken) this.flush();
    } finally {
      this.closeQuietly();
    }
  }

  private closeQuietly(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fs.closeSync(fd);
    } catch {
      // the data was fsynced or the write already failed with its own error
    }
  }

  private openFd(): number {
    if (this.fd === undefined) throw new Error(`TensorBoard writer for ${this.file} is closed`);
    if (this.broken) throw this.broken;
    return this.fd;
  }

  /**
   * Writes one framed Event at the end of the file. A failed write (disk full) is cut back to the
   * last whole record, so the file stays readable and later writes may go on.
   */
  private append(wallTime: number, step: number, content: EventContent): void {
    const fd = this.openFd();
    const record = frameRecord(encodeEvent(wallTime, step, content));
    let written = 0;
    try {
      while (written < record.length)
        written += fs.writeSync(fd, record, written, record.length - written, this.size + written);
    } catch (err) {
      const why = describeIoError(err);
      try {
        if (written > 0) fs.ftruncateSync(fd, this.size);
      } catch {
        this.broken = new FailureError(
          `${this.file}: cannot write TensorBoard events (${why}); the file may end in a partial record`,
        );
        throw this.broken;
      }
      throw new FailureError(`${this.file}: cannot write (${why}); files written before are intact`);
    }
    this.size += record.length;
  }
}

/** Creates `base`, or `base.1`, `base.2`, … if a writer opened in the same second already took it. */
function createExclusive(base: string): { file: string; fd: number } {
  for (let attempt = 0; attempt < MAX_NAME_ATTEMPTS; attempt++) {
    const file = attempt === 0 ? base : `${base}.${attempt}`;
    try {
      return { file, fd: fs.openSync(file, 'wx', 0o644) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new FailureError(`${file}: cannot create the TensorBoard events file (${describeIoError(err)})`);
    }
  }
  throw new FailureError(
    `${base}: cannot create the TensorBoard events file (${MAX_NAME_ATTEMPTS} files of that name and second exist)`,
  );
}

/** Makes the new file's name durable; some file systems cannot fsync a folder, which only loses that guarantee. */
function syncFolder(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // best effort
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
