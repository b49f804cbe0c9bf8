import * as tf from '../tf';
import { heapModuleLoader, simdOff } from './heap-module';

/**
 * gather.wat's loop, instantiated on tfjs-wasm's own memory (addresses are byte offsets in that
 * heap): the b images whose indices are the int32s at `order`, from the bytes at `pixels` (784 an
 * image), through the float32 table at `lut` into the floats at `dst`.
 */
export interface GatherKernel {
  gather(order: number, b: number, pixels: number, lut: number, dst: number): void;
}

// The ES2022 lib has no WebAssembly types (they come with DOM); the one used here:
// eslint-disable-next-line @typescript-eslint/no-namespace -- an ambient declaration of a global, not a module
declare namespace WebAssembly {
  class Memory {
    readonly buffer: ArrayBuffer;
  }
}

/** What regtrain reads of tfjs-wasm's backend object (not in its public types). */
interface WasmBackendInternals {
  wasm: { HEAPU8: Uint8Array; asm?: { memory?: unknown }; _malloc(bytes: number): number; _free(offset: number): void };
  dataIdMap: { get(id: unknown): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: 'float32' | 'int32'): tf.TensorInfo;
}

function wasmBackend(): WasmBackendInternals | null {
  if (tf.getBackend() !== 'wasm') return null;
  const b = tf.backend() as unknown as Partial<WasmBackendInternals>;
  return b.wasm?.HEAPU8 && b.dataIdMap && b.makeOutput ? (b as WasmBackendInternals) : null;
}

const loadGather = heapModuleLoader<GatherKernel>('gather.wasm');

/** gather.wasm on this backend's heap; null when the backend is not wasm, it is not built, or REGTRAIN_SIMD=off (the JS loop serves). */
export function wasmGather(): GatherKernel | null {
  const memory = simdOff() ? null : wasmBackend()?.wasm.asm?.memory;
  return memory instanceof WebAssembly.Memory ? loadGather(memory) : null;
}

/**
 * tfjs-wasm's heap, for writing tensors where they live; null on other backends. Offsets stay valid
 * while their tensor lives; views of `bytes()` only until the next allocation (a malloc may grow the
 * heap, which detaches its buffer).
 */
export interface WasmHeap {
  /** The heap's owner (tfjs-wasm's module): two WasmHeap objects are the same heap when their ids are. */
  readonly id: object;
  /** A tensor whose memory is allocated on the heap and not written (no copy from JS). */
  allocate<R extends tf.Rank>(shape: number[], dtype: 'float32' | 'int32'): tf.Tensor<R>;
  /** The byte offset of a tensor's memory. */
  offsetOf(t: tf.Tensor): number;
  /** Memory of the caller's own (no tensor: tf.memory() does not count it), until free(offset). */
  malloc(bytes: number): number;
  free(offset: number): void;
  bytes(): Uint8Array;
}

export function wasmHeap(): WasmHeap | null {
  const b = wasmBackend();
  if (!b) return null;
  return {
    id: b.wasm,
    allocate: <R extends tf.Rank>(shape: number[], dtype: 'float32' | 'int32') =>
      tf.engine().makeTensorFromTensorInfo(b.makeOutput(shape, dtype)) as tf.Tensor<R>,
    offsetOf: (t) => b.dataIdMap.get(t.dataId)!.memoryOffset,
    // `>>> 0` as tfjs-wasm's own calls: above 2 GB malloc's int32 result reads negative.
    malloc: (bytes) => b.wasm._malloc(bytes) >>> 0,
    free: (offset) => b.wasm._free(offset),
    bytes: () => b.wasm.HEAPU8,
  };
}
