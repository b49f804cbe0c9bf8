import { Command, Option } from 'commander';
import { loadDataset, type Dataset, type FetchProgress } from '../data/dataset';
import type { ExperimentSpec } from '../spec';

/** Repeatable options (--set, --source) collect into a list. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function addDataOptions(cmd: Command): Command {
  return cmd
    .option('--data-dir <dir>', 'dataset cache (default: $REGTRAIN_DATA_DIR or ~/.cache/regtrain/datasets/fashion-mnist)')
    .option('--source <url-or-dir>', 'where to get Fashion-MNIST from, replacing the default list (repeatable)', collect, []);
}

export function backendOption(): Option {
  return new Option('--backend <name>', 'tfjs backend (overrides the spec)').choices(['auto', 'tfjs-node', 'wasm', 'cpu']);
}

/**
 * Human lines go to stdout, or to stderr when stdout is reserved for JSON lines;
 * `--quiet` keeps only warnings and the final result.
 */
export class Console {
  constructor(
    readonly json: boolean,
    readonly quiet: boolean,
  ) {}

  info(line: string): void {
    if (!this.quiet) (this.json ? process.stderr : process.stdout).write(line + '\n');
  }

  result(line: string): void {
    (this.json ? process.stderr : process.stdout).write(line + '\n');
  }

  warn(line: string): void {
    process.stderr.write(`warning: ${line}\n`);
  }

  event(obj: Record<string, unknown>): void {
    if (this.json) process.stdout.write(JSON.stringify(obj, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v)) + '\n');
  }
}

/** SIGHUP (the terminal went away) saves like SIGTERM. */
const TRAPPED = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * SIGINT/SIGTERM/SIGHUP ask the work to stop at the next safe point; a second signal gives up
 * waiting (files are written atomically, so what is on disk stays consistent).
 */
export function trapSignals(onSecond?: () => void): { stopRequested: () => boolean; signal: () => string | null; release: () => void } {
  let received: string | null = null;
  const handler = (sig: NodeJS.Signals) => {
    if (received) {
      onSecond?.();
      process.stderr.write(`\n${sig} again: stopping now\n`);
      process.exit(130);
    }
    received = sig;
    process.stderr.write(`\n${sig}: finishing the current batch, then saving (press Ctrl-C again to stop at once)\n`);
  };
  for (const sig of TRAPPED) process.on(sig, handler);
  return {
    stopRequested: () => received !== null,
    signal: () => received,
    release: () => {
      for (const sig of TRAPPED) process.off(sig, handler);
    },
  };
}

export function fmtSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}m${String(Math.round(s - 60 * m)).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** The dataset a spec asks for, from where the command line says (--data-dir, --source). */
export function loadSpecData(spec: ExperimentSpec, opts: { dataDir?: string; source: string[] }, onProgress?: (p: FetchProgress) => void): Promise<Dataset> {
  return loadDataset({
    ...(opts.dataDir ? { dataDir: opts.dataDir } : {}),
    ...(opts.source.length ? { sources: opts.source } : {}),
    normalize: spec.data.normalize,
    validation: spec.data.validation,
    trainLimit: spec.data.trainLimit,
    testLimit: spec.data.testLimit,
    seed: spec.seed,
    ...(onProgress ? { onProgress } : {}),
  });
}
