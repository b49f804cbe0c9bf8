// Lint the TypeScript sources and tests with typescript-eslint's recommended rules.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'runs/**', 'studies/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-require-imports': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // tfjs comes from src/tf.ts: the whole @tensorflow/tfjs package loads parts regtrain never uses.
      'no-restricted-imports': [
        'error',
        {
          paths: ['@tensorflow/tfjs', '@tensorflow/tfjs-core', '@tensorflow/tfjs-layers'].map((name) => ({
            name,
            message: 'import tfjs from src/tf.ts.',
          })),
        },
      ],
    },
  },
  { files: ['src/tf.ts'], rules: { 'no-restricted-imports': 'off' } },
  {
    // In the CLI, src/ runs from one bundled file in dist/, so `__dirname` is not a module's own folder there.
    files: ['src/**/*.ts'],
    ignores: ['src/fsutil.ts', 'src/accel/files.ts', 'src/accel/build-simd.ts'],
    rules: {
      'no-restricted-globals': [
        'error',
        {
          name: '__dirname',
          message: 'find files with packageRoot() (src/fsutil.ts) or accelFile() (src/accel/files.ts).',
        },
        {
          name: '__filename',
          message: 'find files with packageRoot() (src/fsutil.ts) or accelFile() (src/accel/files.ts).',
        },
      ],
    },
  },
);
