/**
 * tfjs as regtrain uses it, the one module that imports it: tfjs-core (tensors, ops, gradients, the engine),
 * tfjs-layers (models and layers) and the cpu backend. Not the `@tensorflow/tfjs` package, which also loads
 * tfjs-converter, tfjs-data and the webgl backend, none of them used here: about 0.05 CPU-s more for every process
 * that trains, evaluates or predicts. tfjs-node and tfjs-wasm register their backends into this same tfjs-core.
 */
import { version_core } from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import './tfjs-ops';

export * from '@tensorflow/tfjs-core';
export * from '@tensorflow/tfjs-layers';

/** The tfjs release regtrain runs on (package.json pins every @tensorflow package to the same one). */
export const version = { tfjs: version_core };
