import { Command } from 'commander';
import { FailureError } from '../errors';

export function validateCommand(): Command {
  return new Command('validate').description('validate (not implemented yet)').action(() => {
    throw new FailureError('validate: not implemented yet');
  });
}
