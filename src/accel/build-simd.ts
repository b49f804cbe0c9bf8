/**
 * Build step (`npm run build`): compiles simd.wat to simd.wasm next to the compiled JS, with
 * wabt (a dev dependency). Without it the wasm backend falls back to the JS loops.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

async function main(): Promise<void> {
  const source = path.resolve(__dirname, '../../../src/accel/simd.wat');
  const target = path.join(__dirname, 'simd.wasm');
  let wabt: { parseWat(name: string, text: string, features: Record<string, boolean>): { toBinary(o: object): { buffer: Uint8Array }; destroy(): void } };
  try {
    wabt = await (require('wabt') as () => Promise<typeof wabt>)();
  } catch (err) {
    process.stderr.write(`build-simd: wabt unavailable (${(err as Error).message.split('\n')[0]}); the wasm backend will use JS loops\n`);
    return;
  }
  const mod = wabt.parseWat('simd.wat', fs.readFileSync(source, 'utf8'), { simd: true });
  fs.writeFileSync(target, mod.toBinary({}).buffer);
  mod.destroy();
}

main().catch((err: unknown) => {
  process.stderr.write(`build-simd: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
