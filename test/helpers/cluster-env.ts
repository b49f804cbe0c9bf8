/**
 * What the cluster tests share: a scratch folder, `regtrain` on PATH as on a machine where it is
 * installed (the artifacts name no path of this checkout), and an environment free of the
 * scheduler variables this process may have inherited.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN } from './cli';
import { scratchDir } from './scratch';

export { BIN, ROOT } from './cli';

export function clusterEnv(
  prefix: string,
  opts: { dropRegtrainVars?: boolean } = {},
): { tmp: string; pathBin: string; env: NodeJS.ProcessEnv } {
  const tmp = scratchDir(prefix);
  const pathBin = path.join(tmp, 'path-bin');
  fs.mkdirSync(pathBin);
  fs.symlinkSync(BIN, path.join(pathBin, 'regtrain'));
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${pathBin}${path.delimiter}${process.env.PATH ?? ''}` };
  for (const k of Object.keys(env))
    if (k.startsWith('SLURM_') || k === 'JOB_COMPLETION_INDEX' || (opts.dropRegtrainVars && k.startsWith('REGTRAIN_')))
      delete env[k];
  return { tmp, pathBin, env };
}
