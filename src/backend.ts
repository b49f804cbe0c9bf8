import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FailureError, InputError } from './errors';
import { installAcceleratedKernels, type GemmKind } from './accel/kernels';
import { registerWasmConvKernels } from './accel/conv';

export type BackendChoice = 'auto' | 'tfjs-node' | 'wasm' | 'cpu';

export interface BackendInfo {
  /** tfjs's name for it: "tensorflow" (tfjs-node), "wasm" or "cpu". */
  name: string;
  /** One line for the user: which backend and why. */
  reason: string;
  /** Whether OpenBLAS kernels run the matmuls (wasm/cpu only), and why (not). */
  blas: { installed: boolean; reason: string };
  /** Which matmul kernels regtrain installed: OpenBLAS, its own SIMD WebAssembly GEMM, or none (tfjs's own), and why. */
  gemm: { kind: GemmKind | null; reason: string };
}

/** REGTRAIN_ACCEL=off keeps tfjs's own kernels and the reference training step (for comparisons). */
export function accelerationDisabled(): boolean {
  return /^(off|0|false|no)$/i.test(process.env.REGTRAIN_ACCEL ?? '');
}

function withKernels(name: string, reason: string): BackendInfo {
  if (name === 'tensorflow') {
    const why = 'tfjs-node runs its own native kernels';
    return { name, reason, blas: { installed: false, reason: why }, gemm: { kind: null, reason: why } };
  }
  if (accelerationDisabled()) {
    const why = 'disabled by REGTRAIN_ACCEL=off';
    return { name, reason, blas: { installed: false, reason: why }, gemm: { kind: null, reason: why } };
  }
  const r = installAcceleratedKernels(name);
  return {
    name,
    reason,
    blas: { installed: r.installed, reason: r.installed ? 'OpenBLAS matmul kernels' : r.reason },
    gemm: { kind: r.gemm, reason: r.gemm === 'openblas' ? 'OpenBLAS matmul kernels' : (r.gemmReason ?? r.reason) },
  };
}

/** tfjs-node is an optional dependency: its install downloads libtensorflow, which may fail. */
function tryTfjsNode(): { ok: true } | { ok: false; why: string } {
  try {
    require('@tensorflow/tfjs-node');
    return { ok: true };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'MODULE_NOT_FOUND' && /tfjs-node/.test(e.message)) return { ok: false, why: 'tfjs-node is not installed' };
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

/**
 * Selects and initializes the tfjs backend. `auto`: tfjs-node if it loads, else wasm, else cpu.
 * An explicit choice that cannot load is an error rather than a silent fallback.
 */
export async function initBackend(choice: BackendChoice): Promise<BackendInfo> {
  // PROD silences tfjs's console hints (we state the backend ourselves) and skips debug checks.
  tf.env().set('PROD', true);
  if (choice === 'tfjs-node' || choice === 'auto') {
    const node = tryTfjsNode();
    if (node.ok && (await tf.setBackend('tensorflow'))) {
      return withKernels('tensorflow', 'tfjs-node (native TensorFlow)');
    }
    const why = node.ok ? 'tfjs-node loaded but its backend failed to initialize' : node.why;
    if (choice === 'tfjs-node') throw new InputError(`backend tfjs-node: ${why}; install it with \`npm install @tensorflow/tfjs-node\` or choose --backend wasm`);
    const wasm = await tryWasm();
    if (wasm.ok) return withKernels('wasm', `${why} — using wasm; \`npm install @tensorflow/tfjs-node\` for native speed`);
    if (!(await tf.setBackend('cpu'))) throw new FailureError('no tfjs backend could be initialized');
    return withKernels('cpu', `${why}; ${wasm.why} — using the pure-JS cpu backend (slow)`);
  }
  if (choice === 'wasm') {
    const wasm = await tryWasm();
    if (!wasm.ok) throw new FailureError(`backend wasm: ${wasm.why}`);
    return withKernels('wasm', 'wasm (requested)');
  }
  if (!(await tf.setBackend('cpu'))) throw new FailureError('backend cpu failed to initialize');
  return withKernels('cpu', 'cpu (requested; pure JavaScript)');
}
