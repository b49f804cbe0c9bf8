import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { InputError } from '../errors';
import { liveHolder, readLock } from '../lock';
import { LOCK_FILE } from '../rundir';
import { memberRunDir, readStudy, runState } from '../study';
import { shellQuote } from '../shell';
import { stdout } from '../output';

export type MemberState = 'done' | 'running' | 'interrupted' | 'failed' | 'not-started';
const ORDER: MemberState[] = ['done', 'running', 'interrupted', 'failed', 'not-started'];

export interface MemberStatus {
  index: number;
  name: string;
  state: MemberState;
  /** A Slurm task that started and died before its run began: its log, relative to the study directory. */
  log?: string;
}

/** One member's state from its run directory: its metrics, else whether a live process holds its lock. */
export function memberState(runDir: string): MemberState {
  const files = runState(runDir);
  if (files === 'complete') return 'done';
  if (files === 'failed') return 'failed';
  if (files === 'absent') return 'not-started';
  const lock = readLock(path.join(runDir, LOCK_FILE));
  return lock && liveHolder(lock) ? 'running' : 'interrupted';
}

export function studyStatus(studyDir: string): MemberStatus[] {
  const members: MemberStatus[] = readStudy(studyDir).members.map((m, index) => ({
    index,
    name: m.name,
    state: memberState(memberRunDir(studyDir, m.name)),
  }));
  const queued = slurmQueue();
  for (const m of members) {
    if (m.state !== 'not-started') continue;
    const log = deadTaskLog(studyDir, m.index, queued);
    if (log !== null) Object.assign(m, { state: 'failed', log });
  }
  return members;
}

/** The array tasks Slurm still has (pending or running) as JOB_TASK, or null where squeue does not answer. */
function slurmQueue(): Set<string> | null {
  const r = spawnSync('squeue', ['-h', '-r', '-o', '%i'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 ? new Set(r.stdout.split('\n').filter(Boolean)) : null;
}

/**
 * A member with no run directory whose Slurm task nevertheless wrote its log (logs/JOB_TASK.out)
 * and is no longer queued died before its run began (e.g. "exec: regtrain: not found"): that
 * log, else null. Without squeue, a log holding more than the task's first line counts too.
 */
function deadTaskLog(studyDir: string, index: number, queued: Set<string> | null): string | null {
  let names: string[];
  try {
    names = fs
      .readdirSync(path.join(studyDir, 'logs'))
      .filter((f) => f.endsWith(`_${index}.out`) && /^\d+_\d+\.out$/.test(f));
  } catch {
    return null;
  }
  const newest = names
    .map((f) => ({ f, mtime: fs.statSync(path.join(studyDir, 'logs', f)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime)[0];
  if (!newest) return null;
  if (queued !== null) return queued.has(newest.f.slice(0, -'.out'.length)) ? null : path.join('logs', newest.f);
  const text = fs.readFileSync(path.join(studyDir, 'logs', newest.f), 'utf8');
  const attempt = text.slice(text.lastIndexOf(`task ${index} on `));
  return attempt.trim().split('\n').length > 1 ? path.join('logs', newest.f) : null;
}

/** 0,1,2,4,7,8 → "0-2,4,7-8": the form Slurm's --array and humans read. */
export function indexRanges(indexes: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < indexes.length; i++) {
    let j = i;
    while (j + 1 < indexes.length && indexes[j + 1] === indexes[j]! + 1) j++;
    out.push(i === j ? String(indexes[i]) : `${indexes[i]}-${indexes[j]}`);
    i = j;
  }
  return out.join(',');
}

interface StatusOptions {
  json?: boolean;
  wait?: boolean;
  poll: string;
}

/** `regtrain status STUDY_DIR`: members done / running / interrupted / failed / not started, by index. */
export function statusCommand(): Command {
  return new Command('status')
    .description(
      'show how far a study has got: members done, running, interrupted, failed and not started, with their indexes',
    )
    .argument('<study-dir>', 'a study directory')
    .option('--json', 'one JSON line per member: {"index","name","state"}')
    .option('--wait', 'first wait until every member is done or failed (e.g. before compare in a Kubernetes Job)')
    .option('--poll <seconds>', 'with --wait: seconds between looks', '30')
    .action(async (dir: string, opts: StatusOptions) => {
      const poll = Number(opts.poll);
      if (!/^\d+(\.\d+)?$/.test(opts.poll) || poll <= 0 || poll > 86400)
        throw new InputError(`--poll ${opts.poll}: expected seconds from 0 to 86400`);
      const studyDir = path.resolve(dir);
      let members = studyStatus(studyDir);
      while (opts.wait && members.some((m) => m.state !== 'done' && m.state !== 'failed')) {
        await new Promise((resolve) => setTimeout(resolve, poll * 1000));
        members = studyStatus(studyDir);
      }
      if (opts.json) {
        stdout().write(members.map((m) => JSON.stringify(m) + '\n').join(''));
        return;
      }
      const study = readStudy(studyDir);
      const rel = path.relative(process.cwd(), studyDir) || '.';
      const lines = [
        `study ${study.name} in ${rel}: ${members.filter((m) => m.state === 'done').length} of ${members.length} members done`,
      ];
      for (const state of ORDER) {
        const idx = members.filter((m) => m.state === state).map((m) => m.index);
        lines.push(
          `  ${state.replace('-', ' ').padEnd(12)} ${String(idx.length).padStart(4)}${idx.length ? `  ${indexRanges(idx)}` : ''}`,
        );
      }
      for (const m of members)
        if (m.log !== undefined)
          lines.push(
            `member ${m.index} (${m.name}) died before its run began: read ${shellQuote(path.join(rel, m.log))}`,
          );
      const retry = members
        .filter((m) => m.state === 'interrupted' || m.state === 'not-started' || m.log !== undefined)
        .map((m) => m.index);
      if (retry.length && fs.existsSync(path.join(studyDir, 'slurm.sbatch')))
        lines.push(
          `resubmit the unfinished ones${members.some((m) => m.log !== undefined) ? ' (after fixing what the logs say)' : ''}, with a new compare after them: bash ${shellQuote(path.join(rel, 'slurm.sbatch'))} --array=${indexRanges(retry)}`,
        );
      stdout().write(lines.join('\n') + '\n');
    });
}
