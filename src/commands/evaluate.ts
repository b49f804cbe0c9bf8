import { Command } from 'commander';
import type { BackendChoice } from '../backend';
import { addDataOptions, backendOption } from './common';

export interface EvaluateOptions {
  json?: boolean;
  backend?: BackendChoice;
  testLimit?: string;
  best?: boolean;
  dataDir?: string;
  source: string[];
}

export function evaluateCommand(): Command {
  const cmd = new Command('evaluate')
    .description(
      "re-evaluate a saved run's model on the test set: loss, accuracy, per-class accuracy, confusion matrix",
    )
    .argument('<run-dir>', 'a run directory written by `regtrain run`')
    .addOption(backendOption())
    .option('--test-limit <n>', 'evaluate on the first N test images only')
    .option(
      '--best',
      "evaluate the best epoch's model (RUN_DIR/best/, kept by training.checkpoint.saveBest) instead of the final one",
    )
    .option(
      '--json',
      'print the result as one JSON line: runDir, loss, accuracy, count, ece, brier, nll, perClass, confusion, reliability',
    );
  return addDataOptions(cmd).action(async (dir: string, opts: EvaluateOptions) => {
    // The tensor side (tfjs, the model, the data) loads here, not when regtrain starts.
    const { evaluateRun } = await import('./evaluate-run');
    await evaluateRun(dir, opts);
  });
}
