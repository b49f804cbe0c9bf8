import type { Calibration } from '../../evaluation/calibration';
import { ECE_BINS } from '../../evaluation/calibration';
import type { EpochRecord } from '../../runformat';
import type { Callback, TrainingContext } from './callback';
import { PHASE, type CallbackDeclaration } from './declaration';

/**
 * Keras's number format in logs: 4 decimals, or exponent form below 1e-3. Unlike Keras, also in
 * exponent form from 1e6 on, so that a diverged run prints `3.4485e+22`, not 23 digits.
 */
export function fmtLogValue(v: number): string {
  return v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e6) ? v.toExponential(4) : v.toFixed(4);
}

/** `4.2s` below a minute (as rounded), then `2m00s` (whole seconds), then `1h05m`: never `1m60s` or `60.0s`. */
export function fmtDuration(s: number): string {
  if (Math.round(s * 10) < 600) return `${s.toFixed(1)}s`;
  const total = Math.round(s);
  const m = Math.floor(total / 60);
  return m < 60
    ? `${m}m${String(total - 60 * m).padStart(2, '0')}s`
    : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** `Calibration: ECE: 0.0123 (15 bins) - Brier: 0.1834 - NLL: 0.3512`, after a `Test:` line (run and evaluate). */
export function calibrationLine(c: Pick<Calibration, 'ece' | 'brier' | 'nll'>): string {
  return `Calibration: ECE: ${c.ece.toFixed(4)} (${ECE_BINS} bins) - Brier: ${c.brier.toFixed(4)} - NLL: ${fmtLogValue(c.nll)}`;
}

/** `Epoch 3/60 - 1.3s - loss: … - accuracy: … - val_loss: … - val_accuracy: … - penalty: … - lr: …`, as Keras logs an epoch. */
export function epochLine(r: EpochRecord, epochs: number, showLr = true): string {
  const parts = [
    `Epoch ${r.epoch}/${epochs}`,
    fmtDuration(r.seconds),
    `loss: ${fmtLogValue(r.loss)}`,
    `accuracy: ${r.accuracy.toFixed(4)}`,
  ];
  if (r.val_loss !== null) parts.push(`val_loss: ${fmtLogValue(r.val_loss)}`);
  if (r.val_accuracy !== null) parts.push(`val_accuracy: ${r.val_accuracy.toFixed(4)}`);
  if (r.smoothing !== undefined) parts.push(`smoothing: ${fmtLogValue(r.smoothing)}`);
  if (r.penalty > 0) parts.push(`penalty: ${fmtLogValue(r.penalty)}`);
  if (r.lr !== undefined && showLr) parts.push(`lr: ${fmtLogValue(r.lr)}`);
  return parts.join(' - ');
}

/**
 * Prints one line per epoch (Keras's verbose=2). The learning rate shows on the first line and
 * whenever it changed (a schedule, ReduceLROnPlateau): a constant one would only widen each line.
 */
export class EpochLines implements Callback {
  readonly name = 'epochLines';
  private lastLr: number | undefined = undefined;
  constructor(private readonly print: (line: string) => void) {}

  onEpochEnd(_epoch: number, logs: EpochRecord, ctx: TrainingContext): void {
    this.print(epochLine(logs, ctx.epochs, this.lastLr === undefined || logs.lr !== this.lastLr));
    this.lastLr = logs.lr;
  }
}

export const epochLinesDeclaration: CallbackDeclaration = {
  order: PHASE.present + 10,
  make: ({ out }) => new EpochLines((line) => out.info(line)),
};
