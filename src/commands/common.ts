import { Command, Option } from 'commander';

/** Repeatable options (--set, --source) collect into a list. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function addDataOptions(cmd: Command): Command {
  return cmd
    .option(
      '--data-dir <dir>',
      'dataset cache (default: $REGTRAIN_DATA_DIR or ~/.cache/regtrain/datasets/fashion-mnist)',
    )
    .option(
      '--source <url-or-dir>',
      'where to get Fashion-MNIST from, replacing the default list (repeatable)',
      collect,
      [],
    );
}

export function backendOption(): Option {
  return new Option('--backend <name>', 'tfjs backend (overrides the spec)').choices([
    'auto',
    'tfjs-node',
    'wasm',
    'cpu',
  ]);
}
