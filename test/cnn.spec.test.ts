/**
 * Convolutional layers in the spec: output shapes and parameter counts by Keras's formulas
 * (hand-computed below), the built tfjs model agreeing with them, the Keras-like summary,
 * SpatialDropout2D, and the exact errors for stacks that cannot work. No training here.
 *
 * Keras's formulas (channels last, dilation 1):
 *   Conv2D / pooling output per spatial dim: valid ⌊(n − k)/s⌋ + 1, same ⌈n/s⌉
 *   Conv2D params: kh·kw·c_in·filters + filters (bias)      Dense: in·units + units
 *   BatchNormalization: 4·channels (γ, β trainable; moving mean and variance not)
 *
 * The configs/cnn.yaml model:
 *   reshape [28, 28, 1]                  28×28×1     0
 *   conv2d 16 3×3 valid                  26×26×16    3·3·1·16 + 16 = 160
 *   maxPooling2d 2 (strides 2)           13×13×16    0           (26 − 2)/2 + 1 = 13
 *   conv2d 32 3×3                        11×11×32    3·3·16·32 + 32 = 4,640
 *   maxPooling2d 2                       5×5×32      0           ⌊(11 − 2)/2⌋ + 1 = 5
 *   flatten                              800         0
 *   dense 64                             64          800·64 + 64 = 51,264
 *   dense 10                             10          64·10 + 10 = 650       total 56,714
 *
 * A second stack, every other option:
 *   reshape [7, -1, 4]                   7×28×4      (784 / (7·4) = 28)
 *   conv2d 8 [5, 3] strides 2 same, no bias   4×14×8      ⌈7/2⌉ = 4, ⌈28/2⌉ = 14; 5·3·4·8 = 480
 *   batchNormalization                   4×14×8      4·8 = 32
 *   averagePooling2d 3 strides [1, 2]    2×6×8       ⌊(4 − 3)/1⌋ + 1 = 2, ⌊(14 − 3)/2⌋ + 1 = 6
 *   maxPooling2d [2, 3] strides 1 same   2×6×8       ⌈2/1⌉, ⌈6/1⌉
 *   spatialDropout2d 0.3                 2×6×8       0
 *   globalAveragePooling2d               8           0
 *   dense 10                             10          8·10 + 10 = 90          total 602 (trainable 586)
 */
import { test, describe, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '../src/tf';
import { initBackend } from '../src/backend';
import { buildModel, modelSummary, parameterCounts } from '../src/model';
import { loadSpec, parseSpec, validateSpec, type ExperimentSpec } from '../src/spec';
import { layerShapes } from '../src/spec/layers';
import { SpatialDropout2D } from '../src/spatial-dropout';
import { evalChunk } from '../src/train/forward';
import { regtrainSync } from './helpers/cli';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '../..');

const SECOND_STACK = [
  { reshape: { targetShape: [7, -1, 4] } },
  { conv2d: { filters: 8, kernelSize: [5, 3], strides: 2, padding: 'same', useBias: false } },
  { batchNormalization: {} },
  { averagePooling2d: { poolSize: 3, strides: [1, 2] } },
  { maxPooling2d: { poolSize: [2, 3], strides: 1, padding: 'same' } },
  { spatialDropout2d: { rate: 0.3 } },
  { globalAveragePooling2d: {} },
  { dense: { units: 10, activation: 'softmax' } },
];

const specOf = (layers: unknown[]) => validateSpec({ name: 'cnn-shapes', model: { layers } });

before(async () => {
  await initBackend('cpu');
});

/** Each layer's output shape (per image) and parameter count are `expected` in the spec (layerShapes) and in the built tfjs model; the model's totals are `counts`. */
function assertShapes(
  spec: ExperimentSpec,
  expected: [number[], number][],
  counts: { total: number; trainable: number },
): void {
  assert.deepEqual(
    layerShapes(spec.model.layers).shapes.map((s) => [s.outputShape, s.params]),
    expected,
  );
  const built = buildModel(spec);
  assert.deepEqual(
    built.model.layers.map((l) => [(l.outputShape as number[]).slice(1), l.countParams()]),
    expected,
  );
  assert.deepEqual(parameterCounts(built.model), counts);
  built.model.dispose();
}

describe('output shapes and parameter counts by Keras formulas', () => {
  test('the configs/cnn.yaml model has the hand-computed shapes and 56,714 parameters, in the spec and in the built model', () => {
    assertShapes(
      loadSpec(path.join(ROOT, 'configs', 'cnn.yaml')).spec,
      [
        [[28, 28, 1], 0],
        [[26, 26, 16], 160],
        [[13, 13, 16], 0],
        [[11, 11, 32], 4640],
        [[5, 5, 32], 0],
        [[800], 0],
        [[64], 51264],
        [[10], 650],
      ],
      { total: 56714, trainable: 56714 },
    );
  });

  test('reshape with -1, strided same convolution without bias, batch norm, both poolings, spatial dropout and global pooling follow Keras', () => {
    assertShapes(
      specOf(SECOND_STACK),
      [
        [[7, 28, 4], 0],
        [[4, 14, 8], 480],
        [[4, 14, 8], 32],
        [[2, 6, 8], 0],
        [[2, 6, 8], 0],
        [[2, 6, 8], 0],
        [[8], 0],
        [[10], 90],
      ],
      { total: 602, trainable: 586 },
    );
  });

  test('pooling strides default to the pool size, as in Keras', () => {
    const spec = specOf([
      { reshape: { targetShape: [28, 28, 1] } },
      { maxPooling2d: { poolSize: 3 } },
      { flatten: {} },
      { dense: { units: 10, activation: 'softmax' } },
    ]);
    assert.equal(spec.model.layers[1]!.maxPooling2d!.strides, null);
    // ⌊(28 − 3)/3⌋ + 1 = 9
    assert.deepEqual(layerShapes(spec.model.layers).shapes[1]!.outputShape, [9, 9, 1]);
  });

  test('the weight shapes of a conv model are what its saved weights.bin holds, layer by layer in tfjs order', () => {
    const spec = specOf(SECOND_STACK);
    const built = buildModel(spec);
    assert.deepEqual(
      layerShapes(spec.model.layers).shapes.flatMap((s) => s.weightShapes),
      built.model.layers.flatMap((l) => l.weights.map((w) => w.shape)),
    );
    assert.deepEqual(built.model.weights[0]!.shape, [5, 3, 4, 8]);
    built.model.dispose();
  });
});

test('the model summary lists each layer with its Keras name, output shape and parameter count, like model.summary()', () => {
  const spec = loadSpec(path.join(ROOT, 'configs', 'cnn.yaml'), [
    { path: ['model', 'layers', '1', 'conv2d', 'kernelRegularizer'], value: { l2: 0.001 }, label: '--set' },
  ]).spec;
  const built = buildModel(spec);
  // As wide as the widest row: 31 + 2 + 18 + 2 + 7 + 2 + 16 columns.
  const RULE = '─'.repeat(78 - 1);
  assert.deepEqual(modelSummary(built), [
    RULE,
    'Layer (type)                    Output Shape        Param #  Regularizers',
    RULE,
    'reshape (Reshape)               (None, 28, 28, 1)   0        -',
    'conv2d (Conv2D)                 (None, 26, 26, 16)  160      kernel L2(0.001)',
    'max_pooling2d (MaxPooling2D)    (None, 13, 13, 16)  0        -',
    'conv2d_1 (Conv2D)               (None, 11, 11, 32)  4,640    -',
    'max_pooling2d_1 (MaxPooling2D)  (None, 5, 5, 32)    0        -',
    'flatten (Flatten)               (None, 800)         0        -',
    'dense (Dense)                   (None, 64)          51,264   -',
    'dense_1 (Dense)                 (None, 10)          650      -',
    RULE,
    'Total params: 56,714  (trainable: 56,714)',
  ]);
  built.model.dispose();
});

describe('SpatialDropout2D (missing from tfjs-layers 4.22)', () => {
  test('in training it zeroes whole channels of each image and scales the others by 1/(1 − rate); at inference it is the identity', () => {
    const layer = new SpatialDropout2D({ rate: 0.5 });
    const x = tf.ones([3, 4, 5, 16]);
    const inference = layer.apply(x, { training: false }) as tf.Tensor;
    assert.deepEqual(inference.dataSync(), x.dataSync());
    const y = (layer.apply(x, { training: true }) as tf.Tensor).arraySync() as number[][][][];
    let dropped = 0;
    for (const image of y)
      for (let c = 0; c < 16; c++) {
        const values = new Set(image.flatMap((row) => row.map((px) => px[c]!)));
        assert.equal(values.size, 1, 'a channel is dropped or kept as a whole');
        const [v] = [...values];
        assert.ok(v === 0 || v === 2, `a kept value is 1/(1 − 0.5) = 2, got ${v}`);
        if (v === 0) dropped++;
      }
    assert.ok(dropped > 0 && dropped < 48, `some of the 48 channels dropped, not all (${dropped})`);
    tf.dispose([x, inference]);
  });

  test('a model with it survives a save and load round trip through model.json', async () => {
    const built = buildModel(specOf(SECOND_STACK));
    let artifacts: tf.io.ModelArtifacts | undefined;
    await built.model.save(
      tf.io.withSaveHandler(async (a) => {
        artifacts = a;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
      }),
    );
    const loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts!));
    assert.equal(loaded.layers[5]!.getClassName(), 'SpatialDropout2D');
    assert.equal((loaded.layers[5] as SpatialDropout2D).rate, 0.3);
    const x = tf.randomUniform([2, 28, 28], 0, 1, 'float32', 3);
    const a = built.model.predict(x) as tf.Tensor;
    const b = loaded.predict(x) as tf.Tensor;
    assert.deepEqual(a.dataSync(), b.dataSync());
    tf.dispose([x, a, b]);
    built.model.dispose();
    loaded.dispose();
  });
});

describe('stacks that cannot work are refused at validation, with the shapes involved', () => {
  const header = 'name: bad\nmodel:\n  layers:\n';
  const cases: [string, string, string][] = [
    [
      'a pool larger than the map it gets',
      '    - reshape: { targetShape: [28, 28, 1] }\n    - conv2d: { filters: 32, kernelSize: 28 }\n    - maxPooling2d: { poolSize: 2 }\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n',
      '! model.layers.2.maxPooling2d.poolSize: a 2×2 pool does not fit a 1×1×32 map (the output would be 0×0) (bad.yaml:6:33)',
    ],
    [
      'a kernel larger than the map it gets',
      '    - reshape: { targetShape: [28, 28, 1] }\n    - maxPooling2d: { poolSize: 7 }\n    - conv2d: { filters: 4, kernelSize: [3, 5] }\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n',
      '! model.layers.2.conv2d.kernelSize: a 3×5 kernel does not fit a 4×4×1 map (the output would be 2×0) (bad.yaml:6:41)',
    ],
    [
      'a dense layer after a 3-D output without flatten',
      '    - reshape: { targetShape: [28, 28, 1] }\n    - conv2d: { filters: 4, kernelSize: 3 }\n    - dense: { units: 10, activation: softmax }\n',
      '! model.layers.2.dense: a dense layer needs a flat input, but layer 1 outputs 26×26×4: put a flatten or globalAveragePooling2d layer before it (bad.yaml:6:14)',
    ],
    [
      'a reshape whose element count differs',
      '    - reshape: { targetShape: [28, 28, 3] }\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n',
      '! model.layers.0.reshape.targetShape: cannot reshape 784 values (28×28) into 28×28×3 = 2352 values (bad.yaml:4:31)',
    ],
    [
      'a reshape with -1 that does not divide',
      '    - reshape: { targetShape: [5, -1, 1] }\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n',
      '! model.layers.0.reshape.targetShape: cannot reshape 784 values (28×28) into [5, -1, 1]: 784 is not a multiple of 5 (bad.yaml:4:31)',
    ],
    [
      'a convolution straight on the 28×28 images',
      '    - conv2d: { filters: 4, kernelSize: 3 }\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n',
      '! model.layers.0.conv2d: conv2d needs a height×width×channels input, got 28×28: put reshape { targetShape: [28, 28, 1] } before it (bad.yaml:4:15)',
    ],
    [
      'pooling a flat vector',
      '    - flatten: {}\n    - averagePooling2d: {}\n    - dense: { units: 10, activation: softmax }\n',
      '! model.layers.1.averagePooling2d: averagePooling2d needs a height×width×channels input, got a flat vector of 784 values: put it before the flatten layer, or reshape the vector to height, width, channels (bad.yaml:5:25)',
    ],
    [
      'an output map too large to hold',
      '    - reshape: { targetShape: [28, 28, 1] }\n    - conv2d: { filters: 4096, kernelSize: 3, padding: same }\n    - globalAveragePooling2d: {}\n    - dense: { units: 10, activation: softmax }\n',
      '! model.layers.1.conv2d: the output 28×28×4096 has 3211264 values per image, more than the limit of 1000000 (bad.yaml:5:15)',
    ],
    [
      'two -1 in a reshape',
      '    - reshape: { targetShape: [-1, -1, 1] }\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n',
      '! model.layers.0.reshape.targetShape: expected at most one -1 (bad.yaml:4:31)',
    ],
    [
      'padding that Keras does not have',
      '    - reshape: { targetShape: [28, 28, 1] }\n    - conv2d: { filters: 4, kernelSize: 3, padding: full }\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n',
      '! model.layers.1.conv2d.padding: expected one of valid, same, got "full" (bad.yaml:5:53)',
    ],
    [
      'a misspelt layer type',
      '    - reshape: { targetShape: [28, 28, 1] }\n    - conv2D: { filters: 4, kernelSize: 3 }\n    - flatten: {}\n    - dense: { units: 10, activation: softmax }\n',
      "! model.layers.1.conv2D: unknown layer type (did you mean 'conv2d'?) (bad.yaml:5:7)",
    ],
  ];
  for (const [what, layers, message] of cases) {
    test(`${what}: ${message.split(': ').slice(1).join(': ')}`, () => {
      assert.throws(
        () => parseSpec(header + layers, 'bad.yaml'),
        (err: Error) => {
          assert.equal(err.message, message);
          return true;
        },
      );
    });
  }

  test('the CLI prints the shape error in one line and exits 2', () => {
    const dir = scratchDir('regtrain-cnn-spec-');
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, header + cases[0]![1]);
    const r = regtrainSync(['validate', file]);
    assert.equal(r.status, 2);
    assert.equal(r.stderr.trim(), cases[0]![2]);
  });
});

test('inference chunks shrink for wide feature maps: 1,551 images for the cnn.yaml model, 5,000 for the MLP', () => {
  // The widest output of cnn.yaml is conv2d's 26×26×16 = 10,816 floats an image: ⌊64 MiB / (4 × 10,816)⌋ = 1,551.
  // The tutorial's widest is its 784-pixel input: 64 MiB / 3,136 bytes > 5,000, so the 5,000 cap holds.
  const cnn = buildModel(loadSpec(path.join(ROOT, 'configs', 'cnn.yaml')).spec);
  const mlp = buildModel(loadSpec(path.join(ROOT, 'configs', 'article.yaml')).spec);
  try {
    assert.equal(evalChunk(cnn), 1551);
    assert.equal(evalChunk(mlp), 5000);
  } finally {
    cnn.model.dispose();
    mlp.model.dispose();
  }
});
