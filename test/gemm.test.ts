/**
 * Issue 11: regtrain's WebAssembly SIMD GEMM (src/accel/gemm.wat, gemm.ts) under tfjs's
 * BatchMatMul/_FusedMatMul, for when no native BLAS is there.
 *
 * Error bound used against the float64 reference: a float32 sum of K products, plus the bias, in
 * any fixed order, is within γ·(Σ_k |a_ik·b_kj| + |bias_j|) of the exact value, γ = (K + 1)·2⁻²⁴
 * (relu cannot increase it). Every element is checked against its own bound.
 * The plain-SIMD build must equal the naive float32 loop c = fround(c + fround(a·b)) bit for bit.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import * as tf from '../src/tf';
import { loadBlas } from '../src/accel/blas';
import { arrayGemm, chooseWasmGemm, gemmPool, heapGemm, wasmGemmStats, type WasmGemmKind } from '../src/accel/gemm';
import { gemmThreads, MIN_MACS } from '../src/accel/gemm-pool';
import { InputError } from '../src/errors';
import {
  accelStats,
  installAcceleratedKernels,
  installedGemm,
  uninstallAcceleratedKernels,
} from '../src/accel/kernels';
import { createLeanStep } from '../src/train/lean-step';
import { parseIdx, IDX_MAGIC_IMAGES, IDX_MAGIC_LABELS } from '../src/data/idx';
import { bindSpec } from '../src/model';
import { validateSpec } from '../src/spec';
import { createReferenceStep } from '../src/train/step';
import { createOptimizer } from '../src/train/optimizers';
import { buildTutorialModel, TUTORIAL_PENALTIES } from './bench/tutorial-model';
import { useBackend } from './helpers/backend';

const U = 2 ** -24;
const STEP_TOL = 1e-5;
const DEBIAN_DIR = '/usr/share/datasets/fashion-mnist';

/** Runs fn with environment variables set (undefined = unset), restoring them after. */
function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const set = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) delete process.env[k];
      else process.env[k] = x;
    }
  };
  set(vars);
  try {
    return fn();
  } finally {
    set(saved);
  }
}

const relaxedAvailable = withEnv({ REGTRAIN_SIMD: undefined, REGTRAIN_RELAXED_SIMD: undefined }, () => {
  const c = chooseWasmGemm();
  return 'kind' in c && c.kind === 'wasm-relaxed-simd';
});
const BUILDS: Array<{ kind: WasmGemmKind; skip: string | false }> = [
  { kind: 'wasm-relaxed-simd', skip: relaxedAvailable ? false : 'this runtime has no relaxed SIMD' },
  { kind: 'wasm-simd', skip: false },
];

const BEST_BUILD: WasmGemmKind = relaxedAvailable ? 'wasm-relaxed-simd' : 'wasm-simd';

/** Installs only the wasm GEMM of the given build on `backend` (REGTRAIN_RELAXED_SIMD=off for the plain one). */
function installWasmGemm(backend: 'cpu' | 'wasm', kind: WasmGemmKind): void {
  uninstallAcceleratedKernels(backend);
  const r = withEnv({ REGTRAIN_RELAXED_SIMD: kind === 'wasm-simd' ? 'off' : undefined }, () =>
    installAcceleratedKernels(backend, { gemm: 'wasm' }),
  );
  assert.equal(r.gemm, kind, r.gemmReason);
  assert.equal(installedGemm(backend), kind);
}

interface Case {
  m: number;
  k: number;
  n: number;
  tA: boolean;
  tB: boolean;
}
/** M×K×N: a single element, odd small sizes, a batch of 33 into the tutorial's first layer, a batch of 512 into its second. */
const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1],
  [7, 13, 5],
  [33, 784, 200],
  [512, 200, 100],
];
const TRANSPOSES: Array<[boolean, boolean]> = [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
];
const caseName = (c: Case) => `${c.m}×${c.k}×${c.n} ${c.tA ? 'T' : 'N'}${c.tB ? 'T' : 'N'}`;

/** op(A)[i,k] and op(B)[k,j] from row-major storage. */
const opA = (A: Float32Array, c: Case, i: number, k: number) => (c.tA ? A[k * c.m + i]! : A[i * c.k + k]!);
const opB = (B: Float32Array, c: Case, k: number, j: number) => (c.tB ? B[j * c.k + k]! : B[k * c.n + j]!);

/** The float64 products Σ_k op(A)[i,k]·op(B)[k,j] and magnitudes Σ_k |op(A)[i,k]·op(B)[k,j]| of a case, row-major. */
interface Exact {
  c: Case;
  A: Float32Array;
  B: Float32Array;
  dot: Float64Array;
  mag: Float64Array;
}
/**
 * Each case's float64 reference, computed once: the tests run the same seeded operands through several builds,
 * backends and epilogues, and the O(m·k·n) loop in JS is most of their CPU. A hit needs the same shape,
 * transposes and operand bits.
 */
const exactCache: Exact[] = [];
function sameBits(x: Float32Array, y: Float32Array): boolean {
  if (x.length !== y.length) return false;
  const [a, b] = [x, y].map((v) => new Int32Array(v.buffer, v.byteOffset, v.length)) as [Int32Array, Int32Array];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
function exactProducts(A: Float32Array, B: Float32Array, c: Case): Exact {
  const hit = exactCache.find(
    (e) =>
      e.c.m === c.m &&
      e.c.k === c.k &&
      e.c.n === c.n &&
      e.c.tA === c.tA &&
      e.c.tB === c.tB &&
      sameBits(e.A, A) &&
      sameBits(e.B, B),
  );
  if (hit) return hit;
  const dot = new Float64Array(c.m * c.n);
  const mag = new Float64Array(c.m * c.n);
  for (let i = 0; i < c.m; i++) {
    for (let j = 0; j < c.n; j++) {
      let d = 0;
      let g = 0;
      for (let k = 0; k < c.k; k++) {
        const p = opA(A, c, i, k) * opB(B, c, k, j);
        d += p;
        g += Math.abs(p);
      }
      dot[i * c.n + j] = d;
      mag[i * c.n + j] = g;
    }
  }
  const e = { c: { ...c }, A: A.slice(), B: B.slice(), dot, mag };
  exactCache.push(e);
  return e;
}

/** Asserts every element of got is within its float32 rounding bound of the float64 value. */
function assertNearExact(
  got: Float32Array,
  A: Float32Array,
  B: Float32Array,
  bias: Float32Array | null,
  relu: boolean,
  c: Case,
  what: string,
): void {
  const gamma = (c.k + 1) * U * 1.0001;
  const { dot, mag: mags } = exactProducts(A, B, c);
  for (let i = 0; i < c.m; i++) {
    for (let j = 0; j < c.n; j++) {
      let exact = dot[i * c.n + j]! + (bias ? bias[j]! : 0);
      const mag = mags[i * c.n + j]! + (bias ? Math.abs(bias[j]!) : 0);
      if (relu) exact = Math.max(exact, 0);
      const g = got[i * c.n + j]!;
      if (!(Math.abs(g - exact) <= gamma * mag))
        assert.fail(`${what}: C[${i},${j}] = ${g}, exact ${exact}, bound ${gamma * mag}`);
    }
  }
}

/** The naive loop in float32: c = fround(c + fround(a·b)) over k in order, then + bias, then relu. */
function naiveFloat32(
  A: Float32Array,
  B: Float32Array,
  bias: Float32Array | null,
  relu: boolean,
  c: Case,
): Float32Array {
  const C = new Float32Array(c.m * c.n);
  for (let i = 0; i < c.m; i++) {
    for (let j = 0; j < c.n; j++) {
      let s = 0;
      for (let k = 0; k < c.k; k++) s = Math.fround(s + Math.fround(opA(A, c, i, k) * opB(B, c, k, j)));
      if (bias) s = Math.fround(s + bias[j]!);
      C[i * c.n + j] = relu ? Math.max(s, 0) : s;
    }
  }
  return C;
}

/**
 * The seed of a case's operands, from its shape and transposes: the tests that take the same case take the same
 * operands, so its float64 reference (exactProducts) is computed once.
 */
const caseSeed = (c: Case) => 7 * c.m + 13 * c.k + 17 * c.n + (c.tA ? 1 : 0) + (c.tB ? 2 : 0);

/** Operands for a case, seeded; the bias is shifted negative so relu zeroes a good share of C. */
function operands(c: Case, seed: number): { a: tf.Tensor2D; b: tf.Tensor2D; bias: tf.Tensor1D } {
  return {
    a: tf.randomNormal(c.tA ? [c.k, c.m] : [c.m, c.k], 0, 1, 'float32', seed),
    b: tf.randomNormal(c.tB ? [c.n, c.k] : [c.k, c.n], 0, 1, 'float32', seed + 1),
    bias: tf.randomNormal([c.n], -0.5, 2, 'float32', seed + 2),
  };
}

/** The values of operands(c, seed), read out of the backend (the tensors are disposed). */
function operandValues(c: Case, seed: number): { A: Float32Array; B: Float32Array; bias: Float32Array } {
  const o = operands(c, seed);
  const [A, B, bias] = [o.a, o.b, o.bias].map((t) => t.dataSync() as Float32Array) as [
    Float32Array,
    Float32Array,
    Float32Array,
  ];
  tf.dispose([o.a, o.b, o.bias]);
  return { A, B, bias };
}

type Epilogue = 'matMul' | 'bias' | 'bias+relu';
const EPILOGUES: Epilogue[] = ['matMul', 'bias', 'bias+relu'];

/** Runs one product through tfjs (BatchMatMul for 'matMul', _FusedMatMul otherwise); returns C and how many wasm GEMMs ran. */
function product(c: Case, o: ReturnType<typeof operands>, e: Epilogue): { C: Float32Array; gemms: number } {
  const before = accelStats.wasmGemmCalls;
  const out =
    e === 'matMul'
      ? tf.matMul(o.a, o.b, c.tA, c.tB)
      : tf.fused.matMul({
          a: o.a,
          b: o.b,
          transposeA: c.tA,
          transposeB: c.tB,
          bias: o.bias,
          activation: e === 'bias+relu' ? 'relu' : 'linear',
        });
  const C = out.dataSync() as Float32Array;
  out.dispose();
  return { C, gemms: accelStats.wasmGemmCalls - before };
}

for (const backend of ['wasm', 'cpu'] as const) {
  for (const build of BUILDS) {
    test(
      `${backend}, ${build.kind}: every transposition case with every epilogue is within float32 rounding of a float64 reference on odd shapes`,
      { skip: build.skip },
      async (t) => {
        if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
        installWasmGemm(backend, build.kind);
        try {
          for (const [m, k, n] of SHAPES) {
            for (const [tA, tB] of TRANSPOSES) {
              const c = { m, k, n, tA, tB };
              const o = operands(c, caseSeed(c));
              const A = o.a.dataSync() as Float32Array;
              const B = o.b.dataSync() as Float32Array;
              const bias = o.bias.dataSync() as Float32Array;
              for (const e of EPILOGUES) {
                const r = product(c, o, e);
                const what = `${backend} ${build.kind} ${caseName(c)} ${e}`;
                assert.equal(r.gemms, 1, `${what}: the wasm GEMM did not run`);
                assertNearExact(r.C, A, B, e === 'matMul' ? null : bias, e === 'bias+relu', c, what);
              }
              tf.dispose([o.a, o.b, o.bias]);
            }
          }
        } finally {
          uninstallAcceleratedKernels(backend);
        }
      },
    );
  }
}

test('wasm, wasm-simd (relaxed SIMD forced off): results equal the naive float32 loop bit for bit', async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  installWasmGemm('wasm', 'wasm-simd');
  try {
    for (const [m, k, n] of SHAPES.slice(0, 3)) {
      for (const [tA, tB] of TRANSPOSES) {
        const c = { m, k, n, tA, tB };
        const o = operands(c, 77);
        const want = naiveFloat32(
          o.a.dataSync() as Float32Array,
          o.b.dataSync() as Float32Array,
          o.bias.dataSync() as Float32Array,
          true,
          c,
        );
        const r = product(c, o, 'bias+relu');
        assert.equal(r.gemms, 1);
        assert.deepEqual(r.C, want, caseName(c));
        tf.dispose([o.a, o.b, o.bias]);
      }
    }
  } finally {
    uninstallAcceleratedKernels('wasm');
  }
});

test('wasm: the same product gives identical bits on every run and at every alignment of its operands', async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const wasm = (
    tf.backend() as unknown as {
      wasm: { asm: { memory: unknown }; _malloc(n: number): number; _free(p: number): void; HEAPF32: Float32Array };
    }
  ).wasm;
  const c: Case = { m: 37, k: 301, n: 29, tA: false, tB: true };
  const { A, B, bias } = operandValues(c, 5);
  for (const build of BUILDS) {
    if (build.skip) continue;
    const g = heapGemm(build.kind, wasm.asm.memory as Parameters<typeof heapGemm>[1], (n) => wasm._malloc(n));
    if ('reason' in g) assert.fail(g.reason);
    const results: Float32Array[] = [];
    // Each operand 0–3 floats past a 16-byte boundary (every misalignment), twice over.
    for (const shift of [0, 1, 2, 3, 0, 1, 2, 3]) {
      const floats = A.length + B.length + bias.length + c.m * c.n + 4 * 16;
      const block = wasm._malloc(4 * floats);
      const base = (((block + 15) & ~15) >>> 2) + shift;
      const pa = base;
      const pb = pa + A.length + 4 + shift;
      const pbias = pb + B.length + 4 + shift;
      const pc = pbias + bias.length + 4 + shift;
      wasm.HEAPF32.set(A, pa);
      wasm.HEAPF32.set(B, pb);
      wasm.HEAPF32.set(bias, pbias);
      g.gemm(c.tA, c.tB, c.m, c.n, c.k, 4 * pa, c.k, 4 * pb, c.k, 4 * pc, c.n, 4 * pbias, true);
      results.push(wasm.HEAPF32.slice(pc, pc + c.m * c.n));
      wasm._free(block);
    }
    for (const r of results.slice(1)) assert.deepEqual(r, results[0], build.kind);
    assertNearExact(results[0]!, A, B, bias, true, c, build.kind);
  }
});

/** Resolves once the two-thread pool's worker takes blocks (it starts in the background), or fails after 20 s. */
async function poolReady(kind: WasmGemmKind): Promise<void> {
  const pool = gemmPool(kind);
  if ('reason' in pool) assert.fail(pool.reason);
  for (let waited = 0; !pool.ready(); waited += 20) {
    if (waited > 20000) assert.fail('the GEMM worker did not start within 20 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('wasm: with two threads, products split between the main thread and the worker give the bits of one thread, in every transposition case', async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const wasm = (
    tf.backend() as unknown as {
      wasm: { asm: { memory: unknown }; _malloc(n: number): number; _free(p: number): void; HEAPF32: Float32Array };
    }
  ).wasm;
  const memory = wasm.asm.memory as Parameters<typeof heapGemm>[1];
  // M×K×N: a batch of 512 into the tutorial's second layer, odd sizes (blocks of 36 rows, the last of 11), the batch-64 first-layer weight gradient.
  const shapes: Array<[number, number, number]> = [
    [512, 200, 100],
    [263, 301, 111],
    [784, 64, 200],
  ];
  for (const build of BUILDS) {
    if (build.skip) continue;
    await poolReady(build.kind);
    const one = heapGemm(build.kind, memory, (n) => wasm._malloc(n), 1);
    const two = heapGemm(build.kind, memory, (n) => wasm._malloc(n), 2);
    if ('reason' in one || 'reason' in two) assert.fail('no wasm GEMM');
    for (const [m, k, n] of shapes) {
      assert.ok(m * n * k >= MIN_MACS, 'a product the pool takes');
      for (const [tA, tB] of TRANSPOSES) {
        const c = { m, k, n, tA, tB };
        const { A, B, bias } = operandValues(c, caseSeed(c));
        const block = wasm._malloc(4 * (A.length + B.length + bias.length + 2 * m * n) + 64);
        const pa = ((block + 15) & ~15) >>> 2;
        const pb = pa + A.length;
        const pbias = pb + B.length;
        const pc1 = pbias + bias.length;
        const pc2 = pc1 + m * n;
        wasm.HEAPF32.set(A, pa);
        wasm.HEAPF32.set(B, pb);
        wasm.HEAPF32.set(bias, pbias);
        const run = (g: typeof one, pc: number) =>
          g.gemm(tA, tB, m, n, k, 4 * pa, tA ? m : k, 4 * pb, tB ? k : n, 4 * pc, n, 4 * pbias, true);
        run(one, pc1);
        const want = wasm.HEAPF32.slice(pc1, pc1 + m * n);
        // Until the worker has taken a share of the blocks (on a busy machine the main thread may take them all, and the pool backs off for a while).
        // A time limit, not a run count, and a pause every 50 runs: with three test processes on 2 CPUs
        // the worker thread can go unscheduled for the whole of 4000 back-to-back runs.
        const before = { ...wasmGemmStats };
        const deadline = Date.now() + 120_000;
        let runs = 0;
        while (wasmGemmStats.workerBlocks === before.workerBlocks && Date.now() < deadline) {
          wasm.HEAPF32.fill(NaN, pc2, pc2 + m * n);
          run(two, pc2);
          runs++;
          assert.deepEqual(wasm.HEAPF32.slice(pc2, pc2 + m * n), want, `${build.kind} ${caseName(c)}, run ${runs}`);
          if (runs % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 10));
        }
        assert.ok(
          wasmGemmStats.workerBlocks > before.workerBlocks,
          `${build.kind} ${caseName(c)}: the worker took no block in ${runs} runs over 120 s`,
        );
        assert.ok(wasmGemmStats.pooled > before.pooled);
        assertNearExact(want, A, B, bias, true, c, `${build.kind} ${caseName(c)}`);
        wasm._free(block);
      }
    }
  }
});

test('wasm: when the worker is descheduled inside a block and the main thread computes that block too, C still has the bits of one thread', async () => {
  // Three busy processes on a 2-CPU machine deschedule the worker mid-block now and then; its block
  // holds partial sums over K (784 > one KC block of 256) until it finishes, and none may reach C.
  // Five recomputed blocks: each is one instance of the race, and C is checked bit for bit after every run. The
  // three hogs spin for as long as it takes (their CPU is most of this test's, and on a shared runner it is taken
  // from the other lanes): 20 instances took four times as long and found nothing five did not.
  const RECOMPUTES = 5;
  const hogs = [0, 1, 2].map(() => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
  try {
    const kind = BUILDS.find((b) => !b.skip)!.kind;
    await poolReady(kind);
    const pool = gemmPool(kind);
    const single = arrayGemm(kind);
    if ('reason' in pool || 'reason' in single) assert.fail('no wasm GEMM');
    const [m, k, n] = [512, 784, 200];
    const { A, B, bias } = operandValues({ m, k, n, tA: false, tB: false }, 7);
    const want = new Float32Array(m * n);
    single.gemm(
      false,
      false,
      m,
      n,
      k,
      { base: A, offset: 0 },
      k,
      { base: B, offset: 0 },
      n,
      { base: want, offset: 0 },
      n,
      { base: bias, offset: 0 },
      true,
    );
    // A heap laid out as tfjs-wasm's would be: A, B, bias, C at byte addresses.
    const heap = new ArrayBuffer(4 * (A.length + B.length + n + m * n) + 64);
    const floats = new Float32Array(heap);
    const [pa, pb, pbias] = [16, 16 + 4 * A.length, 16 + 4 * (A.length + B.length)];
    const pc = pbias + 4 * n;
    floats.set(A, pa / 4);
    floats.set(B, pb / 4);
    floats.set(bias, pbias / 4);
    let recomputed = 0;
    let runs = 0;
    for (const started = Date.now(); recomputed < RECOMPUTES && Date.now() - started < 60000; runs++) {
      if (!pool.idle()) {
        await new Promise((r) => setTimeout(r, 1));
        continue;
      }
      floats.fill(NaN, pc / 4, pc / 4 + m * n);
      recomputed += pool.gemm(heap, false, false, m, n, k, pa, k, pb, n, pc, pbias, true).recomputed;
      const got = floats.subarray(pc / 4, pc / 4 + m * n);
      const differing = got.reduce((count, v, i) => count + (Object.is(v, want[i]) ? 0 : 1), 0);
      assert.equal(
        differing,
        0,
        `run ${runs + 1}: ${differing} elements of C differ from one thread's (${recomputed} blocks recomputed so far)`,
      );
    }
    assert.ok(
      recomputed >= RECOMPUTES,
      `the main thread recomputed only ${recomputed} of the worker's blocks in ${runs} runs over 60 s`,
    );
  } finally {
    for (const hog of hogs) hog.kill('SIGKILL');
  }
});

test('REGTRAIN_GEMM_THREADS: 1 or 2 threads, more capped at 2, default 2 on two CPUs; anything else is refused by name', () => {
  assert.equal(gemmThreads(undefined, 2), 2);
  assert.equal(gemmThreads('', 8), 2);
  assert.equal(gemmThreads(undefined, 1), 1);
  assert.equal(gemmThreads('1', 2), 1);
  assert.equal(gemmThreads(' 4 ', 2), 2);
  for (const bad of ['0', 'two', '1.5', '-2']) {
    assert.throws(
      () => gemmThreads(bad, 2),
      (e: Error) =>
        e instanceof InputError && e.message === `REGTRAIN_GEMM_THREADS=${bad}: expected a whole number of threads ≥ 1`,
    );
  }
});

const blas = loadBlas();
test(
  'wasm: the wasm GEMM agrees with OpenBLAS to float32 rounding',
  { skip: blas.ok ? false : `OpenBLAS unavailable: ${(blas as { reason: string }).reason}` },
  async (t) => {
    if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
    for (const build of BUILDS) {
      if (build.skip) continue;
      for (const [m, k, n] of SHAPES) {
        for (const [tA, tB] of TRANSPOSES) {
          const c = { m, k, n, tA, tB };
          const o = operands(c, caseSeed(c));
          uninstallAcceleratedKernels('wasm');
          assert.equal(installAcceleratedKernels('wasm', { gemm: 'openblas' }).gemm, 'openblas');
          const before = accelStats.blasCalls;
          const viaBlas = tf.fused.matMul({
            a: o.a,
            b: o.b,
            transposeA: tA,
            transposeB: tB,
            bias: o.bias,
            activation: 'relu',
          });
          assert.equal(accelStats.blasCalls - before, 1);
          installWasmGemm('wasm', build.kind);
          const viaWasm = product(c, o, 'bias+relu');
          assert.equal(viaWasm.gemms, 1);
          // Both are within γ·Σ|a·b| of the exact value, so within 2γ·Σ|a·b| of each other.
          const A = o.a.dataSync() as Float32Array;
          const B = o.b.dataSync() as Float32Array;
          const bias = o.bias.dataSync() as Float32Array;
          const X = viaBlas.dataSync() as Float32Array;
          const gamma = 2 * (k + 1) * U * 1.0001;
          const mags = exactProducts(A, B, c).mag;
          for (let i = 0; i < m; i++) {
            for (let j = 0; j < n; j++) {
              const mag = mags[i * n + j]! + Math.abs(bias[j]!);
              const d = Math.abs(viaWasm.C[i * n + j]! - X[i * n + j]!);
              if (!(d <= gamma * mag))
                assert.fail(
                  `${build.kind} ${caseName(c)}: C[${i},${j}] wasm ${viaWasm.C[i * n + j]} vs OpenBLAS ${X[i * n + j]}`,
                );
            }
          }
          tf.dispose([o.a, o.b, o.bias, viaBlas]);
        }
      }
    }
    uninstallAcceleratedKernels('wasm');
  },
);

test("wasm: batched products (shared or per-batch operands) run on the wasm GEMM; other activations and broadcasts go to tfjs's kernels", async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const cases: Array<[number[], number[], boolean]> = [
    [[3, 7, 13], [1, 13, 5], false], // B shared: the three A's stacked into one product
    [[1, 7, 13], [3, 13, 5], false], // A shared
    [[3, 13, 7], [3, 13, 5], true], // per batch, Aᵀ
    [[2, 3, 7, 13], [13, 5], false],
  ];
  const refs = cases.map(([as, bs, tA]) =>
    tf.tidy(() =>
      tf.matMul(tf.randomNormal(as, 0, 1, 'float32', 1), tf.randomNormal(bs, 0, 1, 'float32', 2), tA, false).dataSync(),
    ),
  );
  installWasmGemm('wasm', BEST_BUILD);
  try {
    cases.forEach(([as, bs, tA], i) => {
      tf.tidy(() => {
        const before = accelStats.wasmGemmCalls;
        const got = tf
          .matMul(tf.randomNormal(as, 0, 1, 'float32', 1), tf.randomNormal(bs, 0, 1, 'float32', 2), tA, false)
          .dataSync();
        assert.equal(accelStats.wasmGemmCalls - before, 1, `${as} × ${bs}`);
        let d = 0;
        let mx = 0;
        for (let j = 0; j < got.length; j++) {
          d = Math.max(d, Math.abs(got[j]! - refs[i]![j]!));
          mx = Math.max(mx, Math.abs(refs[i]![j]!));
        }
        assert.ok(d <= 1e-5 * mx, `${as} × ${bs}: max |Δ| ${d}`);
      });
    });
    tf.tidy(() => {
      const beforeGemm = accelStats.wasmGemmCalls;
      const beforeFallback = accelStats.fallbacks;
      // An activation the GEMM does not apply: ones(2×3)·ones(3×2) + [−5, 0] = [−2, 3] per row, through elu.
      const elu = tf.fused
        .matMul({ a: tf.ones([2, 3]), b: tf.ones([3, 2]), bias: tf.tensor1d([-5, 0]), activation: 'elu' })
        .dataSync();
      [Math.expm1(-2), 3, Math.expm1(-2), 3].forEach((v, i) =>
        assert.ok(Math.abs(elu[i]! - v) <= 1e-6, `elu ${i}: ${elu[i]} vs ${v}`),
      );
      // Batch dims [2,1] × [1,2]: each operand repeats along a different axis, which the plan does not take.
      const cross = tf.matMul(tf.ones([2, 1, 3, 4]), tf.ones([1, 2, 4, 5]));
      assert.deepEqual(cross.shape, [2, 2, 3, 5]);
      assert.ok(Array.from(cross.dataSync()).every((v) => v === 4));
      assert.equal(accelStats.wasmGemmCalls, beforeGemm);
      assert.equal(accelStats.fallbacks - beforeFallback, 2);
    });
  } finally {
    uninstallAcceleratedKernels('wasm');
  }
});

test('the installed GEMM is OpenBLAS when it loads, else the wasm GEMM, else none; installedGemm says which', async (t) => {
  if (!(await useBackend('wasm'))) return t.skip('wasm backend unavailable');
  const reinstall = (env: Record<string, string | undefined>) =>
    withEnv(env, () => {
      uninstallAcceleratedKernels('wasm');
      loadBlas({ reload: true });
      return installAcceleratedKernels('wasm');
    });
  try {
    if (blas.ok) {
      const r = reinstall({});
      assert.equal(r.gemm, 'openblas');
      assert.equal(r.installed, true);
    }
    const noBlas = reinstall({ REGTRAIN_BLAS: 'off' });
    assert.equal(noBlas.installed, false);
    assert.equal(noBlas.gemm, BEST_BUILD);
    assert.equal(noBlas.reason, 'disabled by REGTRAIN_BLAS');
    assert.equal(noBlas.gemmReason, `${noBlas.gemm} GEMM`);
    assert.equal(installedGemm('wasm'), noBlas.gemm);
    const plain = reinstall({ REGTRAIN_BLAS: 'off', REGTRAIN_RELAXED_SIMD: 'off' });
    assert.equal(plain.gemm, 'wasm-simd');
    const none = reinstall({ REGTRAIN_BLAS: 'off', REGTRAIN_SIMD: 'off' });
    assert.equal(none.gemm, null);
    assert.equal(none.reason, 'disabled by REGTRAIN_BLAS');
    assert.equal(none.gemmReason, 'disabled by REGTRAIN_SIMD');
    assert.deepEqual(none.kernels, ['Slice']);
    assert.equal(installedGemm('wasm'), null);
    uninstallAcceleratedKernels('wasm');
    assert.equal(installedGemm('wasm'), null);
  } finally {
    uninstallAcceleratedKernels('wasm');
    loadBlas({ reload: true });
  }
});

let debianTrain: { img: ReturnType<typeof parseIdx>; lab: ReturnType<typeof parseIdx> } | undefined;

/** The first n real Fashion-MNIST training images (x/255) and labels, from Debian's dataset package. */
function realImages(n: number): { x: tf.Tensor3D; y: tf.Tensor1D } | null {
  const file = (name: string) => path.join(DEBIAN_DIR, `${name}.gz`);
  if (!fs.existsSync(file('train-images-idx3-ubyte'))) return null;
  // Inflated once for the file's tests (the images file is 26 MB inflated).
  debianTrain ??= {
    img: parseIdx(zlib.gunzipSync(fs.readFileSync(file('train-images-idx3-ubyte'))), 'train images', {
      magic: IDX_MAGIC_IMAGES,
    }),
    lab: parseIdx(zlib.gunzipSync(fs.readFileSync(file('train-labels-idx1-ubyte'))), 'train labels', {
      magic: IDX_MAGIC_LABELS,
    }),
  };
  const { img, lab } = debianTrain;
  const x = new Float32Array(n * 784);
  for (let i = 0; i < x.length; i++) x[i] = img.data[i]! / 255;
  return { x: tf.tensor3d(x, [n, 28, 28]), y: tf.tensor1d(Float32Array.from(lab.data.subarray(0, n)), 'float32') };
}

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

const STEP_CASES: Array<{ backend: 'cpu' | 'wasm'; kind: WasmGemmKind; momentum: number }> = [
  { backend: 'wasm', kind: 'wasm-relaxed-simd', momentum: 0 },
  { backend: 'wasm', kind: 'wasm-simd', momentum: 0 },
  { backend: 'wasm', kind: 'wasm-relaxed-simd', momentum: 0.9 },
  { backend: 'cpu', kind: 'wasm-relaxed-simd', momentum: 0 },
];

/**
 * Steps compared: the same code runs each step; the momentum velocity (zero before step 1) is used from step 2 on,
 * and a real slip (a penalty term off by a factor, a stale packed weight) moves the weights past STEP_TOL within a
 * step or two. 20 steps took 4× the CPU and showed nothing more.
 */
const LEAN_STEPS = 5;

/** The reference step's weights for a backend and momentum (tfjs's own kernels, seed 21): computed once, shared by the builds. */
const referenceWeights = new Map<string, Float32Array[]>();

for (const c of STEP_CASES) {
  const skip = !fs.existsSync(DEBIAN_DIR)
    ? `${DEBIAN_DIR} not found (install Debian's dataset-fashion-mnist)`
    : c.kind === 'wasm-relaxed-simd' && !relaxedAvailable
      ? 'this runtime has no relaxed SIMD'
      : false;
  test(
    `${c.backend} without OpenBLAS: the lean step on the ${c.kind} GEMM equals tfjs's reference step after ${LEAN_STEPS} steps on real images (momentum ${c.momentum})`,
    { skip },
    async (t) => {
      if (!(await useBackend(c.backend))) return t.skip(`${c.backend} backend unavailable`);
      const B = 64;
      const steps = LEAN_STEPS;
      const data = realImages(B * steps)!;
      const opts = { learningRate: 0.01, momentum: c.momentum, nesterov: false };
      const batches = (fn: (xb: tf.Tensor3D, yb: tf.Tensor1D) => void) => {
        for (let s = 0; s < steps; s++) {
          const xb = data.x.slice(s * B, B);
          const yb = data.y.slice(s * B, B);
          fn(xb, yb);
          tf.dispose([xb, yb]);
        }
      };
      // The reference: tfjs autodiff on tfjs's own kernels.
      const sgd = () => createOptimizer({ sgd: opts });
      const key = `${c.backend} ${c.momentum}`;
      if (!referenceWeights.has(key)) {
        uninstallAcceleratedKernels(c.backend);
        const ref = buildTutorialModel(21, opts);
        const refStep = createReferenceStep(bindSpec(ref, TUTORIAL_SPEC), sgd());
        batches((xb, yb) => {
          const yi = yb.cast('int32') as tf.Tensor1D;
          refStep.run(xb, yi, 0);
          yi.dispose();
        });
        referenceWeights.set(
          key,
          ref.getWeights().map((w) => (w.dataSync() as Float32Array).slice()),
        );
        refStep.dispose();
        ref.dispose();
      }
      const wr = referenceWeights.get(key)!;
      // The lean step with REGTRAIN_BLAS=off: `auto` must pick the wasm GEMM.
      withEnv({ REGTRAIN_BLAS: 'off', REGTRAIN_RELAXED_SIMD: c.kind === 'wasm-simd' ? 'off' : undefined }, () => {
        loadBlas({ reload: true });
        const r = installAcceleratedKernels(c.backend);
        assert.equal(r.gemm, c.kind, r.gemmReason);
      });
      try {
        const lean = buildTutorialModel(21, opts);
        const step = createLeanStep(lean, sgd(), TUTORIAL_PENALTIES);
        if ('unsupported' in step) throw new Error(step.unsupported);
        const calls = wasmGemmStats.calls;
        const fallbacks = accelStats.fallbacks;
        batches((xb, yb) => step.run(xb, yb));
        // Each step: 4 forward, 4 weight-gradient, 4 bias-gradient and 3 input-gradient products.
        assert.equal(wasmGemmStats.calls - calls, 15 * steps);
        assert.equal(accelStats.fallbacks, fallbacks);
        const wl = lean.getWeights();
        assert.equal(wl.length, wr.length);
        wr.forEach((a, i) => {
          const b = wl[i]!.dataSync();
          let d = 0;
          let mx = 0;
          for (let j = 0; j < a.length; j++) {
            d = Math.max(d, Math.abs(a[j]! - b[j]!));
            mx = Math.max(mx, Math.abs(a[j]!));
          }
          assert.ok(d <= STEP_TOL * mx, `weight ${i} ${wl[i]!.shape}: max |Δ| ${d} > ${STEP_TOL}·${mx}`);
        });
        step.dispose();
        lean.dispose();
      } finally {
        uninstallAcceleratedKernels(c.backend);
        loadBlas({ reload: true });
        tf.dispose([data.x, data.y]);
      }
    },
  );
}
