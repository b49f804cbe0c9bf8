/**
 * The bad-spec corpus (test/fixtures/bad-specs/, one small file per case) and the exact first line
 * `regtrain validate FILE` prints for each, run in that directory. Fixtures are read from the source tree
 * (tsc does not copy them into dist/).
 */
import * as path from 'node:path';

export const BAD_SPECS = path.resolve(__dirname, '../../..', 'test', 'fixtures', 'bad-specs');

/** Each corpus file and the exact first line `regtrain validate FILE` must print. */
export const BAD_SPEC_FIRST_LINES: Record<string, string> = {
  // YAML syntax
  'yaml-unclosed-flow.yaml':
    '! invalid YAML: Flow map in block collection must be sufficiently indented and end with a } (yaml-unclosed-flow.yaml:6:1)',
  'yaml-bad-indent.yaml':
    '! invalid YAML: A block sequence may not be used as an implicit map key (yaml-bad-indent.yaml:5:1)',
  'yaml-tab-indent.yaml': '! invalid YAML: Tabs are not allowed as indentation (yaml-tab-indent.yaml:3:1)',
  'yaml-unterminated-string.yaml': '! invalid YAML: Missing closing "quote (yaml-unterminated-string.yaml:4:1)',
  'yaml-multiple-documents.yaml':
    '! invalid YAML: Source contains multiple documents; please use YAML.parseAllDocuments() (yaml-multiple-documents.yaml:2:1)',
  'yaml-undefined-alias.yaml':
    '! invalid YAML: Unresolved alias (the anchor must be set before the alias): nowhere (yaml-undefined-alias.yaml:2:7)',
  // wrong types
  'type-units-string.yaml':
    '! model.layers.1.dense.units: expected a positive integer, got "ten" (type-units-string.yaml:5:23)',
  'type-epochs-list.yaml': '! training.epochs: expected a positive integer, got a list (type-epochs-list.yaml:7:11)',
  'type-layers-map.yaml': '! model.layers: expected a list of layers, got a map (type-layers-map.yaml:4:5)',
  'type-model-missing.yaml': '! model: expected a map with a list of layers, got nothing (type-model-missing.yaml:1:1)',
  'type-top-level-list.yaml':
    '! expected a map of settings at the top level, got a list (type-top-level-list.yaml:1:1)',
  'type-top-level-scalar.yaml':
    '! expected a map of settings at the top level, got "just a sentence" (type-top-level-scalar.yaml:1:1)',
  'type-boolean-string.yaml':
    '! model.layers.1.dense.useBias: expected true or false, got "yes" (type-boolean-string.yaml:5:57)',
  'type-custom-tag.yaml':
    '! seed: the YAML tag !!js/function is not supported: write a plain value, map or list (type-custom-tag.yaml:2:21)',
  // unknown keys
  'unknown-top-level-key.yaml': "! optimiser: unknown key (did you mean 'optimizer'?) (unknown-top-level-key.yaml:2:1)",
  'unknown-nested-key.yaml':
    "! model.layers.1.dense.kernel_regularizer: unknown key (did you mean 'kernelRegularizer'?) (unknown-nested-key.yaml:5:48)",
  'unknown-layer-type.yaml':
    "! model.layers.1.conv3d: unknown layer type (did you mean 'conv2d'?) (unknown-layer-type.yaml:5:7)",
  // negative / zero / NaN / infinite / huge numbers
  'number-negative-units.yaml':
    '! model.layers.1.dense.units: expected a positive integer, got -64 (number-negative-units.yaml:5:23)',
  'number-zero-batch.yaml': '! training.batchSize: expected a positive integer, got 0 (number-zero-batch.yaml:7:14)',
  'number-fractional-epochs.yaml':
    '! training.epochs: expected an integer, got 2.5 (number-fractional-epochs.yaml:7:11)',
  'number-nan-l2.yaml':
    '! model.layers.1.dense.kernelRegularizer.l2: expected a finite number ≥ 0, got NaN (number-nan-l2.yaml:5:73)',
  'number-inf-learning-rate.yaml':
    '! optimizer.sgd.learningRate: expected a positive number, got Infinity (number-inf-learning-rate.yaml:7:24)',
  'number-overflow-seed.yaml':
    '! seed: expected an integer from 0 to 4294967295, got Infinity (number-overflow-seed.yaml:2:7)',
  'number-huge-units.yaml':
    '! model.layers.1.dense.units: expected at most 65536, got 1000000000 (number-huge-units.yaml:5:23)',
  'number-parameter-budget.yaml':
    '! model.layers: the model has 4347133962 parameters, more than the limit of 50000000 (number-parameter-budget.yaml:4:5)',
  'number-dropout-rate-one.yaml':
    '! model.layers.1.dropout.rate: expected a rate in [0, 1), got 1 (number-dropout-rate-one.yaml:5:24)',
  'number-validation-too-large.yaml':
    '! data.validation.size: expected at most 60000, got 1000000000 (number-validation-too-large.yaml:3:23)',
  // empty, binary, directory
  'empty-file.yaml': '! the spec is empty (empty-file.yaml)',
  'empty-comment-only.yaml': '! the spec is empty (empty-comment-only.yaml)',
  'empty-null.yaml': '! the spec is empty (empty-null.yaml)',
  'binary-file.yaml': 'error: binary-file.yaml: not a YAML text file (it contains NUL bytes)',
  'a-directory.yaml': 'error: a-directory.yaml: is a directory, expected a YAML spec file',
  // spec versions
  'version-newer.yaml': '! version: expected 1 (this regtrain reads spec version 1), got 2 (version-newer.yaml:1:10)',
  'version-older.yaml': '! version: expected 1 (this regtrain reads spec version 1), got 0 (version-older.yaml:1:10)',
  // aliases, nesting, duplicates
  'alias-bomb.yaml':
    '! invalid YAML: Excessive alias count indicates a resource exhaustion attack (alias-bomb.yaml:2:8)',
  'alias-self-reference.yaml': '! model.layers: expected a list of layers, got a map (alias-self-reference.yaml:3:11)',
  // The 65th level (64 + 1), not a runtime's stack depth; the block one used to crash the YAML parser (exit 1, stack trace).
  'deeply-nested-flow.yaml': '! YAML nesting deeper than 64 levels (deeply-nested-flow.yaml:2:260)',
  'deeply-nested-block.yaml': '! YAML nesting deeper than 64 levels (deeply-nested-block.yaml:3:129)',
  'duplicate-top-level-key.yaml': '! invalid YAML: Map keys must be unique (duplicate-top-level-key.yaml:7:1)',
  'duplicate-flow-key.yaml': '! invalid YAML: Map keys must be unique (duplicate-flow-key.yaml:5:48)',
  // cross-field checks
  'name-path-traversal.yaml':
    '! name: expected 1–64 letters, digits, ".", "_" or "-", starting with a letter or digit, got "../../etc" (name-path-traversal.yaml:1:7)',
  'last-layer-not-softmax.yaml':
    "! model.layers.1.dense.activation: the last layer must use softmax (sparseCategoricalCrossentropy takes probabilities, as Keras's from_logits=False), got relu (last-layer-not-softmax.yaml:5:39)",
  'dense-before-flatten.yaml':
    '! model.layers.0.dense: a flatten layer must come before the first dense layer (inputs are 28×28 images) (dense-before-flatten.yaml:4:14)',
};
