/**
 * Whether an environment variable switches something off: `off`, `0`, `false` or `no`, in any case (REGTRAIN_ACCEL,
 * REGTRAIN_BLAS, REGTRAIN_SIMD, REGTRAIN_CODE_CACHE, ...). No imports: dist/code-cache.js bundles it alone.
 */
export function switchedOff(name: string): boolean {
  return /^(off|0|false|no)$/i.test(process.env[name] ?? '');
}
