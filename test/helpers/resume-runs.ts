/**
 * For the resume tests: regtrain run in this process (test/helpers/in-process.ts) for the uninterrupted
 * reference runs, the resumes and the refusals whose numbers, files and messages a test reads, while the run to
 * be resumed is a real process killed by a real signal. A child costs ~1 CPU-s a run; here a run costs ~0.3
 * after the first.
 *
 * Like with like: the tfjs backend and the matmul kernels are chosen per process, and this process keeps the
 * kernels its first run installed, so a run on the reference step (REGTRAIN_ACCEL=off, read when the backend
 * starts) needs a process of its own: it is refused here rather than run on the wrong kernels. A resume can run
 * here: a checkpoint names the weights as model.json does, whatever suffix tfjs gave them in this process.
 */
import { regtrainInProcess, type InProcessResult } from './in-process';

/** `regtrain ...args` in this process, in `cwd`, with `env` (and `extraEnv`) set over this process's environment. */
export function inProcessRegtrain(
  cwd: string,
  env: Record<string, string>,
): (args: string[], extraEnv?: Record<string, string>) => Promise<InProcessResult> {
  return (args, extraEnv = {}) => {
    const vars = { ...env, ...extraEnv };
    if (/^(off|0|false|no)$/i.test(vars.REGTRAIN_ACCEL ?? ''))
      throw new Error('REGTRAIN_ACCEL=off takes a process of its own (this one keeps the kernels it installed)');
    return regtrainInProcess(args, { cwd, env: vars });
  };
}
