/** regtrain's CLI as a real child process (bin/regtrain on this Node), its output collected. */
import * as path from 'node:path';
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { pathWithoutRegtrain } from './path-without-regtrain';

// Every child of a test file that uses this helper finds no regtrain on PATH, whatever is installed globally.
process.env.PATH = pathWithoutRegtrain(process.env.PATH ?? '');

export const ROOT = path.resolve(__dirname, '../../..');
export const BIN = path.join(ROOT, 'bin', 'regtrain');
/** How regtrain's hints name it when it was started as `node bin/regtrain` (as these tests do), not found on PATH. */
export const HINT = `node ${BIN}`;
export const QUICK = path.join(ROOT, 'configs', 'quick.yaml');
/** `--set` flags for a slice of the data: `train` training images, `validation` held out, `test` test images, and
 * `epochs` when given. */
export function sliceFlags(slice: { train: number; validation: number; test: number; epochs?: number }): string[] {
  return [
    ...['--set', `data.trainLimit=${slice.train}`],
    ...['--set', `data.validation.size=${slice.validation}`],
    ...['--set', `data.testLimit=${slice.test}`],
    ...(slice.epochs === undefined ? [] : ['--set', `training.epochs=${slice.epochs}`]),
  ];
}

/** A small real run, seconds long: 1,000 training images, 200 for validation, 300 for the test, 3 epochs. */
export const SMALL_SLICE = sliceFlags({ train: 1000, validation: 200, test: 300, epochs: 3 });

/** A tiny real run on the wasm backend (so that runs compare number for number): 500 training images, 100 for
 * validation, 500 for the test, 2 epochs. */
export const TINY_RUN = ['--backend', 'wasm', ...sliceFlags({ train: 500, validation: 100, test: 500, epochs: 2 })];

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `regtrain ...args` in `cwd`, `env` over this process's environment; stdout goes to `stdoutFd` when given, else a pipe. */
export function startCli(
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; stdoutFd?: number },
): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', opts.stdoutFd ?? 'pipe', 'pipe'],
  });
}

/** The child's exit and output once it closes (`onStdout` sees all of stdout after each chunk); killed after `timeoutMs`. */
export function finished(
  child: ChildProcess,
  onStdout?: (all: string) => void,
  timeoutMs = 120_000,
): Promise<CliResult> {
  return collect(child, onStdout, timeoutMs).done;
}

/** Collects the child's outputs as they come, and resolves `done` when it closes; SIGKILLs it after `timeoutMs`. */
function collect(
  child: ChildProcess,
  onStdout: ((all: string) => void) | undefined,
  timeoutMs: number,
): { stdout: () => string; stderr: () => string; done: Promise<CliResult> } {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => {
    stdout += s;
    onStdout?.(stdout);
  });
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const done = new Promise<CliResult>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { stdout: () => stdout, stderr: () => stderr, done };
}

/** Starts `regtrain ...args --json` in `cwd` with `env` as it is, and SIGKILLs it as soon as its first epoch is on stdout (so a checkpoint exists). */
export function killAfterFirstEpoch(args: string[], cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args, '--json'], { cwd, env });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"event":"epoch"')) child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      signal === 'SIGKILL'
        ? resolve()
        : reject(new Error(`run ended by itself (code ${code}) before it could be killed`)),
    );
  });
}

/** Where and how a test runs regtrain: `env` is the whole environment (this process's when left out), not added to it. */
export interface CliOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** SIGKILL after this long (default 120 s): a hang fails the test instead of stalling the suite. */
  timeoutMs?: number;
  /** Run the child as this user id (and the group of the same number): needs root. */
  uid?: number;
}

/** A `regtrain ...args` child that is running: its output so far, and its end. */
export interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** stdout then stderr, as collected so far. */
  output: () => string;
  done: Promise<CliResult>;
}

/** Starts `regtrain ...args` (stdin closed, both outputs collected); `onStdout` sees all of stdout after each chunk. */
export function launch(
  args: string[],
  opts: CliOptions & { onStdout?: (all: string, child: ChildProcess) => void } = {},
): Running {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
  });
  const c = collect(child, (all) => opts.onStdout?.(all, child), opts.timeoutMs ?? 120_000);
  return { child, ...c, output: () => c.stdout() + c.stderr() };
}

/** Runs `regtrain ...args` to its end: exit code, signal and both outputs. */
export function regtrain(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return launch(args, opts).done;
}

/** The same, synchronously (SIGKILL after 300 s by default): for before() hooks and steps that must end before the next starts. */
export function regtrainSync(args: string[], opts: CliOptions = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 300_000,
    killSignal: 'SIGKILL',
    maxBuffer: 64 << 20,
    ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
  });
}
