/**
 * The end of a run, as the last callback: when training stops, evaluate the model again on the
 * test and training sets (a complete run only), write the history, the model and metrics.json
 * through the run directory, then say how the run ended: the test result, or the interruption
 * (with the command that continues it) or the non-finite loss as a typed error.
 */
import * as tf from '../../tf';
import { FailureError, InterruptedError } from '../../errors';
import { packageVersion } from '../../fsutil';
import { parameterCounts } from '../../model';
import { confusionOf, RUN_FORMAT_VERSION, type MetricsFile } from '../../runformat';
import { evaluateSplit } from '../forward';
import { calibration } from '../../evaluation/calibration';
import { NUM_CLASSES } from '../../spec';
import { weightPenalty } from '../penalties';
import { weightHistograms, weightStats } from '../weight-stats';
import type { Callback, TrainEndLogs } from './callback';
import { PHASE, type CallbackDeclaration, type RunContext } from './declaration';
import { EarlyStopping } from './early-stopping';
import { calibrationLine, fmtDuration, fmtLogValue } from './epoch-lines';
import { History } from './history';
import { MovingAverageEnd, StochasticWeightAveraging } from './weight-averaging';

export class FinalEvaluation implements Callback {
  readonly name = 'final-evaluation';

  constructor(private readonly run: RunContext) {}

  async onTrainEnd(logs: TrainEndLogs): Promise<void> {
    const { spec, built, data, backend, out, elapsed, dir } = this.run;
    const own = this.run.callbacks().callbacks;
    const history = own.find((c): c is History => c instanceof History)!.records;
    const earlyStopping = own.find((c): c is EarlyStopping => c instanceof EarlyStopping) ?? null;
    const averaged = own.find((c) => c instanceof MovingAverageEnd || c instanceof StochasticWeightAveraging)?.record;
    const complete = logs.stopReason === 'epochs' || logs.stopReason === 'early-stopping';
    let test: MetricsFile['test'] = null;
    let trainEval: MetricsFile['trainEval'] = null;
    let confusion: MetricsFile['confusion'];
    let testCalibration: MetricsFile['calibration'];
    if (complete) {
      const penalty = weightPenalty(built);
      const t = evaluateSplit(built, data.test, { probabilities: true });
      test = { loss: t.dataLoss + t.activityPenalty + penalty, accuracy: t.accuracy, count: t.count };
      confusion = confusionOf(data.test.labels, t.predictions, data.classNames);
      testCalibration = calibration(t.probabilities!, data.test.labels, NUM_CLASSES);
      const tr = evaluateSplit(built, data.train);
      trainEval = { loss: tr.dataLoss + tr.activityPenalty + penalty, accuracy: tr.accuracy, count: tr.count };
    }
    const bestEpoch = earlyStopping?.bestEpoch || null;
    const metrics: MetricsFile = {
      formatVersion: RUN_FORMAT_VERSION,
      regtrainVersion: packageVersion(),
      status: complete ? 'complete' : logs.stopReason === 'interrupted' ? 'incomplete' : 'failed',
      stopReason: logs.stopReason,
      name: spec.name,
      seed: spec.seed,
      backend: { name: backend.name, reason: backend.reason },
      versions: { regtrain: packageVersion(), tfjs: tf.version.tfjs, node: process.versions.node },
      dataset: {
        source: data.source,
        sha256: data.sha256,
        normalization: data.normalization,
        sizes: { train: data.train.count, validation: data.validation?.count ?? 0, test: data.test.count },
      },
      epochsRun: history.length,
      bestEpoch,
      test,
      trainEval,
      ...(confusion ? { confusion } : {}),
      ...(testCalibration ? { calibration: testCalibration } : {}),
      ...(averaged ? { weightAveraging: averaged } : {}),
      seconds: { total: elapsed(), perEpoch: history.map((e) => e.seconds) },
      peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
      finalWeights: weightStats(built),
      histograms: weightHistograms(built),
      parameters: parameterCounts(built.model),
    };
    await dir.finish(history, built.model, metrics);

    const runDir = dir.path;
    if (logs.stopReason === 'interrupted') {
      const k = history.length;
      const where =
        k > 0
          ? `after epoch ${k} of ${spec.training.epochs}; the history and the model so far are saved in ${runDir}`
          : `in epoch 1 of ${spec.training.epochs}, before any epoch was saved`;
      const signal = this.run.signal();
      const resume = this.run.resumeCommand;
      throw new InterruptedError(`interrupted (${signal ?? 'signal'}) ${where}; continue with: ${resume}`, {
        signal,
        lastEpoch: k,
        runDir,
        resume,
      });
    }
    if (logs.stopReason === 'non-finite-loss') {
      const at = logs.nonFinite!;
      throw new FailureError(
        `the ${at.step === null ? 'validation loss' : 'loss'} became NaN or infinite at epoch ${at.epoch}${at.step === null ? '' : `, step ${at.step}`}: training stopped; try a smaller learning rate or smaller penalties (history so far is in ${runDir})`,
      );
    }
    if (logs.stopReason === 'early-stopping')
      out.info(`Early stopping after epoch ${history.length}${bestEpoch ? `; best epoch ${bestEpoch}` : ''}`);
    else if (bestEpoch && earlyStopping?.restoresBest())
      out.info(`Restored the weights of epoch ${bestEpoch} (best ${spec.training.earlyStopping?.monitor})`);
    out.result(
      `Test: loss: ${fmtLogValue(test!.loss)} - accuracy: ${test!.accuracy.toFixed(4)} (${test!.count} images)`,
    );
    if (testCalibration) out.result(calibrationLine(testCalibration));
    out.result(`Done in ${fmtDuration(elapsed())}; run directory: ${runDir}`);
    out.event({
      event: 'test',
      loss: test!.loss,
      accuracy: test!.accuracy,
      count: test!.count,
      ...(testCalibration ? { ece: testCalibration.ece, brier: testCalibration.brier, nll: testCalibration.nll } : {}),
      train_accuracy: trainEval!.accuracy,
    });
    out.end({
      event: 'done',
      runDir,
      seconds: elapsed(),
      epochs: history.length,
      stopReason: logs.stopReason,
      peakRssMB: metrics.peakRssMB,
    });
  }
}

/** Last: after every other callback's end of training (early stopping's restored weights, TensorBoard's flush). */
export const finalEvaluationDeclaration: CallbackDeclaration = {
  order: PHASE.finish,
  make: (run) => new FinalEvaluation(run),
};
