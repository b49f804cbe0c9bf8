/**
 * Issue 5: BLAS kernels and the lean training step give tfjs's numbers.
 *
 * Tolerances (float32; BLAS and tfjs sum in different orders):
 * - MatMul / fused MatMul: max|Δ| ≤ 1e-5 · max|reference| (observed ≤ 1.2e-6).
 * - Lean step vs the reference step (tfjs autodiff, Keras's sign(0) = 0) after STEPS steps: every weight tensor max|Δ| ≤ 1e-5 · max|w|
 *   (observed ≤ 4e-7); per-batch loss relative difference ≤ 3e-5 (observed ≤ 1.3e-5).
 * BLAS cases skip, with the reason, when koffi/OpenBLAS are absent; the plain-kernel lean-step cases
 * always run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { loadBlas } from '../src/accel/blas';
import { accelStats, installAcceleratedKernels, uninstallAcceleratedKernels } from '../src/accel/kernels';
import { createLeanStep } from '../src/train/lean-step';
import { bindSpec } from '../src/model';
import { validateSpec } from '../src/spec';
import { createReferenceStep } from '../src/train/step';
import { createOptimizer } from '../src/train/optimizers';
import { buildTutorialModel, fakeData, TUTORIAL_PENALTIES } from './bench/tutorial-model';
import { useBackend } from './helpers/backend';

/** The tutorial's layers as a spec, to pair the test's tfjs models with regtrain's penalties. */
const TUTORIAL_SPEC = validateSpec({
  name: 'tutorial',
  model: {
    layers: [
      { flatten: {} },
      { dense: { units: 200, activation: 'relu', kernelRegularizer: { l1: 0.01 } } },
      { dense: { units: 100, activation: 'relu', kernelRegularizer: { l2: 0.001 } } },
      { dense: { units: 50, activation: 'relu', kernelRegularizer: { l1: 0.01, l2: 0.01 } } },
      { dense: { units: 10, activation: 'softmax' } },
    ],
  },
});

const MATMUL_TOL = 1e-5;
/**
 * Training steps compared. Every step runs the same code; what changes from step to step is state the
 * step carries: the momentum velocity (zero before step 1, used from step 2), the scratch and packed weights
 * reused from step 2 on, and the tensor count, checked equal at steps 2, 3 and 4. Five steps cover each;
 * a real slip (a penalty term off by a factor, a stale weight) is ≥ 3e-5 of max|w| per step, past the tolerance
 * after one or two steps. (20 steps took 4× the CPU and showed nothing more.)
 */
const STEPS = 5;
const STEP_TOL = 1e-5;
/**
 * Losses are sums over ~182k float32 weights whose rounding order differs between the paths.
 * With momentum, a weight that L1 makes dither around zero can land on the other side after a
 * 1-ulp difference, and momentum carries that on: such runs agree to 1e-4 (observed ≤ 4e-5).
 */
const LOSS_TOL = 3e-5;
const MOMENTUM_LOSS_TOL = 1e-4;

const blas = loadBlas();
const blasSkip = blas.ok ? false : `BLAS unavailable: ${blas.reason}`;
if (!blas.ok) console.log(`# accel: BLAS tests skipped: ${blas.reason}`);

/**
 * As relMaxDiff, over the weights L1 does not hold dithering around zero. With momentum a
 * weight that L1 pins within a few updates of zero can take the other side after a 1-ulp
 * difference in its data gradient (BLAS and XNNPACK sum in other orders) and then drift by
 * lr·l1 per step on its velocity: those (at most 1 in 500) are left out, the rest must agree.
 */
function relMaxDiffBesideDithering(ref: ArrayLike<number>, got: ArrayLike<number>): number {
  let max = 0;
  for (let i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(ref[i]!));
  let d = 0;
  let dithering = 0;
  for (let i = 0; i < ref.length; i++) {
    const diff = Math.abs(ref[i]! - got[i]!);
    if (Math.abs(ref[i]!) < 0.05 * max && diff > STEP_TOL * max) dithering++;
    else d = Math.max(d, diff);
  }
  assert.ok(dithering <= ref.length / 500, `${dithering} of ${ref.length} weights near zero took another path`);
  return max === 0 ? d : d / max;
}

function relMaxDiff(ref: ArrayLike<number>, got: ArrayLike<number>): number {
  assert.equal(got.length, ref.length);
  let d = 0;
  let m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(ref[i] - got[i]));
    m = Math.max(m, Math.abs(ref[i]));
  }
  return m === 0 ? d : d / m;
}

const SHAPES: Array<[number[], number[]]> = [
  [
    [37, 53],
    [53, 29],
  ],
  [
    [1, 37, 53],
    [1, 53, 29],
  ], // what Dense produces
  [
    [3, 37, 53],
    [1, 53, 29],
  ], // broadcast B
  [
    [1, 37, 53],
    [3, 53, 29],
  ], // broadcast A
  [
    [3, 37, 53],
    [3, 53, 29],
  ],
  [
    [2, 3, 37, 53],
    [53, 29],
  ],
  [
    [32, 784],
    [784, 200],
  ],
];

function transposed(shape: number[], t: boolean): number[] {
  if (!t) return shape;
  const s = shape.slice();
  const r = s.length;
  [s[r - 1], s[r - 2]] = [s[r - 2], s[r - 1]];
  return s;
}

for (const backend of ['cpu', 'wasm'] as const) {
  test(
    `${backend}: BLAS BatchMatMul equals tfjs for all transpose flags and batch shapes`,
    { skip: blasSkip },
    async (t) => {
      if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
      for (const tA of [false, true]) {
        for (const tB of [false, true]) {
          for (const [as, bs] of SHAPES) {
            tf.tidy(() => {
              const a = tf.randomNormal(transposed(as, tA), 0, 1, 'float32', 1);
              const b = tf.randomNormal(transposed(bs, tB), 0, 1, 'float32', 2);
              const ref = tf.matMul(a, b, tA, tB);
              installAcceleratedKernels(backend);
              const before = accelStats.blasCalls;
              const got = tf.matMul(a, b, tA, tB);
              const used = accelStats.blasCalls - before;
              uninstallAcceleratedKernels(backend);
              const what = `${backend} tA=${tA} tB=${tB} ${as}×${bs}`;
              assert.equal(used, 1, `${what}: BLAS path not taken`);
              assert.deepEqual(got.shape, ref.shape, what);
              const e = relMaxDiff(ref.dataSync(), got.dataSync());
              assert.ok(e <= MATMUL_TOL, `${what}: rel diff ${e}`);
            });
          }
        }
      }
    },
  );

  test(
    `${backend}: BLAS _FusedMatMul (bias + relu/linear) equals tfjs; other activations fall back`,
    { skip: blasSkip },
    async (t) => {
      if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
      for (const activation of ['relu', 'linear', 'elu'] as const) {
        for (const tB of [false, true]) {
          tf.tidy(() => {
            const x = tf.randomNormal([64, 784], 0, 1, 'float32', 3);
            const w = tf.randomNormal(tB ? [200, 784] : [784, 200], 0, 0.05, 'float32', 4);
            const bias = tf.randomNormal([200], 0, 1, 'float32', 5);
            // Reference: the unfused ops with the original kernels. (Not tfjs-wasm's own _FusedMatMul:
            // with transposeB=true it returns wrong numbers in 4.22, max error ~40 on this case.)
            const ref =
              activation === 'elu'
                ? tf.fused.matMul({ a: x, b: w, bias, activation, transposeB: tB }) // fallback: same kernel
                : activation === 'relu'
                  ? tf.relu(tf.add(tf.matMul(x, w, false, tB), bias))
                  : tf.add(tf.matMul(x, w, false, tB), bias);
            installAcceleratedKernels(backend);
            const before = accelStats.blasCalls;
            const got = tf.fused.matMul({ a: x, b: w, bias, activation, transposeB: tB });
            const used = accelStats.blasCalls - before;
            uninstallAcceleratedKernels(backend);
            assert.equal(used, activation === 'elu' ? 0 : 1, `${backend} ${activation}: path`);
            const e = relMaxDiff(ref.dataSync(), got.dataSync());
            assert.ok(e <= MATMUL_TOL, `${backend} ${activation} tB=${tB}: rel diff ${e}`);
          });
        }
      }
    },
  );
}

test("wasm: Slice fix gives the original kernel's results (contiguous and not)", async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const x = tf.randomNormal([50, 28, 28], 0, 1, 'float32', 8);
  const xi = tf.cast(x, 'int32');
  const cases: Array<[number[], number[]]> = [
    [
      [0, 0, 0],
      [32, 28, 28],
    ],
    [
      [17, 0, 0],
      [33, 28, 28],
    ],
    [
      [3, 0, 0],
      [1, -1, -1],
    ],
    [
      [2, 5, 0],
      [4, 3, 28],
    ],
    [
      [0, 0, 0],
      [0, 28, 28],
    ],
  ];
  for (const [b, s] of cases) {
    for (const src of [x, xi]) {
      uninstallAcceleratedKernels('wasm');
      const ref = tf.slice(src, b, s);
      installAcceleratedKernels('wasm');
      const got = tf.slice(src, b, s);
      assert.deepEqual(got.shape, ref.shape);
      assert.deepEqual(Array.from(got.dataSync()), Array.from(ref.dataSync()), `slice ${b} ${s}`);
      ref.dispose();
      got.dispose();
    }
  }
  uninstallAcceleratedKernels('wasm');
  x.dispose();
  xi.dispose();
});

interface StepCase {
  backend: 'cpu' | 'wasm';
  blas: boolean;
  momentum: number;
  nesterov: boolean;
}
const STEP_CASES: StepCase[] = [
  { backend: 'cpu', blas: false, momentum: 0, nesterov: false },
  { backend: 'cpu', blas: true, momentum: 0, nesterov: false },
  { backend: 'wasm', blas: false, momentum: 0, nesterov: false },
  { backend: 'wasm', blas: true, momentum: 0, nesterov: false },
  { backend: 'wasm', blas: true, momentum: 0.9, nesterov: false },
  { backend: 'wasm', blas: true, momentum: 0.9, nesterov: true },
  { backend: 'cpu', blas: true, momentum: 0.9, nesterov: true },
  { backend: 'cpu', blas: false, momentum: 0.9, nesterov: false },
];

for (const c of STEP_CASES) {
  const name = `${c.backend}${c.blas ? '+BLAS' : ''}: lean step equals the reference step over ${STEPS} steps (momentum ${c.momentum}${c.nesterov ? ', nesterov' : ''}), no tensor leak`;
  test(name, { skip: c.blas ? blasSkip : false }, async (t) => {
    if (!(await useBackend(c.backend))) return t.skip(`${c.backend} backend unavailable`);
    if (c.blas) assert.ok(installAcceleratedKernels(c.backend).installed);
    try {
      const B = 64;
      const steps = STEPS;
      const opts = { learningRate: 0.01, momentum: c.momentum, nesterov: c.nesterov };
      const ref = buildTutorialModel(11, opts);
      const lean = buildTutorialModel(11, opts);
      // The plain path `regtrain run` falls back to: tfjs autodiff over the same Keras loss.
      const sgd = { sgd: { learningRate: opts.learningRate, momentum: opts.momentum, nesterov: opts.nesterov } };
      const refStep = createReferenceStep(bindSpec(ref, TUTORIAL_SPEC), createOptimizer(sgd));
      const step = createLeanStep(lean, createOptimizer(sgd), TUTORIAL_PENALTIES);
      if ('unsupported' in step) throw new Error(step.unsupported);
      const { x, y } = fakeData(B * steps, 9);
      const yInt = y.cast('int32');
      let count: number | null = null;
      for (let s = 0; s < steps; s++) {
        const xb = x.slice(s * B, B);
        const yb = y.slice(s * B, B);
        const ybInt = yInt.slice(s * B, B) as tf.Tensor1D;
        const refR = refStep.run(xb, ybInt, 0);
        const refLoss = refR.dataLoss + refR.penalty;
        const r = step.run(xb, yb);
        // Keras's logged loss: mean data loss + the penalty at the pre-update weights.
        const leanLoss = r.dataLoss / r.batchSize + r.penalty;
        assert.ok(
          Math.abs(leanLoss - refLoss) <= (c.momentum > 0 ? MOMENTUM_LOSS_TOL : LOSS_TOL) * Math.abs(refLoss),
          `step ${s}: loss ${leanLoss} vs ${refLoss}`,
        );
        assert.ok(Math.abs(r.correct - refR.correct) <= 1, `step ${s}: correct ${r.correct} vs ${refR.correct}`);
        xb.dispose();
        yb.dispose();
        ybInt.dispose();
        const n = tf.memory().numTensors;
        if (s >= 2) {
          if (count === null) count = n;
          else assert.equal(n, count, `tensor count changed at step ${s}`);
        }
      }
      const wr = ref.getWeights();
      const wl = lean.getWeights();
      for (let i = 0; i < wr.length; i++) {
        const e =
          c.momentum > 0
            ? relMaxDiffBesideDithering(wr[i].dataSync(), wl[i].dataSync())
            : relMaxDiff(wr[i].dataSync(), wl[i].dataSync());
        assert.ok(e <= STEP_TOL, `weight ${i} ${wr[i].shape}: rel diff ${e}`);
      }
      step.dispose();
      refStep.dispose();
      ref.dispose();
      lean.dispose();
      x.dispose();
      y.dispose();
      yInt.dispose();
    } finally {
      if (c.blas) uninstallAcceleratedKernels(c.backend);
    }
  });
}

test('lean step refuses what it does not implement', async () => {
  await useBackend('cpu');
  const m = tf.sequential();
  m.add(tf.layers.dense({ units: 4, inputShape: [3], activation: 'relu' }));
  m.add(tf.layers.dropout({ rate: 0.5, noiseShape: [1, 4] }));
  m.add(tf.layers.dense({ units: 2, activation: 'softmax' }));
  const r = createLeanStep(m, createOptimizer({ sgd: { learningRate: 0.1 } }), []);
  assert.ok('unsupported' in r && /Dropout with a noiseShape/.test(r.unsupported));
  const model = buildTutorialModel(1);
  const wrong = createLeanStep(model, createOptimizer({ sgd: {} }), []);
  assert.ok('unsupported' in wrong && /penalties do not match/.test(wrong.unsupported));
  m.dispose();
  model.dispose();
});

test('BLAS loading never throws; unknown backends are refused', () => {
  const prev = process.env.REGTRAIN_BLAS;
  process.env.REGTRAIN_BLAS = 'off';
  try {
    const off = loadBlas({ reload: true });
    assert.equal(off.ok, false);
    assert.match((off as { reason: string }).reason, /disabled/);
  } finally {
    if (prev === undefined) delete process.env.REGTRAIN_BLAS;
    else process.env.REGTRAIN_BLAS = prev;
    loadBlas({ reload: true });
  }
  assert.equal(installAcceleratedKernels('webgl').installed, false);
});

for (const optimizer of [
  { sgd: {} },
  { sgd: { weightDecay: 0.5 } },
  // Clipping updates with l1 = l2 = 0 (the penalty gradient already in the clipped gradient) but still needs the sums.
  { sgd: { clipnorm: 0.5 } },
  { adam: { amsgrad: true } },
  { adamw: { weightDecay: 0.1 } },
]) {
  test(`wasm: the SIMD passes (simd.wat) give bit-identical weights to the JS loops they replace (${JSON.stringify(optimizer)})`, async (t) => {
    if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
    const { wasmSimd } = await import('../src/accel/simd');
    if (!wasmSimd()) return t.skip('simd.wasm not built or the wasm memory cannot be shared');
    const blas = installAcceleratedKernels('wasm').installed;
    try {
      const train = (simd: boolean): { weights: Float32Array[]; losses: number[] } => {
        process.env.REGTRAIN_SIMD = simd ? 'on' : 'off';
        const model = buildTutorialModel(5);
        const step = createLeanStep(model, createOptimizer(optimizer), TUTORIAL_PENALTIES);
        if ('unsupported' in step) throw new Error(step.unsupported);
        // 50: the bias/relu rows and the update both have tails past a multiple of 4. Bit identity: the first
        // difference would show at once; 3 steps take the moments and AMSGrad's running max from zero through two updates.
        const { x, y } = fakeData(50 * 3, 4);
        const losses: number[] = [];
        for (let s = 0; s < 3; s++) {
          const xb = x.slice(s * 50, 50);
          const yb = y.slice(s * 50, 50);
          const r = step.run(xb, yb);
          losses.push(r.dataLoss + r.penalty);
          tf.dispose([xb, yb]);
        }
        const weights = model.getWeights().map((w) => (w.dataSync() as Float32Array).slice());
        step.dispose();
        model.dispose();
        tf.dispose([x, y]);
        return { weights, losses };
      };
      const js = train(false);
      const simd = train(true);
      simd.weights.forEach((w, i) => assert.deepEqual(w, js.weights[i], `weight ${i} differs (BLAS ${blas})`));
      // The penalty's sums are added in another order (4 lanes, float64): equal to ~1e-12.
      simd.losses.forEach((l, i) =>
        assert.ok(Math.abs(l - js.losses[i]!) <= 1e-9 * Math.abs(l), `step ${i}: ${l} vs ${js.losses[i]}`),
      );
    } finally {
      delete process.env.REGTRAIN_SIMD;
      uninstallAcceleratedKernels('wasm');
    }
  });
}

for (const gemm of ['wasm', 'openblas'] as const) {
  test(
    `wasm+${gemm === 'wasm' ? 'wasm GEMM' : 'OpenBLAS'}: the lean step calling the GEMM directly gives the bits of the same step through tfjs's matmul kernels, with no MatMul kernel dispatched`,
    { skip: gemm === 'openblas' ? blasSkip : false },
    async (t) => {
      if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
      const { wasmSimd } = await import('../src/accel/simd');
      if (!wasmSimd()) return t.skip('simd.wasm not built');
      assert.equal(installAcceleratedKernels('wasm', { gemm }).gemm !== null, true);
      try {
        const train = async (
          direct: boolean,
        ): Promise<{ weights: Float32Array[]; losses: number[]; kernels: string[]; tensors: number[] }> => {
          const model = buildTutorialModel(8);
          const step = createLeanStep(model, createOptimizer({ adam: {} }), TUTORIAL_PENALTIES, { direct });
          if ('unsupported' in step) throw new Error(step.unsupported);
          // Batches of 50 and a last one of 7, as an epoch ends: two sets of the direct step's scratch.
          const sizes = [50, 7, 50, 7, 50, 7];
          const { x, y } = fakeData(171, 6);
          const losses: number[] = [];
          const tensors: number[] = [];
          let kernels: string[] = [];
          let at = 0;
          for (const [s, B] of sizes.entries()) {
            const xb = x.slice(at, B);
            const yb = y.slice(at, B);
            at = (at + B) % 114;
            if (s === 2) kernels = (await tf.profile(() => void losses.push(step.run(xb, yb).dataLoss))).kernelNames;
            else losses.push(step.run(xb, yb).dataLoss);
            tf.dispose([xb, yb]);
            tensors.push(tf.memory().numTensors);
          }
          const weights = model.getWeights().map((w) => (w.dataSync() as Float32Array).slice());
          step.dispose();
          model.dispose();
          tf.dispose([x, y]);
          return { weights, losses, kernels, tensors };
        };
        const ops = await train(false);
        const direct = await train(true);
        direct.weights.forEach((w, i) => assert.deepEqual(w, ops.weights[i], `weight ${i}`));
        assert.deepEqual(direct.losses, ops.losses);
        assert.ok(ops.kernels.includes('_FusedMatMul') && ops.kernels.includes('BatchMatMul'), ops.kernels.join(' '));
        assert.deepEqual(
          direct.kernels.filter((k) => k.includes('MatMul')),
          [],
        );
        // Once both batch sizes have run, the direct step holds no more tensors.
        assert.deepEqual(direct.tensors.slice(2), Array(4).fill(direct.tensors[1]));
      } finally {
        uninstallAcceleratedKernels('wasm');
      }
    },
  );
}

test("wasm: the lean step rewrites weights in place, but replaces a weight tfjs-wasm's own MatMul kernel has read (whose packed copy it keeps)", async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const { wasmSimd } = await import('../src/accel/simd');
  if (!wasmSimd()) return t.skip('simd.wasm not built');
  uninstallAcceleratedKernels('wasm');
  const model = buildTutorialModel(3);
  const { x, y } = fakeData(32, 5);
  const kernel = () => (model.layers[1] as unknown as { kernel: { read(): tf.Variable } }).kernel.read();
  const ids = () => model.trainableWeights.map((w) => w.read().dataId);
  try {
    // The original kernels read (and pack) the weights.
    tf.dispose(model.predict(x) as tf.Tensor);
    assert.ok(installAcceleratedKernels('wasm').gemm !== null);
    const step = createLeanStep(model, createOptimizer({ sgd: { learningRate: 0.5 } }), TUTORIAL_PENALTIES);
    if ('unsupported' in step) throw new Error(step.unsupported);
    const runStep = (): { replaced: number; kept: number } => {
      const before = ids();
      step.run(x, y);
      const after = ids();
      const replaced = after.filter((id, i) => id !== before[i]).length;
      return { replaced, kept: after.length - replaced };
    };
    assert.deepEqual(runStep(), { replaced: 8, kept: 0 }, 'weights made before the GEMM went in');
    assert.deepEqual(runStep(), { replaced: 0, kept: 8 }, 'weights only regtrain’s GEMM has read');
    // A product the wrapper leaves to the original kernel (elu is not fused): it packs the first kernel.
    const flat = tf.reshape(x, [32, 784]) as tf.Tensor2D;
    const eluProduct = () => tf.fused.matMul({ a: flat, b: kernel() as tf.Tensor2D, activation: 'elu' });
    tf.dispose(eluProduct());
    assert.deepEqual(runStep(), { replaced: 8, kept: 0 }, 'weights made before the last fallback');
    // The original kernel multiplies with the weights as they are now, not a packed copy of older ones.
    const got = eluProduct();
    const want = tf.elu(tf.matMul(flat, kernel()));
    assert.ok(relMaxDiff(want.dataSync(), got.dataSync()) <= MATMUL_TOL);
    // That product was another fallback: one more replacement, then in place again.
    assert.deepEqual(runStep(), { replaced: 8, kept: 0 });
    assert.deepEqual(runStep(), { replaced: 0, kept: 8 });
    tf.dispose([flat, got, want]);
    step.dispose();
  } finally {
    uninstallAcceleratedKernels('wasm');
    tf.dispose([x, y]);
    model.dispose();
  }
});
