import { ExitCode, InterruptedError, RegtrainError, errorMessage } from './errors';
import { stderr, stdout } from './output';

/** JSON with non-finite numbers as null (JSON has no NaN): one compact line. */
export function jsonLine(obj: unknown): string {
  return JSON.stringify(obj, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)) + '\n';
}

/**
 * Human lines go to stdout, or to stderr when stdout is reserved for JSON lines (`--json`);
 * `--quiet` keeps only warnings and the final result. A `--json` stream ends with exactly one
 * of `done`, `failed` or `interrupted` (see `end` and `endWith`).
 */
export class Console {
  private ended = false;

  constructor(
    readonly json: boolean,
    readonly quiet: boolean,
  ) {}

  info(line: string): void {
    if (!this.quiet) (this.json ? stderr() : stdout()).write(line + '\n');
  }

  result(line: string): void {
    (this.json ? stderr() : stdout()).write(line + '\n');
  }

  warn(line: string): void {
    stderr().write(`warning: ${line}\n`);
  }

  event(obj: Record<string, unknown>): void {
    if (this.json && !this.ended) stdout().write(jsonLine(obj));
  }

  /** The stream's last event; later events (and a second end) are dropped. */
  end(obj: Record<string, unknown>): void {
    this.event(obj);
    this.ended = true;
  }

  /** Ends the stream for an error on its way to the boundary in cli.ts: `interrupted` or `failed`. */
  endWith(err: unknown, runDir: string | null): void {
    if (err instanceof InterruptedError) {
      const i = err.interruption;
      this.end({
        event: 'interrupted',
        signal: i.signal,
        lastEpoch: i.lastEpoch,
        runDir: i.runDir ?? runDir,
        resume: i.resume,
        exitCode: ExitCode.interrupted,
      });
    } else {
      const reason = err instanceof RegtrainError ? err.message : `internal error: ${errorMessage(err)}`;
      this.end({
        event: 'failed',
        reason,
        exitCode: err instanceof RegtrainError ? err.exitCode : ExitCode.failure,
        runDir,
      });
    }
  }
}
