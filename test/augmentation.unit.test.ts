/**
 * Issue 22 item 1, data augmentation: each step against hand-computed 4×4 images (every fill mode),
 * mixUp/cutMix labels and the soft-label loss and gradient by hand on both training steps, and every
 * new spec field's bad values refused at its path with the exact message.
 *
 * The image throughout is 4×4 with pixel (row r, column c) = 4r + c + 1:
 *    1  2  3  4
 *    5  6  7  8
 *    9 10 11 12
 *   13 14 15 16
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '../src/tf';
import { Rng } from '../src/rng';
import {
  affineTransform,
  flipImage,
  rotationMatrix,
  translationMatrix,
  zoomMatrix,
  type Affine,
  type Fill,
} from '../src/data/augmentation/geometry';
import { drawEraseBox, eraseBox, roundHalfEven } from '../src/data/augmentation/erasing';
import { cutBox, cutMixWith, mixUpWith } from '../src/data/augmentation/mixing';
import { beta } from '../src/data/augmentation/random';
import { Augmenter } from '../src/data/augmentation';
import { createLeanStep } from '../src/train/lean-step';
import { buildModel, modelSummary } from '../src/model';
import { validateSpec } from '../src/spec';
import type { FillMode } from '../src/spec/augmentation';
import { createReferenceStep } from '../src/train/step';
import { createOptimizer } from '../src/train/optimizers';
import { useBackend } from './helpers/backend';

const IMAGE = Float32Array.from({ length: 16 }, (_, i) => i + 1);
const rows = (a: ArrayLike<number>, w = 4) =>
  Array.from({ length: a.length / w }, (_, r) => Array.from(a).slice(r * w, (r + 1) * w));

function transformed(m: Affine, fillMode: FillMode, interpolation: Fill['interpolation'] = 'bilinear', fillValue = 0) {
  const out = new Float32Array(16);
  affineTransform(IMAGE, 0, out, 0, 4, 4, m, { fillMode, fillValue, interpolation });
  return rows(out);
}

describe('randomTranslation moves the image by whole pixels exactly, each fill mode filling the edge as Keras documents', () => {
  test('two pixels right: reflect (b a | a b), wrap (c d | a b), nearest (a a | a b), constant (k k | a b)', () => {
    const m = translationMatrix(2, 0);
    assert.deepEqual(transformed(m, 'reflect')[0], [2, 1, 1, 2]);
    assert.deepEqual(transformed(m, 'wrap')[0], [3, 4, 1, 2]);
    assert.deepEqual(transformed(m, 'nearest')[0], [1, 1, 1, 2]);
    assert.deepEqual(transformed(m, 'constant', 'bilinear', -1)[0], [-1, -1, 1, 2]);
    assert.deepEqual(transformed(m, 'constant', 'bilinear', -1)[3], [-1, -1, 13, 14]);
  });

  test('one pixel up: the last row comes from beyond the bottom edge', () => {
    const m = translationMatrix(0, -1);
    assert.deepEqual(transformed(m, 'reflect'), [
      [5, 6, 7, 8],
      [9, 10, 11, 12],
      [13, 14, 15, 16],
      [13, 14, 15, 16],
    ]);
    assert.deepEqual(transformed(m, 'wrap')[3], [1, 2, 3, 4]);
    assert.deepEqual(transformed(m, 'constant')[3], [0, 0, 0, 0]);
  });

  test('half a pixel right interpolates neighbours bilinearly (constant 0 and reflect at the left edge)', () => {
    const m = translationMatrix(0.5, 0);
    assert.deepEqual(transformed(m, 'constant')[0], [0.5, 1.5, 2.5, 3.5]);
    assert.deepEqual(transformed(m, 'reflect')[0], [1, 1.5, 2.5, 3.5]);
    // Nearest interpolation rounds x − 0.5 half away from zero, as C's round(): −0.5 → −1, 0.5 → 1.
    assert.deepEqual(transformed(m, 'constant', 'nearest')[0], [0, 2, 3, 4]);
  });
});

describe('randomFlip, randomRotation and randomZoom against the hand-computed image', () => {
  test('a horizontal flip reverses each row; a vertical flip reverses the rows', () => {
    const img = IMAGE.slice();
    flipImage(img, 0, 4, 4, true, false);
    assert.deepEqual(rows(img)[0], [4, 3, 2, 1]);
    const v = IMAGE.slice();
    flipImage(v, 0, 4, 4, false, true);
    assert.deepEqual(rows(v), [
      [13, 14, 15, 16],
      [9, 10, 11, 12],
      [5, 6, 7, 8],
      [1, 2, 3, 4],
    ]);
  });

  test('a quarter turn (factor 0.25) is counter-clockwise: the right column becomes the top row', () => {
    const m = rotationMatrix(Math.PI / 2, 4, 4);
    const expected = [
      [4, 8, 12, 16],
      [3, 7, 11, 15],
      [2, 6, 10, 14],
      [1, 5, 9, 13],
    ];
    assert.deepEqual(transformed(m, 'constant', 'nearest'), expected);
    // Bilinear: cos(π/2) is 6e-17, not 0, so within 1e-6 of the same pixels.
    transformed(m, 'constant')
      .flat()
      .forEach((v, i) => assert.ok(Math.abs(v - expected.flat()[i]!) < 1e-6));
  });

  test('zooming in 2× (zoom 0.5) reads the centre: row 0 is 4 + x_in for x_in = 0.75, 1.25, 1.75, 2.25', () => {
    // The image is linear in (row, column), so bilinear interpolation is exact: value = 4·y_in + x_in + 1.
    assert.deepEqual(transformed(zoomMatrix(0.5, 0.5, 4, 4), 'reflect')[0], [4.75, 5.25, 5.75, 6.25]);
  });

  test('zooming out 2× (zoom 2) with nearest fill and interpolation reads columns and rows 0, 1, 3, 3', () => {
    assert.deepEqual(transformed(zoomMatrix(2, 2, 4, 4), 'nearest', 'nearest'), [
      [1, 2, 4, 4],
      [5, 6, 8, 8],
      [13, 14, 16, 16],
      [13, 14, 16, 16],
    ]);
  });
});

describe('randomErasing as torchvision RandomErasing', () => {
  test('the erased rectangle takes the value; the rest is untouched', () => {
    const img = IMAGE.slice();
    eraseBox(img, 0, 4, { top: 1, left: 2, height: 2, width: 2 }, 0, null);
    assert.deepEqual(rows(img), [
      [1, 2, 3, 4],
      [5, 6, 0, 0],
      [9, 10, 0, 0],
      [13, 14, 15, 16],
    ]);
  });

  test('a quarter of a 4×4 area at ratio 1 is always a 2×2 rectangle inside the image', () => {
    const rng = new Rng(7);
    for (let i = 0; i < 50; i++) {
      const box = drawEraseBox(rng, 4, 4, [0.25, 0.25], [1, 1])!;
      assert.equal(box.height, 2);
      assert.equal(box.width, 2);
      assert.ok(box.top >= 0 && box.top <= 2 && box.left >= 0 && box.left <= 2);
    }
  });

  test('a rectangle as large as the image never fits, so after 10 tries nothing is erased', () => {
    assert.equal(drawEraseBox(new Rng(1), 4, 4, [1, 1], [1, 1]), null);
  });

  test("the sides are rounded as Python's round(): half to even", () => {
    assert.deepEqual([0.5, 1.5, 2.5, 3.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, 4, 2, 3]);
  });
});

describe('mixUp and cutMix mix images and make the labels soft', () => {
  // Two 2×2 images (all 1s of class 0, all 5s of class 1), one-hot labels over 3 classes.
  const batch = () => ({
    images: Float32Array.from([1, 1, 1, 1, 5, 5, 5, 5]),
    labels: Float32Array.from([1, 0, 0, 0, 1, 0]),
    count: 2,
    height: 2,
    width: 2,
    classes: 3,
  });

  test('mixUp with λ = 0.75 and the pair swapped: pixels 0.75·1 + 0.25·5 = 2 and 0.75·5 + 0.25·1 = 4, labels 0.75/0.25', () => {
    const b = batch();
    mixUpWith(b, Int32Array.from([1, 0]), 0.75);
    assert.deepEqual(Array.from(b.images), [2, 2, 2, 2, 4, 4, 4, 4]);
    assert.deepEqual(Array.from(b.labels), [0.75, 0.25, 0, 0.25, 0.75, 0]);
  });

  test('cutMix with λ = 0.75 pastes a centred 2×2 box of a 4×4 image: labels weighted 12/16 and 4/16', () => {
    assert.deepEqual(cutBox(0.75, 2, 2, 4, 4), { top: 1, bottom: 3, left: 1, right: 3 });
    const b = {
      images: Float32Array.from([...new Array(16).fill(0), ...new Array(16).fill(1)]),
      labels: Float32Array.from([1, 0, 0, 1]),
      count: 2,
      height: 4,
      width: 4,
      classes: 2,
    };
    cutMixWith(b, Int32Array.from([1, 0]), [cutBox(0.75, 2, 2, 4, 4), cutBox(0.75, 0, 0, 4, 4)]);
    assert.deepEqual(rows(b.images.subarray(0, 16)), [
      [0, 0, 0, 0],
      [0, 1, 1, 0],
      [0, 1, 1, 0],
      [0, 0, 0, 0],
    ]);
    // The second box, centred on the corner, is clipped to 1 pixel: the label keeps 15/16.
    assert.deepEqual(rows(b.images.subarray(16)), [
      [0, 1, 1, 1],
      [1, 1, 1, 1],
      [1, 1, 1, 1],
      [1, 1, 1, 1],
    ]);
    assert.deepEqual(Array.from(b.labels), [0.75, 0.25, 1 / 16, 15 / 16]);
  });

  test('Beta(α, α) draws average 1/2, and Beta(2, 5) 2/7 (20,000 seeded draws, within 0.01)', () => {
    const rng = new Rng(3);
    const mean = (a: number, b: number) => {
      let s = 0;
      for (let i = 0; i < 20000; i++) s += beta(rng, a, b);
      return s / 20000;
    };
    assert.ok(Math.abs(mean(0.2, 0.2) - 0.5) < 0.01);
    assert.ok(Math.abs(mean(2, 5) - 2 / 7) < 0.01);
  });

  test('the augmenter with mixUp returns soft labels that sum to 1 per image; without mixing, none', () => {
    const geometry = { height: 4, width: 4, classes: 10 };
    const images = new Float32Array(3 * 16).fill(1);
    const mixed = new Augmenter(validateSpecWith([{ mixUp: {} }]).data.augmentation!, new Rng(5), geometry);
    const soft = mixed.apply(images, Int32Array.from([1, 2, 3]), 3)!;
    for (let i = 0; i < 3; i++) {
      const row = Array.from(soft.subarray(i * 10, i * 10 + 10));
      assert.ok(Math.abs(row.reduce((a, b) => a + b, 0) - 1) < 1e-6);
    }
    const flip = new Augmenter(validateSpecWith([{ randomFlip: {} }]).data.augmentation!, new Rng(5), geometry);
    assert.equal(flip.apply(images, Int32Array.from([1, 2, 3]), 3), null);
  });

  test('randomFlip horizontal flips exactly the images whose draw from the seeded stream is below 0.5', () => {
    const geometry = { height: 4, width: 4, classes: 10 };
    const images = new Float32Array(8 * 16);
    for (let i = 0; i < 8; i++) images.set(IMAGE, i * 16);
    const steps = validateSpecWith([{ randomFlip: { mode: 'horizontal' } }]).data.augmentation!;
    new Augmenter(steps, new Rng(11), geometry).apply(images, new Int32Array(8), 8);
    const draws = new Rng(11);
    for (let i = 0; i < 8; i++) {
      const flipped = draws.next() < 0.5;
      assert.deepEqual(rows(images.subarray(i * 16, (i + 1) * 16))[0], flipped ? [4, 3, 2, 1] : [1, 2, 3, 4]);
    }
  });
});

function validateSpecWith(augmentation: unknown[]) {
  return validateSpec({
    name: 'augment',
    data: { augmentation },
    model: { layers: [{ flatten: {} }, { dense: { units: 10, activation: 'softmax' } }] },
    optimizer: { sgd: { learningRate: 1 } },
  });
}

/**
 * Soft-label loss by hand: flatten → dense 10 softmax, kernel 0, bias ln 4 on class 3 (0 elsewhere),
 * one image whose first pixel is 1. Then p_3 = 4/13, p_j = 1/13 otherwise. The mixUp label
 * t = 0.7 on class 3 + 0.3 on class 5 gives loss −Σ t_j log p_j = ln 13 − 0.7·ln 4 = 1.5945438 and the
 * gradient p − t on the bias and the kernel's first row. SGD at lr 1 subtracts it.
 */
describe('the training loss takes soft labels on both training steps', () => {
  const LOSS = Math.log(13) - 0.7 * Math.log(4);
  const GRAD = Array.from({ length: 10 }, (_, j) => (j === 3 ? 4 / 13 - 0.7 : j === 5 ? 1 / 13 - 0.3 : 1 / 13));
  const SPEC = validateSpecWith([{ mixUp: {} }]);
  const model = () => {
    const built = buildModel(SPEC);
    const bias = new Float32Array(10);
    bias[3] = Math.log(4);
    built.model.layers[1]!.setWeights([tf.zeros([784, 10]), tf.tensor1d(bias)]);
    return built;
  };
  const check = (built: ReturnType<typeof model>, r: { dataLoss: number; correct: number }, label: string) => {
    assert.ok(Math.abs(r.dataLoss - LOSS) < 1e-6, `${label}: loss ${r.dataLoss}, want ${LOSS}`);
    assert.equal(r.correct, 1, `${label}: the label's largest weight is class 3, the prediction's too`);
    const [kernel, bias] = built.model.layers[1]!.getWeights().map((w) => w.dataSync());
    for (let j = 0; j < 10; j++) {
      const want = (j === 3 ? Math.log(4) : 0) - GRAD[j]!;
      assert.ok(Math.abs(bias![j]! - want) < 1e-6, `${label}: bias ${j} = ${bias![j]}, want ${want}`);
      assert.ok(Math.abs(kernel![j]! + GRAD[j]!) < 1e-6, `${label}: kernel[0][${j}] = ${kernel![j]}`);
    }
  };
  for (const backend of ['cpu', 'wasm'] as const) {
    test(`${backend}: the reference and the lean step both give loss ln 13 − 0.7·ln 4 and subtract p − t`, async (t) => {
      if (!(await useBackend(backend))) return t.skip(`${backend} backend unavailable`);
      const image = new Float32Array(784);
      image[0] = 1;
      const x = tf.tensor3d(image, [1, 28, 28]);
      const soft = new Float32Array(10);
      soft[3] = 0.7;
      soft[5] = 0.3;
      const y = tf.tensor2d(soft, [1, 10]);
      const ref = model();
      const refStep = createReferenceStep(ref, createOptimizer(SPEC.optimizer));
      check(ref, refStep.run(x, y, 0), 'reference');
      const lean = model();
      const leanStep = createLeanStep(lean.model, createOptimizer(SPEC.optimizer), []);
      if ('unsupported' in leanStep) throw new Error(leanStep.unsupported);
      const r = leanStep.run(x, y);
      check(lean, { dataLoss: r.dataLoss / r.batchSize, correct: r.correct }, 'lean');
      refStep.dispose();
      leanStep.dispose();
      tf.dispose([x, y]);
      ref.model.dispose();
      lean.model.dispose();
    });
  }
});

describe('data.augmentation in the spec', () => {
  const refused = (augmentation: unknown): string => {
    try {
      validateSpecWith(augmentation as unknown[]);
    } catch (err) {
      return (err as Error).message;
    }
    assert.fail(`${JSON.stringify(augmentation)} validated`);
  };
  const cases: [unknown, string][] = [
    [
      [{ randomTranslation: { heightFactor: 2, widthFactor: 0.1 } }],
      'data.augmentation.0.randomTranslation.heightFactor: expected a number in [-1, 1] or [lower, upper] within [-1, 1], got 2',
    ],
    [
      [{ randomTranslation: { heightFactor: 0.1 } }],
      'data.augmentation.0.randomTranslation.widthFactor: expected a number in [-1, 1] or [lower, upper] within [-1, 1]',
    ],
    [
      [{ randomTranslation: { heightFactor: 0.1, widthFactor: 0.1, fillMode: 'mirror' } }],
      'data.augmentation.0.randomTranslation.fillMode: expected one of reflect, wrap, constant, nearest, got "mirror"',
    ],
    [
      [{ randomTranslation: { heightFactor: 0.1, widthFactor: 0.1, fillValue: '0' } }],
      'data.augmentation.0.randomTranslation.fillValue: expected a finite number, got "0"',
    ],
    [
      [{ randomRotation: { factor: 0.1, interpolation: 'bicubic' } }],
      'data.augmentation.0.randomRotation.interpolation: expected one of bilinear, nearest, got "bicubic"',
    ],
    [
      [{ randomZoom: { heightFactor: [0.2, -0.2] } }],
      'data.augmentation.0.randomZoom.heightFactor: expected [lower, upper] with lower ≤ upper',
    ],
    [
      [{ randomZoom: { heightFactor: 0.2, widthFactor: -1.5 } }],
      'data.augmentation.0.randomZoom.widthFactor: expected a number in [-1, 1] or [lower, upper] within [-1, 1], got -1.5',
    ],
    [
      [{ randomFlip: { mode: 'sideways' } }],
      'data.augmentation.0.randomFlip.mode: expected one of horizontal, vertical, horizontal_and_vertical, got "sideways"',
    ],
    [[{ randomErasing: { p: 1.5 } }], 'data.augmentation.0.randomErasing.p: expected a probability in [0, 1], got 1.5'],
    [
      [{ randomErasing: { scale: [0.5, 0.1] } }],
      'data.augmentation.0.randomErasing.scale: expected [min, max] with 0 < min ≤ max',
    ],
    [
      [{ randomErasing: { scale: [0.5, 2] } }],
      'data.augmentation.0.randomErasing.scale: expected [min, max] with max ≤ 1',
    ],
    [
      [{ randomErasing: { ratio: [0, 3] } }],
      'data.augmentation.0.randomErasing.ratio.0: expected [min, max] with 0 < min ≤ max, got 0',
    ],
    [
      [{ randomErasing: { value: 'noise' } }],
      'data.augmentation.0.randomErasing.value: expected a finite number or random',
    ],
    [[{ mixUp: { alpha: 0 } }], 'data.augmentation.0.mixUp.alpha: expected a positive number, got 0'],
    [[{ cutMix: { alpha: -1 } }], 'data.augmentation.0.cutMix.alpha: expected a positive number, got -1'],
    [[{ randomFlp: {} }], "data.augmentation.0.randomFlp: unknown augmentation step (did you mean 'randomFlip'?)"],
    [
      [{ randomFlip: {}, mixUp: {} }],
      'data.augmentation.0: expected exactly one augmentation step type (randomTranslation, randomFlip, randomRotation, randomZoom, randomErasing, mixUp, cutMix), got 2',
    ],
    ['flip', 'data.augmentation: expected a list of augmentation steps, got "flip"'],
  ];
  for (const [augmentation, message] of cases) {
    test(`refuses ${JSON.stringify(augmentation)}: ${message}`, () => {
      assert.equal(refused(augmentation), `! ${message} ((spec))`);
    });
  }

  test("Keras's defaults fill in: reflect, bilinear, fillValue 0; horizontal_and_vertical; torchvision's erasing; alpha 0.2 and 1", () => {
    const spec = validateSpecWith([
      { randomTranslation: { heightFactor: 0.1, widthFactor: [-0.2, 0.1] } },
      { randomFlip: {} },
      { randomRotation: { factor: 0.05 } },
      { randomZoom: { heightFactor: 0.1 } },
      { randomErasing: {} },
      { mixUp: {} },
      { cutMix: {} },
    ]);
    assert.deepEqual(spec.data.augmentation, [
      {
        randomTranslation: {
          heightFactor: 0.1,
          widthFactor: [-0.2, 0.1],
          fillMode: 'reflect',
          interpolation: 'bilinear',
          fillValue: 0,
        },
      },
      { randomFlip: { mode: 'horizontal_and_vertical' } },
      { randomRotation: { factor: 0.05, fillMode: 'reflect', interpolation: 'bilinear', fillValue: 0 } },
      {
        randomZoom: {
          heightFactor: 0.1,
          widthFactor: null,
          fillMode: 'reflect',
          interpolation: 'bilinear',
          fillValue: 0,
        },
      },
      { randomErasing: { p: 0.5, scale: [0.02, 0.33], ratio: [0.3, 3.3], value: 0 } },
      { mixUp: { alpha: 0.2 } },
      { cutMix: { alpha: 1 } },
    ]);
  });

  test('the model summary lists the steps first, as Keras lists preprocessing layers, marked training only', () => {
    const spec = validateSpecWith([{ randomTranslation: { heightFactor: 0.1, widthFactor: 0.1 } }, { mixUp: {} }]);
    const built = buildModel(spec);
    const lines = modelSummary(built, { augmentation: spec.data.augmentation });
    assert.match(
      lines[3]!,
      /^random_translation \(RandomTranslation\) +\(None, 28, 28\) +0 +training only: heightFactor=0\.1, widthFactor=0\.1, fillMode=reflect, interpolation=bilinear, fillValue=0$/,
    );
    assert.match(lines[4]!, /^mix_up \(MixUp\) +\(None, 28, 28\) +0 +training only: alpha=0\.2$/);
    assert.match(lines[5]!, /^flatten \(Flatten\)/);
    built.model.dispose();
  });
});
