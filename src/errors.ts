/**
 * Typed errors and the exit codes they map to. Commands throw these; only the
 * error boundary in cli.ts turns them into a message and an exit code.
 */
export const ExitCode = {
  ok: 0,
  /** Runtime failure: data unavailable, non-finite loss, disk full, a bug. */
  failure: 1,
  /** Bad input: usage, spec, files or run directories the user pointed at. */
  badInput: 2,
  /** Interrupted by SIGINT/SIGTERM; whatever was finished is saved. */
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class RegtrainError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The user gave something we cannot use (exit 2). May carry several lines, one per problem. */
export class InputError extends RegtrainError {
  constructor(message: string) {
    super(message, ExitCode.badInput);
  }
}

/** Something failed at run time that is not the user's input (exit 1). */
export class FailureError extends RegtrainError {
  constructor(message: string) {
    super(message, ExitCode.failure);
  }
}

/** Where an interrupted run stands: what a `--json` stream's `interrupted` event reports. */
export interface Interruption {
  signal: string | null;
  /** The last epoch finished and saved (0: none). */
  lastEpoch: number;
  runDir: string | null;
  /** The command that continues the work, or null when there is nothing to continue. */
  resume: string | null;
}

/**
 * A signal stopped the work (exit 130). The boundary prints the message as it is, not as an
 * `error:` (the user asked for the stop); it starts with "interrupted".
 */
export class InterruptedError extends RegtrainError {
  constructor(
    message = 'interrupted',
    readonly interruption: Interruption = { signal: null, lastEpoch: 0, runDir: null, resume: null },
  ) {
    super(message, ExitCode.interrupted);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
