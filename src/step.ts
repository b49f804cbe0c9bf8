import { BackendInfo } from './backend';
import { BuiltModel } from './model';
import { ExperimentSpec } from './spec';
import { createReferenceStep, TrainStep } from './train';

/**
 * Chooses what runs under the training-step seam. `run` only ever sees a TrainStep;
 * faster paths slot in here, with the reference path as the fallback that always works.
 */
export function createTrainStep(built: BuiltModel, spec: ExperimentSpec, _backend: BackendInfo): TrainStep {
  return createReferenceStep(built, spec.optimizer.sgd);
}
