/**
 * Weight constraints (kernelConstraint / biasConstraint), Keras's formulas with ε = 1e-7:
 * each constraint on a hand-made kernel, then one SGD step on both training steps with the
 * constraint applied after the update, every figure by hand.
 *
 * The kernel W (2 inputs × 3 units) = [[3, 0, −1], [4, 0.5, 0]]: its columns (axis 0) have norms 5, 0.5 and 1,
 * its rows (axis 1) √10 and √16.25.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { createLeanStep } from '../src/train/lean-step';
import { installAcceleratedKernels, uninstallAcceleratedKernels } from '../src/accel/kernels';
import { modelSummary } from '../src/model';
import { handModel } from './helpers/hand-model';
import { validateSpec } from '../src/spec';
import { constrained, constraintTerms } from '../src/train/constraints';
import { createReferenceStep } from '../src/train/step';
import { createOptimizer } from '../src/train/optimizers';
import { useBackend } from './helpers/backend';
import { specRefusal } from './helpers/spec-refusal';

const EPS = 1e-7;
const W = [
  [3, 0, -1],
  [4, 0.5, 0],
];

function assertClose(actual: number[][], expected: number[][], label: string, tol = 1e-6) {
  expected.forEach((row, i) =>
    row.forEach((e, j) =>
      assert.ok(Math.abs(actual[i]![j]! - e) <= tol, `${label}: [${i}][${j}] = ${actual[i]![j]}, want ${e}`),
    ),
  );
}

/** The constraint as a resolved spec gives it (defaults filled in). */
function resolved(c: unknown) {
  const spec = validateSpec({
    name: 'c',
    model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax', kernelConstraint: c } }] },
    optimizer: { sgd: { learningRate: 1 } },
  });
  return spec.model.layers[1]!.dense!.kernelConstraint!;
}

function apply(c: unknown): number[][] {
  const w = tf.tensor2d(W);
  const out = constrained(w, resolved(c));
  const rows = out.arraySync() as number[][];
  tf.dispose([w, out]);
  return rows;
}

test('the bare names mean Keras’s defaults: maxNorm 2 over axis 0, unitNorm over axis 0, minMaxNorm 0 to 1 at rate 1', () => {
  assert.deepEqual(resolved('maxNorm'), { maxNorm: { maxValue: 2, axis: 0 } });
  assert.deepEqual(resolved('unitNorm'), { unitNorm: { axis: 0 } });
  assert.deepEqual(resolved('nonNeg'), { nonNeg: {} });
  assert.deepEqual(resolved('minMaxNorm'), { minMaxNorm: { minValue: 0, maxValue: 1, rate: 1, axis: 0 } });
});

test('maxNorm scales each column whose norm passes maxValue down to it and leaves the others (but for ε)', async () => {
  await useBackend('cpu');
  // Column 0: norm 5 → ×2/5; column 1: 0.5 → ×0.5/(0.5 + ε); column 2: 1 → ×1/(1 + ε).
  assertClose(
    apply('maxNorm'),
    [
      [(3 * 2) / (5 + EPS), 0, -1 / (1 + EPS)],
      [(4 * 2) / (5 + EPS), (0.5 * 0.5) / (0.5 + EPS), 0],
    ],
    'maxNorm',
  );
  // Over axis 1 (rows): row 0 norm √10 → ×2/√10; row 1 norm √16.25 → ×2/√16.25.
  const r0 = 2 / Math.sqrt(10);
  const r1 = 2 / Math.sqrt(16.25);
  assertClose(
    apply({ maxNorm: { maxValue: 2, axis: 1 } }),
    [
      [3 * r0, 0, -r0],
      [4 * r1, 0.5 * r1, 0],
    ],
    'maxNorm axis 1',
  );
});

test('unitNorm divides each column by its norm, nonNeg zeroes the negative weights', async () => {
  await useBackend('cpu');
  assertClose(
    apply('unitNorm'),
    [
      [3 / 5, 0, -1],
      [4 / 5, 1, 0],
    ],
    'unitNorm',
  );
  // Keras's w · (w ≥ 0) gives −1 · 0 = −0: equal to 0, which `+ 0` makes plain for deepEqual.
  assert.deepEqual(
    apply('nonNeg').map((r) => r.map((v) => v + 0)),
    [
      [3, 0, 0],
      [4, 0.5, 0],
    ],
  );
});

test('minMaxNorm moves each column norm rate of the way into [minValue, maxValue]', async () => {
  await useBackend('cpu');
  // rate 1, [0, 1]: norms 5 → 1, 0.5 stays, 1 stays.
  assertClose(
    apply('minMaxNorm'),
    [
      [0.6, 0, -1],
      [0.8, 0.5, 0],
    ],
    'minMaxNorm',
  );
  // rate 0.5, [2, 3]: desired 0.5·3 + 0.5·5 = 4, 0.5·2 + 0.5·0.5 = 1.25, 0.5·2 + 0.5·1 = 1.5.
  assertClose(
    apply({ minMaxNorm: { minValue: 2, maxValue: 3, rate: 0.5 } }),
    [
      [3 * 0.8, 0, -1.5],
      [4 * 0.8, 1.25, 0],
    ],
    'minMaxNorm rate 0.5',
  );
});

/**
 * One SGD step (lr 1) on flatten → dense 10 softmax, kernel 0, bias ln 2 on class 0, one image with pixel 0 = 1,
 * label 0: p_0 = 2/11, p_j = 1/11, gradient p − onehot. Unconstrained, kernel row 0 becomes [9/11, −1/11 …]
 * and the bias [ln 2 + 9/11, −1/11 …]. With kernelConstraint maxNorm(0.5): column 0 (norm 9/11) is scaled to
 * 0.5, the others (norm 1/11) keep their size; with biasConstraint nonNeg: the −1/11 biases become 0.
 */
const STEP_SPEC = validateSpec({
  name: 'constrained',
  model: {
    layers: [
      { flatten: {} },
      {
        dense: {
          units: 10,
          activation: 'softmax',
          kernelConstraint: { maxNorm: { maxValue: 0.5 } },
          biasConstraint: 'nonNeg',
        },
      },
    ],
  },
  optimizer: { sgd: { learningRate: 1 } },
});

function assertConstrainedAfterOneStep(built: ReturnType<typeof handModel>['built'], label: string) {
  const [kernel, bias] = built.model.layers[1]!.getWeights().map((w) => w.dataSync() as Float32Array);
  const want0 = (0.5 * (9 / 11)) / (9 / 11 + EPS);
  const wantJ = (-1 / 11) * (1 / 11 / (1 / 11 + EPS));
  assert.ok(Math.abs(kernel![0]! - want0) <= 1e-6, `${label}: kernel[0][0] = ${kernel![0]}, want ${want0}`);
  for (let j = 1; j < 10; j++)
    assert.ok(Math.abs(kernel![j]! - wantJ) <= 1e-6, `${label}: kernel[0][${j}] = ${kernel![j]}, want ${wantJ}`);
  for (let i = 10; i < kernel!.length; i++) assert.equal(kernel![i], 0, `${label}: kernel element ${i}`);
  assert.ok(Math.abs(bias![0]! - (Math.LN2 + 9 / 11)) <= 1e-6, `${label}: bias 0 = ${bias![0]}`);
  // −1/11 · 0 = −0, as Keras's w · (w ≥ 0) gives it.
  for (let j = 1; j < 10; j++) assert.ok(bias![j] === 0, `${label}: bias ${j} = ${bias![j]}`);
}

for (const backend of ['cpu', 'wasm'] as const) {
  test(`${backend}: the reference step applies maxNorm to the kernel and nonNeg to the bias after the update`, async (t) => {
    if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
    const { built, image } = handModel(STEP_SPEC);
    const step = createReferenceStep(built, createOptimizer(STEP_SPEC.optimizer), {
      constraints: constraintTerms(built, STEP_SPEC),
    });
    const x = tf.tensor3d(image, [1, 28, 28]);
    const y = tf.tensor1d([0], 'int32');
    step.run(x, y, 0);
    assertConstrainedAfterOneStep(built, 'reference');
    step.dispose();
    tf.dispose([x, y]);
    built.model.dispose();
  });

  for (const gemm of [false, true]) {
    test(`${backend}${gemm ? ' + installed GEMM' : ''}: the lean step applies the same constraints after the update`, async (t) => {
      if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
      if (gemm && !installAcceleratedKernels(backend).installed) return t.skip('no GEMM to install here');
      try {
        const { built, image } = handModel(STEP_SPEC);
        const step = createLeanStep(built.model, createOptimizer(STEP_SPEC.optimizer), [], {
          constraints: constraintTerms(built, STEP_SPEC),
        });
        if ('unsupported' in step) throw new Error(step.unsupported);
        const x = tf.tensor3d(image, [1, 28, 28]);
        const y = tf.tensor1d([0], 'int32');
        step.run(x, y);
        assertConstrainedAfterOneStep(built, 'lean');
        // A second step still finds the constrained weights where the step keeps them.
        step.run(x, y);
        const kernel = built.model.layers[1]!.getWeights()[0]!.dataSync();
        assert.ok(Math.abs(kernel[0]!) <= 0.5 + 1e-6, `kernel[0][0] = ${kernel[0]} after a second step`);
        step.dispose();
        tf.dispose([x, y]);
        built.model.dispose();
      } finally {
        if (gemm) uninstallAcceleratedKernels(backend);
      }
    });
  }
}

test('the model summary lists each constraint with its settings beside the regularizers', async () => {
  await useBackend('cpu');
  const { built } = handModel(STEP_SPEC);
  const summary = modelSummary(built, { constraints: constraintTerms(built, STEP_SPEC) });
  assert.match(
    summary[4]!,
    /^dense \(Dense\) +\(None, 10\) +7,850 +kernel maxNorm\(maxValue=0\.5, axis=0\); bias nonNeg$/,
  );
  built.model.dispose();
});

const refusal = (dense: Record<string, unknown>) => specRefusal({ dense });

test('bad constraint settings are refused with the field’s path and what is expected', () => {
  const at = 'model.layers.1.dense';
  assert.equal(
    refusal({ kernelConstraint: { maxNorm: { maxValue: -1 } } }),
    `! ${at}.kernelConstraint.maxNorm.maxValue: expected a positive number, got -1 (spec.yaml)`,
  );
  assert.equal(
    refusal({ kernelConstraint: { maxNorm: { axis: 2 } } }),
    `! ${at}.kernelConstraint.maxNorm.axis: expected axes below 2 (the kernel has 2 dimensions), got 2 (spec.yaml)`,
  );
  assert.equal(
    refusal({ biasConstraint: { unitNorm: { axis: [0, 1] } } }),
    `! ${at}.biasConstraint.unitNorm.axis: expected axes below 1 (the bias has 1 dimension), got 1 (spec.yaml)`,
  );
  assert.equal(
    refusal({ kernelConstraint: { minMaxNorm: { minValue: 2, maxValue: 1 } } }),
    `! ${at}.kernelConstraint.minMaxNorm.minValue: expected at most maxValue (1), got 2 (spec.yaml)`,
  );
  assert.equal(
    refusal({ kernelConstraint: { minMaxNorm: { rate: 1.5 } } }),
    `! ${at}.kernelConstraint.minMaxNorm.rate: expected a rate from 0 to 1, got 1.5 (spec.yaml)`,
  );
  assert.equal(
    refusal({ kernelConstraint: { maxNorm: {}, nonNeg: {} } }),
    `! ${at}.kernelConstraint: expected exactly one constraint (maxNorm, unitNorm, nonNeg, minMaxNorm), got 2 (spec.yaml)`,
  );
  assert.equal(
    refusal({ useBias: false, biasConstraint: 'nonNeg' }),
    `! ${at}.biasConstraint: the layer has no bias (useBias: false) (spec.yaml)`,
  );
  assert.match(refusal({ kernelConstraint: 'maxnorm' }), /^! model\.layers\.1\.dense\.kernelConstraint: /);
});
