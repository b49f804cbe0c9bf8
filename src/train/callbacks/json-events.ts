import type { EpochRecord } from '../../runformat';
import type { Callback, TrainingContext } from './callback';
import { PHASE, type CallbackDeclaration } from './declaration';

export type EventSink = (event: Record<string, unknown>) => void;

/** The `training` event when training starts and an `epoch` event per epoch, for `--json`. */
export class JsonEvents implements Callback {
  readonly name = 'jsonEvents';
  constructor(
    private readonly emit: EventSink,
    private readonly training: () => Record<string, unknown>,
  ) {}

  onTrainBegin(ctx: TrainingContext, resumedAfterEpoch: number): void {
    this.emit({
      event: 'training',
      epochs: ctx.epochs,
      steps: ctx.stepsPerEpoch,
      resumedAfterEpoch,
      ...this.training(),
    });
  }

  onEpochEnd(_epoch: number, logs: EpochRecord, ctx: TrainingContext): void {
    this.emit({ event: 'epoch', ...logs, trainSeconds: ctx.trainSeconds });
  }
}

export const jsonEventsDeclaration: CallbackDeclaration = {
  order: PHASE.present + 20,
  make: ({ out, elapsed, step, backend }) =>
    new JsonEvents(
      (e) => out.event(e),
      () => ({ seconds: elapsed(), step: step.description, blas: backend.blas, gemm: backend.gemm }),
    ),
};
