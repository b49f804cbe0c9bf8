import * as path from 'node:path';
import { Command } from 'commander';
import type { BackendChoice } from '../backend';
import { InputError, InterruptedError } from '../errors';
import { loadSpec, parseSetFlag } from '../spec';
import { isStudy, memberCap, runStudy } from '../study';
import { shellQuote } from '../shell';
import { Console } from '../console';
import { addDataOptions, backendOption, collect } from './common';
import { regtrainCommand } from '../invocation';

export interface RunOptions {
  set: string[];
  out?: string;
  backend?: BackendChoice;
  json?: boolean;
  quiet?: boolean;
  maxMembers?: string;
  dataDir?: string;
  source: string[];
  resume?: string;
  force?: boolean;
  jobs?: string;
  dryRun?: boolean;
  /** Not a flag: what continues the run after an interruption (run-member passes its own command). */
  resumeCommand?: string;
}

export function runCommand(): Command {
  const cmd = new Command('run')
    .description(
      'train the model a spec describes, report per epoch, evaluate on the test set and save a run directory',
    )
    .argument('[spec]', 'experiment spec (YAML); optional with --resume')
    .option('--set <path=value>', 'override a spec field, e.g. --set training.epochs=3 (repeatable)', collect, [])
    .option('--out <dir>', 'the run directory to create (default: runs/<name>-<UTC timestamp>)')
    .addOption(backendOption())
    .option('--json', 'stdout carries only JSON lines (one event per line); human text goes to stderr')
    .option('-q, --quiet', 'print only the final result')
    .option('--resume <run-dir>', 'continue an interrupted or crashed run from its last checkpoint')
    .option('--force', 'with --resume: accept a spec that changed since the run started (and a failed run)')
    .option(
      '--jobs <n>',
      'study specs (variants/sweep/repeats): members trained at once, each in its own process (default: one at a time)',
    )
    .option('--dry-run', 'study specs: list the members and their commands without training')
    .option(
      '--max-members <n>',
      'study specs: refuse studies with more members than this (default: $REGTRAIN_MAX_MEMBERS or 10000)',
    );
  return addDataOptions(cmd).action(async (file: string | undefined, opts: RunOptions) => {
    await runSpecFile(file, opts);
  });
}

/**
 * `run` and `run-member`: with --json, the stream ends with exactly one `done`, `failed` or
 * `interrupted` event, also when the spec is refused before anything starts.
 */
export async function runSpecFile(
  file: string | undefined,
  opts: RunOptions,
  out = new Console(!!opts.json, !!opts.quiet),
): Promise<string> {
  try {
    return await runWith(out, file, opts);
  } catch (err) {
    out.endWith(err, null);
    throw err;
  }
}

async function runWith(out: Console, file: string | undefined, opts: RunOptions): Promise<string> {
  const experimentOpts = {
    ...(opts.backend ? { backend: opts.backend } : {}),
    ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
    source: opts.source,
    ...(opts.resumeCommand ? { resumeCommand: opts.resumeCommand } : {}),
  };
  if (opts.resume) {
    if (opts.dryRun) throw new InputError('--dry-run does not go with --resume (a resume trains the run it names)');
    if (opts.out) throw new InputError(`--out does not go with --resume: the run continues in ${opts.resume}`);
    const { prepareResume } = await import('../run-directory');
    const { runExperiment } = await import('../experiment');
    const { spec, resume, origin } = prepareResume(opts.resume, file, opts.set, !!opts.force, out);
    return runExperiment(spec, experimentOpts, out, resume, origin);
  }
  if (!file) throw new InputError('run: missing the spec file (or --resume RUN_DIR)');
  const loaded = loadSpec(file, opts.set.map(parseSetFlag));
  if (isStudy(loaded.raw)) {
    const jobs = Number(opts.jobs ?? '1');
    if (!Number.isInteger(jobs) || jobs < 1 || jobs > 64)
      throw new InputError(`--jobs ${opts.jobs}: expected an integer from 1 to 64`);
    const extraArgs = [
      ...(opts.backend ? ['--backend', opts.backend] : []),
      ...(opts.dataDir ? ['--data-dir', path.resolve(opts.dataDir)] : []),
      ...opts.source.flatMap((s) => ['--source', /^[a-z]+:\/\//i.test(s) ? s : path.resolve(s)]),
      ...(opts.quiet ? ['-q'] : []),
    ];
    let results;
    try {
      results = await runStudy(loaded, {
        ...(opts.out ? { out: opts.out } : {}),
        maxMembers: memberCap(opts.maxMembers),
        jobs,
        json: !!opts.json,
        dryRun: !!opts.dryRun,
        specFile: file,
        sets: opts.set,
        extraArgs,
      });
    } catch (err) {
      if (!(err instanceof InterruptedError)) throw err;
      // Running the same command again finishes what is missing.
      const again = [
        `${regtrainCommand()} run`,
        shellQuote(file),
        ...opts.set.flatMap((s) => ['--set', shellQuote(s)]),
        ...(opts.out ? ['--out', shellQuote(opts.out)] : []),
        ...(opts.jobs ? ['--jobs', opts.jobs] : []),
      ];
      throw new InterruptedError(err.message, {
        signal: null,
        lastEpoch: 0,
        runDir: null,
        resume: [...again, ...extraArgs.map(shellQuote)].join(' '),
      });
    }
    const studyDir = results[0] ? path.dirname(path.dirname(results[0].runDir)) : '';
    if (!opts.dryRun) out.end({ event: 'done', studyDir, members: results.length });
    return studyDir;
  }
  if (opts.dryRun) throw new InputError('--dry-run: the spec has no variants, sweep or repeats (it is a single run)');
  if (opts.jobs !== undefined)
    throw new InputError('--jobs: the spec has no variants, sweep or repeats (it is a single run)');
  // The tensor side loads only for a run that trains: a refused spec or a study's parent process starts without tfjs.
  const { runExperiment } = await import('../experiment');
  return runExperiment(loaded.spec, { ...experimentOpts, ...(opts.out ? { out: opts.out } : {}) }, out, null, {
    specFile: path.resolve(file),
    sets: opts.set,
  });
}
