/**
 * Build step (`npm run build`): compiles the WebAssembly text next to the compiled JS, with wabt
 * (a dev dependency):
 * - simd.wat → simd.wasm (the SGD and bias/activation passes);
 * - conv.wat → conv.wasm (the max-pool gradient and col2im's adds of the wasm conv kernels);
 * - gather.wat → gather.wasm (a training batch's pixels through the normalization table, on the heap);
 * - gemm.wat → gemm-relaxed.wasm (as written, with relaxed-SIMD multiply-adds) and gemm.wasm (each
 *   `f32x4.relaxed_madd a b c` rewritten to `f32x4.add (f32x4.mul a b) c`: plain SIMD, for runtimes
 *   without relaxed SIMD or when it is switched off), and both again importing a shared memory
 *   (gemm-shared-relaxed.wasm, gemm-shared.wasm: the two-thread pool).
 * Without wabt the wasm backend falls back to the JS loops and tfjs's own matmul kernels.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

type Wabt = {
  parseWat(
    name: string,
    text: string,
    features: Record<string, boolean>,
  ): { toBinary(o: object): { buffer: Uint8Array }; destroy(): void };
};

const MADD = /\(f32x4\.relaxed_madd (\(local\.get \$\w+\)) (\(local\.get \$\w+\)) (\(local\.get \$\w+\))\)/g;

const MEMORY_IMPORT = '(import "env" "memory" (memory 1))';

/** gemm.wat's text importing a shared memory (for the two-thread pool, gemm-pool.ts). */
export function sharedMemoryText(text: string): string {
  if (!text.includes(MEMORY_IMPORT)) throw new Error(`gemm.wat: expected the memory import \`${MEMORY_IMPORT}\``);
  return text.replace(MEMORY_IMPORT, '(import "env" "memory" (memory 1 32768 shared))');
}

/** gemm.wat's text with every multiply-add as plain SIMD (mul, then add: both rounded). */
export function plainSimdText(relaxed: string): string {
  const plain = relaxed.replace(MADD, '(f32x4.add (f32x4.mul $1 $2) $3)');
  if (/relaxed/.test(plain.replace(/;;.*$/gm, '')))
    throw new Error(
      'gemm.wat: a relaxed-SIMD instruction is not in the form `(f32x4.relaxed_madd (local.get $a) (local.get $b) (local.get $c))`',
    );
  return plain;
}

function compile(wabt: Wabt, name: string, text: string, target: string): void {
  const mod = wabt.parseWat(name, text, { simd: true, relaxed_simd: true, threads: true });
  try {
    fs.writeFileSync(target, mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

async function main(): Promise<void> {
  const src = path.resolve(__dirname, '../../../src/accel');
  let wabt: Wabt;
  try {
    wabt = await (require('wabt') as () => Promise<Wabt>)();
  } catch (err) {
    process.stderr.write(
      `build-simd: wabt unavailable (${(err as Error).message.split('\n')[0]}); the wasm backend will use JS loops and tfjs's matmuls\n`,
    );
    return;
  }
  compile(wabt, 'simd.wat', fs.readFileSync(path.join(src, 'simd.wat'), 'utf8'), path.join(__dirname, 'simd.wasm'));
  compile(wabt, 'conv.wat', fs.readFileSync(path.join(src, 'conv.wat'), 'utf8'), path.join(__dirname, 'conv.wasm'));
  compile(
    wabt,
    'gather.wat',
    fs.readFileSync(path.join(src, 'gather.wat'), 'utf8'),
    path.join(__dirname, 'gather.wasm'),
  );
  const gemm = fs.readFileSync(path.join(src, 'gemm.wat'), 'utf8');
  compile(wabt, 'gemm.wat', gemm, path.join(__dirname, 'gemm-relaxed.wasm'));
  compile(wabt, 'gemm.wat', plainSimdText(gemm), path.join(__dirname, 'gemm.wasm'));
  compile(wabt, 'gemm.wat', sharedMemoryText(gemm), path.join(__dirname, 'gemm-shared-relaxed.wasm'));
  compile(wabt, 'gemm.wat', sharedMemoryText(plainSimdText(gemm)), path.join(__dirname, 'gemm-shared.wasm'));
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`build-simd: ${(err as Error).message}\n`);
    process.exitCode = 1;
  });
}
