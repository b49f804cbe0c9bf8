import { Command } from 'commander';
import { FailureError } from '../errors';

export function compareCommand(): Command {
  return new Command('compare').description('compare (not implemented yet)').action(() => {
    throw new FailureError('compare: not implemented yet');
  });
}
