import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { clusterEnv } from './helpers/cluster-env';
import { spawn, spawnSync } from 'node:child_process';
import { regtrainHere, studyInProcess } from './helpers/cluster-study';
import { sharedDataDir } from './helpers/data';

const { tmp, env: env } = clusterEnv('regtrain-parallel-');
// A verified, stamped cache the members share: none fetches the dataset or hashes a just-written copy again.
env.REGTRAIN_DATA_DIR = sharedDataDir();

const SPEC = `
name: paralleltiny
seed: 21
data: { trainLimit: 2700, testLimit: 1000, validation: { size: 300 } }
model:
  layers:
    - flatten: { inputShape: [28, 28] }
    - dense: { units: 32, activation: relu }
    - dense: { units: 10, activation: softmax }
training: { epochs: 4, batchSize: 32 }
variants:
  baseline: {}
  l1: { model.layers.1.dense.kernelRegularizer: { l1: 0.0001 } }
repeats: 2
`;

/** regtrain in this process: for planning, and for reading what the members GNU parallel ran wrote (status, compare). */
function here(args: string[]) {
  return regtrainHere(args, tmp, { PATH: env.PATH, REGTRAIN_DATA_DIR: env.REGTRAIN_DATA_DIR });
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function compareRows(dir: string): Promise<string[]> {
  const r = await here(['compare', dir, '--csv']);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout
    .trim()
    .split('\n')
    .map((l) => [...l.matchAll(/("(?:[^"]|"")*"|[^,]*)(?:,|$)/g)].map((m) => m[1]!).slice(0, -1));
  const seconds = rows[0]!.indexOf('seconds');
  return rows.map((cells) => cells.filter((_, i) => i !== seconds).join(','));
}
const history = (runDir: string) =>
  (
    JSON.parse(fs.readFileSync(path.join(runDir, 'history.json'), 'utf8')) as { epochs: Record<string, unknown>[] }
  ).epochs.map(({ seconds: _s, ...rest }) => rest);

/** Joblog rows (after the header): [index, exit value, signal]. */
function joblog(studyDir: string): [number, number, number][] {
  return fs
    .readFileSync(path.join(studyDir, 'parallel.joblog'), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split('\t'))
    .map((c) => [Number(/--index (\d+)/.exec(c[8]!)![1]), Number(c[6]), Number(c[7])]);
}

test(
  'the GNU parallel script runs the study 2 at a time; a member killed mid-run is rerun by --resume-failed alone, resumes, and the study equals the local run',
  { timeout: 15 * 60_000 },
  async (t) => {
    if (spawnSync('parallel', ['--version'], { encoding: 'utf8' }).status !== 0) {
      console.log('# skipped: GNU parallel is not installed (apt-get install parallel)');
      t.skip('GNU parallel is not installed');
      return;
    }
    const specFile = path.join(tmp, 'study.yaml');
    fs.writeFileSync(specFile, SPEC);
    // The reference: the same study run locally, one member at a time, in this process.
    await studyInProcess(specFile, 'local', { cwd: tmp, env: { REGTRAIN_DATA_DIR: env.REGTRAIN_DATA_DIR } });

    const planned = await here(['plan', specFile, '--format', 'parallel', '--jobs', '2']);
    assert.equal(planned.code, 0, planned.stderr);
    const script = planned.stdout.trim();
    const studyDir = path.join(tmp, path.dirname(script));
    const members = (
      JSON.parse(fs.readFileSync(path.join(studyDir, 'study.json'), 'utf8')) as { members: { name: string }[] }
    ).members.map((m) => m.name);

    // First pass: SIGKILL the first member seen with a checkpoint (its pid is in its lock), as the OOM killer would.
    const first = spawn('bash', [script], { cwd: tmp, env });
    let output = '';
    first.stdout.on('data', (d: Buffer) => (output += d.toString()));
    first.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const firstCode = new Promise<number | null>((resolve) => first.on('close', resolve));
    let killed: number | null = null;
    for (let waited = 0; killed === null && waited < 300_000; waited += 50) {
      for (const [index, name] of members.entries()) {
        const runDir = path.join(studyDir, 'runs', name);
        if (!fs.existsSync(path.join(runDir, 'checkpoint.json'))) continue;
        try {
          const holder = JSON.parse(fs.readFileSync(path.join(runDir, '.regtrain.lock'), 'utf8')) as { pid: number };
          process.kill(holder.pid, 'SIGKILL');
          killed = index;
          break;
        } catch {
          // not locked (finished) or not yet readable: look again
        }
      }
      await sleep(50);
    }
    assert.notEqual(killed, null, 'a member was seen training with a checkpoint');
    assert.equal(await firstCode, 1, `parallel reports one failed job:\n${output}`);
    assert.ok(!fs.existsSync(path.join(studyDir, 'compare.txt')), 'no comparison while a member is missing');
    const afterFirst = joblog(studyDir);
    assert.deepEqual(afterFirst.map(([i]) => i).sort(), [0, 1, 2, 3]);
    assert.deepEqual(
      afterFirst.filter(([, exit, signal]) => exit !== 0 || signal !== 0).map(([i]) => i),
      [killed],
    );
    const status = await here(['status', studyDir, '--json']);
    assert.deepEqual(
      status.stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { state: string }).state),
      members.map((_, i) => (i === killed ? 'interrupted' : 'done')),
    );

    // Second pass: only the killed member runs again, from its checkpoint.
    const second = spawnSync('bash', [script, '--resume-failed'], { cwd: tmp, env, encoding: 'utf8' });
    assert.equal(second.status, 0, second.stderr + second.stdout);
    assert.match(
      second.stdout + second.stderr,
      new RegExp(`member ${killed} of 4 \\(${members[killed!]}\\): resuming`),
    );
    assert.match(second.stdout, /^study complete; comparison in compare\.txt$/m);
    const afterSecond = joblog(studyDir);
    assert.deepEqual(afterSecond.slice(afterFirst.length), [[killed, 0, 0]], 'the rerun ran exactly the failed member');
    const name = members[killed!]!;
    assert.deepEqual(history(path.join(studyDir, 'runs', name)), history(path.join(tmp, 'local', 'runs', name)));
    assert.ok(
      fs
        .readFileSync(path.join(studyDir, 'runs', name, 'weights.bin'))
        .equals(fs.readFileSync(path.join(tmp, 'local', 'runs', name, 'weights.bin'))),
    );
    const localRows = await compareRows(path.join(tmp, 'local'));
    assert.equal(localRows.length, 3);
    assert.deepEqual(await compareRows(studyDir), localRows);
    assert.match(
      fs.readFileSync(path.join(studyDir, 'compare.txt'), 'utf8'),
      /^ variant +test acc ± std \(n\) +Δ vs baseline/,
    );
  },
);

/** The README's GNU parallel recipe: its shell block's commands, comments dropped. */
function readmeParallelRecipe(): string[] {
  const readme = fs.readFileSync(path.resolve(__dirname, '..', '..', 'README.md'), 'utf8');
  const block = /\n```sh\n(regtrain plan configs\/study\.yaml --format parallel[^]*?)```\n/.exec(readme);
  assert.ok(block, 'the README has a GNU parallel recipe');
  return block[1]!
    .trim()
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, ''));
}

test(
  "the README's GNU parallel recipe runs as printed: Ctrl-C stops every member, none is left running, and --resume-failed resumes the interrupted one and finishes the study",
  { timeout: 15 * 60_000 },
  async (t) => {
    if (spawnSync('parallel', ['--version'], { encoding: 'utf8' }).status !== 0) {
      t.skip('GNU parallel is not installed');
      return;
    }
    const cwd = fs.mkdtempSync(path.join(tmp, 'recipe-'));
    fs.mkdirSync(path.join(cwd, 'configs'));
    // Two members, both running when Ctrl-C comes (how many does not change what Ctrl-C does to each).
    fs.writeFileSync(
      path.join(cwd, 'configs', 'study.yaml'),
      SPEC.replace('name: paralleltiny', 'name: study').replace('epochs: 4', 'epochs: 6').replace('repeats: 2\n', ''),
    );
    const [planLine, runLine, resumeLine] = readmeParallelRecipe();
    const bash = (line: string) => spawnSync('bash', ['-c', line], { cwd, env, encoding: 'utf8' });
    const planned = bash(planLine!);
    assert.equal(planned.status, 0, planned.stderr);
    const hash = /^studies\/study-([0-9a-f]{10})\/parallel\.sh$/.exec(planned.stdout.trim())![1]!;
    const withHash = (line: string) => line.replaceAll('<hash>', hash);
    const studyDir = path.join(cwd, 'studies', `study-${hash}`);
    const members = (
      JSON.parse(fs.readFileSync(path.join(studyDir, 'study.json'), 'utf8')) as { members: { name: string }[] }
    ).members.map((m) => m.name);

    // Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group (bash, parallel and the members).
    const first = spawn('bash', ['-c', withHash(runLine!)], { cwd, env, detached: true });
    let output = '';
    first.stdout.on('data', (d: Buffer) => (output += d.toString()));
    first.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const firstCode = new Promise<number | null>((resolve) => first.on('close', resolve));
    let seen = false;
    for (let waited = 0; !seen && waited < 300_000; waited += 50) {
      seen = members.some((name) => fs.existsSync(path.join(studyDir, 'runs', name, 'checkpoint.json')));
      if (!seen) await sleep(50);
    }
    assert.ok(seen, 'a member was seen training with a checkpoint');
    process.kill(-first.pid!, 'SIGINT');
    assert.notEqual(await firstCode, 0, output);
    // GNU parallel stops its jobs itself on Ctrl-C (their own notices may not reach its output): what counts is the state left.
    assert.ok(!fs.existsSync(path.join(studyDir, 'compare.txt')), 'no comparison after Ctrl-C');
    const statesNow = async () =>
      (await here(['status', studyDir, '--json'])).stdout
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { state: string }).state);
    // parallel can return while a member it signalled is still saving (a loaded machine, a member in its
    // start-up): give them seconds to exit. A member that kept training would end running or done instead.
    let states = await statesNow();
    for (let waited = 0; states.includes('running') && waited < 15_000; waited += 200) {
      await sleep(200);
      states = await statesNow();
    }
    assert.ok(
      states.every((s) => s === 'interrupted' || s === 'not-started'),
      `every member stopped after Ctrl-C, none kept running or finished: ${states.join(' ')}`,
    );
    assert.ok(states.includes('interrupted'), `a member was interrupted with its checkpoint: ${states.join(' ')}`);

    const second = bash(withHash(resumeLine!));
    assert.equal(second.status, 0, second.stderr + second.stdout);
    assert.match(second.stdout, /^study complete; comparison in compare\.txt$/m);
    assert.match(second.stdout + second.stderr, /: resuming/);
    assert.deepEqual(
      await statesNow(),
      members.map(() => 'done'),
    );
    assert.match(
      fs.readFileSync(path.join(studyDir, 'compare.txt'), 'utf8'),
      /^ variant +test acc ± std \(n\) +Δ vs baseline/,
    );
  },
);
