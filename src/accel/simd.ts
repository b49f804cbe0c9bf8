import * as tf from '../tf';
import { heapModuleLoader, simdOff } from './heap-module';

/**
 * The SIMD loops of simd.wat, instantiated on tfjs-wasm's own memory so they read and write
 * tensors where they live (addresses are byte offsets in that heap). Null when the backend is
 * not wasm, its memory cannot be shared with us, simd.wasm was not built, or REGTRAIN_SIMD=off.
 */
export interface Simd {
  /** Plain SGD with the penalty gradient folded in; `sums`: bit 1 writes f64 Σ|w| at `out`, bit 2 f64 Σw² after it. */
  sgd(
    w: number,
    g: number,
    d: number,
    n: number,
    l1: number,
    l2x2: number,
    lr: number,
    wd: number,
    out: number,
    sums: number,
  ): void;
  biasAct(c: number, rows: number, n: number, bias: number, relu: number): void;
  /** d ← d · step(a) elementwise over n floats (the relu gradient, as tfjs's mul(d, step(a))). */
  reluGrad(d: number, a: number, n: number): void;
  /** useEma: a ← m·a + rest·w over n floats (n a multiple of 4), in float32. */
  ema(a: number, w: number, n: number, m: number, rest: number): void;
  /** Clipping: with fold ≠ 0, g ← (g + l1·sign(w)) + l2x2·w; then f64 Σg² at `out` (n a multiple of 4). */
  clipSumSq(w: number, g: number, n: number, fold: number, l1: number, l2x2: number, out: number): void;
  /** Clipping, in place: mode 0 g ← min(max(g, −c), c); 1: g ← (g·c)/d; 2: g ← g·c (n a multiple of 4). */
  clipScale(g: number, n: number, mode: number, c: number, d: number): void;
  adam(
    w: number,
    g: number,
    d: number,
    m: number,
    v: number,
    vh: number,
    ams: number,
    n: number,
    l1: number,
    l2x2: number,
    lr: number,
    wd: number,
    alpha: number,
    oneMinusB1: number,
    oneMinusB2: number,
    eps: number,
    out: number,
  ): void;
}

// The ES2022 lib has no WebAssembly types (they come with DOM); the few used here:
// eslint-disable-next-line @typescript-eslint/no-namespace -- an ambient declaration of a global, not a module
declare namespace WebAssembly {
  class Memory {
    readonly buffer: ArrayBuffer;
  }
}

const loadSimd = heapModuleLoader<Simd>('simd.wasm');

export function wasmSimd(): Simd | null {
  if (tf.getBackend() !== 'wasm' || simdOff()) return null;
  const memory = (tf.backend() as unknown as { wasm?: { asm?: { memory?: unknown } } }).wasm?.asm?.memory;
  if (!(memory instanceof WebAssembly.Memory)) return null;
  return loadSimd(memory);
}
