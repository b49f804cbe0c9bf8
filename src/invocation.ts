import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from './fsutil';
import { shellQuote } from './shell';

/**
 * How the user can start this very regtrain again from where they are, for the commands the
 * tool prints (continue with …, progress: …, compare with: …), so that a hint runs as printed:
 *
 *   `regtrain`                     when `regtrain` on PATH is this package (npm install -g ., npm link)
 *   `npx regtrain`                 when started through npx / npm exec (it adds node_modules/.bin to PATH for itself only)
 *   `node /abs/path/bin/regtrain`  otherwise (`node bin/regtrain`, a script calling the file directly)
 */
export function regtrainCommand(env: NodeJS.ProcessEnv = process.env): string {
  const bin = path.join(packageRoot(), 'bin', 'regtrain');
  if (env.npm_command === 'exec') return 'npx regtrain';
  const onPath = whichCommand('regtrain', env);
  if (onPath !== null && sameFile(onPath, bin)) return 'regtrain';
  return `node ${shellQuote(bin)}`;
}

/** The executable file `name` resolves to on `env.PATH` (or the file itself when `name` holds a slash), or null. */
export function whichCommand(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const candidates = name.includes('/')
    ? [path.resolve(name)]
    : (env.PATH ?? '')
        .split(path.delimiter)
        .filter(Boolean)
        .map((d) => path.join(d, name));
  for (const c of candidates) {
    try {
      if (fs.statSync(c).isFile()) {
        fs.accessSync(c, fs.constants.X_OK);
        return c;
      }
    } catch {
      // not there, or not executable: keep looking
    }
  }
  return null;
}

/** `regtrain run --resume DIR`, keeping the backend, --data-dir and --source the user gave (or `opts.resumeCommand`, as given). */
export function resumeCommand(
  runDir: string,
  opts: { backend?: string; dataDir?: string; source: string[]; resumeCommand?: string },
): string {
  if (opts.resumeCommand) return opts.resumeCommand;
  return [
    `${regtrainCommand()} run --resume`,
    shellQuote(runDir),
    ...(opts.backend ? ['--backend', opts.backend] : []),
    ...(opts.dataDir ? ['--data-dir', shellQuote(opts.dataDir)] : []),
    ...opts.source.flatMap((s) => ['--source', shellQuote(s)]),
  ].join(' ');
}

function sameFile(a: string, b: string): boolean {
  try {
    return fs.realpathSync(a) === fs.realpathSync(b);
  } catch {
    return false;
  }
}
