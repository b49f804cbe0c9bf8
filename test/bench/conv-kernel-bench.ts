/**
 * Issue 23, goal 2: each convolution kernel of configs/cnn.yaml's CNN alone, at batch 64, in CPU
 * milliseconds a call and GFLOP/s (the machine is shared: CPU time, not wall time), per GEMM
 * choice: 'none' (tfjs-wasm's own kernels: XNNPACK's Conv2D, its Conv2DBackpropInput, regtrain's
 * direct filter gradient), 'openblas' and 'wasm' (regtrain's kernels of src/accel/conv.ts).
 * The first layer's input gradient is listed for completeness: a training step never asks for it.
 *
 * Run: npm run build && node dist/test/bench/conv-kernel-bench.js [openblas,wasm,none] [--calls N]
 */
import * as tf from '../../src/tf';
import { installAcceleratedKernels, uninstallAcceleratedKernels, type GemmChoice } from '../../src/accel/kernels';
import { registerWasmConvKernels } from '../../src/accel/conv';
import { useBackend } from './train-bench';

const LAYERS: Array<{ name: string; x: [number, number, number, number]; f: [number, number, number, number] }> = [
  { name: 'conv2d 16 3×3 on 28×28×1', x: [64, 28, 28, 1], f: [3, 3, 1, 16] },
  { name: 'conv2d 32 3×3 on 13×13×16', x: [64, 13, 13, 16], f: [3, 3, 16, 32] },
];

/** CPU ms per call of `fn` (its result disposed), over `calls` calls after 3 warm-up calls. */
function cpuMs(fn: () => tf.Tensor, calls: number): number {
  for (let i = 0; i < 3; i++) fn().dispose();
  const c0 = process.cpuUsage();
  for (let i = 0; i < calls; i++) fn().dispose();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / 1000 / calls;
}

async function main(): Promise<void> {
  tf.env().set('PROD', true);
  if (!(await useBackend('wasm'))) throw new Error('the wasm backend does not load here');
  registerWasmConvKernels();
  const i = process.argv.indexOf('--calls');
  const calls = i > 0 ? Number(process.argv[i + 1]) : 30;
  const choices = (process.argv[2] && !process.argv[2].startsWith('--') ? process.argv[2] : 'none,openblas,wasm')
    .split(',')
    .map((c) => c as GemmChoice);
  console.log('| GEMM | layer | kernel | CPU ms a call | GFLOP/s |');
  console.log('| --- | --- | --- | ---: | ---: |');
  for (const gemm of choices) {
    uninstallAcceleratedKernels('wasm');
    if (gemm !== 'none') installAcceleratedKernels('wasm', { gemm, threads: 1 });
    for (const l of LAYERS) {
      const x = tf.randomUniform(l.x) as tf.Tensor4D;
      const w = tf.randomNormal(l.f) as tf.Tensor4D;
      const y = tf.conv2d(x, w, 1, 'valid');
      const dy = tf.randomNormal(y.shape);
      const flops = 2 * y.size * l.f[0] * l.f[1] * l.f[2];
      const kernels: Array<[string, () => tf.Tensor]> = [
        ['Conv2D', () => tf.conv2d(x, w, 1, 'valid')],
        [
          'Conv2DBackpropFilter',
          () =>
            tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
              strides: [1, 1],
              pad: 'valid',
              dataFormat: 'NHWC',
              filterShape: l.f,
            } as never) as tf.Tensor,
        ],
        [
          'Conv2DBackpropInput',
          () =>
            tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, {
              strides: [1, 1],
              pad: 'valid',
              dataFormat: 'NHWC',
              inputShape: l.x,
            } as never) as tf.Tensor,
        ],
      ];
      for (const [name, fn] of kernels) {
        const ms = cpuMs(fn, calls);
        console.log(`| ${gemm} | ${l.name} | ${name} | ${ms.toFixed(2)} | ${(flops / ms / 1e6).toFixed(1)} |`);
      }
      tf.dispose([x, w, y, dy]);
    }
  }
  uninstallAcceleratedKernels('wasm');
}

if (require.main === module && !process.env.NODE_TEST_CONTEXT) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
