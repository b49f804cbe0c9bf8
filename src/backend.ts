import * as path from 'node:path';
import * as tf from './tf';
import { FailureError, InputError } from './errors';
import { switchedOff } from './env-switch';
import { installAcceleratedKernels, type GemmChoice, type GemmKind } from './accel/kernels';
import { registerWasmConvKernels } from './accel/conv';

export type BackendChoice = 'auto' | 'tfjs-node' | 'wasm' | 'cpu';

/**
 * The kernels under tfjs's matmuls (the GEMM regtrain installed: OpenBLAS or its SIMD WebAssembly
 * builds), tfjs's own, or TensorFlow's (tfjs-node). A resume on other kernels is not bit-identical.
 */
export type Kernels = GemmKind | 'tfjs' | 'tensorflow';

export interface BackendInfo {
  /** tfjs's name for it: "tensorflow" (tfjs-node), "wasm" or "cpu". */
  name: string;
  /** One line for the user: which backend and why. */
  reason: string;
  /** Whether OpenBLAS kernels run the matmuls (wasm/cpu only), and why (not). */
  blas: { installed: boolean; reason: string };
  /** Which matmul kernels regtrain installed: OpenBLAS, its own SIMD WebAssembly GEMM, or none (tfjs's own), and why. */
  gemm: { kind: GemmKind | null; reason: string };
  /** What runs the matmuls, in one word (recorded in run.json). */
  kernels: Kernels;
}

/** The --backend choice that selects tfjs backend `name` again (resume, run-member). */
export function choiceOf(name: string): BackendChoice {
  return name === 'tensorflow' ? 'tfjs-node' : name === 'cpu' ? 'cpu' : 'wasm';
}

/** How the start line names kernels. */
export function kernelsLabel(k: Kernels): string {
  return {
    openblas: 'OpenBLAS matmuls',
    'wasm-relaxed-simd': "regtrain's relaxed-SIMD WebAssembly matmuls",
    'wasm-simd': "regtrain's SIMD WebAssembly matmuls",
    tfjs: "tfjs's own kernels",
    tensorflow: "TensorFlow's kernels",
  }[k];
}

/** REGTRAIN_ACCEL=off keeps tfjs's own kernels and the reference training step (for comparisons). */
export function accelerationDisabled(): boolean {
  return switchedOff('REGTRAIN_ACCEL');
}

function withKernels(name: string, reason: string, gemm: GemmChoice = 'auto'): BackendInfo {
  if (name === 'tensorflow') {
    const why = 'tfjs-node runs its own native kernels';
    return {
      name,
      reason,
      blas: { installed: false, reason: why },
      gemm: { kind: null, reason: why },
      kernels: 'tensorflow',
    };
  }
  if (accelerationDisabled()) {
    const why = 'disabled by REGTRAIN_ACCEL=off';
    return {
      name,
      reason,
      blas: { installed: false, reason: why },
      gemm: { kind: null, reason: why },
      kernels: 'tfjs',
    };
  }
  const r = installAcceleratedKernels(name, { gemm });
  return {
    name,
    reason,
    blas: { installed: r.installed, reason: r.installed ? 'OpenBLAS matmul kernels' : r.reason },
    gemm: { kind: r.gemm, reason: r.gemm === 'openblas' ? 'OpenBLAS matmul kernels' : (r.gemmReason ?? r.reason) },
    kernels: r.gemm ?? 'tfjs',
  };
}

/** TensorFlow's version under tfjs-node (the binding reports the C library's). */
function tensorflowVersion(): string {
  const binding = (tf.backend() as unknown as { binding?: { TF_Version?: string } }).binding;
  return binding?.TF_Version ?? 'unknown';
}

/** tfjs-node is an optional dependency: its install downloads libtensorflow, which may fail. (Also the bench's way in.) */
export function tryTfjsNode(): { ok: true } | { ok: false; why: string } {
  // TensorFlow's C library logs its start-up to stderr unless told otherwise; a user's own setting wins.
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  // tfjs-node 4.22 calls util.isNullOrUndefined on every op: deprecated in Node 22 (a DEP0051 warning on
  // stderr) and removed in Node 23+ (every op throws). Defined here, with its documented meaning.
  const util = require('node:util') as { isNullOrUndefined?: (x: unknown) => boolean };
  util.isNullOrUndefined = (x: unknown) => x === null || x === undefined;
  try {
    require('@tensorflow/tfjs-node');
    return { ok: true };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'MODULE_NOT_FOUND' && /tfjs-node/.test(e.message))
      return { ok: false, why: 'tfjs-node is not installed' };
    return { ok: false, why: `tfjs-node failed to load (${e.message.split('\n')[0]})` };
  }
}

async function tryWasm(): Promise<{ ok: true } | { ok: false; why: string }> {
  try {
    // Imported lazily so that a broken wasm package can never stop the cpu fallback.
    const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm')) + path.sep);
    registerWasmConvKernels(); // tfjs-wasm has no conv filter gradient: without it conv models cannot train
    if (!(await tf.setBackend('wasm'))) return { ok: false, why: 'the wasm backend failed to initialize' };
    return { ok: true };
  } catch (err) {
    return { ok: false, why: `the wasm backend failed to load (${(err as Error).message.split('\n')[0]})` };
  }
}

/** From this batch size a model on the autodiff step trains faster on tfjs-node (README "Backends": even at 128, 1.5× per CPU second at 512). */
export const AUTODIFF_TFJS_NODE_FROM_BATCH = 256;

async function useTfjsNode(): Promise<{ ok: true } | { ok: false; why: string }> {
  const node = tryTfjsNode();
  if (!node.ok) return node;
  if (!(await tf.setBackend('tensorflow')))
    return { ok: false, why: 'tfjs-node loaded but its backend failed to initialize' };
  try {
    tf.tidy(() => tf.add(tf.scalar(1), tf.scalar(1)).dataSync());
    return { ok: true };
  } catch (err) {
    return { ok: false, why: `tfjs-node loaded but its first op failed (${(err as Error).message.split('\n')[0]})` };
  }
}

/**
 * Selects and initializes the tfjs backend; `gemm` narrows which GEMM regtrain installs (a resume
 * keeping its run's kernels). An explicit choice that cannot load is an error, not a silent fallback.
 *
 * `auto` takes the fastest engine installed, by the bench (README "Backends"): wasm with regtrain's
 * kernels (OpenBLAS, else its SIMD WebAssembly GEMM) whenever they install: tfjs-node dispatches each
 * op through TensorFlow's eager runtime, which costs more than the products at the tutorial's batch 32
 * (2.5–4× slower), and the lean step stays ahead at batch 512; on the CNN (batch 64) they are even.
 * The exception: a model on the autodiff step (`autodiffBatch`: its batch size) from batch 256, where
 * TensorFlow's fused kernels win (1.5× per CPU second at batch 512). Without regtrain's kernels
 * tfjs-node (if it loads) beats tfjs-wasm's own; then wasm, then cpu.
 */
export async function initBackend(
  choice: BackendChoice,
  opts: { gemm?: GemmChoice; autodiffBatch?: number } = {},
): Promise<BackendInfo> {
  // PROD silences tfjs's console hints (we state the backend ourselves) and skips debug checks.
  tf.env().set('PROD', true);
  if (choice === 'tfjs-node') {
    const node = await useTfjsNode();
    if (!node.ok)
      throw new InputError(`backend tfjs-node: ${node.why}; install it (README "Backends") or choose --backend wasm`);
    return withKernels('tensorflow', `tfjs-node (requested; TensorFlow ${tensorflowVersion()})`);
  }
  if (choice === 'auto') {
    const wasm = await tryWasm();
    const onWasm = wasm.ok ? withKernels('wasm', '', opts.gemm) : null;
    if (onWasm && onWasm.kernels !== 'tfjs') {
      const batch = opts.autodiffBatch ?? 0;
      if (batch < AUTODIFF_TFJS_NODE_FROM_BATCH)
        return { ...onWasm, reason: `auto: wasm + ${kernelsLabel(onWasm.kernels)}, faster than tfjs-node` };
      const node = await useTfjsNode();
      const why = `the model trains on the autodiff step, where TensorFlow is faster from batch ${AUTODIFF_TFJS_NODE_FROM_BATCH}`;
      if (node.ok)
        return withKernels(
          'tensorflow',
          `auto: tfjs-node (TensorFlow ${tensorflowVersion()}): ${why} (batch ${batch})`,
        );
      await tf.setBackend('wasm');
      return {
        ...onWasm,
        reason: `auto: wasm + ${kernelsLabel(onWasm.kernels)}; ${node.why}, though ${why} (batch ${batch}): installing it would be faster here (README "Backends")`,
      };
    }
    const without = onWasm
      ? `regtrain's fast kernels are unavailable (${accelerationDisabled() ? 'REGTRAIN_ACCEL=off' : `${onWasm.blas.reason}; ${onWasm.gemm.reason}`})`
      : wasm.ok
        ? ''
        : wasm.why;
    const node = await useTfjsNode();
    if (node.ok)
      return withKernels(
        'tensorflow',
        `auto: tfjs-node (TensorFlow ${tensorflowVersion()}), faster than tfjs's own kernels on wasm: ${without}`,
      );
    if (onWasm) {
      await tf.setBackend('wasm');
      return {
        ...onWasm,
        reason: `auto: wasm with tfjs's own kernels: ${without}; ${node.why} (installing it would be faster here: README "Backends")`,
      };
    }
    if (!(await tf.setBackend('cpu'))) throw new FailureError('no tfjs backend could be initialized');
    return withKernels('cpu', `auto: ${node.why}; ${without} — using the pure-JS cpu backend (slow)`, opts.gemm);
  }
  if (choice === 'wasm') {
    const wasm = await tryWasm();
    if (!wasm.ok) throw new FailureError(`backend wasm: ${wasm.why}`);
    return withKernels('wasm', 'wasm (requested)', opts.gemm);
  }
  if (!(await tf.setBackend('cpu'))) throw new FailureError('backend cpu failed to initialize');
  return withKernels('cpu', 'cpu (requested; pure JavaScript)', opts.gemm);
}
