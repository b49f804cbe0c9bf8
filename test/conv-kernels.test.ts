/**
 * Issue 14: the convolution kernels regtrain registers for tfjs's wasm backend (src/accel/conv.ts).
 *
 * Error bound against the float64 reference: the filter gradient is summed in float64 and rounded
 * once, so each element is within 2⁻²⁴·|exact| + 2⁻⁴⁰·Σ|x·dy| of the exact value (the second term
 * covers float64's own rounding over the sum). Against tfjs's cpu backend (float32 output of JS
 * double sums, a different order) every element is within 2⁻²³·Σ|x·dy|.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { convGeometry, registerWasmConvKernels, type ConvGeometry } from '../src/accel/conv';
import { useBackend } from './helpers/backend';

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
  { name: '7×5 input, 3×2 filter, stride 1, valid', x: [3, 7, 5, 2], filter: [3, 2, 2, 5], strides: [1, 1], pad: 'valid' },
  { name: '7×5 input, 3×2 filter, stride 1, same', x: [3, 7, 5, 2], filter: [3, 2, 2, 5], strides: [1, 1], pad: 'same' },
  { name: '9×9 input, 3×3 filter, stride 2, valid', x: [2, 9, 9, 3], filter: [3, 3, 3, 4], strides: [2, 2], pad: 'valid' },
  { name: '10×8 input, 4×3 filter, stride 2, same (uneven padding)', x: [2, 10, 8, 3], filter: [4, 3, 3, 7], strides: [2, 2], pad: 'same' },
  { name: '11×6 input, 2×4 filter, strides 3×1, same', x: [2, 11, 6, 1], filter: [2, 4, 1, 3], strides: [3, 1], pad: 'same' },
  { name: '6×7 input, 3×3 filter, stride 1, explicit padding 1', x: [2, 6, 7, 2], filter: [3, 3, 2, 3], strides: [1, 1], pad: 1 },
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
  { name: '28×28 input, 3×3 filter, 16 channels (the CNN’s first layer)', x: [4, 28, 28, 1], filter: [3, 3, 1, 16], strides: [1, 1], pad: 'valid' },
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
function reference(g: ConvGeometry, x: Float32Array, dy: Float32Array): { exact: Float64Array; magnitude: Float64Array } {
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
                const p = x[((b * g.inH + ih) * g.inW + iw) * g.inC + ci]! * dy[((b * g.outH + oh) * g.outW + ow) * g.outC + co]!;
                exact[i] += p;
                magnitude[i] += Math.abs(p);
              }
        }
  return { exact, magnitude };
}

/** The filter gradient as tfjs computes it on the current backend: the kernel tfjs-core's conv2d gradient calls. */
function filterGrad(c: Case, x: Float32Array, dy: Float32Array, g: ConvGeometry): Float32Array {
  return tf.tidy(() => {
    const xt = tf.tensor4d(x, c.x);
    const dyt = tf.tensor4d(dy, [g.batch, g.outH, g.outW, g.outC]);
    const out = tf
      .engine()
      .runKernel('Conv2DBackpropFilter', { x: xt, dy: dyt }, { strides: c.strides, pad: c.pad, dataFormat: 'NHWC', filterShape: c.filter } as never) as tf.Tensor;
    assert.deepEqual(out.shape, c.filter);
    return out.dataSync() as Float32Array;
  });
}

function assertWithin(actual: Float32Array, expected: ArrayLike<number>, bound: (i: number) => number, what: string): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!);
    if (!(err <= bound(i))) assert.fail(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]} (error ${err} > bound ${bound(i)})`);
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
    assertWithin(onWasm, ref.exact, (i) => 2 ** -24 * Math.abs(ref.exact[i]!) + 2 ** -40 * ref.magnitude[i]!, 'against float64');
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
      const { grads: gs } = tf.variableGrads(() => tf.sum(tf.mul(tf.relu(tf.conv2d(xv, w, 2, 'same')), r)) as tf.Scalar, [w, xv]);
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
  assert.throws(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', filterShape: [3, 3, 1, 1], dilations: [2, 2] } as never), {
    message: 'Conv2DBackpropFilter on wasm: dilations must be 1, got [2,2] (dilated convolution gradients are not supported)',
  });
  assert.throws(() => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', filterShape: [3, 3, 1, 1], dataFormat: 'NCHW' } as never), {
    message: 'Conv2DBackpropFilter on wasm: dataFormat must be NHWC, got NCHW',
  });
  tf.dispose([x, dy]);
});
