import { Command } from 'commander';
import { FailureError } from '../errors';

export function dataCommand(): Command {
  return new Command('data').description('data (not implemented yet)').action(() => {
    throw new FailureError('data: not implemented yet');
  });
}
