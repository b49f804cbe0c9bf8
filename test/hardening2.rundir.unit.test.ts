/**
 * Hardening round 2, run directories, checked through the real program in process (test/helpers/in-process.ts):
 * every damaged metrics.json is refused by evaluate with exit 2 and the field's dotted path, and a hostile
 * model.json is refused against the spec before tfjs allocates. One tiny real run is made once, in process; every
 * case is a copy of it. test/hardening2.rundir.test.ts keeps the real-process cases (a few of these through the
 * real boundary, devices, FIFOs, huge files, a full disk).
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- the tests damage JSON files field by field, any shape */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DAMAGED_METRICS } from './helpers/damaged-metrics';
import { tinyRunDir, type TinyRun } from './helpers/tiny-rundir';
import { scratchDir } from './helpers/scratch';
import { copyOfRun, readJson } from './helpers/run-files';

let TMP = '';
/** `regtrain ...args` in this process, as the run was made (tinyRunDir). */
let regtrain: TinyRun['regtrain'];
let RUN_A = '';

const writeJson = (file: string, v: unknown) => fs.writeFileSync(file, JSON.stringify(v, null, 2));

/** A copy of the run to damage. */
function copyOf(name: string): string {
  return copyOfRun(RUN_A, path.join(TMP, 'cases', name));
}

/** evaluate must refuse `dir` with exit 2, exactly this one line, and nothing on stdout but the backend line. */
async function refusedByEvaluate(dir: string, message: string): Promise<void> {
  const r = await regtrain(['evaluate', dir, '--backend', 'wasm']);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stdout.replace(/^Backend: .*\n/, ''), '');
  assert.equal(r.stderr.replace(/^Backend: .*\n/m, ''), `error: ${message}\n`);
}

before(async () => {
  TMP = scratchDir('regtrain-h2-rundir-unit-');
  ({ run: RUN_A, regtrain } = await tinyRunDir(TMP));
});

describe('run-dir files: one schema and one reader each; damage is one line, never a crash', () => {
  for (const [name, edit, message] of DAMAGED_METRICS)
    test(`evaluate refuses a damaged metrics.json (${name}) with exit 2 and the field's dotted path`, async () => {
      const dir = copyOf(`metrics-${name}`);
      const m = readJson<Record<string, any>>(path.join(dir, 'metrics.json'));
      edit(m);
      writeJson(path.join(dir, 'metrics.json'), m);
      await refusedByEvaluate(dir, `${dir}/metrics.json: ${message}`);
    });
});

describe('a hostile model.json is refused before allocating', () => {
  test('a Dense layer of 1e9 units in model.json (and its manifest) is refused against the spec before tfjs builds it', async () => {
    const dir = copyOf('topology-1e9');
    const model = readJson<any>(path.join(dir, 'model.json'));
    model.modelTopology.config.layers[1].config.units = 1e9;
    model.weightsManifest[0].weights[0].shape = [784, 1e9];
    model.weightsManifest[0].weights[1].shape = [1e9];
    writeJson(path.join(dir, 'model.json'), model);
    await refusedByEvaluate(dir, `${dir}/model.json: layer 1 has 1000000000 units, but spec.yaml says 200`);
    // Same topology as the spec, but a manifest asking for a huge kernel.
    const manifest = copyOf('manifest-huge');
    const m2 = readJson<any>(path.join(manifest, 'model.json'));
    m2.weightsManifest[0].weights[2].shape = [200, 1e8];
    writeJson(path.join(manifest, 'model.json'), m2);
    await refusedByEvaluate(
      manifest,
      `${manifest}/model.json: weight "dense_1/kernel" has shape [200, 100000000], but spec.yaml's model needs [200, 100]`,
    );
    const classes = copyOf('topology-class');
    const m3 = readJson<any>(path.join(classes, 'model.json'));
    m3.modelTopology.config.layers[2].class_name = 'Conv2D';
    writeJson(path.join(classes, 'model.json'), m3);
    await refusedByEvaluate(classes, `${classes}/model.json: layer 2 is "Conv2D", but spec.yaml has dense there`);
  });
});
