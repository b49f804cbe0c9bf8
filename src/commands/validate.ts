import { Command } from 'commander';
import { loadSpec, parseSetFlag, specToYaml } from '../spec';
import { collect } from './common';
import { stdout } from '../output';

export function validateCommand(): Command {
  return new Command('validate')
    .description(
      'check a spec and print it fully resolved (defaults filled in); lists every error and exits 2 otherwise',
    )
    .argument('<spec>', 'experiment spec (YAML)')
    .option('--set <path=value>', 'override a field, e.g. --set training.epochs=3 (repeatable)', collect, [])
    .option('--json', 'print the resolved spec as JSON')
    .action((file: string, opts: { set: string[]; json?: boolean }) => {
      const { spec } = loadSpec(file, opts.set.map(parseSetFlag));
      stdout().write(opts.json ? JSON.stringify(spec) + '\n' : specToYaml(spec));
    });
}
