// Lint the TypeScript sources and tests with typescript-eslint's recommended rules.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'runs/**', 'studies/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-require-imports': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // The whole tfjs package loads parts regtrain never uses (src/tf.ts).
      'no-restricted-imports': [
        'error',
        { paths: [{ name: '@tensorflow/tfjs', message: 'import tfjs from src/tf.ts (tfjs-core and tfjs-layers).' }] },
      ],
    },
  },
);
