import { Command, CommanderError, Help, Option } from 'commander';
import { ExitCode, InterruptedError, RegtrainError } from './errors';
import { packageVersion } from './fsutil';
import { installDefaultSignalHandling } from './signals';
import { runCommand } from './commands/run';
import { evaluateCommand } from './commands/evaluate';
import { validateCommand } from './commands/validate';
import { dataCommand } from './commands/data';
import { compareCommand } from './commands/compare';
import { planCommand } from './commands/plan';
import { runMemberCommand } from './commands/run-member';
import { statusCommand } from './commands/status';
import { predictCommand } from './commands/predict';
import { stderr } from './output';

const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    runtime failure (data unavailable, non-finite loss, disk full, internal error)
  2    bad input (usage, spec, data files or run directories)
  130  interrupted (SIGINT/SIGTERM/SIGHUP); finished work is saved`;

export function buildProgram(): Command {
  const program = new Command()
    .name('regtrain')
    .description('Regularization experiments on Fashion-MNIST with TensorFlow.js')
    .version(packageVersion(), '-V, --version')
    .addHelpText('after', EXIT_CODES_HELP)
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str) });
  program.addCommand(runCommand());
  program.addCommand(evaluateCommand());
  program.addCommand(validateCommand());
  program.addCommand(dataCommand());
  program.addCommand(compareCommand());
  program.addCommand(planCommand());
  program.addCommand(runMemberCommand());
  program.addCommand(statusCommand());
  program.addCommand(predictCommand());
  for (const cmd of program.commands)
    cmd
      .exitOverride()
      .addHelpText(
        'after',
        EXIT_CODES_HELP.replace(
          '\n',
          cmd.commands.length ? '\nEach subcommand lists its own exit codes (--help).\n' : '\n',
        ),
      );
  plainDefaults(program);
  return program;
}

/**
 * Help shows defaults as a user would type them: `(default: 1)`, not `(default: "1")` (commander
 * quotes string defaults), and no `(default: [])` on repeatable options.
 */
function plainDefaults(cmd: Command): void {
  for (const opt of cmd.options) {
    if (opt.defaultValueDescription !== undefined) continue;
    if (typeof opt.defaultValue === 'string') opt.defaultValueDescription = opt.defaultValue;
  }
  cmd.configureHelp({
    optionDescription(this: Help, option: Option): string {
      const text = Help.prototype.optionDescription.call(this, option);
      return Array.isArray(option.defaultValue) && option.defaultValue.length === 0
        ? text.replace(/ \(default: \[\]\)$/, '')
        : text;
    },
  });
  for (const sub of cmd.commands) plainDefaults(sub);
}

/**
 * The one error boundary: runs the command and prints what errorReport makes of its error: typed
 * errors become a one-line message and their exit code; anything else is a bug and keeps its stack trace (exit 1).
 */
export async function main(argv: string[]): Promise<void> {
  const stdout = guardStdout();
  installDefaultSignalHandling();
  let code: number = ExitCode.ok;
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    const report = errorReport(err);
    if (report.text !== '') stderr().write(report.text);
    code = report.exitCode;
  }
  // A write error is reported on a later tick: let it arrive before deciding the exit code.
  await new Promise((resolve) => setImmediate(resolve));
  process.exitCode = code;
  stdout.settle();
}

const ERRNO_TEXT: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
  EBADF: 'not open for writing',
  EFBIG: 'file too large',
};

/**
 * When stdout fails, regtrain writes nothing more to it and keeps going (a run still trains and
 * saves). A closed pipe (`regtrain … | head`) is the reader's choice and changes nothing else;
 * any other failure (`> /dev/full`: ENOSPC) ends the command with one line and exit 1.
 * stderr failures are ignored: there is nowhere left to report them.
 */
function guardStdout(): { settle: () => void } {
  let failure: string | null = null;
  let settled = false;
  const report = () => {
    if (failure === null || process.exitCode !== ExitCode.ok) return;
    process.stderr.write(`error: cannot write to standard output (${failure}); the output is incomplete\n`);
    process.exitCode = ExitCode.failure;
  };
  const mute = (stream: NodeJS.WriteStream) => {
    stream.write = ((...args: unknown[]) => {
      const cb = args.find((a) => typeof a === 'function') as (() => void) | undefined;
      cb?.();
      return true;
    }) as typeof stream.write;
  };
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    mute(process.stdout);
    if (err.code === 'EPIPE' || failure !== null) return;
    failure = (err.code && ERRNO_TEXT[err.code]) ?? err.code ?? err.message;
    // After the command has finished, a late error still decides the exit code.
    if (settled) report();
  });
  process.stderr.on('error', () => mute(process.stderr));
  return {
    settle: () => {
      settled = true;
      report();
    },
  };
}

/** What the error boundary prints on stderr for an error (empty: nothing), and the exit code it ends with. */
export interface ErrorReport {
  text: string;
  exitCode: number;
}

/**
 * The boundary's mapping, without the writing (tests check it in process): typed errors become
 * their message and exit code; anything else is a bug and keeps its stack trace (exit 1).
 */
export function errorReport(err: unknown): ErrorReport {
  if (err instanceof CommanderError) {
    // commander has already printed its message (or the help/version text).
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
      return { text: '', exitCode: ExitCode.ok };
    return { text: '', exitCode: ExitCode.badInput };
  }
  if (err instanceof InterruptedError) {
    // The user asked for the stop: not an error. The message says "interrupted" and how to continue.
    return { text: err.message + '\n', exitCode: err.exitCode };
  }
  if (err instanceof RegtrainError) {
    const lines = err.message.split('\n');
    return {
      text: lines.map((l) => (l.startsWith('! ') ? l : `error: ${l}`)).join('\n') + '\n',
      exitCode: err.exitCode,
    };
  }
  return {
    text: `internal error (a bug in regtrain, please report it):\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    exitCode: ExitCode.failure,
  };
}
