import { Command } from 'commander';
import { FailureError } from '../errors';

export function evaluateCommand(): Command {
  return new Command('evaluate').description('evaluate (not implemented yet)').action(() => {
    throw new FailureError('evaluate: not implemented yet');
  });
}
