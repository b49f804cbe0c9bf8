import { Command } from 'commander';
import { FailureError } from '../errors';

export function planCommand(): Command {
  return new Command('plan').description('plan (not implemented yet)').action(() => {
    throw new FailureError('plan: not implemented yet');
  });
}
