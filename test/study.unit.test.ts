/**
 * `regtrain plan` (and `run` on a study) checked through the real program in process
 * (test/helpers/in-process.ts): the artifacts, reusing a study directory, refusing another study's,
 * the member cap and the site options. test/study.test.ts keeps what needs processes: members run by
 * a study, plans racing for one directory, a printed line run by a shell, and refusals through the real boundary.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { regtrainInProcess } from './helpers/in-process';
import { BASE, pathWithRegtrain, tmpdir, TWO_BY_TWO, writeSpec } from './helpers/study-fixtures';

const ROOT = path.resolve(__dirname, '../..');
/** `regtrain` on PATH, as after the README's install: plan's Slurm and parallel artifacts need it. */
const ON_PATH = pathWithRegtrain(tmpdir());
function cli(args: string[], cwd = ROOT) {
  return regtrainInProcess(args, { cwd, env: { PATH: ON_PATH } });
}

test("every artifact is free of this machine's absolute paths, and --json prints one line naming the study directory, the artifact and the member count", async () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, TWO_BY_TWO);
  for (const format of ['slurm', 'k8s', 'parallel', 'lines']) {
    const r = await cli(['plan', spec, '--format', format, '--json', '--jobs', '2', '--regtrain', 'npx regtrain'], dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split('\n').length, 2, 'one line');
    const out = JSON.parse(r.stdout) as { studyDir: string; artifact: string; members: number };
    assert.deepEqual(Object.keys(out), ['studyDir', 'artifact', 'members']);
    assert.equal(out.members, 4);
    assert.equal(path.dirname(out.artifact), out.studyDir);
    const text = fs.readFileSync(out.artifact, 'utf8');
    for (const local of [dir, fs.realpathSync(dir), ROOT, process.execPath, os.homedir(), os.tmpdir()])
      assert.ok(!text.includes(local), `${format} artifact contains ${local}`);
    assert.match(text, /npx regtrain/);
  }
  const study = fs.readFileSync(
    path.join(dir, 'studies', fs.readdirSync(path.join(dir, 'studies'))[0]!, 'study.json'),
    'utf8',
  );
  assert.ok(!study.includes(dir) && !study.includes(ROOT), 'study.json holds no absolute path');
});

test('planning the same study again reuses its directory and keeps its files; the same spec with another --set is another study', async () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, TWO_BY_TWO);
  const first = await cli(['plan', spec, '--format', 'parallel'], dir);
  const second = await cli(['plan', spec, '--format', 'slurm'], dir);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(second.code, 0, second.stderr);
  const studyDir = path.dirname(first.stdout.trim());
  assert.equal(path.dirname(second.stdout.trim()), studyDir);
  assert.match(second.stderr, /^found study tiny: 4 members/);
  assert.deepEqual(fs.readdirSync(path.join(dir, studyDir)).sort(), [
    'logs',
    'parallel.sh',
    'runs',
    'slurm.sbatch',
    'specs',
    'study.json',
  ]);
  const other = await cli(['plan', spec, '--set', 'training.epochs=3'], dir);
  assert.equal(other.code, 0, other.stderr);
  assert.notEqual(path.dirname(other.stdout.trim()), studyDir);
  assert.equal(fs.readdirSync(path.join(dir, 'studies')).length, 2);
});

test('a study directory holds one study: another study, a run directory or a folder of other files is refused and left untouched', async () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, TWO_BY_TWO);
  const studyDir = path.join(dir, 'S');
  assert.equal((await cli(['plan', spec, '--out', studyDir], dir)).code, 0);
  const snapshot = (d: string) =>
    fs
      .readdirSync(d, { recursive: true })
      .map(String)
      .sort()
      .map((f) => [f, fs.statSync(path.join(d, f)).isFile() ? fs.readFileSync(path.join(d, f), 'utf8') : 'dir']);
  const before = snapshot(studyDir);
  const other = writeSpec(dir, BASE + 'variants: { x: {}, y: { training.epochs: 3 } }\n', 'other.yaml');
  const r = await cli(['plan', other, '--out', studyDir], dir);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    new RegExp(
      `^error: ${studyDir}: holds another study \\(tiny, 4 members, hash [0-9a-f]{10}; this one is tiny, 2 members, hash [0-9a-f]{10}\\); a study directory holds one study: choose another directory\n$`,
    ),
  );
  assert.deepEqual(snapshot(studyDir), before);
  // A finished run directory is not a study directory.
  const runDir = path.join(dir, 'run');
  fs.mkdirSync(runDir);
  for (const f of ['spec.yaml', 'metrics.json', 'weights.bin']) fs.writeFileSync(path.join(runDir, f), f);
  const intoRun = await cli(['plan', other, '--study-dir', runDir], dir);
  assert.equal(intoRun.code, 2);
  assert.equal(intoRun.stderr, `error: ${runDir}: is a run directory, not a study directory; choose another\n`);
  assert.deepEqual(fs.readdirSync(runDir).sort(), ['metrics.json', 'spec.yaml', 'weights.bin']);
  const misc = path.join(dir, 'misc');
  fs.mkdirSync(misc);
  fs.writeFileSync(path.join(misc, 'notes.txt'), 'mine');
  const intoMisc = await cli(['plan', other, '--study-dir', misc], dir);
  assert.equal(intoMisc.code, 2);
  assert.equal(
    intoMisc.stderr,
    `error: ${misc}: exists, is not empty and holds no study.json; choose an empty or new directory\n`,
  );
  // `run STUDY --out` obeys the same rule.
  const run = await cli(['run', other, '--out', studyDir, '--dry-run'], dir);
  assert.equal(run.code, 0, 'a dry run writes nothing');
  const runInto = await cli(['run', other, '--out', studyDir], dir);
  assert.equal(runInto.code, 2);
  assert.match(runInto.stderr, /holds another study/);
  assert.deepEqual(snapshot(studyDir), before);
});

test("a study's member count is checked before it is expanded: a huge sweep is refused at once, naming the count and how to raise the cap", async () => {
  const dir = tmpdir();
  const values = `[${Array.from({ length: 1000 }, (_, i) => i + 1).join(', ')}]`;
  const spec = writeSpec(
    dir,
    BASE +
      `sweep: { training.batchSize: ${values}, training.epochs: ${values} }\nrepeats: 1000\nvariants: { a: {}, b: {} }\n`,
  );
  const r = await cli(['plan', spec], dir);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    `error: study.yaml: the study has 2 × 1000 × 1000 × 1000 = 2000000000 members, more than the limit of 10000; raise it with --max-members N (or REGTRAIN_MAX_MEMBERS=N) if you mean it\n`,
  );
  assert.equal(fs.existsSync(path.join(dir, 'studies')), false);
  const small = writeSpec(dir, BASE + 'repeats: 3\n', 'small.yaml');
  const capped = await cli(['plan', small, '--max-members', '2'], dir);
  assert.equal(capped.code, 2);
  assert.match(capped.stderr, /the study has 1 × 3 = 3 members, more than the limit of 2/);
  const viaEnv = await regtrainInProcess(['run', small, '--dry-run'], {
    cwd: dir,
    env: { REGTRAIN_MAX_MEMBERS: '2' },
  });
  assert.equal(viaEnv.code, 2);
  assert.match(viaEnv.stderr, /more than the limit of 2/);
  assert.equal((await cli(['plan', small, '--max-members', '3'], dir)).code, 0);
  const bad = await cli(['plan', small, '--max-members', 'lots'], dir);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, 'error: --max-members: expected a positive integer, got "lots"\n');
});

test('plan refuses bad site options with one line naming the option', async () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, TWO_BY_TWO);
  for (const [args, message] of [
    [
      ['--format', 'pbs'],
      "error: option '--format <format>' argument 'pbs' is invalid. Allowed choices are slurm, k8s, parallel, lines.",
    ],
    [['--jobs', '0'], 'error: --jobs 0: expected an integer from 1 to 100000'],
    [['--cpus', 'two'], 'error: --cpus two: expected an integer from 1 to 1024'],
    [['--mem', '2GB'], 'error: --mem 2GB: expected a size like 2G, 1500M (K, M, G or T; binary units)'],
    [['--time', '1h'], 'error: --time 1h: expected minutes or [D-]HH:MM:SS, e.g. 2:00:00'],
    [['--pvc', 'My_Claim'], 'error: --pvc My_Claim: expected a Kubernetes name (lowercase letters, digits and -)'],
    [['--regtrain', ' '], 'error: --regtrain: expected a command, e.g. regtrain or "npx regtrain"'],
  ] as const) {
    const r = await cli(['plan', spec, ...args], dir);
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.stderr.split('\n')[0], message);
  }
  assert.equal(fs.existsSync(path.join(dir, 'studies')), false, 'nothing written');
});

test('plan refuses a spec that is not a study', async () => {
  const dir = tmpdir();
  const r = await cli(['plan', writeSpec(dir, BASE)], dir);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /not a study/);
});
