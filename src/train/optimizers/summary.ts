/**
 * The run header's lines for the optimizer-level regularization a spec sets (gradient clipping, the
 * EMA of the weights, SWA), after the model summary; none when it sets none.
 */
import type { ExperimentSpec } from '../../spec';
import { clippingOf } from './clipping';
import { optimizerChoice } from './registry';

const CLIPPING_WORDS = {
  clipnorm: (v: number) => `clipnorm ${v} (each variable's gradient scaled to norm ≤ ${v})`,
  globalClipnorm: (v: number) => `globalClipnorm ${v} (all gradients scaled together to global norm ≤ ${v})`,
  clipvalue: (v: number) => `clipvalue ${v} (each gradient element clipped to [−${v}, ${v}])`,
};

export function optimizerSummary(spec: ExperimentSpec): string[] {
  const { type, config } = optimizerChoice(spec.optimizer);
  const lines: string[] = [];
  const clip = clippingOf(config);
  if (clip) lines.push(`Gradient clipping (${type}): ${CLIPPING_WORDS[clip.kind](clip.value)}`);
  if (config.useEma) {
    const every = config.emaOverwriteFrequency;
    lines.push(
      `EMA of the weights (${type}): momentum ${config.emaMomentum ?? 0.99}; ${every ? `written over the model every ${every} updates and` : 'the model takes it'} at the end of training`,
    );
  }
  const swa = spec.training.swa;
  if (swa)
    lines.push(
      `SWA: average of the weights at each epoch's end from epoch ${swa.startEpoch}; then the learning rate anneals (${swa.annealStrategy}, ${swa.annealEpochs} epochs) to ${swa.learningRate}; the model takes the average and recomputed batch-norm statistics at the end`,
    );
  return lines;
}
