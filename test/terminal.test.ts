/**
 * What a person sees in a terminal when they press Ctrl-C: `regtrain run` under a real
 * pseudo-terminal (tmux, 120×40), the screen captured and compared line for line with what it
 * must be, apart from times (and the training-step line, which names this machine's kernels).
 * The progress bar must be gone, then one notice, then one final "interrupted" line with the
 * command that continues; the same on `--resume`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { epochLine } from '../src/train/callbacks/epoch-lines';
import type { HistoryFile, MetricsFile } from '../src/runformat';
import { pathWithoutRegtrain } from './helpers/path-without-regtrain';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '../..');
const BIN = path.join(ROOT, 'bin', 'regtrain');
const QUICK = path.join(ROOT, 'configs', 'quick.yaml');
const EPOCHS = 50;
const SOCKET = `regtrain-terminal-test-${process.pid}`;
const haveTmux = spawnSync('tmux', ['-V']).status === 0;

let TMP = '';
let OUT = '';

before(() => {
  TMP = scratchDir('regtrain-terminal-');
  OUT = path.join(TMP, 'run');
});
after(() => {
  if (haveTmux) spawnSync('tmux', ['-L', SOCKET, 'kill-server']);
  fs.rmSync(TMP, { recursive: true, force: true });
});

const tmux = (...args: string[]): string => execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });

/** The screen as text: wrapped lines joined, trailing blanks dropped. */
function screen(session: string): string {
  return tmux('capture-pane', '-p', '-J', '-t', session)
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n')
    .trimEnd();
}

async function waitForScreen(
  session: string,
  what: string,
  ok: (text: string) => boolean,
  ms = 90_000,
): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const text = screen(session);
    if (ok(text)) return text;
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}; the screen:\n${text}`);
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

const q = (arg: string): string => `'${arg.replace(/'/g, `'\\''`)}'`;
const NO_REGTRAIN_PATH = pathWithoutRegtrain(process.env.PATH ?? '');

/** Runs regtrain in a new tmux session; the shell prints its exit code after it and waits. */
function startInTerminal(session: string, args: string[]): void {
  // The hint at Ctrl-C names `node bin/regtrain` only while no regtrain is on PATH (see the helper).
  const env = [`REGTRAIN_DATA_DIR=${TMP}/cache`, `XDG_CACHE_HOME=${TMP}/xdg`, `PATH=${NO_REGTRAIN_PATH}`]
    .map(q)
    .join(' ');
  const command = `cd ${q(TMP)} && env ${env} ${[process.execPath, BIN, ...args].map(q).join(' ')}; echo "[exit $?]"; sleep 600`;
  tmux('new-session', '-d', '-s', session, '-x', '120', '-y', '40', 'bash', '-c', command);
}

const BAR = / \d+\/\d+ steps \| /;

/** Times vary run to run, and the training step names this machine's kernels: both are masked. */
function normalize(text: string): string {
  return text
    .replace(/^(Epoch \d+\/\d+) - [^ ]+ - /gm, '$1 - <time> - ')
    .replace(/^Training step: .+$/m, 'Training step: <step>');
}

const NOTICE = 'SIGINT: finishing the current batch, then saving (press Ctrl-C again to stop at once)';

function expectedHead(): string[] {
  const m = JSON.parse(fs.readFileSync(path.join(OUT, 'metrics.json'), 'utf8')) as MetricsFile;
  const s = m.dataset.sizes;
  return [
    'Backend: wasm — wasm (requested)',
    `Data: train ${s.train} (trainLimit, outside validation), validation ${s.validation} (held out), test ${s.test}, scale01; ${m.dataset.source}`,
    '───────────────────────────────────────────────────────────────────────',
    'Layer (type)       Output Shape  Param #  Regularizers',
    '───────────────────────────────────────────────────────────────────────',
    'flatten (Flatten)  (None, 784)   0        -',
    'dense (Dense)      (None, 200)   157,000  kernel L1(0.01)',
    'dense_1 (Dense)    (None, 100)   20,100   kernel L2(0.001)',
    'dense_2 (Dense)    (None, 50)    5,050    kernel L1L2(l1=0.01, l2=0.01)',
    'dense_3 (Dense)    (None, 10)    510      -',
    '───────────────────────────────────────────────────────────────────────',
    'Total params: 182,660  (trainable: 182,660)',
    'Training step: <step>',
  ];
}

function epochLines(from: number, to: number): string[] {
  const h = JSON.parse(fs.readFileSync(path.join(OUT, 'history.json'), 'utf8')) as HistoryFile;
  // A constant learning rate shows on the first line a session prints (the replayed history's, then the resumed run's).
  return h.epochs
    .filter((e) => e.epoch >= from && e.epoch <= to)
    .map((e, i, all) => epochLine(e, EPOCHS, i === 0 || e.lr !== all[i - 1]!.lr));
}

/**
 * The screen must be `lines` then the notice, the final line and the exit code. A signal in an
 * epoch's last batch lets that epoch end (and print its line) after the notice: also exact.
 */
function assertScreen(actual: string, lines: string[], lastEpoch: number, newEpochs: number): void {
  const final = `interrupted (SIGINT) after epoch ${lastEpoch} of ${EPOCHS}; the history and the model so far are saved in ${OUT}; continue with: node ${BIN} run --resume ${OUT} --backend wasm`;
  const expected = normalize([...lines, NOTICE, final, '[exit 130]'].join('\n'));
  const noticeFirst =
    newEpochs > 0
      ? normalize([...lines.slice(0, -1), NOTICE, lines.at(-1)!, final, '[exit 130]'].join('\n'))
      : expected;
  const got = normalize(actual);
  if (got !== noticeFirst) assert.equal(got, expected);
  assert.doesNotMatch(actual, BAR);
}

const runArgs = [
  QUICK,
  '--backend',
  'wasm',
  '--set',
  'data.trainLimit=3000',
  '--set',
  'data.testLimit=500',
  '--set',
  `training.epochs=${EPOCHS}`,
];

test(
  'Ctrl-C in a terminal clears the progress bar, prints one notice, then one "interrupted" line with the resume command',
  { skip: !haveTmux && 'tmux is not installed' },
  async () => {
    startInTerminal('first', ['run', ...runArgs, '--out', OUT]);
    await waitForScreen('first', 'the first epoch and the bar', (t) => /^Epoch 1\/50 /m.test(t) && BAR.test(t));
    tmux('send-keys', '-t', 'first', 'C-c');
    const text = await waitForScreen('first', 'the exit', (t) => t.includes('[exit '));
    const done = (JSON.parse(fs.readFileSync(path.join(OUT, 'history.json'), 'utf8')) as HistoryFile).epochs.length;
    assertScreen(text, [...expectedHead(), `Run directory: ${OUT}`, ...epochLines(1, done)], done, done);
  },
);

test(
  'the same on --resume: the bar is cleared, one notice, one "interrupted" line',
  { skip: !haveTmux && 'tmux is not installed' },
  async () => {
    const before = (JSON.parse(fs.readFileSync(path.join(OUT, 'history.json'), 'utf8')) as HistoryFile).epochs.length;
    startInTerminal('resumed', ['run', '--resume', OUT, '--backend', 'wasm']);
    await waitForScreen('resumed', 'the bar', (t) => t.includes(`Run directory: ${OUT}`) && BAR.test(t));
    tmux('send-keys', '-t', 'resumed', 'C-c');
    const text = await waitForScreen('resumed', 'the exit', (t) => t.includes('[exit '));
    const done = (JSON.parse(fs.readFileSync(path.join(OUT, 'history.json'), 'utf8')) as HistoryFile).epochs.length;
    const lines = [
      ...expectedHead(),
      `Resuming after epoch ${before} of ${EPOCHS}`,
      ...epochLines(1, before),
      `Run directory: ${OUT}`,
      ...epochLines(before + 1, done),
    ];
    assertScreen(text, lines, done, done - before);
  },
);

test("the README's Ctrl-C example shows the notice and the final line the terminal shows", () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Ctrl-C'));
  const block = /```\n([\s\S]*?)\n```/.exec(section)![1]!.split('\n');
  assert.equal(block.length, 3, block.join('\n'));
  const [epoch, notice, final] = block as [string, string, string];
  assert.match(epoch, /^Epoch 1\/3 - [\d.]+s - loss: /);
  assert.equal(notice, NOTICE);
  const dir = /saved in (\S+);/.exec(final)![1]!;
  assert.equal(
    final,
    `interrupted (SIGINT) after epoch 1 of 3; the history and the model so far are saved in ${dir}; continue with: regtrain run --resume ${dir}`,
  );
});
