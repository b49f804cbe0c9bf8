import { MAX_WASM_BYTES, readRegularFile } from '../fsutil';
import { switchedOff } from '../env-switch';
import { accelFile } from './files';

// The ES2022 lib has no WebAssembly types (they come with DOM); the few used here:
// eslint-disable-next-line @typescript-eslint/no-namespace -- an ambient declaration of a global, not a module
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Instance {
    constructor(module: Module, imports: object);
    readonly exports: Record<string, unknown>;
  }
}

/** Whether REGTRAIN_SIMD turns our SIMD modules off (the JS loops serve). */
export function simdOff(): boolean {
  return switchedOff('REGTRAIN_SIMD');
}

/**
 * A loader of the wasm module `file` (next to this file) instantiated on a tfjs-wasm heap `memory`
 * (its only import), cached for the last memory; null when it is not built or the memory is of
 * another kind (shared) we cannot import.
 */
export function heapModuleLoader<T>(file: string): (memory: unknown) => T | null {
  let cached: { memory: unknown; exports: T | null } | null = null;
  return (memory) => {
    if (cached && cached.memory === memory) return cached.exports;
    let exports: T | null;
    try {
      exports = new WebAssembly.Instance(
        new WebAssembly.Module(readRegularFile(accelFile(file), { maxBytes: MAX_WASM_BYTES })),
        { env: { memory } },
      ).exports as unknown as T;
    } catch {
      exports = null;
    }
    cached = { memory, exports };
    return exports;
  };
}
