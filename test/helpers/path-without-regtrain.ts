/**
 * A PATH on which no `regtrain` is found. regtrain's hints name it bare when the regtrain on PATH is
 * this checkout, which is the case after the README's Quick start (`npm install -g .`); the tests
 * expect the hints of a regtrain started as `node bin/regtrain` and not on PATH, as on CI. Each
 * directory of PATH holding a `regtrain` is replaced by a mirror of it without one: links to every
 * other entry, so node, bash, tmux and Slurm's commands stay where they were found.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { scratchDir } from './scratch';

function mirrorWithout(dir: string, name: string): string {
  const mirror = scratchDir('regtrain-test-path-');
  // Readable by the unprivileged user some tests run regtrain as.
  fs.chmodSync(mirror, 0o755);
  for (const entry of fs.readdirSync(dir)) {
    if (entry !== name) fs.symlinkSync(path.join(dir, entry), path.join(mirror, entry));
  }
  return mirror;
}

/** `pathList` with each directory holding a regtrain replaced by a mirror without it (unchanged when none does). */
export function pathWithoutRegtrain(pathList: string): string {
  return pathList
    .split(path.delimiter)
    .map((dir) => (dir && fs.existsSync(path.join(dir, 'regtrain')) ? mirrorWithout(dir, 'regtrain') : dir))
    .join(path.delimiter);
}
