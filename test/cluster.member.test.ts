import { test, before } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { applyCpuBudget, cgroupCpus, cpuBudget } from '../src/cpus';
import { indexRanges } from '../src/commands/status';
import { launch, regtrainSync } from './helpers/cli';
import { regtrainHere, studyInProcess } from './helpers/cluster-study';
import { sharedDataDir } from './helpers/data';
import { scratchDir } from './helpers/scratch';

const tmp = scratchDir('regtrain-member-');
// A verified, stamped cache: no member fetches the dataset or hashes a just-written copy again.
const env: NodeJS.ProcessEnv = { ...process.env, REGTRAIN_DATA_DIR: sharedDataDir() };
delete env.SLURM_ARRAY_TASK_ID;
delete env.JOB_COMPLETION_INDEX;
delete env.SLURM_CPUS_PER_TASK;

// Three members of a few seconds each, and one whose loss blows up (a member that fails).
const SPEC = `
name: tiny
seed: 7
data: { trainLimit: 1800, testLimit: 500, validation: { size: 200 } }
model:
  layers:
    - flatten: { inputShape: [28, 28] }
    - dense: { units: 32, activation: relu }
    - dense: { units: 10, activation: softmax }
training: { epochs: 3, batchSize: 32 }
variants:
  a: {}
  b: { model.layers.1.dense.units: 16 }
  c: { training.batchSize: 64 }
  diverge: { optimizer.sgd.learningRate: 1.0e+30 }
`;
const specFile = path.join(tmp, 'tiny.yaml');

function regtrain(args: string[], extraEnv: Record<string, string> = {}) {
  return regtrainSync(args, { cwd: tmp, env: { ...env, ...extraEnv } });
}
/** The same command in this process: for what reads or refuses files and needs no process of its own. */
function here(args: string[], extraEnv: Record<string, string> = {}) {
  return regtrainHere(args, tmp, { REGTRAIN_DATA_DIR: env.REGTRAIN_DATA_DIR, ...extraEnv });
}

/** A copy, at `studyDir`, of the study planned once in before() (its study.json names its files by relative paths). */
function plan(studyDir: string): void {
  fs.cpSync(path.join(tmp, 'planned'), path.join(tmp, studyDir), { recursive: true });
}

interface Started {
  code: Promise<number | null>;
  stdout: () => string;
  stderr: () => string;
  kill: (sig: NodeJS.Signals) => void;
}

/** Starts `regtrain run-member`; `onLine` sees each stdout JSON line. */
function startMember(
  args: string[],
  onLine?: (line: string, child: Started) => void,
  extraEnv: Record<string, string> = {},
): Started {
  // Each complete line once, in order: `done` is how far stdout has been split into lines.
  let done = 0;
  const run = launch(['run-member', ...args, '--json'], {
    cwd: tmp,
    env: { ...env, ...extraEnv },
    timeoutMs: 600_000,
    onStdout: (all) => {
      for (let nl; (nl = all.indexOf('\n', done)) >= 0; done = nl + 1) onLine?.(all.slice(done, nl), started);
    },
  });
  const started: Started = {
    code: run.done.then(({ code, signal }) => code ?? (signal === 'SIGKILL' ? -9 : null)),
    stdout: run.stdout,
    stderr: run.stderr,
    kill: (sig) => run.child.kill(sig),
  };
  return started;
}

const file = (dir: string, f: string) => fs.readFileSync(path.join(tmp, dir, f));
const history = (dir: string) =>
  (JSON.parse(file(dir, 'history.json').toString()) as { epochs: Record<string, unknown>[] }).epochs.map(
    ({ seconds: _s, ...rest }) => rest,
  );

before(async () => {
  fs.writeFileSync(specFile, SPEC);
  // The reference: every member run to its end in this process, one at a time (the member processes of the tests
  // below must end with its very weights); `diverge` fails.
  await studyInProcess(specFile, 'whole', {
    cwd: tmp,
    env: { REGTRAIN_DATA_DIR: env.REGTRAIN_DATA_DIR },
    expectFailed: ['diverge'],
  });
  const planned = await here(['plan', specFile, '--study-dir', 'planned']);
  assert.equal(planned.code, 0, planned.stderr);
});

test('run-member starts a member from its frozen spec into its run directory, and a finished member exits 0 saying so and is left untouched', async () => {
  plan('fresh');
  const r = regtrain(['run-member', 'fresh', '--index', '0', '-q']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(file('fresh/runs/a', 'metrics.json').toString()).status, 'complete');
  assert.ok(
    file('fresh/runs/a', 'weights.bin').equals(file('whole/runs/a', 'weights.bin')),
    'the same weights as the member of the reference study',
  );
  const mtime = fs.statSync(path.join(tmp, 'fresh/runs/a/weights.bin')).mtimeMs;
  // Run again (in this process: a pod retried this way is a process in test/cluster.k8s.test.ts).
  const again = await here(['run-member', 'fresh', '--index', '0']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stderr, 'member 0 (a) already finished; nothing to do\n');
  assert.equal(fs.statSync(path.join(tmp, 'fresh/runs/a/weights.bin')).mtimeMs, mtime);
  // The index can come from the scheduler's environment instead of --index.
  for (const variable of ['SLURM_ARRAY_TASK_ID', 'JOB_COMPLETION_INDEX']) {
    const viaEnv = await here(['run-member', 'fresh'], { [variable]: '0' });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.equal(viaEnv.stderr, 'member 0 (a) already finished; nothing to do\n');
  }
});

test('run-member refuses a missing or out-of-range index and a directory that is not a study, with exit 2 and one line', async () => {
  plan('bad');
  for (const [args, extraEnv, message] of [
    [
      ['bad'],
      {},
      'error: run-member: which member? pass --index N, or run it as a Slurm array task (SLURM_ARRAY_TASK_ID) or a Kubernetes Indexed Job pod (JOB_COMPLETION_INDEX)',
    ],
    [['bad', '--index', '4'], {}, 'error: --index 4: expected a member index from 0 to 3 (the study has 4 members)'],
    [['bad', '--index', '-1'], {}, 'error: --index -1: expected a member index from 0 to 3 (the study has 4 members)'],
    [
      ['bad'],
      { SLURM_ARRAY_TASK_ID: 'x' },
      'error: SLURM_ARRAY_TASK_ID x: expected a member index from 0 to 3 (the study has 4 members)',
    ],
    [
      ['whole/runs/a', '--index', '0'],
      {},
      `error: ${path.join(tmp, 'whole/runs/a')}: not a study directory (no study.json; create one with regtrain plan)`,
    ],
  ] as const) {
    const r = await here(['run-member', ...args], extraEnv);
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.stderr, message + '\n');
  }
});

test('a member killed with SIGKILL resumes through run-member and ends bit-identical to an uninterrupted one', async () => {
  plan('killed');
  const first = startMember(['killed', '--index', '1'], (line, c) => {
    if (line.includes('"event":"epoch"')) c.kill('SIGKILL');
  });
  assert.equal(await first.code, -9);
  assert.ok(fs.existsSync(path.join(tmp, 'killed/runs/b/checkpoint.json')));
  const r = regtrain(['run-member', 'killed', '--index', '1', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^member 1 of 4 \(b\): resuming$/m);
  const start = JSON.parse(r.stdout.split('\n').find((l) => l.includes('"event":"start"'))!) as {
    resumedAfterEpoch: number;
  };
  assert.equal(start.resumedAfterEpoch, 1);
  assert.deepEqual(history('killed/runs/b'), history('whole/runs/b'));
  assert.ok(
    file('killed/runs/b', 'weights.bin').equals(file('whole/runs/b', 'weights.bin')),
    'weights.bin is byte-identical',
  );
});

test('two run-member processes for one index at once, new or resumed: one trains, the other is refused with exit 2', async () => {
  plan('twice');
  for (const round of ['new', 'resumed']) {
    if (round === 'resumed') {
      const killed = startMember(['twice', '--index', '2'], (line, c) => {
        if (line.includes('"event":"epoch"')) c.kill('SIGKILL');
      });
      await killed.code;
      fs.rmSync(path.join(tmp, 'twice/runs/c/metrics.json'), { force: true });
    } else fs.rmSync(path.join(tmp, 'twice/runs/c'), { recursive: true, force: true });
    const both = [startMember(['twice', '--index', '2']), startMember(['twice', '--index', '2'])];
    const codes = await Promise.all(both.map((m) => m.code));
    assert.deepEqual([...codes].sort(), [0, 2], `${round}: ${both.map((m) => m.stderr()).join('\n')}`);
    const loser = both[codes.indexOf(2)]!.stderr();
    // Refused for the lock when the two overlap (the usual case); on a quiet machine the winner of this small run
    // can finish before the loser, started a moment later, reaches the directory: then the loser finds a finished
    // run. Either way it trains nothing (the lock's own races: lock.test.ts).
    const dir = path.join(tmp, 'twice/runs/c');
    assert.match(
      loser
        .split('\n')
        .filter((l) => l.startsWith('error:'))
        .join('\n'),
      new RegExp(
        `^error: ((--out )?${dir}: another regtrain run is writing to it|--resume ${dir}: the run already finished)`,
      ),
      round,
    );
    assert.equal(JSON.parse(file('twice/runs/c', 'metrics.json').toString()).status, 'complete');
    assert.ok(
      file('twice/runs/c', 'weights.bin').equals(file('whole/runs/c', 'weights.bin')),
      `${round}: the winner's result is the uninterrupted one`,
    );
  }
});

test('SIGTERM stops a member after the current batch with its checkpoint saved and exit 130; status calls it interrupted and run-member finishes it identically', async () => {
  plan('term');
  const m = startMember(['term', '--index', '0'], (line, c) => {
    if (line.includes('"event":"epoch"')) c.kill('SIGTERM');
  });
  assert.equal(await m.code, 130, m.stderr());
  assert.match(m.stderr(), /SIGTERM: finishing the current batch, then saving/);
  const checkpoint = JSON.parse(file('term/runs/a', 'checkpoint.json').toString()) as { body: { epoch: number } };
  assert.ok(checkpoint.body.epoch >= 1, 'a checkpoint of a finished epoch');
  assert.equal(JSON.parse(file('term/runs/a', 'metrics.json').toString()).status, 'incomplete');
  assert.ok(!fs.existsSync(path.join(tmp, 'term/runs/a/.regtrain.lock')), 'the lock is released');
  const status = await here(['status', 'term', '--json']);
  assert.equal(status.code, 0, status.stderr);
  assert.equal(status.stdout.split('\n')[0], '{"index":0,"name":"a","state":"interrupted"}');
  const r = regtrain(['run-member', 'term', '--index', '0', '-q']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(history('term/runs/a'), history('whole/runs/a'));
  assert.ok(file('term/runs/a', 'weights.bin').equals(file('whole/runs/a', 'weights.bin')));
});

test('status shows each state with its indexes on a partly finished study, and compare compares what finished', async () => {
  plan('partial');
  // 0 done, 1 interrupted (killed), 3 failed (loss blew up), 2 running while we look, then not started.
  // The members that need no process of their own (one that finishes, one that fails) run in this process.
  assert.equal((await here(['run-member', 'partial', '--index', '0', '-q'])).code, 0);
  await startMember(['partial', '--index', '1'], (line, c) => {
    if (line.includes('"event":"epoch"')) c.kill('SIGKILL');
  }).code;
  assert.equal((await here(['run-member', 'partial', '--index', '3', '-q'])).code, 1);
  let stopped = (): void => undefined;
  const training = new Promise<void>((resolve) => (stopped = resolve));
  const running = startMember(['partial', '--index', '2'], (line, c) => {
    if (!line.includes('"event":"training"')) return;
    c.kill('SIGSTOP'); // alive, holding its lock, but not finishing while we look
    stopped();
  });
  await Promise.race([training, running.code]);
  let seen = { json: '', human: '' };
  try {
    seen = {
      json: (await here(['status', 'partial', '--json'])).stdout,
      human: (await here(['status', 'partial'])).stdout,
    };
  } finally {
    running.kill('SIGKILL');
  }
  await running.code;
  assert.deepEqual(
    seen.json
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown),
    [
      { index: 0, name: 'a', state: 'done' },
      { index: 1, name: 'b', state: 'interrupted' },
      { index: 2, name: 'c', state: 'running' },
      { index: 3, name: 'diverge', state: 'failed' },
    ],
  );
  assert.equal(
    seen.human,
    [
      'study tiny in partial: 1 of 4 members done',
      '  done            1  0',
      '  running         1  2',
      '  interrupted     1  1',
      '  failed          1  3',
      '  not started     0',
      '',
    ].join('\n'),
  );
  fs.rmSync(path.join(tmp, 'partial/runs/c'), { recursive: true });
  const after = await here(['status', 'partial']);
  assert.match(after.stdout, /^ {2}not started {5}1 {2}2$/m);

  const compare = await here(['compare', 'partial', '--csv']);
  assert.equal(compare.code, 0, compare.stderr);
  const rows = compare.stdout
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(',')[0]);
  assert.deepEqual(rows, ['a']);
  assert.match(compare.stderr, /partial\/runs\/c: not run yet/);
  const whole = (await here(['compare', 'whole', '--csv'])).stdout.trim().split('\n');
  const aRow = whole.find((l) => l.startsWith('a,'))!.split(',');
  const partialRow = compare.stdout.trim().split('\n')[1]!.split(',');
  assert.deepEqual(
    partialRow.slice(0, -1).slice(6),
    aRow.slice(0, -1).slice(6),
    "the finished member's numbers are those of the whole study (seconds aside)",
  );
});

test('a member whose lock was left by a pod on another host waits while that heartbeat stays silent, then takes it over; a moving heartbeat is refused', async () => {
  plan('foreign');
  await startMember(['foreign', '--index', '0'], (line, c) => {
    if (line.includes('"event":"epoch"')) c.kill('SIGKILL');
  }).code;
  const lock = path.join(tmp, 'foreign/runs/a/.regtrain.lock');
  const writeLock = (token: string) =>
    fs.writeFileSync(lock, JSON.stringify({ pid: 1, start: '9', boot: null, host: 'pod-a-0-xk2p', token }) + '\n');

  writeLock('alivepod');
  const beat = setInterval(() => fs.utimesSync(lock, new Date(), new Date()), 300);
  const live = startMember(['foreign', '--index', '0']);
  const liveCode = await live.code;
  clearInterval(beat);
  assert.equal(liveCode, 2, live.stderr());
  assert.match(
    live.stderr(),
    /^member 0: the lock is held by pid 1 on host pod-a-0-xk2p; waiting up to 120 s: taken over if its heartbeat stays silent, refused if it moves$/m,
  );
  assert.match(
    live.stderr(),
    new RegExp(
      `^error: ${path.join(tmp, 'foreign/runs/a')}: another regtrain run is writing to it \\(held by pid 1 on host pod-a-0-xk2p, heartbeat 0 s ago \\(taken over after 120 s\\)\\)$`,
      'm',
    ),
  );

  writeLock('deadpod');
  // 15 s: the member must see the lock before it is stale, even when a loaded machine takes seconds to start it.
  const taken = startMember(['foreign', '--index', '0'], undefined, { REGTRAIN_LOCK_STALE_SECONDS: '15' });
  assert.equal(await taken.code, 0, taken.stderr());
  assert.match(
    taken.stderr(),
    /^member 0: the lock is held by pid 1 on host pod-a-0-xk2p; waiting up to (?:[1-9]|1[0-5]) s: taken over if its heartbeat stays silent/m,
  );
  assert.deepEqual(history('foreign/runs/a'), history('whole/runs/a'));
  assert.ok(file('foreign/runs/a', 'weights.bin').equals(file('whole/runs/a', 'weights.bin')));
});

test('the CPU budget comes from SLURM_CPUS_PER_TASK, else the cgroup CPU quota, and reaches the training step through REGTRAIN_BLAS_THREADS', () => {
  const cg = fs.mkdtempSync(path.join(tmp, 'cgroup-'));
  assert.equal(cgroupCpus(cg), null, 'no cgroup files: no budget');
  fs.writeFileSync(path.join(cg, 'cpu.max'), 'max 100000\n');
  assert.equal(cgroupCpus(cg), null, 'no quota: no budget');
  fs.writeFileSync(path.join(cg, 'cpu.max'), '250000 100000\n');
  assert.deepEqual(cgroupCpus(cg), { cpus: 2, source: 'cgroup cpu.max 250000 100000' });
  fs.writeFileSync(path.join(cg, 'cpu.max'), '50000 100000\n');
  assert.deepEqual(
    cgroupCpus(cg),
    { cpus: 1, source: 'cgroup cpu.max 50000 100000' },
    'half a CPU is still one thread',
  );
  const v1 = fs.mkdtempSync(path.join(tmp, 'cgroup-v1-'));
  fs.mkdirSync(path.join(v1, 'cpu'));
  fs.writeFileSync(path.join(v1, 'cpu', 'cpu.cfs_quota_us'), '300000\n');
  fs.writeFileSync(path.join(v1, 'cpu', 'cpu.cfs_period_us'), '100000\n');
  assert.deepEqual(cgroupCpus(v1), { cpus: 3, source: 'cgroup cpu.cfs_quota_us 300000/100000' });
  assert.deepEqual(cpuBudget({ SLURM_CPUS_PER_TASK: '4' }, v1), { cpus: 4, source: 'SLURM_CPUS_PER_TASK=4' });
  assert.deepEqual(cpuBudget({ SLURM_CPUS_PER_TASK: 'lots' }, v1), {
    cpus: 3,
    source: 'cgroup cpu.cfs_quota_us 300000/100000',
  });
  const userSet: NodeJS.ProcessEnv = { SLURM_CPUS_PER_TASK: '4', REGTRAIN_BLAS_THREADS: '1' };
  assert.equal(applyCpuBudget(userSet, v1), null, "the user's REGTRAIN_BLAS_THREADS wins");
  assert.equal(userSet.REGTRAIN_BLAS_THREADS, '1');
  const fromSlurm: NodeJS.ProcessEnv = { SLURM_CPUS_PER_TASK: '2' };
  assert.equal(applyCpuBudget(fromSlurm, v1), 'Threads: 2 (SLURM_CPUS_PER_TASK=2)');
  assert.equal(fromSlurm.REGTRAIN_BLAS_THREADS, '2');

  // End to end: a member under a Slurm task with 2 CPUs trains with 2 BLAS threads (batch 32 alone would use 1).
  plan('threads');
  const r = regtrain(['run-member', 'threads', '--index', '0'], { SLURM_CPUS_PER_TASK: '2' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /^Threads: 2 \(SLURM_CPUS_PER_TASK=2\)$/m);
  const stepLine = r.stdout.split('\n').find((l) => l.startsWith('Training step:'))!;
  if (/OpenBLAS/.test(stepLine)) assert.match(stepLine, /\(2 threads\)/);
  else console.log(`# OpenBLAS is not in use here (${stepLine}); the thread count is not shown by the step`);
});

test("index ranges read as Slurm's --array does", () => {
  assert.equal(indexRanges([0, 1, 2, 4, 7, 8]), '0-2,4,7-8');
  assert.equal(indexRanges([5]), '5');
  assert.equal(indexRanges([]), '');
});
