/**
 * Human lines go to stdout, or to stderr when stdout is reserved for JSON lines;
 * `--quiet` keeps only warnings and the final result.
 */
export class Console {
  constructor(
    readonly json: boolean,
    readonly quiet: boolean,
  ) {}

  info(line: string): void {
    if (!this.quiet) (this.json ? process.stderr : process.stdout).write(line + '\n');
  }

  result(line: string): void {
    (this.json ? process.stderr : process.stdout).write(line + '\n');
  }

  warn(line: string): void {
    process.stderr.write(`warning: ${line}\n`);
  }

  event(obj: Record<string, unknown>): void {
    if (this.json) process.stdout.write(JSON.stringify(obj, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)) + '\n');
  }
}
