/** `regtrain predict`'s work: a saved model on PNG images or test images. Loaded by the command's action only (it needs tfjs). */
import * as path from 'node:path';
import * as tf from '../tf';
import { initBackend } from '../backend';
import { InputError } from '../errors';
import { loadModel } from '../rundir';
import { forward } from '../train/forward';
import { Console } from '../console';
import { runSeeds } from '../rng';
import { IMAGE_COLS, IMAGE_ROWS, imagesOf, loadSpecData, type Normalization } from '../data/dataset';
import { loadManifest } from '../data/fetch';
import { readPng } from '../images/png';
import { toFashionMnist, type Preprocessed } from '../images/fashion-mnist';
import type { PredictOptions } from './predict';
import { bindRunModel, openFinishedRun, readRunSpec } from './saved-run';
import { BEST_DIR } from '../train/callbacks/best-model';

/** Classes listed per image, most probable first. */
export const TOP_K = 3;
const PIXEL_MAX = 255;

export interface ClassProbability {
  class: string;
  index: number;
  probability: number;
}

/** One line of `predict --json`: `image` for a PNG, `testIndex` (and its true class) for a test image. */
export type Prediction =
  | { image: string; width: number; height: number; background: Preprocessed['background']; top: ClassProbability[] }
  | { testIndex: number; trueClass: string; top: ClassProbability[] };

interface Input {
  label: string;
  /** 28×28, normalised as the run's training data was. */
  x: Float32Array;
  prediction: Omit<Prediction, 'top'>;
}

export async function predict(dir: string, images: string[], opts: PredictOptions): Promise<Prediction[]> {
  const out = new Console(!!opts.json, false);
  if (images.length === 0 && opts.testIndex.length === 0)
    throw new InputError('predict: name one or more PNG images, or --test-index N');
  const indexes = opts.testIndex.map(parseTestIndex);
  const { metrics, best } = openFinishedRun(dir, 'predict', !!opts.best, out);
  const spec = readRunSpec(dir);

  // Every image is read before the model loads: a bad file fails fast, and nothing is printed for the others.
  const { method, mean, std } = metrics.dataset.normalization;
  const lut = pixelLut(method, mean, std);
  const inputs: Input[] = images.map((file) => {
    const png = readPng(file);
    const prep = toFashionMnist(png);
    if (prep.pixels.every((p) => p === prep.pixels[0]))
      out.warn(
        `${file}: one colour all over (nothing to see once made a 28×28 Fashion-MNIST image); its prediction means nothing`,
      );
    return {
      label: file,
      x: Float32Array.from(prep.pixels, (b) => lut[b]!),
      prediction: { image: file, width: png.width, height: png.height, background: prep.background },
    };
  });
  let classNames = loadManifest().classNames;
  if (indexes.length) {
    // The same data path as evaluate (and training), over the whole test set so that any index is there.
    const data = await loadSpecData({ ...spec, data: { ...spec.data, testLimit: null } }, runSeeds(spec.seed), opts);
    classNames = data.classNames;
    for (const [k, i] of indexes.entries()) {
      if (i >= data.test.count)
        throw new InputError(
          `--test-index ${opts.testIndex[k]}: the test set has ${data.test.count} images (0 to ${data.test.count - 1})`,
        );
      const trueClass = classNames[data.test.labels[i]!] ?? String(data.test.labels[i]);
      inputs.push({
        label: `test image ${i}`,
        x: imagesOf(data.test, i, i + 1),
        prediction: { testIndex: i, trueClass },
      });
    }
  }

  const backend = await initBackend(opts.backend ?? spec.backend);
  out.info(`Backend: ${backend.name} — ${backend.reason}`);
  const { model } = await loadModel(best ? path.join(dir, BEST_DIR) : dir, spec);
  try {
    const built = bindRunModel(dir, model, spec);
    if (best) out.info(`Best model: epoch ${best.epoch} (${best.monitor} ${best.value.toFixed(4)})`);
    // One image at a time: a matmul kernel may sum a row in another order at another row of a
    // batch, and an image must get the same probabilities however it is given.
    const predictions = inputs.map((input): Prediction => {
      const probs = tf.tidy(() => forward(built, tf.tensor3d(input.x, [1, IMAGE_ROWS, IMAGE_COLS]), false).probs);
      const row = Array.from(probs.dataSync());
      probs.dispose();
      const top = row
        .map((probability, index) => ({ class: classNames[index] ?? String(index), index, probability }))
        .sort((a, b) => b.probability - a.probability || a.index - b.index)
        .slice(0, TOP_K);
      return { ...input.prediction, top } as Prediction;
    });
    if (opts.json) for (const p of predictions) out.event(p as unknown as Record<string, unknown>);
    else printTable(out, inputs, predictions);
    return predictions;
  } finally {
    model.dispose();
  }
}

function parseTestIndex(text: string): number {
  if (!/^\d+$/.test(text)) throw new InputError(`--test-index ${text}: expected a whole number from 0`);
  return Number(text);
}

/** What the training data went through, byte by byte: the same arithmetic as loadDataset's table (x/255 or x, minus mean, over std). */
function pixelLut(method: Normalization, mean: number, std: number): Float32Array {
  const scale = method === 'none' ? 1 : PIXEL_MAX;
  const lut = new Float32Array(PIXEL_MAX + 1);
  for (let b = 0; b <= PIXEL_MAX; b++) lut[b] = (b / scale - mean) / std;
  return lut;
}

function printTable(out: Console, inputs: Input[], predictions: Prediction[]): void {
  const rows = [['image', ...Array.from({ length: TOP_K }, (_, k) => ['1st', '2nd', '3rd'][k] ?? `${k + 1}th`)]];
  predictions.forEach((p, n) => {
    const label = 'trueClass' in p ? `${inputs[n]!.label} (${p.trueClass})` : inputs[n]!.label;
    rows.push([label, ...p.top.map((c) => `${c.class} ${(100 * c.probability).toFixed(1)}%`)]);
  });
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  for (const r of rows)
    out.result(r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('   '));
}
