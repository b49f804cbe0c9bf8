/**
 * `compare --wide` rows run past a terminal's width: on a terminal (tmux, 120 columns) regtrain
 * says how wide they are and how to read them; piped into a file or another program it does not.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { regtrainSync } from './helpers/cli';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'regtrain');
const STUDY = path.join(ROOT, 'test', 'fixtures', 'runs', 'study');
const SOCKET = `regtrain-compare-terminal-${process.pid}`;
const haveTmux = spawnSync('tmux', ['-V']).status === 0;
const TMP = scratchDir('regtrain-compare-terminal-');

after(() => {
  if (haveTmux) spawnSync('tmux', ['-L', SOCKET, 'kill-server']);
  fs.rmSync(TMP, { recursive: true, force: true });
});

const q = (arg: string): string => `'${arg.replace(/'/g, `'\\''`)}'`;
const HINT = /^\(rows are up to (\d+) characters wide: page them with `\| less -S`, or use --csv for a spreadsheet\)$/m;

/** Runs `compare` with stdout on a 120-column terminal and stderr in a file; returns that file's text. */
async function stderrOnTerminal(args: string[]): Promise<string> {
  const session = `compare-${args.length}`;
  const stderr = path.join(TMP, `${session}.err`);
  const done = path.join(TMP, `${session}.done`);
  const command = `${[process.execPath, BIN, 'compare', ...args].map(q).join(' ')} 2>${q(stderr)}; echo $? >${q(done)}; sleep 600`;
  execFileSync('tmux', [
    '-L',
    SOCKET,
    'new-session',
    '-d',
    '-s',
    session,
    '-x',
    '120',
    '-y',
    '40',
    'bash',
    '-c',
    command,
  ]);
  const until = Date.now() + 60_000;
  while (!fs.existsSync(done) || fs.readFileSync(done, 'utf8') === '') {
    if (Date.now() > until) assert.fail(`compare ${args.join(' ')} did not finish in the terminal`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(fs.readFileSync(done, 'utf8').trim(), '0');
  return fs.readFileSync(stderr, 'utf8');
}

test(
  'compare --wide on a 120-column terminal names its widest row and points to less -S and --csv',
  { skip: !haveTmux && 'tmux is not installed' },
  async () => {
    const piped = regtrainSync(['compare', '--wide', STUDY]);
    assert.equal(piped.status, 0);
    const widest = Math.max(...piped.stdout.split('\n').map((l) => l.length));
    assert.ok(widest > 120, `the fixture study's wide table is only ${widest} wide`);
    assert.doesNotMatch(piped.stderr, /rows are up to/, 'piped output must not carry the terminal hint');

    const m = HINT.exec(await stderrOnTerminal(['--wide', STUDY]));
    assert.ok(m, 'no hint on the terminal');
    assert.equal(Number(m[1]), widest);
  },
);

test(
  'compare without --wide on a terminal fits and prints no hint',
  { skip: !haveTmux && 'tmux is not installed' },
  async () => {
    assert.doesNotMatch(await stderrOnTerminal([STUDY]), /rows are up to/);
  },
);
