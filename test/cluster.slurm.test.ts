import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, ROOT, clusterEnv } from './helpers/cluster-env';
import { regtrainHere, studyInProcess } from './helpers/cluster-study';
import { sharedDataDir } from './helpers/data';
import { spawnSync } from 'node:child_process';

const { tmp, env: env } = clusterEnv('regtrain-slurm-');
// A verified, stamped cache the members share: none fetches the dataset or hashes a just-written copy again.
env.REGTRAIN_DATA_DIR = sharedDataDir();

// Two members (2 variants, one seed: how many does not change what Slurm does with each; four cost ~12 CPU-s more)
// of 10 epochs of ~0.05–0.1 s. The task a test requeues or cancels is frozen (SIGSTOP) the moment it is seen with a
// checkpoint of an epoch before its last, so Slurm's SIGTERM reaches it mid-training however long Slurm takes to
// deliver it on a loaded machine (Slurm sends SIGCONT with its SIGTERM).
// Members that trained long enough to outlast the signal's delivery (30 and 200 epochs) made these two tests cost
// ~25 CPU-s more on every CI lane.
const EPOCHS = 10;
const SPEC = `
name: slurmtiny
seed: 11
data: { trainLimit: 2700, testLimit: 1000, validation: { size: 300 } }
model:
  layers:
    - flatten: { inputShape: [28, 28] }
    - dense: { units: 32, activation: relu }
    - dense: { units: 10, activation: softmax }
training: { epochs: ${EPOCHS}, batchSize: 32 }
variants:
  baseline: {}
  l2: { model.layers.1.dense.kernelRegularizer: { l2: 0.001 } }
`;

function sh(cmd: string, args: string[], cwd = tmp) {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8' });
}
/** The same command in this process, for what reads the files Slurm's tasks wrote (status, compare) or plans. */
function here(args: string[], cwd = tmp) {
  return regtrainHere(args, cwd, { PATH: env.PATH, REGTRAIN_DATA_DIR: env.REGTRAIN_DATA_DIR });
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Freezes (SIGSTOP) the member training in `runDir` if it is mid-run: alive, holding its lock (its pid is in it),
 * with a checkpoint of an epoch before its last. Returns its pid and that epoch, or null (the member let go on)
 * when it is not mid-run.
 */
function freezeMidRun(runDir: string): { pid: number; epoch: number } | null {
  let pid: number;
  try {
    pid = (JSON.parse(fs.readFileSync(path.join(runDir, '.regtrain.lock'), 'utf8')) as { pid: number }).pid;
    process.kill(pid, 'SIGSTOP');
  } catch {
    return null; // no lock (not started, or finished) or the process is gone
  }
  try {
    const { body } = JSON.parse(fs.readFileSync(path.join(runDir, 'checkpoint.json'), 'utf8')) as {
      body: { epoch: number };
    };
    if (body.epoch < EPOCHS) return { pid, epoch: body.epoch };
  } catch {
    // no checkpoint yet, or the member finished and removed it
  }
  continueProcess(pid);
  return null;
}

function continueProcess(pid: number): void {
  try {
    process.kill(pid, 'SIGCONT');
  } catch {
    // gone already
  }
}

/**
 * Once Slurm has signalled the frozen member `pid` (scancel, requeue), makes sure it runs to handle the signal:
 * Slurm sends SIGCONT before SIGTERM; should it not, the member is continued here once a SIGTERM is pending.
 */
async function letSignalledRun(pid: number): Promise<void> {
  for (let waited = 0; waited < 60_000; waited += 50) {
    let status: string;
    try {
      status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    } catch {
      return; // gone
    }
    if (!/^State:\s+T/m.test(status)) return; // running again
    const pending = /^(?:SigPnd|ShdPnd):\s+([0-9a-f]+)$/gm;
    for (let m; (m = pending.exec(status));) if ((BigInt(`0x${m[1]}`) >> 14n) & 1n) return continueProcess(pid); // SIGTERM (15)
    await sleep(50);
  }
  continueProcess(pid);
}

/** Null when a Slurm cluster answers here (starting it with .ci/slurm-up if need be), else why not. */
function slurmUnavailable(): string | null {
  if (sh('sinfo', ['-h']).status === 0) return null;
  if (sh('which', ['sbatch']).status !== 0) return 'Slurm is not installed (apt-get install slurm-wlm munge)';
  if (process.getuid?.() !== 0) return 'Slurm is not running and starting it needs root';
  const up = sh('bash', [path.join(ROOT, '.ci', 'slurm-up')]);
  return up.status === 0 && sh('sinfo', ['-h']).status === 0
    ? null
    : `Slurm cannot start here: ${(up.stderr || up.stdout).trim().split('\n').pop()}`;
}

/** Why both Slurm tests skip, decided once (null: a cluster answers, started here if need be). */
const SLURM_SKIP = slurmUnavailable();

/** Comparison rows without the wall-clock column, which differs between any two runs. */
async function compareRows(dir: string): Promise<string[]> {
  const r = await here(['compare', dir, '--csv']);
  assert.equal(r.code, 0, r.stderr);
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
  (
    JSON.parse(fs.readFileSync(path.join(runDir, 'history.json'), 'utf8')) as { epochs: Record<string, unknown>[] }
  ).epochs.map(({ seconds: _s, ...rest }) => rest);

test(
  'a study submitted with its sbatch script runs as a Slurm array; a task requeued mid-run resumes from its checkpoint; compare equals the same study run locally one member at a time, number for number',
  { timeout: 20 * 60_000, skip: SLURM_SKIP ?? false },
  async () => {
    const specFile = path.join(tmp, 'study.yaml');
    fs.writeFileSync(specFile, SPEC);

    // The same study locally, one member at a time (in this process): the reference the Slurm run must equal.
    const localStart = Date.now();
    await studyInProcess(specFile, 'local', { cwd: tmp, env: { REGTRAIN_DATA_DIR: env.REGTRAIN_DATA_DIR } });
    const localSeconds = (Date.now() - localStart) / 1000;

    const planned = await here([
      'plan',
      specFile,
      '--format',
      'slurm',
      '--jobs',
      '2',
      '--cpus',
      '1',
      '--mem',
      '1G',
      '--time',
      '20:00',
    ]);
    assert.equal(planned.code, 0, planned.stderr);
    const script = planned.stdout.trim();
    const studyDir = path.join(tmp, path.dirname(script));
    assert.match(fs.readFileSync(path.join(tmp, script), 'utf8'), /^#SBATCH --array=0-1%2$/m);

    // Submitted the way the README says, from outside the study directory.
    const submitStart = Date.now();
    const submitted = sh('bash', [script]);
    assert.equal(submitted.status, 0, submitted.stderr);
    const ids = /^submitted array job (\d+) \(2 members\) and compare job (\d+) \(writes compare\.txt\)$/m.exec(
      submitted.stdout,
    );
    assert.ok(ids, submitted.stdout);
    const [, arrayJob, compareJob] = ids;
    try {
      const members = (
        JSON.parse(fs.readFileSync(path.join(studyDir, 'study.json'), 'utf8')) as { members: { name: string }[] }
      ).members.map((m) => m.name);

      // Requeue the first task seen mid-run (frozen there), as a preemption or node failure would.
      let requeued: { index: number; afterEpoch: number } | null = null;
      for (let waited = 0; !requeued && waited < 600_000; waited += 100) {
        const running = sh('squeue', ['-h', '-j', arrayJob!, '-t', 'R', '-o', '%i'])
          .stdout.trim()
          .split('\n')
          .filter(Boolean);
        for (const task of running) {
          const index = Number(task.split('_')[1]);
          const frozen = freezeMidRun(path.join(studyDir, 'runs', members[index]!));
          if (!frozen) continue;
          const r = sh('scontrol', ['requeue', task]);
          assert.equal(r.status, 0, r.stderr);
          await letSignalledRun(frozen.pid);
          requeued = { index, afterEpoch: frozen.epoch };
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
      const status = await here(['status', studyDir, '--json']);
      assert.deepEqual(
        status.stdout
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { state: string }).state),
        ['done', 'done'],
      );

      // The requeued task ran twice into one log: stopped by SIGTERM after saving, then resumed from its checkpoint.
      const name = members[requeued.index]!;
      const log = fs.readFileSync(path.join(studyDir, 'logs', `${arrayJob}_${requeued.index}.out`), 'utf8');
      assert.match(log, new RegExp(`^task ${requeued.index} on \\S+ \\(restart 0\\)`, 'm'));
      assert.match(log, /DUE TO JOB REQUEUE/);
      assert.match(log, /SIGTERM: finishing the current batch, then saving/);
      assert.match(log, new RegExp(`^task ${requeued.index} on \\S+ \\(restart 1\\)`, 'm'));
      const resumed = new RegExp(`^Resuming after epoch (\\d+) of ${EPOCHS}$`, 'm').exec(
        log.slice(log.search(/\(restart 1\)/)),
      );
      assert.ok(resumed, `the second attempt resumed from a checkpoint:\n${log}`);
      const resumedAfter = Number(resumed[1]);
      assert.ok(
        resumedAfter >= requeued.afterEpoch,
        `resumed after epoch ${resumedAfter}, at least the epoch ${requeued.afterEpoch} checkpointed before the requeue`,
      );
      assert.deepEqual(history(path.join(studyDir, 'runs', name)), history(path.join(tmp, 'local', 'runs', name)));
      assert.ok(
        fs
          .readFileSync(path.join(studyDir, 'runs', name, 'weights.bin'))
          .equals(fs.readFileSync(path.join(tmp, 'local', 'runs', name, 'weights.bin'))),
        "the requeued member's weights are byte-identical to the local run's",
      );

      // The dependent compare job ran after the array and wrote compare.txt; the comparison equals the local one.
      const compareTxt = fs.readFileSync(path.join(studyDir, 'compare.txt'), 'utf8');
      assert.match(compareTxt, /^ variant +test acc ± std \(n\) +Δ vs baseline/);
      const localRows = await compareRows(path.join(tmp, 'local'));
      assert.equal(localRows.length, 3, 'a header and one row per variant');
      assert.deepEqual(await compareRows(studyDir), localRows);

      console.log(
        `# slurm: 2 members (${EPOCHS} epochs, 3000 images) as an array of 2 at a time: ${slurmSeconds.toFixed(0)} s from submit to compare done (includes releasing the requeued task at once); locally, in this process: ${localSeconds.toFixed(0)} s`,
      );
      console.log(
        `# slurm: requeued task ${requeued.index} (${name}) ${requeuedAt.toFixed(1)} s after submit with a checkpoint of epoch ${requeued.afterEpoch}; its second attempt resumed after epoch ${resumedAfter} and finished identical to the local run`,
      );
    } finally {
      sh('scancel', [arrayJob!, compareJob!]);
    }
  },
);

/** The README's Slurm recipe: its shell block's commands, comments dropped. */
function readmeSlurmRecipe(): string[] {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const block = /\n```sh\n(regtrain plan configs\/study\.yaml --format slurm[^]*?)```\n/.exec(readme);
  assert.ok(block, 'the README has a Slurm recipe');
  return block[1]!
    .trim()
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, ''));
}

async function queueEmpty(jobs: string[], limitMs: number): Promise<void> {
  const start = Date.now();
  while (sh('squeue', ['-h', '-j', jobs.join(','), '-o', '%i']).stdout.trim() !== '') {
    assert.ok(Date.now() - start < limitMs, `jobs ${jobs.join(',')} finish within ${limitMs / 60_000} minutes`);
    await sleep(1000);
  }
}

test(
  "the README's Slurm recipe runs as printed: a scancel'd member leaves compare.txt marked INCOMPLETE, status prints the resubmission, which finishes the study and rewrites compare.txt; a task whose launcher vanished is reported failed with its log",
  { timeout: 20 * 60_000, skip: SLURM_SKIP ?? false },
  async () => {
    const cwd = fs.mkdtempSync(path.join(tmp, 'recipe-'));
    // The README's own file name, holding the small study (the real one trains for 20 minutes).
    fs.mkdirSync(path.join(cwd, 'configs'));
    fs.writeFileSync(path.join(cwd, 'configs', 'study.yaml'), SPEC.replace('name: slurmtiny', 'name: study'));
    const [planLine, submitLine, scancelLine, statusLine, resubmitLine, catLine, ...rest] = readmeSlurmRecipe();
    assert.deepEqual(rest, []);
    assert.match(scancelLine!, /^scancel 6_3$/);
    const bash = (line: string) => spawnSync('bash', ['-c', line], { cwd, env, encoding: 'utf8' });

    const planned = bash(planLine!);
    assert.equal(planned.status, 0, planned.stderr);
    const hash = /^studies\/study-([0-9a-f]{10})\/slurm\.sbatch$/.exec(planned.stdout.trim())![1]!;
    const withHash = (line: string) => line.replaceAll('<hash>', hash);
    const studyDir = path.join(cwd, 'studies', `study-${hash}`);
    const members = (
      JSON.parse(fs.readFileSync(path.join(studyDir, 'study.json'), 'utf8')) as { members: { name: string }[] }
    ).members.map((m) => m.name);

    const submitted = bash(withHash(submitLine!));
    assert.equal(submitted.status, 0, submitted.stderr);
    const [, arrayJob, compareJob] =
      /^submitted array job (\d+) \(2 members\) and compare job (\d+) \(writes compare\.txt\)$/m.exec(
        submitted.stdout,
      )!;
    const jobs = [arrayJob!, compareJob!];
    try {
      // scancel the first l2 task seen mid-run (frozen there): SIGTERM reaches regtrain, which saves.
      let cancelled: number | null = null;
      for (let waited = 0; cancelled === null && waited < 600_000; waited += 100) {
        for (const task of sh('squeue', ['-h', '-j', arrayJob!, '-t', 'R', '-o', '%i'])
          .stdout.trim()
          .split('\n')
          .filter(Boolean)) {
          const index = Number(task.split('_')[1]);
          if (!members[index]!.startsWith('l2')) continue;
          const frozen = freezeMidRun(path.join(studyDir, 'runs', members[index]!));
          if (!frozen) continue;
          const r = bash(scancelLine!.replace('6_3', task));
          assert.equal(r.status, 0, r.stderr);
          await letSignalledRun(frozen.pid);
          cancelled = index;
          break;
        }
        await sleep(100);
      }
      assert.ok(cancelled !== null, 'a task was seen running with a checkpoint');
      await queueEmpty(jobs, 15 * 60_000);
      const log = fs.readFileSync(path.join(studyDir, 'logs', `${arrayJob}_${cancelled}.out`), 'utf8');
      assert.match(log, /SIGTERM: finishing the current batch, then saving/);

      const status = bash(withHash(statusLine!));
      assert.equal(status.status, 0, status.stderr);
      const resubmit = withHash(resubmitLine!).replace('--array=3', `--array=${cancelled}`);
      assert.equal(
        status.stdout,
        [
          `study study in studies/study-${hash}: 1 of 2 members done`,
          `  done            1  ${members.findIndex((m) => !m.startsWith('l2'))}`,
          '  running         0',
          `  interrupted     1  ${cancelled}`,
          '  failed          0',
          '  not started     0',
          `resubmit the unfinished ones, with a new compare after them: ${resubmit}`,
          '',
        ].join('\n'),
      );
      const incomplete = fs.readFileSync(path.join(studyDir, 'compare.txt'), 'utf8');
      assert.match(
        incomplete,
        /^INCOMPLETE: 1 of 2 members not done when this was written \(\S+\); see: regtrain status \.\n/,
      );
      assert.match(incomplete, /^ variant +test acc ± std \(n\) +Δ vs baseline/m);

      const again = bash(resubmit);
      assert.equal(again.status, 0, again.stderr);
      const [, array2, compare2] = /^submitted array job (\d+) \(2 members\) and compare job (\d+)/m.exec(
        again.stdout,
      )!;
      jobs.push(array2!, compare2!);
      await queueEmpty(jobs, 10 * 60_000);
      assert.match(
        fs.readFileSync(path.join(studyDir, 'logs', `${array2}_${cancelled}.out`), 'utf8'),
        new RegExp(`^Resuming after epoch \\d+ of ${EPOCHS}$`, 'm'),
      );
      const cat = bash(withHash(catLine!));
      assert.equal(cat.status, 0);
      assert.match(
        cat.stdout,
        /^ variant +test acc ± std \(n\) +Δ vs baseline/,
        'compare.txt now describes the finished study, with no INCOMPLETE line',
      );
      assert.match(cat.stdout, /^[ *]l2 +0\.\d{4} \(1\)/m, 'the l2 member, the resubmitted one, included');

      // A launcher that resolved when planning and is gone on the node: the task dies at once, and status says so.
      const vanishing = path.join(cwd, 'vanishing', 'regtrain');
      fs.mkdirSync(path.dirname(vanishing));
      fs.symlinkSync(BIN, vanishing);
      const other = await here(
        ['plan', 'configs/study.yaml', '--format', 'slurm', '--set', 'training.epochs=2', '--regtrain', vanishing],
        cwd,
      );
      assert.equal(other.code, 0, other.stderr);
      const otherDir = path.join(cwd, path.dirname(other.stdout.trim()));
      fs.rmSync(vanishing);
      const dead = bash(`bash ${path.relative(cwd, otherDir)}/slurm.sbatch --array=1`);
      assert.equal(dead.status, 0, dead.stderr);
      const [, deadArray, deadCompare] = /^submitted array job (\d+) \(2 members\) and compare job (\d+)/m.exec(
        dead.stdout,
      )!;
      jobs.push(deadArray!, deadCompare!);
      await queueEmpty(jobs, 5 * 60_000);
      const logName = `logs/${deadArray}_1.out`;
      assert.match(
        fs.readFileSync(path.join(otherDir, logName), 'utf8'),
        /regtrain: No such file or directory|not found/,
      );
      const rel = path.relative(cwd, otherDir);
      const deadStatus = await here(['status', rel], cwd);
      assert.match(deadStatus.stdout, /^ {2}failed {10}1 {2}1$/m);
      assert.match(
        deadStatus.stdout,
        new RegExp(`^member 1 \\(\\S+\\) died before its run began: read ${rel}/${logName}$`, 'm'),
      );
      assert.deepEqual(
        (JSON.parse((await here(['status', rel, '--json'], cwd)).stdout.split('\n')[1]!) as { log: string }).log,
        logName,
      );
      assert.match(
        fs.readFileSync(path.join(otherDir, 'compare.txt'), 'utf8'),
        /^INCOMPLETE: \? of 2 members not done/,
      );
    } finally {
      sh('scancel', jobs);
    }
  },
);
