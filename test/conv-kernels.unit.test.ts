/**
 * Issue 14: the convolution kernels regtrain registers for tfjs's wasm backend (src/accel/conv.ts).
 *
 * Error bound against the float64 reference: the filter gradient is summed in float64 and rounded
 * once, so each element is within 2⁻²⁴·|exact| + 2⁻⁴⁰·Σ|x·dy| of the exact value (the second term
 * covers float64's own rounding over the sum). Against tfjs's cpu backend (float32 output of JS
 * double sums, a different order) every element is within 2⁻²³·Σ|x·dy|.
 *
 * The fast kernels (installed with a GEMM) sum in float32: the filter gradient over K = N·outH·outW
 * products in one fixed order, within (K + 1)·2⁻²⁴·Σ|x·dy|; the input gradient over outC products,
 * then ≤ fH·fW of those, within (outC + fH·fW + 1)·2⁻²⁴·Σ|dy·w|. The max-pool gradient moves dy
 * values and sums at most a window's worth in a fixed order: equal to tfjs-wasm's own kernel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import {
  col2im,
  convGeometry,
  convStats,
  geometryArgs,
  geometryOf,
  im2col,
  im2colT,
  maxPoolForward,
  registerWasmConvKernels,
  type ConvGeometry,
  type ConvSimd,
} from '../src/accel/conv';
import { heapModuleLoader } from '../src/accel/heap-module';

// The ES2022 lib has no WebAssembly types (they come with DOM); the one used here:
// eslint-disable-next-line @typescript-eslint/no-namespace -- an ambient declaration of a global, not a module
declare namespace WebAssembly {
  class Memory {
    constructor(desc: { initial: number });
    readonly buffer: ArrayBuffer;
  }
}
import { loadBlas } from '../src/accel/blas';
import { installAcceleratedKernels, uninstallAcceleratedKernels, type GemmChoice } from '../src/accel/kernels';
import { useBackend } from './helpers/backend';
import { buildCnn, cnnStep } from './bench/cnn-bench';

type Pad = 'valid' | 'same' | number | [[number, number], [number, number], [number, number], [number, number]];

interface Case {
  name: string;
  x: [number, number, number, number];
  filter: [number, number, number, number];
  strides: [number, number];
  pad: Pad;
}

const CASES: Case[] = [
  { name: '1×1 input and filter', x: [1, 1, 1, 1], filter: [1, 1, 1, 1], strides: [1, 1], pad: 'valid' },
  {
    name: '7×5 input, 3×2 filter, stride 1, valid',
    x: [3, 7, 5, 2],
    filter: [3, 2, 2, 5],
    strides: [1, 1],
    pad: 'valid',
  },
  {
    name: '7×5 input, 3×2 filter, stride 1, same',
    x: [3, 7, 5, 2],
    filter: [3, 2, 2, 5],
    strides: [1, 1],
    pad: 'same',
  },
  {
    name: '9×9 input, 3×3 filter, stride 2, valid',
    x: [2, 9, 9, 3],
    filter: [3, 3, 3, 4],
    strides: [2, 2],
    pad: 'valid',
  },
  {
    name: '10×8 input, 4×3 filter, stride 2, same (uneven padding)',
    x: [2, 10, 8, 3],
    filter: [4, 3, 3, 7],
    strides: [2, 2],
    pad: 'same',
  },
  {
    name: '11×6 input, 2×4 filter, strides 3×1, same',
    x: [2, 11, 6, 1],
    filter: [2, 4, 1, 3],
    strides: [3, 1],
    pad: 'same',
  },
  {
    name: '6×7 input, 3×3 filter, stride 1, explicit padding 1',
    x: [2, 6, 7, 2],
    filter: [3, 3, 2, 3],
    strides: [1, 1],
    pad: 1,
  },
  {
    name: '6×7 input, 3×2 filter, stride 2, explicit padding [1,2]×[0,1]',
    x: [3, 6, 7, 2],
    filter: [3, 2, 2, 3],
    strides: [2, 2],
    pad: [
      [0, 0],
      [1, 2],
      [0, 1],
      [0, 0],
    ],
  },
  {
    name: '9×8×8 input, 3×3 filter, stride 1, valid (filter rows of 24 floats: the SIMD adds)',
    x: [2, 9, 8, 8],
    filter: [3, 3, 8, 5],
    strides: [1, 1],
    pad: 'valid',
  },
  {
    name: '9×8×8 input, 3×2 filter, stride 2, same',
    x: [2, 9, 8, 8],
    filter: [3, 2, 8, 6],
    strides: [2, 2],
    pad: 'same',
  },
  {
    name: '7×9 input, 3×3 filter, stride 2, same, one channel (the transposed im2col with a stride)',
    x: [2, 7, 9, 1],
    filter: [3, 3, 1, 4],
    strides: [2, 2],
    pad: 'same',
  },
  {
    name: '9×10×16 input, 3×3 filter, stride 2, same (the forward GEMM with uneven padding)',
    x: [2, 9, 10, 16],
    filter: [3, 3, 16, 5],
    strides: [2, 2],
    pad: 'same',
  },
  {
    name: '13×13×16 input, 3×3 filter, 32 channels (the CNN’s second layer)',
    x: [2, 13, 13, 16],
    filter: [3, 3, 16, 32],
    strides: [1, 1],
    pad: 'valid',
  },
  {
    name: '28×28 input, 3×3 filter, 16 channels (the CNN’s first layer)',
    x: [4, 28, 28, 1],
    filter: [3, 3, 1, 16],
    strides: [1, 1],
    pad: 'valid',
  },
];

/** Reproducible values in [−1, 1) with a few exact zeros (as after a relu). */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s % 7 === 0 ? 0 : s / 2 ** 31 - 1;
  }
  return out;
}

function geometry(c: Case): ConvGeometry {
  return convGeometry('test', c.x, c.filter, { strides: c.strides, pad: c.pad });
}

/** The exact gradient (float64) and Σ|x·dy| per filter element, straight from the definition. */
function reference(
  g: ConvGeometry,
  x: Float32Array,
  dy: Float32Array,
): { exact: Float64Array; magnitude: Float64Array } {
  const n = g.fH * g.fW * g.inC * g.outC;
  const exact = new Float64Array(n);
  const magnitude = new Float64Array(n);
  for (let kh = 0; kh < g.fH; kh++)
    for (let kw = 0; kw < g.fW; kw++)
      for (let ci = 0; ci < g.inC; ci++)
        for (let co = 0; co < g.outC; co++) {
          const i = ((kh * g.fW + kw) * g.inC + ci) * g.outC + co;
          for (let b = 0; b < g.batch; b++)
            for (let oh = 0; oh < g.outH; oh++)
              for (let ow = 0; ow < g.outW; ow++) {
                const ih = oh * g.strideH + kh - g.padTop;
                const iw = ow * g.strideW + kw - g.padLeft;
                if (ih < 0 || ih >= g.inH || iw < 0 || iw >= g.inW) continue;
                const p =
                  x[((b * g.inH + ih) * g.inW + iw) * g.inC + ci]! *
                  dy[((b * g.outH + oh) * g.outW + ow) * g.outC + co]!;
                exact[i] += p;
                magnitude[i] += Math.abs(p);
              }
        }
  return { exact, magnitude };
}

/** dx from the definition: the exact value (float64) and Σ|dy·w| per input element. */
function inputReference(
  g: ConvGeometry,
  dy: Float32Array,
  w: Float32Array,
): { exact: Float64Array; magnitude: Float64Array } {
  const n = g.batch * g.inH * g.inW * g.inC;
  const exact = new Float64Array(n);
  const magnitude = new Float64Array(n);
  for (let b = 0; b < g.batch; b++)
    for (let oh = 0; oh < g.outH; oh++)
      for (let ow = 0; ow < g.outW; ow++)
        for (let kh = 0; kh < g.fH; kh++)
          for (let kw = 0; kw < g.fW; kw++) {
            const ih = oh * g.strideH + kh - g.padTop;
            const iw = ow * g.strideW + kw - g.padLeft;
            if (ih < 0 || ih >= g.inH || iw < 0 || iw >= g.inW) continue;
            for (let ci = 0; ci < g.inC; ci++)
              for (let co = 0; co < g.outC; co++) {
                const p =
                  dy[((b * g.outH + oh) * g.outW + ow) * g.outC + co]! *
                  w[((kh * g.fW + kw) * g.inC + ci) * g.outC + co]!;
                const i = ((b * g.inH + ih) * g.inW + iw) * g.inC + ci;
                exact[i] += p;
                magnitude[i] += Math.abs(p);
              }
          }
  return { exact, magnitude };
}

function inputGrad(c: Case, dy: Float32Array, w: Float32Array, g: ConvGeometry): Float32Array {
  return tf.tidy(() => {
    const dyt = tf.tensor4d(dy, [g.batch, g.outH, g.outW, g.outC]);
    const wt = tf.tensor4d(w, c.filter);
    const out = tf.engine().runKernel('Conv2DBackpropInput', { dy: dyt, filter: wt }, {
      strides: c.strides,
      pad: c.pad,
      dataFormat: 'NHWC',
      inputShape: c.x,
    } as never) as tf.Tensor;
    assert.deepEqual(out.shape, c.x);
    return out.dataSync() as Float32Array;
  });
}

/** The filter gradient as tfjs computes it on the current backend: the kernel tfjs-core's conv2d gradient calls. */
function filterGrad(c: Case, x: Float32Array, dy: Float32Array, g: ConvGeometry): Float32Array {
  return tf.tidy(() => {
    const xt = tf.tensor4d(x, c.x);
    const dyt = tf.tensor4d(dy, [g.batch, g.outH, g.outW, g.outC]);
    const out = tf.engine().runKernel('Conv2DBackpropFilter', { x: xt, dy: dyt }, {
      strides: c.strides,
      pad: c.pad,
      dataFormat: 'NHWC',
      filterShape: c.filter,
    } as never) as tf.Tensor;
    assert.deepEqual(out.shape, c.filter);
    return out.dataSync() as Float32Array;
  });
}

function assertWithin(
  actual: Float32Array,
  expected: ArrayLike<number>,
  bound: (i: number) => number,
  what: string,
): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!);
    if (!(err <= bound(i)))
      assert.fail(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]} (error ${err} > bound ${bound(i)})`);
  }
}

registerWasmConvKernels();

for (const c of CASES) {
  test(`wasm Conv2DBackpropFilter matches the float64 definition and tfjs's cpu kernel: ${c.name}`, async (t) => {
    if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
    const g = geometry(c);
    const x = values(
      c.x.reduce((a, b) => a * b),
      1 + c.x[1],
    );
    const dy = values(g.batch * g.outH * g.outW * g.outC, 7 + c.filter[3]);
    const ref = reference(g, x, dy);
    const onWasm = filterGrad(c, x, dy, g);
    assertWithin(
      onWasm,
      ref.exact,
      (i) => 2 ** -24 * Math.abs(ref.exact[i]!) + 2 ** -40 * ref.magnitude[i]!,
      'against float64',
    );
    assert.deepEqual(filterGrad(c, x, dy, g), onWasm, 'a second run gives the same bits');
    await useBackend('cpu');
    const onCpu = filterGrad(c, x, dy, g);
    assertWithin(onWasm, onCpu, (i) => 2 ** -23 * ref.magnitude[i]!, "against tfjs's cpu backend");
  });
}

test("a conv layer's kernel and input gradients through tf.variableGrads agree on wasm and cpu (stride 2, same padding)", async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const grads = () =>
    tf.tidy(() => {
      const x = tf.tensor4d(values(2 * 9 * 7 * 3, 3), [2, 9, 7, 3]);
      const w = tf.variable(tf.tensor4d(values(3 * 3 * 3 * 5, 4), [3, 3, 3, 5]), true, 'w');
      const r = tf.tensor4d(values(2 * 5 * 4 * 5, 5), [2, 5, 4, 5]);
      const xv = tf.variable(x, true, 'x');
      const { grads: gs } = tf.variableGrads(
        () => tf.sum(tf.mul(tf.relu(tf.conv2d(xv, w, 2, 'same')), r)) as tf.Scalar,
        [w, xv],
      );
      const out = [gs.w!.dataSync() as Float32Array, gs.x!.dataSync() as Float32Array];
      w.dispose();
      xv.dispose();
      return out;
    });
  const [wWasm, xWasm] = grads();
  await useBackend('cpu');
  const [wCpu, xCpu] = grads();
  // Σ|x·dy| ≤ 9·7·2·max|x|·max|dy| per element here; values are in [−1, 1).
  assertWithin(wWasm!, wCpu!, () => 2 ** -22 * 2 * 5 * 4, 'kernel gradient');
  assertWithin(xWasm!, xCpu!, () => 2 ** -22 * 3 * 3 * 5, 'input gradient');
});

test('Conv2DBackpropFilter on wasm refuses dilations other than 1 with a one-line error', async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const x = tf.zeros([1, 5, 5, 1]);
  const dy = tf.zeros([1, 1, 1, 1]);
  assert.throws(
    () =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
        strides: 1,
        pad: 'valid',
        filterShape: [3, 3, 1, 1],
        dilations: [2, 2],
      } as never),
    {
      message:
        'Conv2DBackpropFilter on wasm: dilations must be 1, got [2,2] (dilated convolution gradients are not supported)',
    },
  );
  assert.throws(
    () =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
        strides: 1,
        pad: 'valid',
        filterShape: [3, 3, 1, 1],
        dataFormat: 'NCHW',
      } as never),
    {
      message: 'Conv2DBackpropFilter on wasm: dataFormat must be NHWC, got NCHW',
    },
  );
  tf.dispose([x, dy]);
});

const GEMMS: Array<{ choice: GemmChoice; skip: string | false }> = [
  { choice: 'wasm', skip: false },
  { choice: 'openblas', skip: loadBlas().ok ? false : 'OpenBLAS not loadable here' },
];

for (const { choice, skip } of GEMMS) {
  test(
    `with the ${choice} GEMM installed, the wasm conv gradients match the float64 definition on every shape, run to run identical`,
    { skip },
    async (t) => {
      if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
      const r = installAcceleratedKernels('wasm', { gemm: choice });
      assert.ok(r.gemm, `a GEMM installs (${r.reason}; ${r.gemmReason ?? ''})`);
      try {
        for (const c of CASES) {
          const g = geometry(c);
          const x = values(
            c.x.reduce((a, b) => a * b),
            1 + c.x[1],
          );
          const dy = values(g.batch * g.outH * g.outW * g.outC, 7 + c.filter[3]);
          const w = values(
            c.filter.reduce((a, b) => a * b),
            11 + c.filter[0],
          );
          const before = { ...convStats };
          const ref = reference(g, x, dy);
          const k = g.batch * g.outH * g.outW;
          const dW = filterGrad(c, x, dy, g);
          assertWithin(dW, ref.exact, (i) => (k + 1) * 2 ** -24 * ref.magnitude[i]!, `${c.name}: filter gradient`);
          assert.deepEqual(filterGrad(c, x, dy, g), dW, `${c.name}: filter gradient run to run`);
          const iref = inputReference(g, dy, w);
          const dx = inputGrad(c, dy, w, g);
          assertWithin(
            dx,
            iref.exact,
            (i) => (g.outC + g.fH * g.fW + 1) * 2 ** -24 * iref.magnitude[i]!,
            `${c.name}: input gradient`,
          );
          assert.deepEqual(inputGrad(c, dy, w, g), dx, `${c.name}: input gradient run to run`);
          assert.equal(convStats.filterGemm - before.filterGemm, 2, `${c.name}: the GEMM filter gradient ran`);
          assert.equal(convStats.inputGemm - before.inputGemm, 2, `${c.name}: the GEMM input gradient ran`);
        }
      } finally {
        uninstallAcceleratedKernels('wasm');
      }
    },
  );
}

/** y from the definition: the exact value (float64) and Σ|x·w| per output element. */
function forwardReference(
  g: ConvGeometry,
  x: Float32Array,
  w: Float32Array,
): { exact: Float64Array; magnitude: Float64Array } {
  const n = g.batch * g.outH * g.outW * g.outC;
  const exact = new Float64Array(n);
  const magnitude = new Float64Array(n);
  for (let b = 0; b < g.batch; b++)
    for (let oh = 0; oh < g.outH; oh++)
      for (let ow = 0; ow < g.outW; ow++)
        for (let kh = 0; kh < g.fH; kh++)
          for (let kw = 0; kw < g.fW; kw++) {
            const ih = oh * g.strideH + kh - g.padTop;
            const iw = ow * g.strideW + kw - g.padLeft;
            if (ih < 0 || ih >= g.inH || iw < 0 || iw >= g.inW) continue;
            for (let ci = 0; ci < g.inC; ci++)
              for (let co = 0; co < g.outC; co++) {
                const p =
                  x[((b * g.inH + ih) * g.inW + iw) * g.inC + ci]! * w[((kh * g.fW + kw) * g.inC + ci) * g.outC + co]!;
                const i = ((b * g.outH + oh) * g.outW + ow) * g.outC + co;
                exact[i] += p;
                magnitude[i] += Math.abs(p);
              }
          }
  return { exact, magnitude };
}

function conv2dOf(c: Case, x: Float32Array, w: Float32Array): Float32Array {
  return tf.tidy(() =>
    tf.conv2d(tf.tensor4d(x, c.x), tf.tensor4d(w, c.filter), c.strides, c.pad).dataSync(),
  ) as Float32Array;
}

test(
  'with OpenBLAS installed, Conv2D on wasm (im2col · W where a filter row is ≥ 16 floats) matches the float64 definition and tfjs’s cpu kernel on every shape',
  { skip: loadBlas().ok ? false : 'OpenBLAS not loadable here' },
  async (t) => {
    if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
    const results: Float32Array[] = [];
    assert.equal(installAcceleratedKernels('wasm', { gemm: 'openblas' }).gemm, 'openblas');
    try {
      for (const c of CASES) {
        const g = geometry(c);
        const x = values(
          c.x.reduce((a, b) => a * b),
          3 + c.x[2],
        );
        const w = values(
          c.filter.reduce((a, b) => a * b),
          5 + c.filter[3],
        );
        const before = convStats.forwardGemm;
        const y = conv2dOf(c, x, w);
        const fast = c.filter[1] * c.filter[2] >= 16;
        assert.equal(convStats.forwardGemm - before, fast ? 1 : 0, `${c.name}: the GEMM forward ran iff fW·inC ≥ 16`);
        const ref = forwardReference(g, x, w);
        const k = g.fH * g.fW * g.inC;
        assertWithin(y, ref.exact, (i) => (k + 1) * 2 ** -24 * ref.magnitude[i]!, `${c.name}: forward`);
        assert.deepEqual(conv2dOf(c, x, w), y, `${c.name}: forward run to run`);
        results.push(y);
      }
    } finally {
      uninstallAcceleratedKernels('wasm');
    }
    assert.ok(await useBackend('cpu'));
    try {
      CASES.forEach((c, n) => {
        const g = geometry(c);
        const x = values(
          c.x.reduce((a, b) => a * b),
          3 + c.x[2],
        );
        const w = values(
          c.filter.reduce((a, b) => a * b),
          5 + c.filter[3],
        );
        const ref = forwardReference(g, x, w);
        const k = g.fH * g.fW * g.inC;
        assertWithin(
          results[n]!,
          conv2dOf(c, x, w),
          (i) => (2 * k + 2) * 2 ** -24 * ref.magnitude[i]!,
          `${c.name}: against tfjs cpu`,
        );
      });
    } finally {
      assert.ok(await useBackend('wasm'));
    }
  },
);

test('im2colT of a 2×3 one-channel image, 2×2 filter, padding 1: the rows (kh, kw) hold the shifted pixels with zeros outside (by hand)', () => {
  const g = convGeometry('test', [1, 2, 3, 1], [2, 2, 1, 1], { strides: 1, pad: 1 });
  assert.deepEqual([g.outH, g.outW], [3, 4]);
  const x = Float32Array.from([1, 2, 3, 4, 5, 6]);
  const col = new Float32Array(4 * 12).fill(NaN);
  im2colT(g, x, 0, col, 0);
  assert.deepEqual(
    [...col],
    [
      ...[0, 0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6], // kh 0, kw 0: pixel (oh − 1, ow − 1)
      ...[0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 0], // kh 0, kw 1: pixel (oh − 1, ow)
      ...[0, 1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0], // kh 1, kw 0: pixel (oh, ow − 1)
      ...[1, 2, 3, 0, 4, 5, 6, 0, 0, 0, 0, 0], // kh 1, kw 1: pixel (oh, ow)
    ],
  );
});

test('im2colT is the transpose of im2col on every one-channel shape (strides and padding included)', () => {
  for (const c of CASES.filter((k) => k.x[3] === 1)) {
    const g = geometry(c);
    const x = values(
      c.x.reduce((a, b) => a * b),
      17,
    );
    const rows = g.batch * g.outH * g.outW;
    const cols = g.fH * g.fW * g.inC;
    const col = new Float32Array(rows * cols);
    const colT = new Float32Array(rows * cols).fill(NaN);
    im2col(g, x, 0, col, 0);
    im2colT(g, x, 0, colT, 0);
    for (let r = 0; r < rows; r++)
      for (let k = 0; k < cols; k++)
        if (!Object.is(colT[k * rows + r], col[r * cols + k]))
          assert.fail(`${c.name}: colT[${k}][${r}] = ${colT[k * rows + r]}, im2col has ${col[r * cols + k]}`);
  }
});

test('im2colT with the image and its copy in one array (the lean CNN step’s arena) copies runs of 16 pixels and more with the values of separate arrays', () => {
  const cases: Case[] = [
    {
      name: 'the CNN’s first layer, 28×28, 3×3, valid',
      x: [2, 28, 28, 1],
      filter: [3, 3, 1, 4],
      strides: [1, 1],
      pad: 'valid',
    },
    {
      name: '20×18, 3×3, same (zeros at both ends of each run)',
      x: [2, 20, 18, 1],
      filter: [3, 3, 1, 2],
      strides: [1, 1],
      pad: 'same',
    },
    {
      name: '17 wide, 2×5, stride 2 (the element loop)',
      x: [1, 9, 17, 1],
      filter: [2, 5, 1, 1],
      strides: [2, 2],
      pad: 'valid',
    },
  ];
  for (const c of cases) {
    const g = geometry(c);
    const n = c.x.reduce((a, b) => a * b);
    const size = g.batch * g.outH * g.outW * g.fH * g.fW;
    const x = values(n, 23);
    const apart = new Float32Array(size).fill(NaN);
    im2colT(g, x, 0, apart, 0);
    // One array: 3 floats before the image, the copy after it.
    const heap = new Float32Array(3 + n + size).fill(NaN);
    heap.set(x, 3);
    im2colT(g, heap, 3, heap, 3 + n);
    for (let i = 0; i < size; i++)
      if (!Object.is(heap[3 + n + i], apart[i]))
        assert.fail(`${c.name}: [${i}] = ${heap[3 + n + i]}, apart ${apart[i]}`);
  }
});

test('Identity on wasm with regtrain’s kernels shares the input’s memory: the clone keeps its values after the original is disposed, and one dispose frees nothing twice', async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  assert.ok(installAcceleratedKernels('wasm', { gemm: 'wasm' }).gemm);
  try {
    const before = convStats.identity;
    const numBefore = tf.memory().numTensors;
    const a = tf.tensor2d([1.5, -2, 3, 4], [2, 2]);
    const b = tf.clone(a);
    assert.equal(convStats.identity - before, 1, 'the shared Identity ran');
    a.dispose();
    assert.deepEqual([...(b.dataSync() as Float32Array)], [1.5, -2, 3, 4]);
    assert.deepEqual(b.shape, [2, 2]);
    b.dispose();
    assert.equal(tf.memory().numTensors, numBefore);
  } finally {
    uninstallAcceleratedKernels('wasm');
  }
});

const POOLS: Array<{
  name: string;
  x: [number, number, number, number];
  size: [number, number];
  strides: [number, number];
  pad: 'valid' | 'same';
}> = [
  {
    name: '2×2 pool, stride 2, valid, odd 11×7 input (last row and column dropped)',
    x: [2, 11, 7, 3],
    size: [2, 2],
    strides: [2, 2],
    pad: 'valid',
  },
  { name: '3×3 pool, stride 2, same', x: [2, 9, 8, 2], size: [3, 3], strides: [2, 2], pad: 'same' },
  {
    name: '3×2 pool, stride 1, valid (overlapping windows)',
    x: [1, 6, 5, 4],
    size: [3, 2],
    strides: [1, 1],
    pad: 'valid',
  },
  { name: '2×2 pool, stride 1, same', x: [2, 5, 5, 1], size: [2, 2], strides: [1, 1], pad: 'same' },
  {
    name: '2×2 pool, stride 2, valid, 8 channels (the SIMD loop)',
    x: [2, 7, 9, 8],
    size: [2, 2],
    strides: [2, 2],
    pad: 'valid',
  },
  {
    name: '3×3 pool, stride 2, same, 12 channels (the SIMD loop)',
    x: [1, 8, 7, 12],
    size: [3, 3],
    strides: [2, 2],
    pad: 'same',
  },
  {
    name: '2×3 pool, stride 1, valid, 4 channels (the SIMD loop, overlapping)',
    x: [2, 5, 6, 4],
    size: [2, 3],
    strides: [1, 1],
    pad: 'valid',
  },
];

function maxPoolGradOf(pool: (typeof POOLS)[number], x: Float32Array, dySeed: number): tf.Tensor {
  return tf.tidy(() => {
    const xt = tf.tensor4d(x, pool.x);
    const y = tf.maxPool(xt, pool.size, pool.strides, pool.pad);
    const dy = tf.tensor4d(values(y.size, dySeed), y.shape as [number, number, number, number]);
    return tf.engine().runKernel('MaxPoolGrad', { dy, input: xt, output: y }, {
      filterSize: pool.size,
      strides: pool.strides,
      pad: pool.pad,
    } as never) as tf.Tensor;
  });
}

/** Runs fn with regtrain's wasm kernels installed; checks the one-pass max-pool gradient ran. */
function withFastPool<T>(fn: () => T): T {
  assert.ok(installAcceleratedKernels('wasm', { gemm: 'wasm' }).gemm);
  try {
    const before = convStats.maxPoolGrad;
    const out = fn();
    assert.ok(convStats.maxPoolGrad > before, 'the one-pass kernel ran');
    return out;
  } finally {
    uninstallAcceleratedKernels('wasm');
  }
}

for (const pool of POOLS) {
  const overlapping = pool.strides[0] < pool.size[0] || pool.strides[1] < pool.size[1];
  test(`the one-pass MaxPoolGrad equals tfjs's cpu kernel (first maximum; ties and negative windows included)${overlapping ? ' to float32 rounding' : ' bit for bit'}: ${pool.name}`, async (t) => {
    if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
    // Coarse values in [−1, 1]: many windows hold equal maxima, some only negative values.
    const x = values(
      pool.x.reduce((a, b) => a * b),
      3,
    ).map((v) => Math.round(v * 4) / 4);
    const ours = withFastPool(() => maxPoolGradOf(pool, x, 9));
    await useBackend('cpu');
    const cpu = maxPoolGradOf(pool, x, 9);
    // Overlapping windows: an input gets up to 6 dy values here, summed in float32 (ours) or double (cpu).
    if (overlapping) assertWithin(ours.dataSync() as Float32Array, cpu.dataSync(), () => 6 * 2 ** -24, 'against cpu');
    else assert.deepEqual(ours.dataSync(), cpu.dataSync());
    tf.dispose([ours, cpu]);
  });

  test(`the one-pass MaxPoolGrad equals tfjs-wasm's own kernel bit for bit when every window has one positive maximum: ${pool.name}`, async (t) => {
    if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
    const n = pool.x.reduce((a, b) => a * b);
    const x = new Float32Array(n).map((_, i) => 1 + ((i * 7919) % n)); // distinct positive values
    uninstallAcceleratedKernels('wasm');
    const theirs = maxPoolGradOf(pool, x, 9);
    const ours = withFastPool(() => maxPoolGradOf(pool, x, 9));
    assert.deepEqual(ours.dataSync(), theirs.dataSync());
    tf.dispose([ours, theirs]);
  });
}

test("the one-pass MaxPoolGrad sends a window's gradient to its first maximum, also when that maximum is 0 or negative", async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const pool = {
    name: '',
    x: [1, 2, 4, 1] as [number, number, number, number],
    size: [2, 2] as [number, number],
    strides: [2, 2] as [number, number],
    pad: 'valid' as const,
  };
  // Window 1: [[−1, 0], [0, −1]] (max 0, first at (0,1)); window 2: [[−3, −2], [−2, −5]] (max −2, first at (0,3)).
  const x = new Float32Array([-1, 0, -3, -2, 0, -1, -2, -5]);
  const dx = withFastPool(() =>
    tf.tidy(() => {
      const xt = tf.tensor4d(x, pool.x);
      const y = tf.maxPool(xt, 2, 2, 'valid');
      return tf.engine().runKernel('MaxPoolGrad', { dy: tf.tensor4d([5, 7], [1, 1, 2, 1]), input: xt, output: y }, {
        filterSize: 2,
        strides: 2,
        pad: 'valid',
      } as never) as tf.Tensor;
    }),
  );
  assert.deepEqual(Array.from(dx.dataSync()), [0, 5, 0, 7, 0, 0, 0, 0]);
  dx.dispose();
});

/** k Adam steps of the bench's CNN (configs/cnn.yaml's architecture) on batches of 8; losses and final weights. */
function trainCnn(steps: number): { losses: number[]; weights: Float32Array[] } {
  const model = buildCnn(3);
  const step = cnnStep(model);
  const losses: number[] = [];
  const { x, y } = tf.tidy(() => ({
    x: tf.tensor3d(
      values(16 * 784, 21).map((v) => Math.abs(v)),
      [16, 28, 28],
    ),
    y: tf.tensor1d(
      Array.from({ length: 16 }, (_, i) => (i * 7) % 10),
      'int32',
    ),
  }));
  for (let i = 0; i < steps; i++) {
    const xs = x.slice((i % 2) * 8, 8);
    const ys = y.slice((i % 2) * 8, 8);
    losses.push(step.run(xs, ys));
    tf.dispose([xs, ys]);
  }
  const weights = model.getWeights().map((w) => w.dataSync() as Float32Array);
  tf.dispose([x, y]);
  model.dispose();
  return { losses, weights };
}

test("6 Adam steps of the CNN with regtrain's wasm kernels give tfjs-wasm's losses and weights to float32 rounding, identical run to run", async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  uninstallAcceleratedKernels('wasm');
  const reference = trainCnn(6);
  const before = { ...convStats };
  const fast = withFastPool(() => trainCnn(6));
  assert.ok(
    convStats.filterGemm - before.filterGemm >= 12 && convStats.inputGemm - before.inputGemm >= 6,
    'the GEMM conv gradients ran',
  );
  for (let i = 0; i < 6; i++)
    assert.ok(
      Math.abs(fast.losses[i]! - reference.losses[i]!) <= 3e-5,
      `loss ${i}: ${fast.losses[i]} vs ${reference.losses[i]}`,
    );
  fast.weights.forEach((w, i) => {
    const scale = Math.max(...reference.weights[i]!.map(Math.abs));
    assertWithin(w, reference.weights[i]!, () => 1e-5 * scale, `weights ${i}`);
  });
  const again = withFastPool(() => trainCnn(6));
  assert.deepEqual(again.losses, fast.losses);
  again.weights.forEach((w, i) => assert.deepEqual(w, fast.weights[i]));
});

/** Runs fn with REGTRAIN_SIMD set to value (undefined = unset), restoring it after. */
function withSimdEnv<T>(value: string | undefined, fn: () => T): T {
  const saved = process.env.REGTRAIN_SIMD;
  if (value === undefined) delete process.env.REGTRAIN_SIMD;
  else process.env.REGTRAIN_SIMD = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.REGTRAIN_SIMD;
    else process.env.REGTRAIN_SIMD = saved;
  }
}

test('the SIMD max-pool gradient and col2im adds (conv.wasm) give the bits of their JS loops (REGTRAIN_SIMD=off)', async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  assert.ok(installAcceleratedKernels('wasm', { gemm: 'wasm' }).gemm);
  try {
    for (const pool of POOLS.filter((p) => p.x[3] % 4 === 0)) {
      const x = values(
        pool.x.reduce((a, b) => a * b),
        5,
      ).map((v) => Math.round(v * 4) / 4);
      const simd = withSimdEnv(undefined, () => maxPoolGradOf(pool, x, 13));
      const js = withSimdEnv('off', () => maxPoolGradOf(pool, x, 13));
      assert.deepEqual(simd.dataSync(), js.dataSync(), pool.name);
      tf.dispose([simd, js]);
    }
    for (const c of CASES.filter((k) => k.filter[1] * k.filter[2] >= 16)) {
      const g = geometry(c);
      const dy = values(g.batch * g.outH * g.outW * g.outC, 17);
      const w = values(
        c.filter.reduce((a, b) => a * b),
        19,
      );
      assert.deepEqual(
        withSimdEnv(undefined, () => inputGrad(c, dy, w, g)),
        withSimdEnv('off', () => inputGrad(c, dy, w, g)),
        c.name,
      );
    }
  } finally {
    uninstallAcceleratedKernels('wasm');
  }
});

test("Sum over every axis but the last (a bias gradient) is within float32 rounding of the exact column sums, as tfjs-wasm's own; other sums are left to it", async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const cases: Array<{ shape: number[]; axis: number[]; keepDims: boolean; fast: boolean }> = [
    { shape: [3, 5, 7, 8], axis: [0, 1, 2], keepDims: false, fast: true },
    { shape: [37, 12], axis: [0], keepDims: false, fast: true },
    { shape: [4, 6, 16], axis: [1, 0], keepDims: true, fast: true },
    { shape: [4, 6, 6], axis: [0, 1], keepDims: false, fast: false }, // 6 columns: not a multiple of 4
    { shape: [4, 8], axis: [1], keepDims: false, fast: false },
  ];
  for (const c of cases) {
    const data = values(
      c.shape.reduce((a, b) => a * b),
      23,
    ).map((v) => v * 1000);
    const x = tf.tensor(data, c.shape);
    uninstallAcceleratedKernels('wasm');
    const theirs = tf.sum(x, c.axis, c.keepDims);
    assert.ok(installAcceleratedKernels('wasm', { gemm: 'wasm' }).gemm);
    const before = convStats.colSum;
    const ours = tf.sum(x, c.axis, c.keepDims);
    uninstallAcceleratedKernels('wasm');
    assert.equal(convStats.colSum - before, c.fast ? 1 : 0, `${c.shape} over ${c.axis}: fast path taken or not`);
    assert.deepEqual(ours.shape, theirs.shape);
    if (!c.fast) {
      assert.deepEqual(ours.dataSync(), theirs.dataSync(), `${c.shape} over ${c.axis}: tfjs's kernel ran`);
    } else {
      // A float32 sum of `rows` terms in any order is within rows·2⁻²⁴·Σ|x| of the exact sum.
      const cols = c.shape[c.shape.length - 1]!;
      const rows = data.length / cols;
      const exact = new Float64Array(cols);
      const magnitude = new Float64Array(cols);
      data.forEach((v, i) => {
        exact[i % cols] += v;
        magnitude[i % cols] += Math.abs(v);
      });
      assertWithin(
        ours.dataSync() as Float32Array,
        exact,
        (j) => rows * 2 ** -24 * magnitude[j]!,
        `${c.shape} over ${c.axis}`,
      );
      assertWithin(
        theirs.dataSync() as Float32Array,
        exact,
        (j) => rows * 2 ** -24 * magnitude[j]!,
        `${c.shape} over ${c.axis} (tfjs)`,
      );
    }
    tf.dispose([x, ours, theirs]);
  }
});

test("conv.wasm's im2col, col2im and fused relu-gradient + column sums give the bits of conv.ts's JS loops (channels 4–16, padding, strides)", () => {
  const mem = new WebAssembly.Memory({ initial: 64 });
  const simd = heapModuleLoader<ConvSimd>('conv.wasm')(mem);
  assert.ok(simd, 'conv.wasm is built');
  const cases: Case[] = [
    {
      name: 'the CNN’s second layer, 13×13×16, 3×3, valid',
      x: [2, 13, 13, 16],
      filter: [3, 3, 16, 8],
      strides: [1, 1],
      pad: 'valid',
    },
    {
      name: '7×5×4, 3×2, same (zeros at the edges)',
      x: [3, 7, 5, 4],
      filter: [3, 2, 4, 4],
      strides: [1, 1],
      pad: 'same',
    },
    { name: '9×9×8, 3×3, stride 2, same', x: [2, 9, 9, 8], filter: [3, 3, 8, 4], strides: [2, 2], pad: 'same' },
  ];
  for (const c of cases) {
    const g = geometry(c);
    const nx = c.x.reduce((a, b) => a * b);
    const rows = g.batch * g.outH * g.outW;
    const K = g.fH * g.fW * g.inC;
    // Byte layout in the module's memory: x, col, dx, then the JS results apart.
    const heap = new Float32Array(mem.buffer);
    const xAt = 16;
    const colAt = xAt + nx;
    const dxAt = colAt + rows * K;
    const x = values(nx, 29);
    heap.set(x, xAt);
    heap.fill(NaN, colAt, colAt + rows * K);
    simd.im2col(4 * xAt, 4 * colAt, ...geometryArgs(g));
    const want = new Float32Array(rows * K).fill(NaN);
    im2col(g, x, 0, want, 0);
    for (let i = 0; i < rows * K; i++)
      if (!Object.is(heap[colAt + i], want[i]))
        assert.fail(`${c.name}: im2col [${i}] = ${heap[colAt + i]}, JS ${want[i]}`);
    // col2im of other values (the column as dz·Wᵀ would fill it), over a dx full of NaN: zeroed first.
    const col = values(rows * K, 31);
    heap.set(col, colAt);
    heap.fill(NaN, dxAt, dxAt + nx);
    simd.col2im(4 * colAt, 4 * dxAt, nx, ...geometryArgs(g));
    const dx = new Float32Array(nx).fill(NaN);
    col2im(g, col, 0, dx, 0);
    for (let i = 0; i < nx; i++)
      if (!Object.is(heap[dxAt + i], dx[i])) assert.fail(`${c.name}: col2im [${i}] = ${heap[dxAt + i]}, JS ${dx[i]}`);
  }
  // reluGradColSum against reluGrad's and colSum's JS loops: y ≤ 0 and > 0, dz with ±0 and ±∞ (0·∞ is NaN).
  const rows = 37;
  const cols = 12;
  const n = rows * cols;
  const heap = new Float32Array(mem.buffer);
  // ±∞ in columns 5 (∞ then −∞: NaN), 6 (∞) and 7 (∞ where y = 0: 0·∞ = NaN); the other columns finite.
  const inf: Record<number, number> = { 5: Infinity, 29: -Infinity, 30: Infinity, 43: Infinity };
  const dz = values(n, 41).map((v, i) => inf[i] ?? (i % 11 === 0 ? -0 : v));
  const y = values(n, 43).map((v, i) => (i === 43 || (i % 5 === 0 && !(i in inf)) ? 0 : i in inf ? 0.5 : v));
  heap.set(dz, 16);
  heap.set(y, 16 + n);
  heap.fill(NaN, 16 + 2 * n, 16 + 2 * n + cols);
  simd.reluGradColSum(4 * 16, 4 * (16 + n), 4 * (16 + 2 * n), rows, cols);
  const dzWant = dz.map((d, i) => d * (y[i]! > 0 ? 1 : 0));
  const sums = new Float32Array(cols);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) sums[j] = sums[j]! + dzWant[r * cols + j]!;
  for (let i = 0; i < n; i++)
    if (!Object.is(heap[16 + i], dzWant[i])) assert.fail(`relu gradient [${i}] = ${heap[16 + i]}, JS ${dzWant[i]}`);
  for (let j = 0; j < cols; j++)
    if (!Object.is(heap[16 + 2 * n + j], sums[j]))
      assert.fail(`column sum [${j}] = ${heap[16 + 2 * n + j]}, JS ${sums[j]}`);
  // The case holds what it is meant to: columns that became ±∞ or NaN, and finite ones.
  assert.deepEqual(
    [sums[5], sums[6], sums[7]].map((v) => String(v)),
    ['NaN', 'Infinity', 'NaN'],
  );
  assert.ok(sums.every((v, j) => j === 5 || j === 6 || j === 7 || (Number.isFinite(v) && v !== 0)));
});

test("conv.wasm's fused max-pool, relu and bias gradients give the bits of the scatter, reluGrad and colSum loops (windows that tile, and 11×11 under a 2×2 pool: the last row and column get none)", () => {
  const mem = new WebAssembly.Memory({ initial: 64 });
  const simd = heapModuleLoader<ConvSimd>('conv.wasm')(mem);
  assert.ok(simd, 'conv.wasm is built');
  for (const [batch, inH, inW, ch, f] of [
    [3, 8, 6, 4, 2],
    [2, 11, 11, 8, 2],
    [2, 9, 7, 4, 3],
  ] as const) {
    const pool = tf.backend_util.computePool2DInfo([batch, inH, inW, ch], [f, f], [f, f], 1, 'valid');
    const g = geometryOf(pool);
    const nx = batch * inH * inW * ch;
    const ny = batch * g.outH * g.outW * ch;
    // The conv layer's relu output: a third zeros (ties in the windows), and ±0 and NaN gradients.
    const y = values(nx, 53).map((v) => Math.max(v, 0));
    const dy = values(ny, 59).map((v, i) => (i % 9 === 0 ? -0 : i === 5 ? NaN : v));
    const yPool = new Float32Array(ny);
    const arg = new Int32Array(ny);
    maxPoolForward(g, y, 0, yPool, 0, arg);
    // The three passes apart, as the lean CNN step ran them.
    const dz = new Float32Array(nx);
    for (let o = 0; o < ny; o++) dz[arg[o]!] = dz[arg[o]!]! + dy[o]!;
    for (let i = 0; i < nx; i++) dz[i] = dz[i]! * (y[i]! > 0 ? 1 : 0);
    const sums = new Float32Array(ch);
    for (let i = 0; i < nx; i++) sums[i % ch] = sums[i % ch]! + dz[i]!;
    // In the module's memory: dy, arg, y, dz (NaN first: every value written), sums.
    const at = { dy: 16, arg: 16 + ny, y: 16 + 2 * ny, dz: 16 + 2 * ny + nx, out: 16 + 2 * ny + 2 * nx };
    const heap = new Float32Array(mem.buffer);
    heap.set(dy, at.dy);
    new Int32Array(mem.buffer).set(arg, at.arg);
    heap.set(y, at.y);
    heap.fill(NaN, at.dz, at.out + ch);
    simd.poolReluGradColSum(
      4 * at.dy,
      4 * at.arg,
      4 * at.y,
      4 * at.dz,
      4 * at.out,
      1,
      batch,
      inH,
      inW,
      ch,
      g.outH,
      g.outW,
      f,
      f,
    );
    const name = `${inH}×${inW}×${ch}, pool ${f}`;
    for (let i = 0; i < nx; i++)
      if (!Object.is(heap[at.dz + i], dz[i])) assert.fail(`${name}: dz[${i}] = ${heap[at.dz + i]}, apart ${dz[i]}`);
    for (let c = 0; c < ch; c++)
      if (!Object.is(heap[at.out + c], sums[c]))
        assert.fail(`${name}: sum[${c}] = ${heap[at.out + c]}, apart ${sums[c]}`);
  }
});

test("conv.wasm's im2colTRow fills im2colT's rows of a one-channel input with the bits of the JS copies (valid, same, stride 2 down)", () => {
  const mem = new WebAssembly.Memory({ initial: 64 });
  const simd = heapModuleLoader<ConvSimd>('conv.wasm')(mem);
  assert.ok(simd, 'conv.wasm is built');
  const cases: Case[] = [
    {
      name: 'the CNN’s first layer, 28×28, 3×3, valid',
      x: [2, 28, 28, 1],
      filter: [3, 3, 1, 4],
      strides: [1, 1],
      pad: 'valid',
    },
    { name: '20×18, 3×3, same', x: [2, 20, 18, 1], filter: [3, 3, 1, 2], strides: [1, 1], pad: 'same' },
    { name: '11×13, 4×5, stride 2 down, same', x: [3, 11, 13, 1], filter: [4, 5, 1, 1], strides: [2, 1], pad: 'same' },
  ];
  for (const c of cases) {
    const g = geometry(c);
    const n = c.x.reduce((a, b) => a * b);
    const size = g.batch * g.outH * g.outW * g.fH * g.fW;
    const x = values(n, 37).map((v, i) => (i === 3 ? -0 : i === 7 ? NaN : v));
    const want = new Float32Array(size).fill(NaN);
    im2colT(g, x, 0, want, 0);
    const heap = new Float32Array(mem.buffer);
    heap.fill(NaN, 0, 8 + n + size);
    heap.set(x, 8);
    const { batch, inH, inW, outH, outW, strideH, padTop } = g;
    im2colT(g, heap, 8, heap, 8 + n, (colOff, kh, iw0, lo, hi) =>
      simd.im2colTRow(4 * 8, 4 * colOff, batch, inH, inW, outH, outW, strideH, padTop, kh, iw0, lo, hi),
    );
    for (let i = 0; i < size; i++)
      if (!Object.is(heap[8 + n + i], want[i])) assert.fail(`${c.name}: [${i}] = ${heap[8 + n + i]}, JS ${want[i]}`);
  }
});
