/**
 * One tiny real run made in this process (the same command, `regtrain run configs/quick.yaml` on a small slice,
 * through test/helpers/in-process.ts): the finished run directory that in-process refusal tests copy and tamper
 * with, without starting a child process to train or to check each message.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QUICK, TINY_RUN } from './cli';
import { sharedDataDir } from './data';
import { regtrainInProcess } from './in-process';

/** Under `tmp`, a finished run (`run`) trained with `TINY_RUN` + `extra`; `cache`: the shared dataset cache it read
 * (the callers only read it too). */
export async function tinyRunDir(tmp: string, extra: string[] = []): Promise<{ run: string; cache: string }> {
  const cache = sharedDataDir();
  const run = path.join(tmp, 'run');
  const r = await regtrainInProcess(['run', QUICK, ...TINY_RUN, ...extra, '--out', run, '-q'], {
    cwd: tmp,
    env: { REGTRAIN_DATA_DIR: cache, XDG_CACHE_HOME: path.join(tmp, 'xdg') },
  });
  if (r.code !== 0 || !fs.existsSync(path.join(run, 'metrics.json')))
    throw new Error(`the reference run failed (exit ${r.code}):\n${r.stderr}`);
  return { run, cache };
}
