/**
 * `regtrain evaluate`'s refusals of tampered run directories, checked through the real program in process
 * (test/helpers/in-process.ts): each exits 2 with exactly its one-line message and nothing on stdout. One tiny
 * real run is made once, in process, for this file; every scenario is a copy of it under <tmp>/rundirs/<scenario>.
 * test/evaluate.test.ts keeps a refusal through a real process (the boundary prints the same line).
 */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as YAML from 'yaml';
import { HINT } from './helpers/cli';
import { tinyRunDir, type TinyRun } from './helpers/tiny-rundir';
import { scratchDir } from './helpers/scratch';
import { assertEvaluateRefused, copyOfRun, readJson, metricsOf, type ModelJson } from './helpers/run-files';

let TMP = '';
/** The one real run this file copies. */
let RUN = '';

/** `regtrain ...args` in this process, as the run was made (tinyRunDir). */
let regtrain: TinyRun['regtrain'];

/** A fresh copy of the real run, to tamper with. */
function scenario(name: string): string {
  return copyOfRun(RUN, path.join(TMP, 'rundirs', name));
}

/** Byte offset of a weight in weights.bin (all float32, in manifest order). */
function offsetOf(dir: string, weight: string): number {
  let offset = 0;
  for (const w of readJson<ModelJson>(path.join(dir, 'model.json')).weightsManifest[0]!.weights) {
    if (w.name === weight) return offset;
    offset += 4 * w.shape.reduce((a, b) => a * b, 1);
  }
  throw new Error(`no weight ${weight}`);
}

function writeFloatAt(file: string, offset: number, value: number): void {
  const buf = fs.readFileSync(file);
  buf.writeFloatLE(value, offset);
  fs.writeFileSync(file, buf);
}

/** evaluate must refuse `dir` with exit 2, exactly this one-line message, and nothing on stdout. */
async function assertRefused(dir: string, message: string): Promise<void> {
  assertEvaluateRefused(await regtrain(['evaluate', dir, '--json', '--backend', 'wasm']), message);
}

before(async () => {
  TMP = scratchDir('regtrain-evaluate-unit-');
  ({ run: RUN, regtrain } = await tinyRunDir(TMP));
});

describe('evaluate refuses tampered run directories with exit 2 and one clear line', () => {
  test('a weights path with ../ (path traversal)', async () => {
    const dir = scenario('traversal');
    const file = path.join(dir, 'model.json');
    const json = readJson<ModelJson>(file);
    json.weightsManifest[0]!.paths = ['../../etc/passwd'];
    fs.writeFileSync(file, JSON.stringify(json));
    await assertRefused(dir, `${file}: weights path "../../etc/passwd" points outside the run directory`);
  });

  test('an absolute weights path', async () => {
    const dir = scenario('absolute-path');
    const file = path.join(dir, 'model.json');
    const json = readJson<ModelJson>(file);
    json.weightsManifest[0]!.paths = [path.join(RUN, 'weights.bin')];
    fs.writeFileSync(file, JSON.stringify(json));
    await assertRefused(
      dir,
      `${file}: weights path ${JSON.stringify(path.join(RUN, 'weights.bin'))} points outside the run directory`,
    );
  });

  test('a NaN written into weights.bin (named by the weight it is in)', async () => {
    const dir = scenario('nan');
    const file = path.join(dir, 'weights.bin');
    // The very last float: the output layer's last bias.
    writeFloatAt(file, 4 * 182660 - 4, NaN);
    await assertRefused(dir, `${file}: weight dense_3/bias contains NaN or infinite values`);
  });

  test('an infinity written into a middle kernel', async () => {
    const dir = scenario('infinity');
    const file = path.join(dir, 'weights.bin');
    writeFloatAt(file, offsetOf(dir, 'dense_1/kernel') + 4 * 123, Infinity);
    await assertRefused(dir, `${file}: weight dense_1/kernel contains NaN or infinite values`);
  });

  test('weights.bin as a symlink to a file outside the run directory (even one with the right size)', async () => {
    const dir = scenario('symlink');
    const file = path.join(dir, 'weights.bin');
    const outside = path.join(TMP, 'outside-weights.bin');
    fs.copyFileSync(file, outside);
    fs.rmSync(file);
    fs.symlinkSync(outside, file);
    await assertRefused(dir, `${file}: is a link that leads outside the run directory`);
  });

  test('a missing weights.bin', async () => {
    const dir = scenario('no-weights');
    fs.rmSync(path.join(dir, 'weights.bin'));
    await assertRefused(dir, `${path.join(dir, 'weights.bin')}: missing (named by model.json)`);
  });

  test('a model.json that is not JSON', async () => {
    const dir = scenario('bad-model-json');
    fs.writeFileSync(path.join(dir, 'model.json'), '{"modelTopology": ');
    const r = await regtrain(['evaluate', dir, '--json', '--backend', 'wasm']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(
        `^error: ${path.join(dir, 'model.json').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not valid JSON \\(.+\\)$`,
        'm',
      ),
    );
  });

  test('a missing metrics.json', async () => {
    const dir = scenario('no-metrics');
    fs.rmSync(path.join(dir, 'metrics.json'));
    await assertRefused(dir, `${path.join(dir, 'metrics.json')}: missing (not a complete run directory)`);
  });

  test('an incomplete (interrupted) run', async () => {
    const dir = scenario('incomplete');
    const m = metricsOf(dir);
    fs.writeFileSync(
      path.join(dir, 'metrics.json'),
      JSON.stringify({ ...m, status: 'incomplete', stopReason: 'interrupted', test: null }),
    );
    await assertRefused(
      dir,
      `${dir}: the run is incomplete (interrupted); evaluate needs a finished run; finish it first: ${HINT} run --resume ${path.resolve(dir)} --backend wasm`,
    );
  });

  test('a failed (non-finite loss) run', async () => {
    const dir = scenario('failed');
    const m = metricsOf(dir);
    fs.writeFileSync(
      path.join(dir, 'metrics.json'),
      JSON.stringify({ ...m, status: 'failed', stopReason: 'non-finite-loss', test: null }),
    );
    await assertRefused(dir, `${dir}: the run is failed (non-finite-loss); evaluate needs a finished run`);
  });

  test('a spec.yaml whose layers do not match model.json', async () => {
    const dir = scenario('spec-mismatch');
    const specFile = path.join(dir, 'spec.yaml');
    const spec = YAML.parse(fs.readFileSync(specFile, 'utf8')) as { model: { layers: unknown[] } };
    spec.model.layers.splice(3, 1); // drop the 50-unit layer: still a valid spec, but 4 layers
    fs.writeFileSync(specFile, YAML.stringify(spec));
    // Checked against the spec before tfjs builds the model.
    await assertRefused(dir, `${dir}/model.json: 5 layers, but spec.yaml describes 4`);
  });

  test('a path that is not a directory', async () => {
    const missing = path.join(TMP, 'rundirs', 'does-not-exist');
    await assertRefused(missing, `${missing}: not a run directory (no such directory)`);
  });
});

test('evaluate --best on a run without a best model says how to keep one', async () => {
  const r = await regtrain(['evaluate', RUN, '--best']);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr.trim(),
    `error: ${RUN}: has no best model (train with training.checkpoint.saveBest, e.g. --set 'training.checkpoint.saveBest={monitor: val_loss}')`,
  );
});
