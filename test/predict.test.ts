/**
 * `regtrain predict` on a real tiny run, with real PNG files written here from Fashion-MNIST test
 * images (pngjs), and the Fashion-MNIST pipeline (src/images/) on images whose result is worked
 * out by hand.
 */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { imagesOf, loadDataset } from '../src/data/dataset';
import { decodePng, type GreyImage } from '../src/images/png';
import { toFashionMnist } from '../src/images/fashion-mnist';
import { finished, QUICK, sliceFlags, startCli, type CliResult } from './helpers/cli';
import { runSeeds } from '../src/rng';
import { sharedDataDir } from './helpers/data';
import { assertRefusal } from './helpers/run-files';
import { scratchDir } from './helpers/scratch';

const TINY = [
  ...['--backend', 'wasm', ...sliceFlags({ train: 600, validation: 100, test: 200, epochs: 2 })],
  ...[
    '--set',
    'model.layers.1.dense.kernelRegularizer=null',
    '--set',
    'training.checkpoint.saveBest={monitor: val_accuracy}',
  ],
];

let TMP = '';
let CACHE = '';
let RUN = '';
/** Test images 0…3 as bytes (0 = black background), from the real loader with normalize: none. */
let TEST_IMAGES: Uint8Array[] = [];

function regtrain(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return finished(
    startCli(args, { cwd: TMP, env: { REGTRAIN_DATA_DIR: CACHE, XDG_CACHE_HOME: path.join(TMP, 'xdg'), ...env } }),
    undefined,
    90_000,
  );
}

/** Writes a PNG through pngjs from a pixel function giving [r, g, b, a]. */
function writePng(
  file: string,
  width: number,
  height: number,
  pixel: (x: number, y: number) => number[],
  colorType: 0 | 2 | 4 | 6 = 6,
): string {
  const png = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) png.data.set(pixel(x, y), 4 * (y * width + x));
  }
  const target = path.join(TMP, file);
  fs.writeFileSync(target, PNG.sync.write(png, { colorType }));
  return target;
}

/** Test image i as a 28×28 greyscale PNG, byte for byte. */
function testImagePng(i: number): string {
  const img = TEST_IMAGES[i]!;
  return writePng(`test-${i}.png`, 28, 28, (x, y) => [img[y * 28 + x]!, img[y * 28 + x]!, img[y * 28 + x]!, 255], 0);
}

interface Prediction {
  image?: string;
  testIndex?: number;
  trueClass?: string;
  width?: number;
  height?: number;
  background?: string;
  top: { class: string; index: number; probability: number }[];
}

const jsonLines = (stdout: string): Prediction[] =>
  stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Prediction);

before(async () => {
  TMP = scratchDir('regtrain-predict-test-');
  CACHE = sharedDataDir();
  RUN = path.join(TMP, 'run');
  const r = await regtrain(['run', QUICK, ...TINY, '--out', RUN, '-q']);
  assert.equal(r.code, 0, `the reference run failed:\n${r.stderr}`);
  const data = await loadDataset({
    dataDir: CACHE,
    normalize: 'none',
    validation: { size: 0, holdout: false, shuffle: false, stratify: false },
    trainLimit: 0,
    testLimit: 4,
    splitSeed: runSeeds(1).split,
  });
  TEST_IMAGES = [0, 1, 2, 3].map((i) => Uint8Array.from(imagesOf(data.test, i, i + 1)));
});

describe('predict on a trained run', () => {
  test('a PNG written from test image N predicts exactly what --test-index N predicts', async () => {
    const files = [0, 1, 2].map(testImagePng);
    const r = await regtrain([
      'predict',
      RUN,
      ...files,
      '--test-index',
      '0',
      '--test-index',
      '1',
      '--test-index',
      '2',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const lines = jsonLines(r.stdout);
    assert.equal(lines.length, 6, 'one JSON line per image');
    for (let i = 0; i < 3; i++) {
      const png = lines[i]!;
      const indexed = lines[3 + i]!;
      assert.deepEqual(
        { image: png.image, width: png.width, height: png.height, background: png.background },
        { image: files[i], width: 28, height: 28, background: 'dark' },
      );
      assert.equal(indexed.testIndex, i);
      assert.deepEqual(png.top, indexed.top, `test image ${i}`);
      assert.equal(png.top.length, 3);
      assert.ok(
        png.top[0]!.probability >= png.top[1]!.probability && png.top[1]!.probability >= png.top[2]!.probability,
        'most probable first',
      );
      assert.equal(new Set(png.top.map((c) => c.index)).size, 3, 'three different classes');
    }
    // Fashion-MNIST's first test images are an ankle boot, a pullover and a trouser.
    assert.deepEqual(
      lines.slice(3).map((l) => l.trueClass),
      ['Ankle boot', 'Pullover', 'Trouser'],
    );
  });

  test('the human table has a header and one row per image, the test image with its true class', async () => {
    const r = await regtrain(['predict', RUN, testImagePng(1), '--test-index', '1']);
    assert.equal(r.code, 0, r.stderr);
    const rows = r.stdout
      .replace(/^Backend: .*\n/, '')
      .trimEnd()
      .split('\n');
    assert.equal(rows.length, 3);
    assert.match(rows[0]!, /^image {3,}1st {3,}2nd {3,}3rd$/);
    const cells = (row: string) => row.split(/ {3,}/);
    assert.deepEqual(cells(rows[1]!).slice(1), cells(rows[2]!).slice(1), 'same classes and percentages');
    assert.equal(cells(rows[2]!)[0], 'test image 1 (Pullover)');
    for (const cell of cells(rows[1]!).slice(1)) assert.match(cell, /^[A-Za-z/ -]+ \d{1,3}\.\d%$/);
  });

  test('a colour photo of odd size, dark on a light background, is read and classified', async () => {
    const img = TEST_IMAGES[0]!;
    // The ankle boot drawn 3× larger, dark on white, tinted brown, at an odd place on a 97×113 canvas.
    const photo = writePng('boot-photo.png', 97, 113, (x, y) => {
      const sx = Math.floor((x - 5) / 3);
      const sy = Math.floor((y - 17) / 3);
      const v = sx >= 0 && sx < 28 && sy >= 0 && sy < 28 ? img[sy * 28 + sx]! : 0;
      return [255 - v, 255 - Math.round(0.8 * v), 255 - Math.round(0.9 * v), 255];
    });
    const r = await regtrain(['predict', RUN, photo, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const [p] = jsonLines(r.stdout);
    assert.deepEqual(
      { width: p!.width, height: p!.height, background: p!.background },
      { width: 97, height: 113, background: 'light' },
    );
    assert.equal(p!.top.length, 3);
    const sum = p!.top.reduce((a, c) => a + c.probability, 0);
    assert.ok(sum > 0 && sum <= 1 + 1e-6, `top-3 probabilities sum to ${sum}`);
  });

  test('a blank, single-colour image is classified with a warning that its prediction means nothing', async () => {
    const blank = writePng('blank.png', 40, 30, () => [200, 30, 30, 255]);
    const r = await regtrain(['predict', RUN, blank, '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      r.stderr.split('\n').filter((l) => l.startsWith('warning: ')),
      [
        `warning: ${blank}: one colour all over (nothing to see once made a 28×28 Fashion-MNIST image); its prediction means nothing`,
      ],
    );
    assert.equal(jsonLines(r.stdout).length, 1);
    // An image with something on it gets no such warning.
    const drawn = await regtrain(['predict', RUN, testImagePng(1), '--json']);
    assert.doesNotMatch(drawn.stderr, /one colour all over/);
  });

  test('--best uses the best epoch model and says which epoch it is', async () => {
    const r = await regtrain(['predict', RUN, '--best', '--test-index', '0']);
    assert.equal(r.code, 0, r.stderr);
    const best = JSON.parse(fs.readFileSync(path.join(RUN, 'best', 'best.json'), 'utf8')) as {
      epoch: number;
      value: number;
    };
    assert.match(
      r.stdout,
      new RegExp(`^Best model: epoch ${best.epoch} \\(val_accuracy ${best.value.toFixed(4)}\\)$`, 'm'),
    );
  });

  test('--test-index reads the dataset from --data-dir, as evaluate does', async () => {
    const empty = path.join(TMP, 'empty-cache');
    fs.mkdirSync(empty, { recursive: true });
    const missing = path.join(TMP, 'empty-source');
    fs.mkdirSync(missing, { recursive: true });
    const withDir = await regtrain(
      ['predict', RUN, '--test-index', '3', '--data-dir', CACHE, '--source', missing, '--json'],
      { REGTRAIN_DATA_DIR: empty },
    );
    assert.equal(withDir.code, 0, withDir.stderr);
    assert.equal(jsonLines(withDir.stdout)[0]!.testIndex, 3);
    const without = await regtrain(['predict', RUN, '--test-index', '3', '--source', missing, '--json'], {
      REGTRAIN_DATA_DIR: empty,
    });
    assert.notEqual(without.code, 0, 'without --data-dir the empty cache and the missing source give no data');
  });
});

// The other refusals are checked in process (test/predict.unit.test.ts); this one through the real boundary.
describe('predict refuses bad input with one line and exit 2', () => {
  /** predict must refuse with exit 2, exactly this one line on stderr, and nothing on stdout. */
  async function assertRefused(args: string[], message: string): Promise<void> {
    assertRefusal(await regtrain(['predict', RUN, ...args]), message);
  }

  test('a truncated PNG is refused naming the file and where it ends', async () => {
    const whole = fs.readFileSync(testImagePng(0));
    const cut = path.join(TMP, 'cut.png');
    fs.writeFileSync(cut, whole.subarray(0, 60));
    const idat = whole.indexOf('IDAT') - 4;
    const idatBytes = whole.readUInt32BE(idat) + 12;
    await assertRefused(
      [cut],
      `${cut}: not a readable PNG (truncated: its IDAT chunk needs ${idatBytes} bytes from byte ${idat}, the file ends at 60)`,
    );
  });
});

describe('PNG decoding', () => {
  const png = (width: number, height: number, rgba: number[], colorType: 0 | 2 | 4 | 6): Buffer => {
    const p = new PNG({ width, height });
    p.data.set(rgba);
    return PNG.sync.write(p, { colorType });
  };

  test('colour becomes Rec. 601 luma and transparency is composited on white', () => {
    // Red, green, blue, and black at alpha 128: 0.299·255, 0.587·255, 0.114·255, 255·127/255.
    const img = decodePng(png(4, 1, [255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255, 0, 0, 0, 128], 6), 'x.png');
    assert.deepEqual(Array.from(img.pixels), [76, 150, 29, 127]);
    assert.equal(img.colour, true);
    assert.equal(img.alpha, true);
  });

  test('a greyscale PNG keeps its grey levels', () => {
    const img = decodePng(png(3, 1, [0, 0, 0, 255, 128, 128, 128, 255, 255, 255, 255, 255], 0), 'g.png');
    assert.deepEqual(Array.from(img.pixels), [0, 128, 255]);
    assert.equal(img.colour, false);
    assert.equal(img.alpha, false);
  });

  test('a PNG header announcing a huge image is refused before decoding', () => {
    const header = png(1, 1, [0, 0, 0, 255], 0);
    header.writeUInt32BE(20_000, 16);
    assert.throws(() => decodePng(header, 'big.png'), {
      message: 'big.png: 20000×1 pixels is larger than predict reads (at most 10000 a side, 25000000 pixels)',
    });
  });
});

describe("Zalando's Fashion-MNIST pipeline", () => {
  const grey = (width: number, height: number, pixel: (x: number, y: number) => number): GreyImage => ({
    width,
    height,
    pixels: Uint8Array.from({ length: width * height }, (_, i) => pixel(i % width, Math.floor(i / width))),
    colour: false,
    alpha: false,
  });

  /**
   * A 56×56 black picture whose lower half holds a two-tone band (100 left, 200 right): trimmed to
   * 56×28, sampled to 28×14, sharpened, centred (rows 7–20). Sharpening a vertical edge: with
   * g(u,v) = exp(−(u²+v²)/2), S = Σg = 1 + 4e^−½ + 4e^−1 = 4.89764 and the kernel's sum S + 1,
   * the pixel left of the edge becomes 100 − 100·(2e^−1 + e^−½)/(S + 1) = 77.24 → 77, the one right of it 222.76 → 223.
   */
  const band = (x: number, y: number) => (y < 28 ? 0 : x < 28 ? 100 : 200);
  const expected = (): number[] => {
    const out = new Array<number>(784).fill(0);
    for (let y = 7; y < 21; y++)
      for (let x = 0; x < 28; x++) out[y * 28 + x] = x < 13 ? 100 : x === 13 ? 77 : x === 14 ? 223 : 200;
    return out;
  };

  test('a light-on-dark picture is trimmed, subsampled to 28 on its longest edge, sharpened and centred', () => {
    const r = toFashionMnist(grey(56, 56, band));
    assert.equal(r.background, 'dark');
    assert.deepEqual(r.trimmed, { width: 56, height: 28 });
    assert.deepEqual(r.resized, { width: 28, height: 14 });
    assert.deepEqual(Array.from(r.pixels), expected());
  });

  test('the same picture dark on light is negated and gives the same image', () => {
    const r = toFashionMnist(grey(56, 56, (x, y) => 255 - band(x, y)));
    assert.equal(r.background, 'light');
    assert.deepEqual(Array.from(r.pixels), expected());
  });

  test('a small picture is enlarged by repeating pixels: a 7×2 bar becomes 28×8, centred', () => {
    const r = toFashionMnist(grey(9, 4, (x, y) => (x >= 1 && x < 8 && y >= 1 && y < 3 ? 180 : 0)));
    assert.deepEqual(r.resized, { width: 28, height: 8 });
    const out = Array.from(r.pixels);
    for (let y = 0; y < 28; y++)
      assert.deepEqual(
        out.slice(y * 28, y * 28 + 28),
        new Array<number>(28).fill(y >= 10 && y < 18 ? 180 : 0),
        `row ${y}`,
      );
  });

  test('a 28×28 image is taken as a Fashion-MNIST image: kept as it is, or only negated when its background is light', () => {
    const img = grey(28, 28, (x, y) => (x * 7 + y * 3) % 200);
    assert.deepEqual(Array.from(toFashionMnist(img).pixels), Array.from(img.pixels));
    const light = grey(28, 28, (x, y) => 255 - ((x * 7 + y * 3) % 200));
    const r = toFashionMnist(light);
    assert.equal(r.background, 'light');
    assert.deepEqual(Array.from(r.pixels), Array.from(img.pixels));
  });

  test('a picture of one colour has nothing to trim to and gives a blank image', () => {
    const r = toFashionMnist(grey(40, 30, () => 240));
    assert.equal(r.background, 'light');
    assert.deepEqual(Array.from(r.pixels), new Array<number>(784).fill(0));
  });
});
