import * as path from 'node:path';
import { Command } from 'commander';
import { InputError } from '../errors';
import { loadSpec, parseSetFlag } from '../spec';
import { isStudy, memberArgs, memberCommand, prepareStudy } from '../study';
import { collect } from './common';

/**
 * `regtrain plan SPEC`: writes the study's specs and prints one self-contained
 * `regtrain run …` command per member, for GNU parallel, a Slurm array or Kubernetes Jobs.
 * No scheduler of our own: `compare STUDY_DIR` merges whatever finished.
 */
export function planCommand(): Command {
  return new Command('plan')
    .description('write a study\'s member specs and print one `regtrain run` command per member (for GNU parallel, Slurm arrays, Kubernetes Jobs)')
    .argument('<spec>', 'experiment spec (YAML) with variants, sweep and/or repeats')
    .option('--out <dir>', 'study directory (default: studies/<name>-<UTC timestamp>)')
    .option('--set <path=value>', 'override a field of the base spec, e.g. --set training.epochs=3 (repeatable)', collect, [])
    .option('--json', 'print a JSON array of {member, argv, command} instead of shell lines')
    .action((file: string, opts: { out?: string; set: string[]; json?: boolean }) => {
      const loaded = loadSpec(file, opts.set.map(parseSetFlag));
      if (!isStudy(loaded.raw)) throw new InputError(`${file}: not a study (no variants, sweep or repeats > 1); run it with: regtrain run ${file}`);
      const { studyDir, members } = prepareStudy(loaded, { out: opts.out, specFile: file, sets: opts.set });
      if (opts.json) {
        const plan = members.map((m) => ({ member: m.name, argv: [process.execPath, ...memberArgs(studyDir, m.name)], command: memberCommand(studyDir, m.name) }));
        process.stdout.write(JSON.stringify(plan, null, 2) + '\n');
      } else {
        process.stdout.write(members.map((m) => memberCommand(studyDir, m.name) + '\n').join(''));
      }
      const rel = path.relative(process.cwd(), studyDir) || '.';
      process.stderr.write(`${members.length} commands for ${studyDir}; afterwards: regtrain compare ${rel}\n`);
    });
}
