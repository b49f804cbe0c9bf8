/** Switches tfjs to the cpu or wasm backend for kernel tests; false when wasm cannot load here (the caller skips). */
import * as path from 'node:path';
import * as tf from '../../src/tf';

let wasmReady: boolean | null = null;

export async function useBackend(name: 'cpu' | 'wasm'): Promise<boolean> {
  if (name === 'wasm' && wasmReady === null) {
    try {
      const wasm = await import('@tensorflow/tfjs-backend-wasm');
      const dir = path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
      wasm.setWasmPaths(path.join(dir, 'dist') + path.sep);
      wasmReady = await tf.setBackend('wasm');
    } catch (e) {
      console.log(`# wasm backend unavailable: ${(e as Error).message}`);
      wasmReady = false;
    }
  }
  if (name === 'wasm' && !wasmReady) return false;
  await tf.setBackend(name);
  await tf.ready();
  return tf.getBackend() === name;
}
