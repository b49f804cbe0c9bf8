/**
 * One tiny real run made in this process (the same command, `regtrain run configs/quick.yaml` on a small slice,
 * through test/helpers/in-process.ts): the finished run directory that in-process refusal tests copy and tamper
 * with, without starting a child process to train or to check each message.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QUICK, TINY_RUN } from './cli';
import { sharedDataDir } from './data';
import { regtrainInProcess, type InProcessResult } from './in-process';

export interface TinyRun {
  /** The finished run directory, `tmp`/run. */
  run: string;
  /** `regtrain ...args` in this process, where and as the run was made: in `tmp`, reading the shared dataset
   * cache (which the callers only read too), with `tmp`/xdg as XDG_CACHE_HOME. */
  regtrain(args: string[]): Promise<InProcessResult>;
}

/** Under `tmp`, a finished run trained with `TINY_RUN` + `extra`. */
export async function tinyRunDir(tmp: string, extra: string[] = []): Promise<TinyRun> {
  const env = { REGTRAIN_DATA_DIR: sharedDataDir(), XDG_CACHE_HOME: path.join(tmp, 'xdg') };
  const regtrain = (args: string[]) => regtrainInProcess(args, { cwd: tmp, env });
  const run = path.join(tmp, 'run');
  const r = await regtrain(['run', QUICK, ...TINY_RUN, ...extra, '--out', run, '-q']);
  if (r.code !== 0 || !fs.existsSync(path.join(run, 'metrics.json')))
    throw new Error(`the reference run failed (exit ${r.code}):\n${r.stderr}`);
  return { run, regtrain };
}
