import { Command, CommanderError } from 'commander';
import { ExitCode, RegtrainError } from './errors';
import { packageVersion } from './fsutil';
import { runCommand } from './commands/run';
import { evaluateCommand } from './commands/evaluate';
import { validateCommand } from './commands/validate';
import { dataCommand } from './commands/data';
import { compareCommand } from './commands/compare';
import { planCommand } from './commands/plan';
import { runMemberCommand } from './commands/run-member';
import { statusCommand } from './commands/status';

const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    runtime failure (data unavailable, non-finite loss, disk full, internal error)
  2    bad input (usage, spec, data files or run directories)
  130  interrupted (SIGINT/SIGTERM); finished work is saved`;

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
  for (const cmd of program.commands) cmd.exitOverride().addHelpText('after', EXIT_CODES_HELP);
  return program;
}

/**
 * The one error boundary: typed errors become a one-line message and their exit code;
 * anything else is a bug and keeps its stack trace (exit 1).
 */
export async function main(argv: string[]): Promise<void> {
  // `regtrain … | head` closes the pipe early: that is the reader's choice, not an error.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw err;
    });
  }
  let code: number = ExitCode.ok;
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    code = exitCodeFor(err);
  }
  process.exitCode = code;
}

function exitCodeFor(err: unknown): number {
  if (err instanceof CommanderError) {
    // commander has already printed its message (or the help/version text).
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0) return ExitCode.ok;
    return ExitCode.badInput;
  }
  if (err instanceof RegtrainError) {
    const lines = err.message.split('\n');
    process.stderr.write(lines.map((l) => (l.startsWith('! ') ? l : `error: ${l}`)).join('\n') + '\n');
    return err.exitCode;
  }
  process.stderr.write(`internal error (a bug in regtrain, please report it):\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return ExitCode.failure;
}
