import * as path from 'node:path';
import { Command } from 'commander';
import { BackendChoice } from '../backend';
import { applyCpuBudget } from '../cpus';
import { InputError } from '../errors';
import { waitForSilentForeignLock } from '../lock';
import { LOCK_FILE } from '../rundir';
import { memberRunDir, memberSpecPath, readStudy, runState, type StudyFile } from '../study';
import { shellQuote } from '../shell';
import { Console } from '../console';
import { runSpecFile } from './run';
import { addDataOptions, backendOption } from './common';
import { regtrainCommand } from '../invocation';
import { stderr } from '../output';

interface RunMemberOptions {
  index?: string;
  backend?: BackendChoice;
  json?: boolean;
  quiet?: boolean;
  dataDir?: string;
  source: string[];
}

/**
 * `regtrain run-member STUDY_DIR [--index N]`: what one Slurm array task, Indexed Job pod or
 * GNU parallel job runs. Idempotent, so a scheduler may retry, requeue or preempt it freely:
 * a finished member is skipped (exit 0), a started one resumes from its checkpoint through the
 * very path of `regtrain run --resume`, a new one starts from its frozen spec.
 */
export function runMemberCommand(): Command {
  const cmd = new Command('run-member')
    .description(
      'run one member of a planned study: start it, resume it after an interruption, or skip it when finished (for Slurm arrays, Kubernetes Indexed Jobs, GNU parallel)',
    )
    .argument('<study-dir>', 'a study directory written by `regtrain plan` or `regtrain run STUDY_SPEC`')
    .option('--index <n>', 'the member, from 0 (default: $SLURM_ARRAY_TASK_ID, else $JOB_COMPLETION_INDEX)')
    .addOption(backendOption())
    .option('--json', 'stdout carries only JSON lines (one event per line); human text goes to stderr')
    .option('-q, --quiet', 'print only the final result');
  return addDataOptions(cmd).action(async (dir: string, opts: RunMemberOptions) => {
    await runMember(dir, opts);
  });
}

/** The member index from --index, else from the scheduler's environment. */
export function memberIndex(flag: string | undefined, study: StudyFile, env: NodeJS.ProcessEnv = process.env): number {
  const [raw, where] =
    flag !== undefined
      ? [flag, '--index']
      : env.SLURM_ARRAY_TASK_ID !== undefined
        ? [env.SLURM_ARRAY_TASK_ID, 'SLURM_ARRAY_TASK_ID']
        : env.JOB_COMPLETION_INDEX !== undefined
          ? [env.JOB_COMPLETION_INDEX, 'JOB_COMPLETION_INDEX']
          : [undefined, ''];
  if (raw === undefined)
    throw new InputError(
      'run-member: which member? pass --index N, or run it as a Slurm array task (SLURM_ARRAY_TASK_ID) or a Kubernetes Indexed Job pod (JOB_COMPLETION_INDEX)',
    );
  const n = study.members.length;
  if (!/^\d+$/.test(raw.trim()) || Number(raw) >= n)
    throw new InputError(
      `${where} ${raw}: expected a member index from 0 to ${n - 1} (the study has ${n} member${n === 1 ? '' : 's'})`,
    );
  return Number(raw);
}

export async function runMember(dir: string, opts: RunMemberOptions): Promise<void> {
  const out = new Console(!!opts.json, !!opts.quiet);
  try {
    await runMemberWith(out, dir, opts);
  } catch (err) {
    out.endWith(err, null);
    throw err;
  }
}

async function runMemberWith(out: Console, dir: string, opts: RunMemberOptions): Promise<void> {
  const studyDir = path.resolve(dir);
  const study = readStudy(studyDir);
  const index = memberIndex(opts.index, study);
  const member = study.members[index]!;
  const runDir = memberRunDir(studyDir, member.name);
  const say = (line: string) => {
    if (!opts.quiet) stderr().write(line + '\n');
  };
  const state = runState(runDir);
  if (state === 'complete') {
    say(`member ${index} (${member.name}) already finished; nothing to do`);
    out.end({ event: 'done', runDir, skipped: true, index, member: member.name });
    return;
  }
  const threads = applyCpuBudget();
  if (threads) say(threads);
  say(`member ${index} of ${study.members.length} (${member.name}): ${state === 'absent' ? 'starting' : 'resuming'}`);
  const started = state !== 'absent';
  if (started) await waitForSilentForeignLock(path.join(runDir, LOCK_FILE), (line) => say(`member ${index}: ${line}`));
  // The one entry into training: a new run into its directory, or `run --resume` of it.
  await runSpecFile(
    started ? undefined : memberSpecPath(studyDir, member.name),
    {
      set: [],
      source: opts.source,
      ...(started ? { resume: runDir } : { out: runDir }),
      ...(opts.backend ? { backend: opts.backend } : {}),
      ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
      json: !!opts.json,
      quiet: !!opts.quiet,
      resumeCommand: [
        `${regtrainCommand()} run-member`,
        shellQuote(dir),
        '--index',
        String(index),
        ...(opts.backend ? ['--backend', opts.backend] : []),
        ...(opts.dataDir ? ['--data-dir', shellQuote(opts.dataDir)] : []),
        ...opts.source.flatMap((s) => ['--source', shellQuote(s)]),
      ].join(' '),
    },
    out,
  );
}
