import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, ROOT, clusterEnv } from './helpers/cluster-env';
import { spawnSync } from 'node:child_process';

const { tmp, env: env } = clusterEnv('regtrain-slurm-');
env.REGTRAIN_DATA_DIR = path.join(tmp, 'cache');

// Four members (2 variants × 2 seeds) of a few seconds each; 5 epochs, so a task has a checkpoint well before it ends.
const SPEC = `
name: slurmtiny
seed: 11
data: { trainLimit: 2700, testLimit: 1000, validation: { size: 300 } }
model:
  layers:
    - flatten: { inputShape: [28, 28] }
    - dense: { units: 32, activation: relu }
    - dense: { units: 10, activation: softmax }
training: { epochs: 5, batchSize: 32 }
variants:
  baseline: {}
  l2: { model.layers.1.dense.kernelRegularizer: { l2: 0.001 } }
repeats: 2
`;

function sh(cmd: string, args: string[], cwd = tmp) {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8' });
}
function regtrain(args: string[], cwd = tmp) {
  return spawnSync(process.execPath, [BIN, ...args], { cwd, env, encoding: 'utf8' });
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Null when a Slurm cluster answers here (starting it with .ci/slurm-up if need be), else why not. */
function slurmUnavailable(): string | null {
  if (sh('sinfo', ['-h']).status === 0) return null;
  if (sh('which', ['sbatch']).status !== 0) return 'Slurm is not installed (apt-get install slurm-wlm munge)';
  if (process.getuid?.() !== 0) return 'Slurm is not running and starting it needs root';
  const up = sh('bash', [path.join(ROOT, '.ci', 'slurm-up')]);
  return up.status === 0 && sh('sinfo', ['-h']).status === 0 ? null : `Slurm cannot start here: ${(up.stderr || up.stdout).trim().split('\n').pop()}`;
}

/** Comparison rows without the wall-clock column, which differs between any two runs. */
function compareRows(dir: string): string[] {
  const r = regtrain(['compare', dir, '--csv']);
  assert.equal(r.status, 0, r.stderr);
  // CSV cells, some quoted with commas inside.
  const rows = r.stdout
    .trim()
    .split('\n')
    .map((l) => [...l.matchAll(/("(?:[^"]|"")*"|[^,]*)(?:,|$)/g)].map((m) => m[1]!).slice(0, -1));
  const seconds = rows[0]!.indexOf('seconds');
  assert.ok(seconds > 0, 'compare --csv has a seconds column');
  return rows.map((cells) => cells.filter((_, i) => i !== seconds).join(','));
}

const history = (runDir: string) =>
  (JSON.parse(fs.readFileSync(path.join(runDir, 'history.json'), 'utf8')) as { epochs: Record<string, unknown>[] }).epochs.map(({ seconds: _s, ...rest }) => rest);

test(
  'a study submitted with its sbatch script runs as a Slurm array; a task requeued mid-run resumes from its checkpoint; compare equals the local --jobs 1 run number for number',
  { timeout: 20 * 60_000 },
  async (t) => {
    const why = slurmUnavailable();
    if (why) {
      console.log(`# skipped: ${why}`);
      t.skip(why);
      return;
    }
    const specFile = path.join(tmp, 'study.yaml');
    fs.writeFileSync(specFile, SPEC);

    // The same study locally, one member at a time (this also fills the dataset cache the tasks share).
    const localStart = Date.now();
    const local = regtrain(['run', specFile, '--out', 'local', '--jobs', '1', '-q']);
    assert.equal(local.status, 0, local.stderr);
    const localSeconds = (Date.now() - localStart) / 1000;

    const planned = regtrain(['plan', specFile, '--format', 'slurm', '--jobs', '2', '--cpus', '1', '--mem', '1G', '--time', '20:00']);
    assert.equal(planned.status, 0, planned.stderr);
    const script = planned.stdout.trim();
    const studyDir = path.join(tmp, path.dirname(script));
    assert.match(fs.readFileSync(path.join(tmp, script), 'utf8'), /^#SBATCH --array=0-3%2$/m);

    // Submitted the way the README says, from outside the study directory.
    const submitStart = Date.now();
    const submitted = sh('bash', [script]);
    assert.equal(submitted.status, 0, submitted.stderr);
    const ids = /^submitted array job (\d+) \(4 members\) and compare job (\d+) \(writes compare\.txt\)$/m.exec(submitted.stdout);
    assert.ok(ids, submitted.stdout);
    const [, arrayJob, compareJob] = ids;
    try {
      const members = (JSON.parse(fs.readFileSync(path.join(studyDir, 'study.json'), 'utf8')) as { members: { name: string }[] }).members.map((m) => m.name);

      // Requeue the first task seen running with a checkpoint, as a preemption or node failure would.
      let requeued: { index: number; afterEpoch: number } | null = null;
      for (let waited = 0; !requeued && waited < 600_000; waited += 100) {
        const running = sh('squeue', ['-h', '-j', arrayJob!, '-t', 'R', '-o', '%i']).stdout.trim().split('\n').filter(Boolean);
        for (const task of running) {
          const index = Number(task.split('_')[1]);
          const checkpoint = path.join(studyDir, 'runs', members[index]!, 'checkpoint.json');
          if (!fs.existsSync(checkpoint)) continue;
          const r = sh('scontrol', ['requeue', task]);
          assert.equal(r.status, 0, r.stderr);
          requeued = { index, afterEpoch: (JSON.parse(fs.readFileSync(checkpoint, 'utf8')) as { body: { epoch: number } }).body.epoch };
          break;
        }
        await sleep(100);
      }
      assert.ok(requeued, 'a task was seen running with a checkpoint');
      const requeuedAt = (Date.now() - submitStart) / 1000;

      // Slurm holds a requeued batch task for two minutes (BeginTime); an operator may release it at once.
      for (let waited = 0; waited < 60_000; waited += 500) {
        const state = sh('squeue', ['-h', '-j', `${arrayJob}_${requeued.index}`, '-o', '%T %r']).stdout.trim();
        if (state.startsWith('PENDING')) {
          assert.equal(sh('scontrol', ['update', `JobId=${arrayJob}_${requeued.index}`, 'StartTime=now']).status, 0);
          break;
        }
        await sleep(500);
      }

      while (sh('squeue', ['-h', '-j', `${arrayJob},${compareJob}`, '-o', '%i']).stdout.trim() !== '') {
        assert.ok(Date.now() - submitStart < 15 * 60_000, 'the array and the compare job finish within 15 minutes');
        await sleep(1000);
      }
      const slurmSeconds = (Date.now() - submitStart) / 1000;

      // Every member finished.
      const status = regtrain(['status', studyDir, '--json']);
      assert.deepEqual(
        status.stdout
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { state: string }).state),
        ['done', 'done', 'done', 'done'],
      );

      // The requeued task ran twice into one log: stopped by SIGTERM after saving, then resumed from its checkpoint.
      const name = members[requeued.index]!;
      const log = fs.readFileSync(path.join(studyDir, 'logs', `${arrayJob}_${requeued.index}.out`), 'utf8');
      assert.match(log, new RegExp(`^task ${requeued.index} on \\S+ \\(restart 0\\)`, 'm'));
      assert.match(log, /DUE TO JOB REQUEUE/);
      assert.match(log, /SIGTERM: finishing the current batch, then saving/);
      assert.match(log, new RegExp(`^task ${requeued.index} on \\S+ \\(restart 1\\)`, 'm'));
      const resumed = /^Resuming after epoch (\d+) of 5$/m.exec(log.slice(log.search(/\(restart 1\)/)));
      assert.ok(resumed, `the second attempt resumed from a checkpoint:\n${log}`);
      const resumedAfter = Number(resumed[1]);
      assert.ok(resumedAfter >= requeued.afterEpoch, `resumed after epoch ${resumedAfter}, at least the epoch ${requeued.afterEpoch} checkpointed before the requeue`);
      assert.deepEqual(history(path.join(studyDir, 'runs', name)), history(path.join(tmp, 'local', 'runs', name)));
      assert.ok(
        fs.readFileSync(path.join(studyDir, 'runs', name, 'weights.bin')).equals(fs.readFileSync(path.join(tmp, 'local', 'runs', name, 'weights.bin'))),
        "the requeued member's weights are byte-identical to the local run's",
      );

      // The dependent compare job ran after the array and wrote compare.txt; the comparison equals the local one.
      const compareTxt = fs.readFileSync(path.join(studyDir, 'compare.txt'), 'utf8');
      assert.match(compareTxt, /^ variant +test acc ± std \(n\) +Δ vs baseline/);
      const localRows = compareRows(path.join(tmp, 'local'));
      assert.equal(localRows.length, 3, 'a header and one row per variant');
      assert.deepEqual(compareRows(studyDir), localRows);

      console.log(
        `# slurm: 4 members (5 epochs, 3000 images) as an array of 2 at a time: ${slurmSeconds.toFixed(0)} s from submit to compare done (includes releasing the requeued task at once); local --jobs 1: ${localSeconds.toFixed(0)} s`,
      );
      console.log(
        `# slurm: requeued task ${requeued.index} (${name}) ${requeuedAt.toFixed(1)} s after submit with a checkpoint of epoch ${requeued.afterEpoch}; its second attempt resumed after epoch ${resumedAfter} and finished identical to the local run`,
      );
    } finally {
      sh('scancel', [arrayJob!, compareJob!]);
    }
  },
);
