import * as tf from '@tensorflow/tfjs';
import { BackendInfo, accelerationDisabled } from './backend';
import { createLeanStep } from './accel/step';
import { loadBlas } from './accel/blas';
import * as os from 'node:os';
import { BuiltModel } from './model';
import { ExperimentSpec } from './spec';
import { createReferenceStep, TrainStep } from './train';

/**
 * Chooses what runs under the training-step seam. `run` only ever sees a TrainStep.
 *
 * - The lean step (hand-written gradients, 43 tfjs kernels a step instead of model.fit's 281) when the model
 *   is Flatten + Dense layers with kernel penalties only, and either tfjs-node runs it or
 *   OpenBLAS kernels are installed: on plain wasm its extra small kernels cost more than they save.
 * - Otherwise the reference step (tfjs autodiff), which handles every layer the spec allows.
 * Both give the same losses and weights up to float32 rounding (test/accel.test.ts).
 */
export function createTrainStep(built: BuiltModel, spec: ExperimentSpec, backend: BackendInfo): TrainStep {
  const fallback = (why: string): TrainStep => {
    const ref = createReferenceStep(built, spec.optimizer.sgd);
    return Object.assign(ref, { description: `${ref.description} (${why})` });
  };
  if (accelerationDisabled()) return fallback('REGTRAIN_ACCEL=off');
  if (!backend.blas.installed && backend.name !== 'tensorflow') return fallback(`no BLAS: ${backend.blas.reason}`);
  if (built.dropout.size || built.activity.length || built.penalties.some((p) => !p.name.endsWith('/kernel'))) {
    return fallback('dropout, activity or bias penalties need autodiff');
  }
  const penalties = built.penalties.map((p) => ({ layerIndex: built.model.layers.findIndex((l) => p.name.startsWith(`${l.name}/`)), l1: p.l1, l2: p.l2 }));
  const lean = createLeanStep(built.model, spec.optimizer.sgd, penalties);
  if ('unsupported' in lean) return fallback(lean.unsupported);
  let threads = '';
  const blas = backend.blas.installed ? loadBlas() : null;
  if (blas?.ok) {
    // Measured here (2 cores): at batch 32 a second BLAS thread does not pay for its hand-offs
    // (23k vs 23k samples/s); at batch 512 it does (102k vs 79k). REGTRAIN_BLAS_THREADS overrides.
    const fromEnv = Number(process.env.REGTRAIN_BLAS_THREADS);
    const n = Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : spec.training.batchSize >= 128 ? Math.min(2, os.cpus().length) : 1;
    blas.setThreads(n);
    threads = ` (${n} thread${n > 1 ? 's' : ''})`;
  }
  return {
    description: `lean step (hand-written gradients)${backend.blas.installed ? ` + OpenBLAS matmuls${threads}` : ''}`,
    run(x, y) {
      const r = lean.run(x as tf.Tensor3D, y);
      return { dataLoss: r.dataLoss / r.batchSize, penalty: r.penalty, correct: r.correct };
    },
    async optimizerWeights() {
      return lean.optimizerState();
    },
    async setOptimizerWeights(w) {
      lean.setOptimizerState(w);
      tf.dispose(w.map((t) => t.tensor));
    },
    dispose() {
      lean.dispose();
    },
  };
}
