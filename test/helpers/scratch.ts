/**
 * Scratch directories for a test file, under the temp directory, removed when the file's process exits, whether its
 * tests passed or failed. (Made with a bare mkdtemp, a suite run left hundreds of directories behind, 69 MB for
 * each resume test file alone: weeks of runs filled a developer's disk.) REGTRAIN_TEST_KEEP_TMP=1 keeps them, to
 * look inside after a failure.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const made: string[] = [];

function removeAll(): void {
  if (process.env.REGTRAIN_TEST_KEEP_TMP === '1') return;
  for (const dir of made) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // Something still holds it (a detached Slurm job writing its log): leave it to the OS's temp cleaner.
    }
  }
}

/** A new empty directory, `${prefix}` and six random characters, under the temp directory; gone at exit. */
export function scratchDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (made.push(dir) === 1) process.once('exit', removeAll);
  return dir;
}
