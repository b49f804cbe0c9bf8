import * as path from 'node:path';

/**
 * Where the kernels' run-time files are: the .wasm builds (build-simd.ts writes them) and the GEMM pool's worker
 * script, all in dist/src/accel/. This module is dist/src/accel/files.js when tests and benches load the compiled
 * modules, and part of dist/regtrain.js in the CLI (the bundle build.mjs writes, in dist/).
 */
const DIR = path.basename(__filename) === 'regtrain.js' ? path.join(__dirname, 'src', 'accel') : __dirname;

/** The path of one of the kernels' files, `name` in dist/src/accel/. */
export function accelFile(name: string): string {
  return path.join(DIR, name);
}
