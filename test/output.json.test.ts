/**
 * The output convention, command by command, on real child processes: with `--json`, stdout is
 * JSON Lines (one compact object per line; a command with one result prints one line), human
 * text goes to stderr, and a run's stream ends with exactly one `done`, `failed` or
 * `interrupted` event. Runs are tiny (600 images, wasm) on the real Fashion-MNIST files. A run's stream, its
 * SIGINT and a study's launcher are real child processes; the other commands run in this process
 * (test/helpers/in-process.ts: the same program, what it writes to stdout and stderr, the boundary's exit code).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { finished, HINT, QUICK, sliceFlags, startCli } from './helpers/cli';
import { sharedDataDir } from './helpers/data';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

const TINY = ['--backend', 'wasm', ...sliceFlags({ train: 500, validation: 100, test: 200, epochs: 2 })];
const TERMINAL = ['done', 'failed', 'interrupted'];

let TMP = '';
/** The verified data every test file shares: these commands only read it. */
let DATA = '';
/** The run every later test reads (evaluate, run-member). */
let RUN = '';

before(() => {
  TMP = scratchDir('regtrain-output-json-');
  DATA = sharedDataDir();
});

function start(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  return startCli(args, {
    cwd: opts.cwd ?? TMP,
    env: { REGTRAIN_DATA_DIR: DATA, XDG_CACHE_HOME: path.join(TMP, 'xdg'), ...opts.env },
  });
}

const regtrain = (args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) => finished(start(args, opts));

/** The same command in this process: its exit code and what it wrote to stdout and stderr. */
const regtrainHere = (args: string[], opts: { cwd?: string } = {}) =>
  regtrainInProcess(args, {
    cwd: opts.cwd ?? TMP,
    env: { REGTRAIN_DATA_DIR: DATA, XDG_CACHE_HOME: path.join(TMP, 'xdg') },
  });

/** Every line of stdout is one JSON object (nothing else, no blank line); returns them. */
function jsonLines(stdout: string): Record<string, unknown>[] {
  assert.ok(stdout.endsWith('\n'), `stdout does not end with a newline: ${JSON.stringify(stdout.slice(-80))}`);
  return stdout
    .slice(0, -1)
    .split('\n')
    .map((line) => {
      const obj = JSON.parse(line) as unknown;
      assert.ok(obj !== null && typeof obj === 'object' && !Array.isArray(obj), `not an object: ${line}`);
      return obj as Record<string, unknown>;
    });
}

/** A run's stream: exactly one terminal event, and it is the last line. */
function runStream(stdout: string): { events: Record<string, unknown>[]; last: Record<string, unknown> } {
  const events = jsonLines(stdout);
  const terminal = events.filter((e) => TERMINAL.includes(e.event as string));
  assert.equal(terminal.length, 1, `terminal events: ${JSON.stringify(terminal)}`);
  assert.equal(events.at(-1), terminal[0]);
  return { events, last: terminal[0]! };
}

test('run --json prints one compact JSON object per line, human text on stderr, ending with exactly one done event', async () => {
  RUN = path.join(TMP, 'run-ok');
  const r = await regtrain(['run', QUICK, ...TINY, '--out', RUN, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const { events, last } = runStream(r.stdout);
  assert.deepEqual(
    events.map((e) => e.event),
    ['start', 'training', 'epoch', 'epoch', 'test', 'done'],
  );
  assert.equal(events[0]!.runDir, RUN);
  assert.deepEqual(Object.keys(last), ['event', 'runDir', 'seconds', 'epochs', 'stopReason', 'peakRssMB']);
  assert.equal(last.runDir, RUN);
  assert.equal(last.epochs, 2);
  assert.equal(last.stopReason, 'epochs');
  assert.match(r.stderr, /^Epoch 2\/2 - /m);
  // The final line names the run directory as the first does: absolute.
  assert.match(r.stderr, new RegExp(`^Run directory: ${RUN}$`, 'm'));
  assert.match(r.stderr, new RegExp(`\\nDone in \\d+\\.\\ds; run directory: ${RUN}\\n$`));
});

test('a run whose loss becomes non-finite ends its stream with a failed event giving the reason and exit code 1', async () => {
  const out = path.join(TMP, 'run-nan');
  // One 500-image batch per epoch at lr 1e7: the loss overflows a few epochs in (see run.test.ts; no validation split, whose loss would overflow first).
  const r = await regtrainHere([
    'run',
    QUICK,
    ...TINY,
    '--set',
    'data.validation.size=0',
    '--set',
    'training.epochs=20',
    '--set',
    'training.batchSize=500',
    '--set',
    'optimizer.sgd.learningRate=1e7',
    '--out',
    out,
    '--json',
  ]);
  assert.equal(r.code, 1, r.stderr);
  const { last } = runStream(r.stdout);
  const m =
    /^the loss became NaN or infinite at epoch (\d+), step 1: training stopped; try a smaller learning rate or smaller penalties \(history so far is in (.+)\)$/.exec(
      last.reason as string,
    );
  assert.ok(m, String(last.reason));
  assert.deepEqual(last, { event: 'failed', reason: last.reason, exitCode: 1, runDir: out });
  assert.ok(r.stderr.endsWith(`error: ${last.reason as string}\n`), r.stderr);
});

test('a SIGINT-ed run ends its stream with an interrupted event: the last complete epoch and the resume command, exit 130', async () => {
  const out = path.join(TMP, 'run-int');
  const child = start([
    'run',
    QUICK,
    ...TINY,
    '--set',
    'training.epochs=200',
    '--out',
    out,
    '--json',
    '--data-dir',
    DATA,
  ]);
  let sent = false;
  const r = await finished(child, (stdout) => {
    if (!sent && stdout.includes('"event":"epoch"')) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  assert.equal(r.code, 130, r.stderr);
  const { last } = runStream(r.stdout);
  const epochs = (JSON.parse(fs.readFileSync(path.join(out, 'history.json'), 'utf8')) as { epochs: unknown[] }).epochs
    .length;
  assert.ok(epochs >= 1 && epochs < 200);
  const resume = `${HINT} run --resume ${out} --backend wasm --data-dir ${DATA}`;
  assert.deepEqual(last, {
    event: 'interrupted',
    signal: 'SIGINT',
    lastEpoch: epochs,
    runDir: out,
    resume,
    exitCode: 130,
  });
  // On stderr: one notice, then one final line that is not an error.
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.at(-2), 'SIGINT: finishing the current batch, then saving (press Ctrl-C again to stop at once)');
  assert.equal(
    lines.at(-1),
    `interrupted (SIGINT) after epoch ${epochs} of 200; the history and the model so far are saved in ${out}; continue with: ${resume}`,
  );
  assert.doesNotMatch(r.stderr, /^error:/m);
});

test('a refused spec ends the stream with one failed event (exit 2) and creates nothing', async () => {
  const cwd = fs.mkdtempSync(path.join(TMP, 'w-'));
  const r = await regtrainHere(['run', QUICK, '--json', '--set', 'training.epochs=0'], { cwd });
  assert.equal(r.code, 2, r.stderr);
  const reason = '! training.epochs: expected a positive integer, got 0 (--set training.epochs=0)';
  assert.equal(r.stdout, JSON.stringify({ event: 'failed', reason, exitCode: 2, runDir: null }) + '\n');
  assert.equal(r.stderr, reason + '\n');
  assert.deepEqual(fs.readdirSync(cwd), []);
});

test('a run that fails before training leaves no run directory behind, and an empty --out directory the user made stays', async () => {
  const cwd = fs.mkdtempSync(path.join(TMP, 'w-'));
  const emptySource = path.join(TMP, 'no-data');
  fs.mkdirSync(emptySource, { recursive: true });
  const noData = ['--data-dir', path.join(cwd, 'empty-cache'), '--source', emptySource];
  const r = await regtrainHere(['run', QUICK, ...TINY, ...noData, '--json'], { cwd });
  assert.equal(r.code, 1, r.stderr);
  const { events, last } = runStream(r.stdout);
  assert.equal(events[0]!.event, 'start');
  assert.equal(last.event, 'failed');
  assert.equal(last.runDir, null);
  assert.match(last.reason as string, /^no verified copy of train-images-idx3-ubyte /);
  // No stub in runs/ for compare to warn about: not even runs/ itself, which this run created.
  assert.deepEqual(fs.readdirSync(cwd).sort(), ['empty-cache']);

  const mine = path.join(cwd, 'mine');
  fs.mkdirSync(mine);
  const r2 = await regtrainHere(['run', QUICK, ...TINY, ...noData, '--out', mine], { cwd });
  assert.equal(r2.code, 1, r2.stderr);
  assert.deepEqual(fs.readdirSync(mine), []);
});

test('evaluate --json prints its one result as one line', async () => {
  const r = await regtrainHere(['evaluate', RUN, '--json', '--backend', 'wasm']);
  assert.equal(r.code, 0, r.stderr);
  const [report, ...more] = jsonLines(r.stdout);
  assert.deepEqual(more, []);
  assert.deepEqual(Object.keys(report!), [
    'runDir',
    'loss',
    'accuracy',
    'count',
    'ece',
    'brier',
    'nll',
    'perClass',
    'confusion',
    'reliability',
  ]);
  assert.equal(report!.count, 200);
  assert.match(r.stderr, /^Backend: wasm/);
});

test('validate --json prints the resolved spec as one line', async () => {
  const r = await regtrainHere(['validate', QUICK, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const [spec, ...more] = jsonLines(r.stdout);
  assert.deepEqual(more, []);
  assert.equal(spec!.name, 'quick');
});

test('data fetch, verify and info --json each print one line', async () => {
  const dir = path.join(TMP, 'fetched');
  const results: Record<string, unknown>[] = [];
  for (const sub of ['fetch', 'verify', 'info']) {
    const r = await regtrainHere(['data', sub, '--data-dir', dir, '--json', ...(sub === 'fetch' ? ['--offline'] : [])]);
    assert.equal(r.code, 0, `${sub}: ${r.stderr}`);
    const [result, ...more] = jsonLines(r.stdout);
    assert.deepEqual(more, [], sub);
    results.push(result!);
  }
  const [fetched, verified, info] = results;
  assert.equal(fetched!.dataDir, dir);
  assert.equal((fetched!.files as unknown[]).length, 4);
  assert.equal(verified!.ok, true);
  assert.equal((info!.train as { count: number }).count, 60000);
});

test('plan --json prints one line; status --json one line per member; run-member --json ends with done or failed', async () => {
  const cwd = fs.mkdtempSync(path.join(TMP, 'w-'));
  const spec = path.join(cwd, 'study.yaml');
  fs.writeFileSync(
    spec,
    fs.readFileSync(QUICK, 'utf8') + 'variants: { baseline: {}, wide: { model.layers.1.dense.units: 64 } }\n',
  );
  const studyDir = path.join(cwd, 'study');
  const plan = await regtrainHere(['plan', spec, '--study-dir', studyDir, '--json'], { cwd });
  assert.equal(plan.code, 0, plan.stderr);
  assert.deepEqual(jsonLines(plan.stdout), [{ studyDir, artifact: path.join(studyDir, 'members.txt'), members: 2 }]);

  const status = await regtrainHere(['status', studyDir, '--json']);
  assert.equal(status.code, 0, status.stderr);
  assert.deepEqual(jsonLines(status.stdout), [
    { index: 0, name: 'baseline', state: 'not-started' },
    { index: 1, name: 'wide', state: 'not-started' },
  ]);

  // A finished member is skipped: its stream is one done line.
  fs.cpSync(RUN, path.join(studyDir, 'runs', 'baseline'), { recursive: true });
  const skipped = await regtrainHere(['run-member', studyDir, '--index', '0', '--json']);
  assert.equal(skipped.code, 0, skipped.stderr);
  assert.deepEqual(jsonLines(skipped.stdout), [
    { event: 'done', runDir: path.join(studyDir, 'runs', 'baseline'), skipped: true, index: 0, member: 'baseline' },
  ]);

  const bad = await regtrainHere(['run-member', studyDir, '--index', '7', '--json']);
  assert.equal(bad.code, 2, bad.stderr);
  const reason = '--index 7: expected a member index from 0 to 1 (the study has 2 members)';
  assert.deepEqual(jsonLines(bad.stdout), [{ event: 'failed', reason, exitCode: 2, runDir: null }]);
  assert.equal(bad.stderr, `error: ${reason}\n`);
});

test("run --json on a study: each member's events tagged with its name, then study-end and the study's own done as the last line", async () => {
  const cwd = fs.mkdtempSync(path.join(TMP, 'w-'));
  const spec = path.join(cwd, 'study.yaml');
  fs.writeFileSync(spec, fs.readFileSync(QUICK, 'utf8') + 'repeats: 2\n');
  const studyDir = path.join(cwd, 'study');
  const r = await regtrain(['run', spec, ...TINY, '--set', 'training.epochs=1', '--out', studyDir, '--json'], { cwd });
  assert.equal(r.code, 0, r.stderr);
  const events = jsonLines(r.stdout);
  const own = events.filter((e) => e.member === undefined);
  assert.deepEqual(
    own.map((e) => e.event),
    ['study', 'study-end', 'done'],
  );
  assert.deepEqual(events.at(-1), { event: 'done', studyDir, members: 2 });
  const members = own[0]!.members as string[];
  assert.equal(members.length, 2);
  for (const member of members) {
    const mine = events.filter((e) => e.member === member).map((e) => e.event);
    assert.deepEqual(mine, ['member-start', 'start', 'training', 'epoch', 'test', 'done', 'member-end'], member);
  }
});
