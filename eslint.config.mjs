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
);
