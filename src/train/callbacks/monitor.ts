import type { EpochRecord } from '../../runformat';
import { monitorMode, type Monitor } from '../../spec/training';

/**
 * What early stopping, ReduceLROnPlateau and the best model share (Keras 3's MonitorCallback):
 * a metric from the epoch's logs, a direction ("min" or "max", as mode "auto" decides it), and
 * the best value so far, which a value must beat by more than minDelta to count as an improvement.
 */
export abstract class MonitorCallback {
  protected readonly mode: 'min' | 'max';
  protected best: number;

  constructor(
    protected readonly monitor: Monitor,
    mode: 'auto' | 'min' | 'max',
    private readonly minDelta: number,
  ) {
    this.mode = monitorMode(monitor, mode);
    this.best = this.noBest();
  }

  /** The monitor's value in an epoch's logs; null when the epoch did not compute it (no validation, say). */
  protected current(logs: EpochRecord): number | null {
    return logs[this.monitor] ?? null;
  }

  /** Whether `value` beats the best so far by more than minDelta (NaN never does). */
  protected isImprovement(value: number): boolean {
    return this.mode === 'min' ? value < this.best - this.minDelta : value > this.best + this.minDelta;
  }

  /** The best value for a checkpoint: JSON has no Infinity, so null stands for "no best yet". */
  protected bestForState(): number | null {
    return Number.isFinite(this.best) ? this.best : null;
  }

  protected restoreBest(saved: number | null): void {
    this.best = saved ?? this.noBest();
  }

  private noBest(): number {
    return this.mode === 'max' ? -Infinity : Infinity;
  }
}
