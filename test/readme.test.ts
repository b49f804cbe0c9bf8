/**
 * The README is the tool's own output. Each fenced block it marks with an HTML comment is checked
 * here, in the README's order, in one scratch working directory that stands for /home/me/regtrain:
 *
 *   <!-- example: CMD -->          the next block is what CMD prints (stdout and stderr, as a terminal shows them; exit 0)
 *   <!-- example stdout: CMD -->   … stdout only
 *   <!-- example exit=2: CMD -->   … and CMD exits 2
 *   <!-- setup -->                 the next block is shell commands, run as they are (exit 0)
 *   <!-- file: NAME -->            the next block is written to the file NAME
 *   <!-- file resolves-as=PATH: NAME -->   … and `regtrain validate` resolves it to the same spec as PATH
 *
 * Commands run under bash, with `regtrain` on the PATH, the dataset cached under the scratch home,
 * and the portable matrix kernels (REGTRAIN_BLAS=off, REGTRAIN_RELAXED_SIMD=off): every figure is
 * then the same on any machine. Only what must vary is masked before comparing: durations
 * (`1.3s`, `"seconds":…`, a `seconds` table column), the UTC timestamp in run directory names and
 * the peak memory. Absolute paths are compared after the scratch home becomes /home/me.
 *
 * REGTRAIN_README_UPDATE=1 rewrites, instead of comparing, every example block whose output changed
 * in more than what is masked.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { loadSpec } from '../src/spec';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '../..');
const README = path.join(ROOT, 'README.md');
const UPDATE = /^(1|true|yes)$/i.test(process.env.REGTRAIN_README_UPDATE ?? '');
/** The home and working directory the README's paths show. */
const SHOWN_HOME = '/home/me';
const COMMAND_TIMEOUT_MS = 180_000;

interface Block {
  kind: 'example' | 'setup' | 'file';
  /** example: the command; file: the file name. */
  arg: string;
  stdoutOnly: boolean;
  exit: number;
  /** file: the spec file this block must resolve to the same spec as. */
  resolvesAs: string | null;
  /** 0-based line index of the opening fence, and the block's lines between the fences. */
  fenceLine: number;
  body: string[];
}

const MARKER = /^<!-- (example|setup|file)((?: [a-z-]+(?:=[^\s:]+)?)*)(?::\s*(.*?))?\s*-->$/;

/** The marked blocks: each marker is the line right before its fence. */
export function parseReadme(lines: string[]): Block[] {
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = MARKER.exec(lines[i]!.trim());
    if (!m) continue;
    const fence = /^(`{3,})/.exec(lines[i + 1] ?? '');
    if (!fence) throw new Error(`README.md:${i + 1}: a readme-test marker must be right before a fenced block`);
    const end = lines.findIndex((l, j) => j > i + 1 && l.trim() === fence[1]);
    if (end < 0) throw new Error(`README.md:${i + 2}: unclosed fence`);
    const flags = (m[2] ?? '').trim().split(/\s+/).filter(Boolean);
    const flag = (name: string) => flags.find((f) => f.startsWith(`${name}=`))?.slice(name.length + 1);
    blocks.push({
      kind: m[1] as Block['kind'],
      arg: m[3] ?? '',
      stdoutOnly: flags.includes('stdout'),
      exit: Number(flag('exit') ?? 0),
      resolvesAs: flag('resolves-as') ?? null,
      fenceLine: i + 1,
      body: lines.slice(i + 2, end),
    });
    i = end;
  }
  return blocks;
}

/** Masks what must differ between two runs of the same command. */
export function normalize(text: string): string {
  let out = text
    .replace(/\b\d{8}T\d{6}Z\b/g, '<UTC>')
    .replace(/"seconds":-?[\d.e+-]+/g, '"seconds":<time>')
    .replace(/"trainSeconds":-?[\d.e+-]+/g, '"trainSeconds":<time>')
    .replace(/"peakRssMB":\d+/g, '"peakRssMB":<MB>')
    .replace(/\b\d+\.\d+s\b|\b\d+m\d\ds\b|\b\d+h\d\dm\b/g, '<time>');
  out = maskColumn(out, 'seconds');
  return out;
}

/** In a table (markdown or aligned by 2+ spaces) with a column headed `name`, every cell of that column becomes <time>. */
function maskColumn(text: string, name: string): string {
  const lines = text.split('\n');
  for (let h = 0; h < lines.length; h++) {
    const header = lines[h]!;
    if (header.startsWith('|')) {
      const col = header
        .split('|')
        .map((c) => c.trim())
        .indexOf(name);
      if (col < 0) continue;
      for (let r = h + 1; r < lines.length && lines[r]!.startsWith('|'); r++) {
        if (/^\|[-| :]+\|$/.test(lines[r]!)) continue;
        const cells = lines[r]!.split('|');
        cells[col] = ' <time> ';
        lines[r] = cells.join('|');
      }
    } else {
      const at = new RegExp(`(^|  )${name}(  |$)`).exec(header);
      if (!at) continue;
      const start = at.index + at[1]!.length;
      const next = header.slice(start + name.length).search(/ {2}\S/);
      const end = next < 0 ? Infinity : start + name.length + next + 2;
      for (let r = h + 1; r < lines.length && lines[r]!.trim() !== ''; r++) {
        const row = lines[r]!;
        if (/^[─\-\s]+$/.test(row)) continue; // the rule under the header
        if (row.length > start)
          lines[r] = row.slice(0, start) + '<time>' + (end === Infinity ? '' : ' ' + row.slice(end).trimStart());
      }
    }
  }
  return lines.join('\n');
}

let TMP = '';
let HOME = '';
let CWD = '';
let ENV: NodeJS.ProcessEnv = {};

interface Result {
  code: number | null;
  output: string;
  stderr: string;
}

function bash(script: string, stdoutOnly: boolean): Promise<Result> {
  // One pipe for both streams keeps their order, as a terminal would show it.
  const child = spawn('bash', ['-c', stdoutOnly ? script : `exec 2>&1\n${script}`], {
    cwd: CWD,
    env: ENV,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (output += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, stderr });
    });
  });
}

/** The scratch home's path as the README shows it. */
const shown = (text: string): string => text.split(HOME).join(SHOWN_HOME);

const lines = fs.readFileSync(README, 'utf8').split('\n');
const blocks = parseReadme(lines);
/** Update mode: fence line → the new block lines. */
const updates = new Map<number, string[]>();

before(() => {
  TMP = fs.realpathSync(scratchDir('regtrain-readme-test-'));
  HOME = path.join(TMP, 'home');
  CWD = path.join(HOME, 'regtrain');
  const bin = path.join(TMP, 'bin');
  fs.mkdirSync(CWD, { recursive: true });
  fs.mkdirSync(bin);
  for (const dir of ['configs', 'test']) fs.symlinkSync(path.join(ROOT, dir), path.join(CWD, dir));
  // As `npm install -g .` installs it: a link to bin/regtrain (so its hints say `regtrain`), run by this Node.
  fs.symlinkSync(path.join(ROOT, 'bin', 'regtrain'), path.join(bin, 'regtrain'));
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  ENV = {
    ...process.env,
    HOME,
    XDG_CACHE_HOME: path.join(HOME, '.cache'),
    PATH: `${bin}:${process.env.PATH ?? ''}`,
    REGTRAIN_BLAS: 'off',
    REGTRAIN_RELAXED_SIMD: 'off',
    LC_ALL: 'C.UTF-8',
  };
  for (const name of [
    'REGTRAIN_DATA_DIR',
    'REGTRAIN_BLAS_THREADS',
    'REGTRAIN_ACCEL',
    'REGTRAIN_SIMD',
    'REGTRAIN_MAX_MEMBERS',
    'COLUMNS',
    'NO_COLOR',
    'FORCE_COLOR',
  ])
    delete ENV[name];
});

after(() => {
  if (UPDATE && updates.size) {
    const out = [...lines];
    // From the end, so earlier fence lines keep their index.
    for (const [fence, body] of [...updates].sort((a, b) => b[0] - a[0])) {
      const old = blocks.find((b) => b.fenceLine === fence)!;
      out.splice(fence + 1, old.body.length, ...body);
    }
    fs.writeFileSync(README, out.join('\n'));
  }
  fs.rmSync(TMP, { recursive: true, force: true });
});

describe('the README parser and normaliser', () => {
  test('a marker names the block after it, with its flags', () => {
    const parsed = parseReadme([
      '<!-- example stdout exit=2: regtrain x --json -->',
      '```',
      'a',
      'b',
      '```',
      '<!-- setup -->',
      '```sh',
      'ls',
      '```',
      '<!-- file resolves-as=configs/a.yaml: a.yaml -->',
      '```yaml',
      'name: a',
      '```',
    ]);
    assert.deepEqual(parsed, [
      {
        kind: 'example',
        arg: 'regtrain x --json',
        stdoutOnly: true,
        exit: 2,
        resolvesAs: null,
        fenceLine: 1,
        body: ['a', 'b'],
      },
      { kind: 'setup', arg: '', stdoutOnly: false, exit: 0, resolvesAs: null, fenceLine: 6, body: ['ls'] },
      {
        kind: 'file',
        arg: 'a.yaml',
        stdoutOnly: false,
        exit: 0,
        resolvesAs: 'configs/a.yaml',
        fenceLine: 10,
        body: ['name: a'],
      },
    ]);
  });

  test('durations, timestamps, memory and a seconds column are masked; figures are not', () => {
    assert.equal(
      normalize(
        'Epoch 1/3 - 0.4s - loss: 2.3010\nDone in 1m05s; run directory: runs/quick-20261127T153800Z\n{"seconds":0.45,"peakRssMB":190,"loss":1.5}',
      ),
      'Epoch 1/3 - <time> - loss: 2.3010\nDone in <time>; run directory: runs/quick-<UTC>\n{"seconds":<time>,"peakRssMB":<MB>,"loss":1.5}',
    );
    assert.equal(
      normalize('run  acc     seconds\n───  ───     ───────\nl1   0.8100  12.3\nl2   0.8200  9.1'),
      'run  acc     seconds\n───  ───     ───────\nl1   0.8100  <time>\nl2   0.8200  <time>',
    );
    assert.equal(
      normalize('| run | seconds | acc |\n|---|---|---|\n| l1 | 12.3 | 0.81 |'),
      '| run | seconds | acc |\n|---|---|---|\n| l1 | <time> | 0.81 |',
    );
  });

  test('the README has examples of every kind of output it promises', () => {
    const commands = blocks.filter((b) => b.kind === 'example').map((b) => b.arg);
    for (const cmd of [
      'regtrain run configs/quick.yaml',
      'regtrain run configs/quick.yaml --json',
      'regtrain validate',
      'regtrain evaluate',
      'regtrain compare',
      'regtrain predict',
    ])
      assert.ok(
        commands.some((c) => c.startsWith(cmd)),
        `no README example of ${cmd}`,
      );
  });
});

describe('README.md shows what regtrain prints', () => {
  for (const block of blocks) {
    const where = `README.md:${block.fenceLine + 1}`;
    if (block.kind === 'file') {
      test(`${where}: the file ${block.arg} is written as shown${block.resolvesAs ? `, and is the same spec as ${block.resolvesAs}` : ''}`, async () => {
        fs.writeFileSync(path.join(CWD, block.arg), block.body.join('\n') + '\n');
        if (!block.resolvesAs) {
          // A file shown is a file used: a later example or setup block runs a command naming it.
          const users = blocks.filter(
            (b) =>
              b.fenceLine > block.fenceLine &&
              b.kind !== 'file' &&
              [b.arg, ...b.body].some((l) => l.includes(block.arg)),
          );
          assert.ok(users.length > 0, `${where}: no later example runs a command on ${block.arg}`);
          return;
        }
        // A file that stands for a shipped config must resolve to the very same spec: what `regtrain validate
        // --json` prints for each (JSON.stringify of loadSpec's spec), read in this process (the README shows the
        // file, not these commands; a process each cost ~0.4 CPU-s, the whole CLI loaded here ~0.6).
        const resolved = (file: string) => JSON.parse(JSON.stringify(loadSpec(path.join(CWD, file)).spec)) as unknown;
        assert.deepEqual(resolved(block.arg), resolved(block.resolvesAs));
      });
    } else if (block.kind === 'setup') {
      test(`${where}: the commands shown run`, async () => {
        const r = await bash(`set -e\n${block.body.join('\n')}`, false);
        assert.equal(r.code, 0, `${block.body.join('\n')}\nexited ${r.code}:\n${r.output}`);
      });
    } else {
      test(`${where}: \`${block.arg}\` prints the block below it`, async () => {
        const r = await bash(block.arg, block.stdoutOnly);
        assert.equal(r.code, block.exit, `exit ${r.code}, expected ${block.exit}\n${r.output}\n${r.stderr}`);
        const actual = shown(r.output).replace(/\n$/, '').split('\n');
        if (UPDATE) {
          // Only blocks that differ in more than durations and timestamps are rewritten: no churn.
          if (normalize(actual.join('\n')) !== normalize(block.body.join('\n'))) updates.set(block.fenceLine, actual);
          return;
        }
        assert.equal(
          normalize(actual.join('\n')),
          normalize(block.body.join('\n')),
          `${where} differs from the output of ${block.arg} (REGTRAIN_README_UPDATE=1 rewrites it)`,
        );
      });
    }
  }
});
