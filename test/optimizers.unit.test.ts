/**
 * The optimizer module against the published formulas, computed by hand here (float64; the
 * module rounds to float32 after each operation, so they agree to ~1e-7 relative), and the two
 * training paths against each other for every optimizer on real Fashion-MNIST images.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../src/tf';
import { createOptimizer, Optimizer } from '../src/train/optimizers';
import { initBackend } from '../src/backend';
import { buildModel } from '../src/model';
import { imagesOf, type Split } from '../src/data/dataset';
import { loadSpec, parseSetFlag } from '../src/spec';
import { createReferenceStep, createTrainStep } from '../src/train/step';
import { createLeanStep } from '../src/train/lean-step';
import type { TrainStep } from '../src/train/types';
import { scratchDir } from './helpers/scratch';
import { loadFirstImages } from './helpers/first-images';

const QUICK = path.resolve(__dirname, '../../configs/quick.yaml');
const W0 = [0.5, -0.25, 0, 1];
/** The gradients of three updates (one per row), the same for every optimizer. */
const GRADS = [
  [0.1, -0.2, 0.3, 0],
  [0.2, 0.1, -0.1, 0.05],
  [-0.3, 0.4, 0.2, -0.1],
];
const LR = 0.1;
/**
 * Training steps the two paths are compared over. Each step runs the same code; the optimizer state (momentum,
 * Adam's moments, AMSGrad's running max, the bias correction's step count) starts at zero and is used from step 2
 * on, and a real slip (a decay of λ for 2λ, a penalty gradient missing) moves the weights past 1e-5 of max|w|
 * within a step or two. 20 steps took 4× the CPU and showed nothing more.
 */
const STEPS = 5;

/** Three updates of the 2×2 kernel named "dense/kernel" (and, for exclusion, the same numbers as "dense/bias"). */
function threeUpdates(opt: Optimizer, name = 'dense/kernel'): number[] {
  const w = Float32Array.from(W0);
  for (const g of GRADS) {
    opt.update({ name, w, g: Float32Array.from(g), out: w, l1: 0, l2: 0 }, opt.learningRate());
    opt.endStep();
  }
  return Array.from(w);
}

function assertClose(got: number[], want: number[], what: string, rel = 2e-6): void {
  got.forEach((g, i) =>
    assert.ok(
      Math.abs(g - want[i]!) <= rel * Math.max(1e-3, Math.abs(want[i]!)),
      `${what}[${i}]: ${g} vs ${want[i]} (by hand)`,
    ),
  );
}

describe('SGD with decoupled weight decay', () => {
  test('three updates: w ← w − lr·wd·w − lr·g', () => {
    // wd = 0.5, lr = 0.1: each update multiplies w by (1 − 0.05) and subtracts 0.1·g.
    // Element 0: 0.5 → 0.475 − 0.01 = 0.465 → 0.44175 − 0.02 = 0.42175 → 0.4006625 + 0.03 = 0.4306625
    const want = W0.map((w0, i) => GRADS.reduce((w, g) => w * (1 - LR * 0.5) - LR * g[i]!, w0));
    assertClose([want[0]!], [0.4306625], 'the arithmetic above');
    assertClose(threeUpdates(createOptimizer({ sgd: { learningRate: LR, weightDecay: 0.5 } })), want, 'SGD wd');
  });

  test('excludeFromWeightDecay leaves variables whose short name matches a listed pattern undecayed', () => {
    const opt = createOptimizer({ sgd: { learningRate: LR, weightDecay: 0.5, excludeFromWeightDecay: ['bias'] } });
    const want = W0.map((w0, i) => GRADS.reduce((w, g) => w - LR * g[i]!, w0));
    assertClose(threeUpdates(opt, 'dense/bias'), want, 'excluded');
  });

  test("excludeFromWeightDecay searches Keras 3's short names with regular expressions; a pattern with a / the layer-qualified name", () => {
    const decayed = (patterns: string[], names: string[]) => {
      const opt = createOptimizer({ adamw: { excludeFromWeightDecay: patterns } });
      return names.filter((n) => opt.decays(n));
    };
    const names = [
      'dense/kernel',
      'dense/bias',
      'dense_1/kernel',
      'dense_1/bias',
      'dense_11/kernel',
      'batch_normalization/gamma',
      'batch_normalization/beta',
    ];
    // Keras 3: re.search(pattern, variable.name) with variable.name the short name.
    assert.deepEqual(decayed(['bias'], names), [
      'dense/kernel',
      'dense_1/kernel',
      'dense_11/kernel',
      'batch_normalization/gamma',
      'batch_normalization/beta',
    ]);
    assert.deepEqual(
      decayed(['dense_1'], names),
      names,
      'a layer name is in no short name: nothing excluded, as in Keras 3',
    );
    assert.deepEqual(decayed(['^(bias|gamma|beta)$'], names), ['dense/kernel', 'dense_1/kernel', 'dense_11/kernel']);
    assert.deepEqual(decayed(['^k'], names), [
      'dense/bias',
      'dense_1/bias',
      'batch_normalization/gamma',
      'batch_normalization/beta',
    ]);
    // regtrain's layer-qualified form.
    assert.deepEqual(decayed(['dense_1/'], names), [
      'dense/kernel',
      'dense/bias',
      'dense_11/kernel',
      'batch_normalization/gamma',
      'batch_normalization/beta',
    ]);
    assert.deepEqual(decayed(['^dense/kernel$'], names), [
      'dense/bias',
      'dense_1/kernel',
      'dense_1/bias',
      'dense_11/kernel',
      'batch_normalization/gamma',
      'batch_normalization/beta',
    ]);
  });

  test("excludeFromWeightDecay ignores the _N tfjs appends to a variable's name when a process builds a second model", () => {
    const opt = createOptimizer({ adamw: { excludeFromWeightDecay: ['^kernel$', '^dense_1/bias$'] } });
    assert.deepEqual(
      ['dense/kernel_1', 'dense/kernel_12', 'dense/bias_3', 'dense_1/bias_2', 'dense_1/bias'].map((n) => opt.decays(n)),
      [false, false, true, false, false],
    );
    // The names tfjs really gives: two identical models built in this process.
    const spec = loadSpec(QUICK, []).spec;
    const first = buildModel(spec);
    const second = buildModel(spec);
    const secondNames = second.model.trainableWeights.map((w) => (w.read() as tf.Variable).name);
    assert.ok(
      secondNames.every((n) => /_\d+$/.test(n)),
      `the second model's names: ${secondNames.join(', ')}`,
    );
    const kernelsOnly = createOptimizer({ adamw: { excludeFromWeightDecay: ['^bias$'] } });
    for (const m of [first, second]) {
      assert.deepEqual(
        m.model.trainableWeights.map((w) => kernelsOnly.decays((w.read() as tf.Variable).name)),
        m.model.trainableWeights.map((w) => (w.read() as tf.Variable).name.includes('kernel')),
      );
      m.model.dispose();
    }
  });

  test('a pattern that is not a regular expression is refused at its path', () => {
    const dir = scratchDir('regtrain-exclude-');
    const file = path.join(dir, 'bad-exclude.yaml');
    fs.writeFileSync(
      file,
      'name: bad-exclude\nmodel:\n  layers: [flatten: {}, dense: { units: 10, activation: softmax }]\noptimizer:\n  adamw:\n    excludeFromWeightDecay: [bias, "dense_1/(kernel"]\n',
    );
    try {
      assert.throws(() => loadSpec(file, []), {
        name: 'SpecError',
        message:
          '! optimizer.adamw.excludeFromWeightDecay.1: not a valid regular expression: Invalid regular expression: /dense_1/(kernel/: Unterminated group (bad-exclude.yaml:6:36)',
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('momentum follows Keras: v ← m·v − lr·g; w ← w + v (Nesterov: w ← w + m·v − lr·g)', () => {
    const m = 0.9;
    for (const nesterov of [false, true]) {
      const want = W0.map((w0, i) => {
        let w = w0;
        let v = 0;
        for (const g of GRADS) {
          v = m * v - LR * g[i]!;
          w += nesterov ? m * v - LR * g[i]! : v;
        }
        return w;
      });
      // Element 0 without Nesterov: v = −0.01, −0.029, 0.0039; w = 0.49, 0.461, 0.4649.
      if (!nesterov) assertClose([want[0]!], [0.4649], 'the arithmetic above');
      assertClose(
        threeUpdates(createOptimizer({ sgd: { learningRate: LR, momentum: m, nesterov } })),
        want,
        `momentum${nesterov ? ' (Nesterov)' : ''}`,
      );
    }
  });
});

/** Adam as Keras 3 writes it (keras/src/optimizers/adam.py), in float64. */
function adamByHand(opts: { wd: number; amsgrad: boolean; eps: number }): number[] {
  const [b1, b2] = [0.9, 0.999];
  return W0.map((w0, i) => {
    let w = w0;
    let m = 0;
    let v = 0;
    let vhat = 0;
    GRADS.forEach((grad, k) => {
      const t = k + 1;
      const g = grad[i]!;
      w -= w * opts.wd * LR; // decoupled decay, before the update
      const alpha = (LR * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
      m += (g - m) * (1 - b1);
      v += (g * g - v) * (1 - b2);
      vhat = Math.max(vhat, v);
      w -= (m * alpha) / (Math.sqrt(opts.amsgrad ? vhat : v) + opts.eps);
    });
    return w;
  });
}

describe('Adam and AdamW', () => {
  test('Adam: three updates match m ← m + (g − m)(1 − β₁), v ← v + (g² − v)(1 − β₂), w ← w − α·m/(√v + ε)', () => {
    const want = adamByHand({ wd: 0, amsgrad: false, eps: 1e-7 });
    // Element 0 by hand: t=1: m = 0.01, v = 1e-5, α = 0.1·√0.001/0.1 = 0.0316228, step = 0.0316228·0.01/(0.0031623 + 1e-7) = 0.0999968
    //   t=2: m = 0.029, v = 4.999e-5, α = 0.1·√0.001999/0.19 = 0.0235317, step = 0.0235317·0.029/0.0070704 = 0.0965168
    //   t=3: m = −0.0039, v = 0.00013994, α = 0.1·√0.002997/0.271 = 0.0202011, step = 0.0202011·−0.0039/0.0118296 = −0.0066598
    //   → w = 0.5 − 0.0999968 − 0.0965168 + 0.0066598 = 0.3101462
    assertClose([want[0]!], [0.3101462], 'the arithmetic above', 2e-6);
    assertClose(threeUpdates(createOptimizer({ adam: { learningRate: LR } })), want, 'Adam');
  });

  test('AMSGrad divides by the largest v so far', () => {
    assertClose(
      threeUpdates(createOptimizer({ adam: { learningRate: LR, amsgrad: true } })),
      adamByHand({ wd: 0, amsgrad: true, eps: 1e-7 }),
      'AMSGrad',
    );
  });

  test('AdamW decays the weights by lr·wd before each Adam update (default wd 0.004)', () => {
    const opt = createOptimizer({ adamw: { learningRate: LR } });
    assertClose(threeUpdates(opt), adamByHand({ wd: 0.004, amsgrad: false, eps: 1e-7 }), 'AdamW');
    assertClose(
      threeUpdates(createOptimizer({ adamw: { learningRate: LR, weightDecay: 0.5 } })),
      adamByHand({ wd: 0.5, amsgrad: false, eps: 1e-7 }),
      'AdamW wd 0.5',
    );
  });

  test('state() and setState() carry iterations, the schedule scale and every moment', () => {
    const a = createOptimizer({ adam: { learningRate: LR, amsgrad: true } });
    const w = Float32Array.from(W0);
    a.update({ name: 'k', w, g: Float32Array.from(GRADS[0]!), out: w, l1: 0, l2: 0 }, LR);
    a.endStep();
    const state = a.state();
    assert.deepEqual(
      state.slots.map((s) => s.name),
      ['k/m', 'k/v', 'k/vhat'],
    );
    const b = createOptimizer({ adam: { learningRate: LR, amsgrad: true } });
    b.setState(state, [{ name: 'k', size: 4 }]);
    const [wa, wb] = [Float32Array.from(w), Float32Array.from(w)];
    a.update({ name: 'k', w: wa, g: Float32Array.from(GRADS[1]!), out: wa, l1: 0, l2: 0 }, LR);
    b.update({ name: 'k', w: wb, g: Float32Array.from(GRADS[1]!), out: wb, l1: 0, l2: 0 }, LR);
    assert.deepEqual(wb, wa);
    assert.throws(
      () => createOptimizer({ sgd: { momentum: 0.9 } }).setState(state, []),
      /the checkpoint holds adam state, the spec trains with sgd/,
    );
  });
});

describe('an L2 penalty and weight decay', () => {
  test(`SGD + L2 λ and SGD + weight decay 2λ take the same ${STEPS} steps on real images (to float32 rounding)`, async () => {
    await initBackend('wasm');
    const lambda = 0.005;
    const base = ['training.batchSize=64', 'data.trainLimit=1280', 'data.validation.size=0'];
    const l2 = loadSpec(
      QUICK,
      [...base, ...[1, 2, 3, 4].map((i) => `model.layers.${i}.dense.kernelRegularizer={l2: ${lambda}}`)].map(
        parseSetFlag,
      ),
    ).spec;
    const wd = loadSpec(
      QUICK,
      [
        ...base,
        ...[1, 2, 3].map((i) => `model.layers.${i}.dense.kernelRegularizer=null`),
        `optimizer={sgd: {learningRate: 0.01, weightDecay: ${2 * lambda}, excludeFromWeightDecay: [bias]}}`,
      ].map(parseSetFlag),
    ).spec;
    const data = await realImages(1280);
    const [a, b] = [buildModel(l2), buildModel(wd)];
    const stepA = createReferenceStep(a, createOptimizer(l2.optimizer));
    const stepB = createReferenceStep(b, createOptimizer(wd.optimizer));
    for (let s = 0; s < STEPS; s++) {
      const { x, y } = batchOf(data, s, 64);
      const ra = stepA.run(x, y, 0);
      const rb = stepB.run(x, y, 0);
      assert.ok(
        Math.abs(ra.dataLoss - rb.dataLoss) <= 1e-5 * ra.dataLoss,
        `step ${s}: data loss ${ra.dataLoss} vs ${rb.dataLoss}`,
      );
      tf.dispose([x, y]);
    }
    a.model.weights.forEach((w, i) =>
      assert.ok(relMaxDiff(w.read().dataSync(), b.model.weights[i]!.read().dataSync()) <= 1e-5, `${w.name} differs`),
    );
    tf.dispose([a.model, b.model] as unknown as tf.Tensor[]);
  });
});

describe('the lean step and the reference step', () => {
  const optimizers = [
    '{sgd: {learningRate: 0.01}}',
    '{sgd: {learningRate: 0.01, momentum: 0.9, weightDecay: 0.01}}',
    '{adam: {learningRate: 0.001}}',
    '{adam: {learningRate: 0.001, amsgrad: true}}',
    '{adamw: {learningRate: 0.001}}',
  ];
  for (const optimizer of optimizers) {
    test(`agree after ${STEPS} steps of ${optimizer} on real images: weights within 1e-5·max|w|`, async (t) => {
      const backend = await initBackend('wasm');
      if (!backend.gemm.kind) return t.skip(`the lean step needs fast matmul kernels: ${backend.gemm.reason}`);
      // L2 penalties only: an L1-pinned weight within 1 ulp of zero may take either side (test/accel.unit.test.ts).
      const spec = loadSpec(
        QUICK,
        [
          'training.batchSize=64',
          'data.trainLimit=1280',
          'data.validation.size=0',
          'model.layers.1.dense.kernelRegularizer={l2: 0.001}',
          'model.layers.3.dense.kernelRegularizer={l2: 0.01}',
          `optimizer=${optimizer}`,
        ].map(parseSetFlag),
      ).spec;
      const data = await realImages(1280);
      const [ref, lean] = [buildModel(spec), buildModel(spec)];
      const refStep = createReferenceStep(ref, createOptimizer(spec.optimizer));
      const leanStep: TrainStep = createTrainStep(lean, spec, backend);
      assert.equal(leanStep.path, 'lean', leanStep.description);
      for (let s = 0; s < STEPS; s++) {
        const { x, y } = batchOf(data, s, 64);
        const r = refStep.run(x, y, 0);
        const l = leanStep.run(x, y, 0);
        assert.ok(
          Math.abs(r.dataLoss + r.penalty - (l.dataLoss + l.penalty)) <= 3e-5 * (r.dataLoss + r.penalty),
          `step ${s}: loss ${l.dataLoss + l.penalty} vs ${r.dataLoss + r.penalty}`,
        );
        tf.dispose([x, y]);
      }
      ref.model.weights.forEach((w, i) => {
        const e = relMaxDiff(w.read().dataSync(), lean.model.weights[i]!.read().dataSync());
        assert.ok(e <= 1e-5, `${w.name}: rel diff ${e}`);
      });
      leanStep.dispose();
      ref.model.dispose();
      lean.model.dispose();
    });
  }
  test('the lean step refuses nothing an optimizer needs: its slots follow the variables', () => {
    const spec = loadSpec(QUICK, ['optimizer={adam: {}}'].map(parseSetFlag)).spec;
    const built = buildModel(spec);
    const step = createLeanStep(built.model, createOptimizer(spec.optimizer), []);
    assert.ok(!('unsupported' in step) || /penalties do not match/.test(step.unsupported));
    built.model.dispose();
  });
});

type Images = Split;
// Seeded and stamped once (helpers/data.ts), not filled and hashed by the first load.
/** The first n training images: loaded once for the file's tests (every test asks for the same 1280). */
const loaded = new Map<number, Promise<Images>>();
function realImages(n: number): Promise<Images> {
  if (!loaded.has(n)) loaded.set(n, loadImages(n));
  return loaded.get(n)!;
}
async function loadImages(n: number): Promise<Images> {
  const ds = await loadFirstImages('scale01', n);
  return ds.train;
}
function batchOf(d: Images, s: number, b: number): { x: tf.Tensor3D; y: tf.Tensor1D } {
  return {
    x: tf.tensor3d(imagesOf(d, s * b, (s + 1) * b), [b, 28, 28]),
    y: tf.tensor1d(d.labels.subarray(s * b, (s + 1) * b), 'int32'),
  };
}
function relMaxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(a[i]!));
  }
  return m ? d / m : d;
}
