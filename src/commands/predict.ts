import { Command } from 'commander';
import type { BackendChoice } from '../backend';
import { addDataOptions, backendOption, collect } from './common';

export interface PredictOptions {
  testIndex: string[];
  json?: boolean;
  backend?: BackendChoice;
  best?: boolean;
  dataDir?: string;
  source: string[];
}

export function predictCommand(): Command {
  const cmd = new Command('predict')
    .description("classify images with a saved run's model: the 3 most probable classes of each")
    .argument('<run-dir>', 'a run directory written by `regtrain run`')
    .argument('[images...]', 'PNG files (any size, grey or colour; made into 28×28 Fashion-MNIST images, see README)')
    .option(
      '--test-index <n>',
      'classify test image N (0-based; the test set as evaluate loads it, repeatable)',
      collect,
      [],
    )
    .option(
      '--best',
      "use the best epoch's model (RUN_DIR/best/, kept by training.checkpoint.saveBest) instead of the final one",
    )
    .option('--json', 'print JSON lines, one object per image')
    .addOption(backendOption());
  return addDataOptions(cmd).action(async (dir: string, images: string[], opts: PredictOptions) => {
    // The tensor side (tfjs, the model, the data) loads here, not when regtrain starts.
    const { predict } = await import('./predict-run');
    await predict(dir, images, opts);
  });
}
