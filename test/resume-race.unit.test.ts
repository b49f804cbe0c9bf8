/**
 * A resume that another process finishes first: two resumes of one run started at once (two run-member launches of
 * one index) both see it unfinished; the first takes the lock, trains to the end and releases it; the second then
 * takes the lock. It must look at the run again under the lock and refuse, not train a finished run again.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Console } from '../src/console';
import { LOCK_FILE } from '../src/rundir';
import { prepareResume } from '../src/run-directory';
import { scratchDir } from './helpers/scratch';
import { tinyRunDir } from './helpers/tiny-rundir';

/** A console whose first warning is the moment the other process finishes the run: metrics.json appears. */
class FinishedMeanwhile extends Console {
  constructor(private readonly finish: () => void) {
    super(false, true);
  }

  override warn(): void {
    this.finish();
  }
}

test('a resume that finds the run finished once it holds the lock is refused as finished and releases the lock', async () => {
  const tmp = scratchDir('regtrain-resume-race-');
  const { run } = await tinyRunDir(tmp);
  const metrics = path.join(run, 'metrics.json');
  const finishedMetrics = path.join(tmp, 'metrics.json');
  fs.renameSync(metrics, finishedMetrics); // the run as the second resume first sees it: not finished
  // A spec file that no longer loads, with --force: resume warns and goes on with the run's own spec.yaml, between
  // its first look at the run and taking the lock; the warning is where the other process finishes the run.
  const broken = path.join(tmp, 'broken.yaml');
  fs.writeFileSync(broken, 'model: [\n');
  const out = new FinishedMeanwhile(() => fs.renameSync(finishedMetrics, metrics));
  assert.throws(() => prepareResume(run, broken, [], true, out), {
    name: 'InputError',
    message: new RegExp(`^--resume ${run}: the run already finished \\(a finished run keeps no checkpoint`),
  });
  assert.ok(fs.existsSync(metrics), 'the warning ran: the run was finished while the resume was under way');
  assert.ok(!fs.existsSync(path.join(run, LOCK_FILE)), 'the refused resume left no lock behind');
});
