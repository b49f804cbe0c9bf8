import type { EpochRecord } from '../../runformat';
import type { Callback, TrainingContext } from './callback';

/** Keras's number format in logs: 4 decimals, or 4 significant digits in exponent form below 1e-3. */
export function fmtLogValue(v: number): string {
  return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(4) : v.toFixed(4);
}

/** `4.2s` below a minute (as rounded), then `2m00s` (whole seconds), then `1h05m`: never `1m60s` or `60.0s`. */
export function fmtDuration(s: number): string {
  if (Math.round(s * 10) < 600) return `${s.toFixed(1)}s`;
  const total = Math.round(s);
  const m = Math.floor(total / 60);
  return m < 60 ? `${m}m${String(total - 60 * m).padStart(2, '0')}s` : `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** `Epoch 3/60 - 1.3s - loss: … - accuracy: … - val_loss: … - val_accuracy: … - penalty: … - lr: …`, as Keras logs an epoch. */
export function epochLine(r: EpochRecord, epochs: number): string {
  const parts = [`Epoch ${r.epoch}/${epochs}`, fmtDuration(r.seconds), `loss: ${r.loss.toFixed(4)}`, `accuracy: ${r.accuracy.toFixed(4)}`];
  if (r.val_loss !== null) parts.push(`val_loss: ${r.val_loss.toFixed(4)}`);
  if (r.val_accuracy !== null) parts.push(`val_accuracy: ${r.val_accuracy.toFixed(4)}`);
  if (r.penalty > 0) parts.push(`penalty: ${r.penalty.toFixed(4)}`);
  if (r.lr !== undefined) parts.push(`lr: ${fmtLogValue(r.lr)}`);
  return parts.join(' - ');
}

/** Prints one line per epoch (Keras's verbose=2). */
export class EpochLines implements Callback {
  readonly name = 'epochLines';
  constructor(private readonly print: (line: string) => void) {}

  onEpochEnd(_epoch: number, logs: EpochRecord, ctx: TrainingContext): void {
    this.print(epochLine(logs, ctx.epochs));
  }
}
