import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command, Option } from 'commander';
import { ARTIFACT_FILES, artifactText, parseSiteOptions, type ArtifactFormat, type SiteFlags } from '../cluster';
import { FailureError, InputError, errorMessage } from '../errors';
import { packageRoot, writeFileAtomic } from '../fsutil';
import { loadSpec, parseSetFlag } from '../spec';
import { isStudy, memberCap, prepareStudy, studyHash } from '../study';
import { checkArtifactText, shellQuote } from '../shell';
import { collect } from './common';
import { regtrainCommand, whichCommand } from '../invocation';
import { stderr, stdout } from '../output';

interface PlanOptions extends SiteFlags {
  format: ArtifactFormat;
  studyDir?: string;
  out?: string;
  set: string[];
  json?: boolean;
  maxMembers?: string;
}

const NEXT: Record<ArtifactFormat, (rel: string) => string> = {
  slurm: (rel) => `submit with: bash ${rel}/slurm.sbatch`,
  k8s: (rel) => `copy ${rel} into the studies volume, then: kubectl apply -f ${rel}/k8s.yaml`,
  parallel: (rel) => `run with: bash ${rel}/parallel.sh`,
  lines: (rel) => `run each line anywhere that sees ${rel}, e.g.: parallel < ${rel}/members.txt`,
};

/**
 * `regtrain plan SPEC --format slurm|k8s|parallel|lines`: creates the study directory once
 * (studies/<name>-<hash>; planning the same study again reuses it), freezes the member specs
 * in it and writes the scheduler artifact there. No scheduler of our own: every member is a
 * `regtrain run-member STUDY_DIR --index I`, and `compare STUDY_DIR` merges whatever finished.
 */
export function planCommand(): Command {
  return new Command('plan')
    .description(
      'freeze a study into its directory and write a Slurm array script, a Kubernetes Indexed Job, a GNU parallel script or plain command lines for it',
    )
    .argument('<spec>', 'experiment spec (YAML) with variants, sweep and/or repeats')
    .addOption(
      new Option('--format <format>', 'what to write into the study directory')
        .choices(['slurm', 'k8s', 'parallel', 'lines'])
        .default('lines'),
    )
    .option('--study-dir <dir>', 'the study directory (default: studies/<name>-<hash of the resolved study>)')
    .addOption(new Option('--out <dir>', 'same as --study-dir').hideHelp())
    .option(
      '--set <path=value>',
      'override a field of the base spec, e.g. --set training.epochs=3 (repeatable)',
      collect,
      [],
    )
    .option('--json', 'print one JSON line {"studyDir","artifact","members"} instead of the artifact\'s path')
    .option('--max-members <n>', 'refuse studies with more members than this (default: $REGTRAIN_MAX_MEMBERS or 10000)')
    .option(
      '--jobs <n>',
      'members running at once (Slurm array %N, Kubernetes parallelism, parallel --jobs; default: no limit)',
    )
    .option(
      '--cpus <n>',
      'CPUs per member (Slurm --cpus-per-task, Kubernetes CPU request and limit, BLAS threads)',
      '1',
    )
    .option('--mem <size>', 'memory per member, e.g. 2G (Slurm --mem; Kubernetes 2Gi)', '2G')
    .option('--time <time>', 'wall time per member, [D-]HH:MM:SS or minutes (Slurm --time)', '2:00:00')
    .option('--partition <name>', "Slurm partition (default: the cluster's default)")
    .option('--image <ref>', 'Kubernetes: container image with regtrain installed (default: regtrain:<version>)')
    .option(
      '--data-dir <dir>',
      'the dataset on the nodes (Kubernetes: where the data volume is mounted, default /data)',
    )
    .option(
      '--regtrain <command>',
      'how regtrain is invoked on the nodes, e.g. "node /opt/regtrain/bin/regtrain" (checked here; not npx, which does not pass SIGTERM on)',
      'regtrain',
    )
    .option('--pvc <name>', 'Kubernetes: PersistentVolumeClaim holding the study directory', 'regtrain-studies')
    .option('--data-pvc <name>', 'Kubernetes: PersistentVolumeClaim holding the dataset', 'regtrain-data')
    .action((file: string, opts: PlanOptions) => {
      if (
        opts.studyDir !== undefined &&
        opts.out !== undefined &&
        path.resolve(opts.studyDir) !== path.resolve(opts.out)
      )
        throw new InputError('--out and --study-dir name different directories; give one');
      const site = parseSiteOptions(opts);
      if (opts.format !== 'k8s') checkLauncher(site.regtrain, opts.regtrain, opts.format !== 'lines');
      const maxMembers = memberCap(opts.maxMembers);
      const loaded = loadSpec(file, opts.set.map(parseSetFlag));
      if (!isStudy(loaded.raw))
        throw new InputError(
          `${file}: not a study (no variants, sweep or repeats > 1); run it with: ${regtrainCommand()} run ${shellQuote(file)}`,
        );
      const dir = opts.studyDir ?? opts.out;
      if (dir !== undefined) {
        const flag = opts.studyDir !== undefined ? '--study-dir' : '--out';
        checkArtifactText(flag, dir);
        checkArtifactText(flag, path.relative(process.cwd(), path.resolve(dir)));
      }
      const { studyDir, members, created } = prepareStudy(loaded, {
        ...(dir !== undefined ? { out: dir } : {}),
        specFile: file,
        sets: opts.set,
        maxMembers,
      });
      const rel = path.relative(process.cwd(), studyDir) || '.';
      const study = {
        name: loaded.spec.name,
        dirName: path.basename(studyDir),
        relDir: rel,
        members: members.length,
        hash: studyHash(members),
      };
      const artifact = path.join(studyDir, ARTIFACT_FILES[opts.format]);
      try {
        if (opts.format === 'slurm') fs.mkdirSync(path.join(studyDir, 'logs'), { recursive: true });
        writeFileAtomic(artifact, artifactText(opts.format, study, site));
        if (opts.format !== 'lines' && opts.format !== 'k8s') fs.chmodSync(artifact, 0o755);
      } catch (err) {
        throw new FailureError(`${artifact}: cannot write (${errorMessage(err)})`);
      }
      if (opts.json) stdout().write(JSON.stringify({ studyDir, artifact, members: members.length }) + '\n');
      else stdout().write(path.relative(process.cwd(), artifact) + '\n');
      stderr().write(
        `${created ? 'planned' : 'found'} study ${loaded.spec.name}: ${members.length} members in ${rel}; ${NEXT[opts.format](shellQuote(rel))}; progress: ${regtrainCommand()} status ${shellQuote(rel)}; afterwards: ${regtrainCommand()} compare ${shellQuote(rel)}\n`,
      );
    });
}

/**
 * Slurm, GNU parallel and the lines run --regtrain on this machine or its cluster: refuse a
 * launcher that does not resolve here (every task would die with "not found"), and warn about
 * npx, which does not pass SIGTERM on, so that scancel, requeue and preemption would not save.
 */
function checkLauncher(words: string[], given: string, refuse: boolean): void {
  const ours = `node ${shellQuote(path.join(packageRoot(), 'bin', 'regtrain'))}`;
  const fix = `put regtrain on PATH (npm install -g . in ${shellQuote(packageRoot())}) or pass --regtrain ${shellQuote(ours)}`;
  const problem = (text: string) => {
    if (refuse) throw new InputError(`--regtrain ${shellQuote(given)}: ${text}`);
    stderr().write(`warning: --regtrain ${shellQuote(given)}: ${text}\n`);
  };
  const [first, second] = words as [string, ...string[]];
  if (whichCommand(first) === null)
    problem(`${first} is not on PATH here, so every member would fail with "${first}: not found"; ${fix}`);
  else if (
    refuse &&
    path.basename(first) === 'node' &&
    second !== undefined &&
    !second.startsWith('-') &&
    !path.isAbsolute(second)
  )
    problem(
      `members run inside the study directory; give the script's absolute path, e.g. --regtrain ${shellQuote(ours)}`,
    );
  if (path.basename(first) === 'npx' || (path.basename(first) === 'npm' && second === 'exec'))
    stderr().write(
      `warning: --regtrain ${shellQuote(given)}: npx does not pass SIGTERM on to regtrain, so scancel, requeue and preemption would not save; ${fix}\n`,
    );
}
