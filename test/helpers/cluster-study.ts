/**
 * The reference a cluster test compares a scheduler's result with: the study planned and every member trained in
 * this process (`regtrain plan`, then `regtrain run-member --index I` for each member, through
 * test/helpers/in-process.ts), the same commands `regtrain run STUDY --jobs 1` runs one child process each for.
 * A member process spends ~0.5 CPU-s starting (Node, tfjs, the wasm backend) before it trains a tiny slice for a
 * fraction of that; here that start-up is paid once per test file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { regtrainInProcess, type InProcessResult } from './in-process';

/** Scheduler variables a test process may have inherited: none may pick the member in place of --index. */
const SCHEDULER_VARS = ['SLURM_ARRAY_TASK_ID', 'JOB_COMPLETION_INDEX', 'SLURM_CPUS_PER_TASK'] as const;

/** `regtrain ...args` in this process, in `cwd`, with `env` set over this process's and no scheduler variables. */
export function regtrainHere(
  args: string[],
  cwd: string,
  env: Record<string, string | undefined> = {},
): Promise<InProcessResult> {
  const unset = Object.fromEntries(SCHEDULER_VARS.map((k) => [k, undefined]));
  return regtrainInProcess(args, { cwd, env: { ...unset, ...env } });
}

/**
 * Plans `specFile` into `studyDir` (relative to `cwd`) and runs each member in this process, one at a time;
 * `expectFailed` names the members expected to fail (exit 1). Returns the members' names, in index order.
 */
export async function studyInProcess(
  specFile: string,
  studyDir: string,
  opts: { cwd: string; env: Record<string, string | undefined>; expectFailed?: string[] },
): Promise<string[]> {
  const planned = await regtrainHere(['plan', specFile, '--study-dir', studyDir], opts.cwd, opts.env);
  if (planned.code !== 0) throw new Error(`plan ${specFile} failed (exit ${planned.code}):\n${planned.stderr}`);
  const members = (
    JSON.parse(fs.readFileSync(path.resolve(opts.cwd, studyDir, 'study.json'), 'utf8')) as {
      members: { name: string }[];
    }
  ).members.map((m) => m.name);
  for (const [index, name] of members.entries()) {
    const r = await regtrainHere(['run-member', studyDir, '--index', String(index), '-q'], opts.cwd, opts.env);
    const expected = opts.expectFailed?.includes(name) ? 1 : 0;
    if (r.code !== expected)
      throw new Error(
        `member ${index} (${name}) of the reference ended with exit ${r.code}, not ${expected}:\n${r.stderr}`,
      );
  }
  return members;
}
