/**
 * The messages of issue 12 (item 7), each as the user meets it: durations, signs, help texts,
 * the training-step announcement, `--resume` with `--set`, and hints that keep the user's
 * `--data-dir`. Help texts are read from the real commander program in process; what a process shows
 * (help's exit and trailing text, the line SIGINT leaves) comes from real child processes; runs and refusals
 * whose text is checked are the real program in this process (helpers/in-process.ts).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Command } from 'commander';
import { buildProgram } from '../src/cli';
import { fmtSigned } from '../src/compare/format';
import { fmtDuration } from '../src/train/callbacks/epoch-lines';
import { finished, HINT, QUICK, sliceFlags, startCli } from './helpers/cli';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

const TINY = ['--backend', 'wasm', ...sliceFlags({ train: 600, validation: 100, test: 200 })];

let TMP = '';
before(() => {
  TMP = scratchDir('regtrain-output-messages-');
});

function start(args: string[]): ChildProcess {
  return startCli(args, {
    cwd: TMP,
    env: { REGTRAIN_DATA_DIR: path.join(TMP, 'cache'), XDG_CACHE_HOME: path.join(TMP, 'xdg') },
  });
}

/** `regtrain ...args` in this process, with the environment `start` gives a child. */
const regtrain = (args: string[]) =>
  regtrainInProcess(args, {
    cwd: TMP,
    env: { REGTRAIN_DATA_DIR: path.join(TMP, 'cache'), XDG_CACHE_HOME: path.join(TMP, 'xdg') },
  });

test('durations round before they are split: 119.7 s is 2m00s, 59.96 s is 1m00s, never 1m60s or 60.0s', () => {
  assert.equal(fmtDuration(4.2), '4.2s');
  assert.equal(fmtDuration(59.94), '59.9s');
  assert.equal(fmtDuration(59.96), '1m00s');
  assert.equal(fmtDuration(119.4), '1m59s');
  assert.equal(fmtDuration(119.7), '2m00s');
  assert.equal(fmtDuration(3599.6), '1h00m');
  assert.equal(fmtDuration(3725), '1h02m');
});

test('signed numbers use the ASCII hyphen-minus, and a value that rounds to zero is +0', () => {
  assert.equal(fmtSigned(-0.0028, 4), '-0.0028');
  assert.equal(fmtSigned(0.002, 4), '+0.0020');
  assert.equal(fmtSigned(-0.00004, 4), '+0.0000');
  assert.equal(fmtSigned(-12.5, 1), '-12.5');
});

/** Every command and subcommand of the real program, with its full name. */
function allCommands(cmd: Command, prefix = ''): [string, Command][] {
  return cmd.commands.flatMap((c) => [
    [`${prefix}${c.name()}`, c] as [string, Command],
    ...allCommands(c, `${prefix}${c.name()} `),
  ]);
}

function help(cmd: Command): string {
  cmd.configureHelp({ ...cmd.configureHelp(), helpWidth: 80 });
  return cmd.helpInformation();
}

test('help shows defaults as a user types them: no (default: "1"), no (default: []), --jobs says one at a time', () => {
  const commands = allCommands(buildProgram());
  assert.ok(commands.length >= 11, commands.map(([n]) => n).join(', '));
  for (const [name, cmd] of commands) {
    const text = help(cmd);
    assert.doesNotMatch(text, /default: "/, name);
    assert.doesNotMatch(text, /default: \[\]/, name);
  }
  const run = help(commands.find(([n]) => n === 'run')![1]);
  assert.match(
    run.replace(/\s+/g, ' '),
    /--jobs <n> study specs \(variants\/sweep\/repeats\): members trained at once, each in its own process \(default: one at a time\)/,
  );
  const plan = help(commands.find(([n]) => n === 'plan')![1]).replace(/\s+/g, ' ');
  assert.match(plan, /\(default: 1\) --mem <size>/);
  assert.match(plan, /choices: "slurm", "k8s", "parallel", "lines", default: lines\)/);
});

test('data fetch --help shows fetch alone: its options and its own exit codes, nothing about verify or info', () => {
  const fetch = allCommands(buildProgram()).find(([n]) => n === 'data fetch')![1];
  assert.equal(
    help(fetch),
    `Usage: regtrain data fetch [options]

get the four files into the cache, verified by sha256 (cache, then local dirs,
then mirrors)

Options:
  --data-dir <dir>       cache directory (default: $REGTRAIN_DATA_DIR, else
                         $XDG_CACHE_HOME/regtrain/datasets/fashion-mnist, else
                         ~/.cache/...)
  --json                 print the result as one JSON line on stdout (messages
                         stay on stderr)
  --source <url-or-dir>  URL prefix or directory to fetch from, repeatable;
                         replaces the default list (Debian dir, then official
                         mirrors)
  --offline              use only the cache and local directories
  --timeout <seconds>    give up on a download that sends nothing for this long
                         (default: 30 seconds)
  -h, --help             display help for command
`,
  );
  // The text after the options (commander prints it with the help, not in helpInformation).
  const r = finished(start(['data', 'fetch', '--help']));
  return r.then((res) => {
    assert.equal(res.code, 0);
    assert.ok(
      res.stdout.endsWith(`
Exit codes:
  0    the four files are in the cache, verified
  1    no source gave a verified copy of a file (or the cache cannot be written)
  2    bad options or an unusable --data-dir / --source
  130  interrupted (SIGINT/SIGTERM/SIGHUP); no partial file is kept
`),
      res.stdout,
    );
    assert.doesNotMatch(res.stdout, /verify|info/);
  });
});

test('a model the lean step does not cover announces the general path as information, not as an error', async () => {
  const spec = path.join(TMP, 'batchnorm.yaml');
  fs.writeFileSync(
    spec,
    fs
      .readFileSync(QUICK, 'utf8')
      .replace(/^(\s*)- dense: \{ units: 100/m, '$1- batchNormalization: {}\n$1- dense: { units: 100')
      .replace(/^name: .*$/m, 'name: batchnorm'),
  );
  const r = await regtrain([
    'run',
    spec,
    ...TINY,
    '--set',
    'training.epochs=1',
    '--out',
    path.join(TMP, 'bn'),
    '--json',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const training = r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { event: string; step?: string })
    .find((e) => e.event === 'training')!;
  assert.equal(
    training.step,
    'tfjs autodiff + optimizer (layer 2 is BatchNormalization: the lean step covers Flatten and Dense layers)',
  );
  assert.match(
    r.stderr,
    /^Training step: tfjs autodiff \+ optimizer \(layer 2 is BatchNormalization: the lean step covers Flatten and Dense layers\)$/m,
  );
});

test('--resume with --set names the --set flags, not the spec file; the file and the flags when both differ; also once the file is gone', async () => {
  const spec = path.join(TMP, 'mine.yaml');
  fs.copyFileSync(QUICK, spec);
  const out = path.join(TMP, 'stopped');
  const dataDir = path.join(TMP, 'cache');
  const child = start([
    'run',
    spec,
    ...TINY,
    '--set',
    'training.epochs=200',
    '--out',
    out,
    '--json',
    '--data-dir',
    dataDir,
  ]);
  let sent = false;
  const r = await finished(child, (stdout) => {
    if (!sent && stdout.includes('"event":"training"')) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  assert.equal(r.code, 130, r.stderr);
  const lastLine = r.stderr.trimEnd().split('\n').at(-1)!;
  assert.match(
    lastLine,
    new RegExp(
      `^interrupted \\(SIGINT\\) (in epoch 1 of 200, before any epoch was saved|after epoch \\d+ of 200; the history and the model so far are saved in ${out});`,
    ),
  );
  assert.ok(
    lastLine.endsWith(`; continue with: ${HINT} run --resume ${out} --backend wasm --data-dir ${dataDir}`),
    lastLine,
  );

  const runSets = 'data.trainLimit=600 data.validation.size=100 data.testLimit=200 training.epochs=200';
  const setsDiffer = `the --set flags (training.epochs=5) differ from the run's (${runSets})`;
  const refusal = (what: string) => `error: --resume ${out}: ${what}; pass --force to continue with the changed spec\n`;

  const onlySets = await regtrain(['run', '--resume', out, '--set', 'training.epochs=5']);
  assert.equal(onlySets.code, 2);
  assert.equal(onlySets.stderr, refusal(setsDiffer));

  fs.writeFileSync(spec, fs.readFileSync(QUICK, 'utf8').replace('seed: 1234', 'seed: 99'));
  const both = await regtrain(['run', '--resume', out, '--set', 'training.epochs=5']);
  assert.equal(both.code, 2);
  assert.equal(both.stderr, refusal(`${spec} changed since the run started, and ${setsDiffer}`));

  fs.rmSync(spec);
  const fileGone = await regtrain(['run', '--resume', out, '--set', 'training.epochs=5']);
  assert.equal(fileGone.code, 2);
  assert.equal(fileGone.stderr, refusal(setsDiffer));

  // evaluate on the interrupted run points at --resume, with the --data-dir it was given.
  const ev = await regtrain(['evaluate', out, '--data-dir', dataDir]);
  assert.equal(ev.code, 2);
  assert.equal(
    ev.stderr,
    `error: ${out}: the run is incomplete (interrupted); evaluate needs a finished run; finish it first: ${HINT} run --resume ${out} --data-dir ${dataDir}\n`,
  );
});

test('data verify on a cache missing its files says how to fetch them into that same --data-dir', async () => {
  const dir = path.join(TMP, 'my data');
  fs.mkdirSync(dir);
  const r = await regtrain(['data', 'verify', '--data-dir', dir]);
  assert.equal(r.code, 2);
  assert.ok(
    r.stderr.endsWith(
      `error: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte missing from ${dir}; get them with: ${HINT} data fetch --data-dir '${dir}'\n`,
    ),
    r.stderr,
  );
});
