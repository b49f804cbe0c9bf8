/**
 * `regtrain compare`'s refusals, checked through the real program in process (test/helpers/in-process.ts) on the
 * run directories in test/fixtures/runs. test/hardening.faults.test.ts keeps a compare refusal through a real process.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readMetrics } from '../src/rundir';
import { regtrainInProcess } from './helpers/in-process';

const ROOT = path.resolve(__dirname, '..', '..');
const RUNS = path.join(ROOT, 'test', 'fixtures', 'runs');
const STUDY = path.join(RUNS, 'study');
const SINGLE = path.join(RUNS, 'single-run');

test('a run directory written before metrics.json stored the confusion matrix is read as before; one that stores it is checked', async () => {
  assert.equal(readMetrics(path.join(STUDY, 'runs', 'baseline-seed1')).metrics.confusion, undefined);
  assert.equal(readMetrics(SINGLE).metrics.confusion!.matrix[6]![6], 20);
  const bad = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-cmp-'));
  fs.cpSync(SINGLE, bad, { recursive: true });
  const m = JSON.parse(fs.readFileSync(path.join(bad, 'metrics.json'), 'utf8')) as {
    confusion: { matrix: number[][] };
  };
  m.confusion.matrix[3]!.pop();
  fs.writeFileSync(path.join(bad, 'metrics.json'), JSON.stringify(m));
  const r = await regtrainInProcess(['compare', bad]);
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(
    r.stderr,
    new RegExp(
      `^warning: skipped ${bad}: metrics\\.json: confusion\\.matrix\\.3: expected 10 counts \\(one per class\\), got 9\n`,
    ),
  );
});

test('compare with nothing usable exits 2 and says why', async () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-cmp-'));
  const r = await regtrainInProcess(['compare', empty, path.join(STUDY, 'runs', 'broken')], { cwd: RUNS });
  assert.equal(r.code, 2);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /no complete runs to compare/);
  assert.match(r.stderr, /skipped \S*broken: metrics\.json: not valid JSON/);
});
