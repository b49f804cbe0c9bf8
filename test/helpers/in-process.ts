/**
 * regtrain's CLI in this process: the real program (`buildProgram()` from src/cli.ts: the same commands,
 * parsing and validation) and, when it throws, what the error boundary prints for it (`errorReport`). A child
 * process costs ~0.35–0.45 CPU-s before it checks anything; a refusal checked here costs milliseconds.
 *
 * For commands that end by themselves (refusals, quick checks): nothing here waits for timers or children, and
 * calls may not overlap (the working directory and the environment are this process's). The real boundary is
 * covered by process-level tests (test/hardening.specs.test.ts and others): the same first line on stderr,
 * nothing on stdout, exit 2, no stack.
 */
import { Writable } from 'node:stream';
import type { Command } from 'commander';
import { buildProgram, errorReport } from '../../src/cli';
import { redirectOutput } from '../../src/output';

/** What `regtrain ...args` would end with: its exit code and what it would have written. */
export interface InProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface InProcessOptions {
  /** The working directory during the call (messages name files as the user typed them, relative to it). */
  cwd?: string;
  /** Variables set (a string) or unset (undefined) during the call, over this process's environment. */
  env?: Record<string, string | undefined>;
}

let busy = false;

/**
 * Runs `regtrain ...args` in this process and returns its exit code, stdout and stderr as the process would:
 * commander's own output (usage errors, help) through its configureOutput hook, regtrain's own writes through
 * src/output.ts's redirection, then the boundary's text for the error. The test runner's reports go to the real
 * streams, untouched.
 */
export async function regtrainInProcess(args: string[], opts: InProcessOptions = {}): Promise<InProcessResult> {
  if (busy) throw new Error('regtrainInProcess: calls may not overlap (they share the cwd and the environment)');
  busy = true;
  const out = { stdout: '', stderr: '' };
  const program = buildProgram();
  for (const cmd of allCommands(program))
    cmd.configureOutput({ writeOut: (s) => void (out.stdout += s), writeErr: (s) => void (out.stderr += s) });
  const restore = [redirectOutput({ stdout: collector(out, 'stdout'), stderr: collector(out, 'stderr') })];
  const cwd = process.cwd();
  const env = Object.keys(opts.env ?? {}).map((k) => [k, process.env[k]] as const);
  let code = 0;
  try {
    if (opts.cwd !== undefined) process.chdir(opts.cwd);
    for (const [k, v] of Object.entries(opts.env ?? {}))
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    await program.parseAsync(['node', 'regtrain', ...args]);
  } catch (err) {
    const report = errorReport(err);
    out.stderr += report.text;
    code = report.exitCode;
  } finally {
    for (const undo of restore) undo();
    process.chdir(cwd);
    for (const [k, v] of env)
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    busy = false;
  }
  return { code, ...out };
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}

/** A stream, not a terminal, whose text goes into `out[key]`. */
function collector(out: { stdout: string; stderr: string }, key: 'stdout' | 'stderr'): NodeJS.WriteStream {
  const stream = new Writable({
    decodeStrings: false,
    write(chunk: string | Buffer, _encoding, done) {
      out[key] += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
      done();
    },
  });
  return Object.assign(stream, { isTTY: false }) as unknown as NodeJS.WriteStream;
}
