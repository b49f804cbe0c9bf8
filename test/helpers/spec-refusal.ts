import * as assert from 'node:assert/strict';
import { SpecError, validateSpec } from '../../src/spec';

/**
 * The message validateSpec refuses a spec with: a one-output-layer model (flatten → dense 10
 * softmax) with `dense` merged into its dense layer, SGD unless `optimizer` is given, and `training`.
 * Fails the test when the spec is accepted.
 */
export function specRefusal(parts: {
  dense?: Record<string, unknown>;
  optimizer?: Record<string, unknown>;
  training?: Record<string, unknown>;
}): string {
  try {
    validateSpec(
      {
        name: 'x',
        model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax', ...parts.dense } }] },
        optimizer: parts.optimizer ?? { sgd: { learningRate: 0.01 } },
        ...(parts.training ? { training: parts.training } : {}),
      },
      'spec.yaml',
    );
  } catch (err) {
    assert.ok(err instanceof SpecError, String(err));
    return err.message;
  }
  throw new Error('accepted');
}
