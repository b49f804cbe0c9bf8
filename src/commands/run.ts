import { Command } from 'commander';
import { FailureError } from '../errors';

export function runCommand(): Command {
  return new Command('run').description('run (not implemented yet)').action(() => {
    throw new FailureError('run: not implemented yet');
  });
}
