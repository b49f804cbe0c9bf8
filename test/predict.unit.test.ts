/**
 * `regtrain predict`'s refusals of bad input, checked through the real program in process
 * (test/helpers/in-process.ts): each exits 2 with exactly its one line on stderr and nothing on stdout, and no
 * image is classified when one of them is bad. One tiny real run is made once, in process, for this file.
 * test/predict.test.ts keeps a refusal through a real process (the boundary prints the same line).
 */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PNG } from 'pngjs';
import { tinyRunDir, type TinyRun } from './helpers/tiny-rundir';
import { assertRefusal } from './helpers/run-files';
import { scratchDir } from './helpers/scratch';

let TMP = '';
let RUN = '';

/** `regtrain ...args` in this process, as the run was made (tinyRunDir). */
let regtrain: TinyRun['regtrain'];

/** A readable 28×28 greyscale PNG (a diagonal gradient), written once. */
function picturePng(): string {
  const target = path.join(TMP, 'picture.png');
  if (fs.existsSync(target)) return target;
  const png = new PNG({ width: 28, height: 28 });
  for (let y = 0; y < 28; y++)
    for (let x = 0; x < 28; x++) png.data.set([4 * (x + y), 4 * (x + y), 4 * (x + y), 255], 4 * (y * 28 + x));
  fs.writeFileSync(target, PNG.sync.write(png, { colorType: 0 }));
  return target;
}

before(async () => {
  TMP = scratchDir('regtrain-predict-unit-');
  ({ run: RUN, regtrain } = await tinyRunDir(TMP));
});

describe('predict refuses bad input with one line and exit 2', () => {
  /** predict must refuse with exit 2, exactly this one line on stderr, and nothing on stdout. */
  async function assertRefused(args: string[], message: string): Promise<void> {
    assertRefusal(await regtrain(['predict', RUN, ...args]), message);
  }

  test('a readable picture is classified (the refusals below are of their input, not of this run)', async () => {
    const r = await regtrain(['predict', RUN, picturePng(), '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).image, picturePng());
  });

  test('a file that is not a PNG is refused, and no image is classified when one of them is bad', async () => {
    const jpeg = path.join(TMP, 'photo.jpg');
    fs.writeFileSync(jpeg, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46]));
    await assertRefused([picturePng(), jpeg], `${jpeg}: not a PNG image (predict reads PNG files)`);
  });

  test('a missing image and a directory are refused by name', async () => {
    await assertRefused(['nothing-here.png'], 'nothing-here.png: no such file');
    await assertRefused([TMP], `${TMP}: a directory, not a regular file`);
  });

  test('a PNG whose pixel data is damaged is refused with the decoder reason', async () => {
    const whole = fs.readFileSync(picturePng());
    const idatData = whole.indexOf('IDAT') + 4;
    const damaged = Buffer.from(whole);
    damaged.fill(0xff, idatData, idatData + 4);
    const file = path.join(TMP, 'damaged.png');
    fs.writeFileSync(file, damaged);
    const r = await regtrain(['predict', RUN, file]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`^error: ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not a readable PNG \\([^\\n]+\\)\\n$`),
    );
  });

  test('a test index outside the test set or not a number is refused', async () => {
    await assertRefused(['--test-index', '10000'], '--test-index 10000: the test set has 10000 images (0 to 9999)');
    await assertRefused(['--test-index', '1.5'], '--test-index 1.5: expected a whole number from 0');
    await assertRefused(
      ['--test-index', '99999999999999999999'],
      '--test-index 99999999999999999999: the test set has 10000 images (0 to 9999)',
    );
  });

  test('no image and no index is refused', async () => {
    await assertRefused([], 'predict: name one or more PNG images, or --test-index N');
  });
});
