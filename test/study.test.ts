import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { parseSpec, SpecError } from '../src/spec';
import { expandStudy, isStudy, runStudy, type StudyFile } from '../src/study';
import { InputError } from '../src/errors';
import { BIN, ROOT, regtrain, regtrainSync } from './helpers/cli';

const FAKE = path.join(ROOT, 'test', 'fixtures', 'bin');

const BASE = `
name: tiny
seed: 1234
data: { trainLimit: 800, testLimit: 500, validation: { size: 200 } }
model:
  layers:
    - flatten: {}
    - dense: { units: 32, activation: relu }
    - dense: { units: 10, activation: softmax }
training: { epochs: 2 }
`;

function tmpdir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'regtrain-study-'));
}
function writeSpec(dir: string, text: string, file = 'study.yaml'): string {
  const p = path.join(dir, file);
  fs.writeFileSync(p, text);
  return p;
}
/** `regtrain` on PATH, as after the README's install: plan's Slurm and parallel artifacts need it. */
const ON_PATH = regtrainOnPath(tmpdir());
function cli(args: string[], cwd = ROOT, env = ON_PATH) {
  return regtrainSync(args, { cwd, env });
}

test('a spec is a study when it has variants, a sweep, or more than one repeat', () => {
  assert.equal(isStudy({ name: 'x' }), false);
  assert.equal(isStudy({ variants: null, sweep: null, repeats: 1 }), false);
  assert.equal(isStudy({ variants: { a: {} } }), true);
  assert.equal(isStudy({ sweep: { seed: [1, 2] } }), true);
  assert.equal(isStudy({ repeats: 2 }), true);
});

test('variants × sweep points × repeats expand to named members with their overrides and seeds', () => {
  const loaded = parseSpec(
    BASE +
      `variants:
  baseline: {}
  l1: { model.layers.1.dense.kernelRegularizer: { l1: 0.001 } }
sweep:
  training.batchSize: [16, 64]
repeats: 2
`,
    'study.yaml',
  );
  const members = expandStudy(loaded);
  assert.deepEqual(
    members.map((m) => m.name),
    [
      'baseline-batchSize=16-seed1234',
      'baseline-batchSize=16-seed1235',
      'baseline-batchSize=64-seed1234',
      'baseline-batchSize=64-seed1235',
      'l1-batchSize=16-seed1234',
      'l1-batchSize=16-seed1235',
      'l1-batchSize=64-seed1234',
      'l1-batchSize=64-seed1235',
    ],
  );
  const m = members[6]!;
  assert.equal(m.variant, 'l1');
  assert.equal(m.group, 'l1-batchSize=64');
  assert.deepEqual(m.sweep, { 'training.batchSize': 64 });
  assert.deepEqual(
    m.overrides.map((o) => [o.path.join('.'), o.value]),
    [
      ['model.layers.1.dense.kernelRegularizer', { l1: 0.001 }],
      ['training.batchSize', 64],
      ['seed', 1234],
    ],
  );
  // The variant's value replaces what is there, defaults fill the rest; the member is a plain single run.
  assert.deepEqual(m.spec.model.layers[1]!.dense!.kernelRegularizer, { l1: 0.001, l2: 0 });
  assert.equal(m.spec.training.batchSize, 64);
  assert.equal(m.spec.seed, 1234);
  assert.equal(m.spec.name, 'l1-batchSize_64-seed1234');
  assert.equal(m.spec.variants, null);
  assert.equal(m.spec.sweep, null);
  assert.equal(m.spec.repeats, 1);
  assert.equal(members[0]!.spec.model.layers[1]!.dense!.kernelRegularizer, null);
});

test('without variants the base spec is the one variant, named base', () => {
  const members = expandStudy(parseSpec(BASE + 'repeats: 3\n', 'study.yaml'));
  assert.deepEqual(
    members.map((m) => [m.name, m.variant, m.seed]),
    [
      ['base-seed1234', 'base', 1234],
      ['base-seed1235', 'base', 1235],
      ['base-seed1236', 'base', 1236],
    ],
  );
});

test('sweep keys are shortened only as far as they stay distinct, and long names stay unique within 64 characters', () => {
  const loaded = parseSpec(
    BASE +
      `sweep:
  model.layers.1.dense.kernelRegularizer.l1: [0, 0.0001]
  model.layers.2.dense.kernelRegularizer.l1: [0.001]
  model.layers.1.dense.kernelInitializer: [glorotUniform, heNormal]
`,
    'study.yaml',
  );
  const names = expandStudy(loaded).map((m) => m.name);
  assert.equal(names[0], 'base-1.l1=0-2.l1=0.001-kernelInitializer=glorotUniform');
  assert.equal(new Set(names).size, 4);
  for (const n of names) {
    assert.ok(n.length <= 64, `${n} is longer than 64`);
    assert.match(n, /^[A-Za-z0-9][A-Za-z0-9._=+-]*$/);
  }
  const long = expandStudy(
    parseSpec(
      BASE +
        `sweep: { data.normalize: [${'a'.repeat(0)}scale01], model.layers.1.dense.activation: [relu, selu] }\nvariants: { ${'v'.repeat(60)}: {} }\n`,
      'study.yaml',
    ),
  ).map((m) => m.name);
  assert.equal(new Set(long).size, 2);
  for (const n of long) assert.ok(n.length <= 64 && /-[0-9a-f]{8}$/.test(n), n);
  const short = expandStudy(
    parseSpec(BASE + 'sweep: { model.layers.1.dense.kernelRegularizer.l1: [0, 1e-4, 1e-3, 1e-2] }\n', 'study.yaml'),
  ).map((m) => m.name);
  assert.deepEqual(short, ['base-l1=0', 'base-l1=0.0001', 'base-l1=0.001', 'base-l1=0.01']);
});

test('a bad value in a variant is reported with the variant and the path', () => {
  const loaded = parseSpec(
    BASE + 'variants:\n  ok: {}\n  l1: { model.layers.1.dense.kernelRegularizer.l1: -1 }\n',
    'study.yaml',
  );
  assert.throws(
    () => expandStudy(loaded),
    (err: unknown) => {
      assert.ok(err instanceof SpecError);
      assert.match(err.message, /model\.layers\.1\.dense\.kernelRegularizer\.l1: expected a finite number ≥ 0, got -1/);
      assert.match(err.message, /variant 'l1'/);
      return true;
    },
  );
});

test('a variant key that is not a dotted path is refused with the variant named', () => {
  const loaded = parseSpec(BASE + 'variants:\n  odd: { "model layers": 1 }\n', 'study.yaml');
  assert.throws(
    () => expandStudy(loaded),
    (err: unknown) =>
      err instanceof InputError && /variant 'odd'.*'model layers' is not a dotted path/.test(err.message),
  );
});

test('an unknown key in a variant gets a did-you-mean hint', () => {
  const loaded = parseSpec(BASE + 'variants:\n  typo: { training.epoch: 3 }\n', 'study.yaml');
  assert.throws(() => expandStudy(loaded), /training\.epoch: unknown key \(did you mean 'epochs'\?\).*variant 'typo'/);
});

test('--dry-run lists every member and writes nothing', async () => {
  const dir = tmpdir();
  const loaded = parseSpec(BASE + 'variants: { a: {}, b: { training.epochs: 3 } }\nrepeats: 2\n', 'study.yaml');
  const out = path.join(dir, 'study');
  const writes: string[] = [];
  const orig = process.stdout.write.bind(process.stdout);
  const origErr = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => (writes.push(String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    const res = await runStudy(loaded, { out, dryRun: true, json: true });
    assert.equal(res.length, 4);
  } finally {
    process.stdout.write = orig;
    process.stderr.write = origErr;
  }
  const events = writes
    .join('')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { event: string; member: string; overrides: unknown[] });
  assert.deepEqual(
    events.map((e) => e.member),
    ['a-seed1234', 'a-seed1235', 'b-seed1234', 'b-seed1235'],
  );
  assert.deepEqual(events[2]!.overrides, [
    { path: 'training.epochs', value: 3 },
    { path: 'seed', value: 1234 },
  ]);
  assert.equal(fs.existsSync(out), false);
});

test('a study runs each member as a child process into its own run directory, tagging their JSON lines', () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, BASE + 'variants: { baseline: {}, wide: { model.layers.1.dense.units: 64 } }\n');
  const out = path.join(dir, 'study');
  const r = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '1', '--json'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const events = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    events.map((e) => `${e.event}${e.member ? ` ${e.member}` : ''}`),
    [
      'study',
      'member-start baseline',
      'epoch baseline',
      'done baseline',
      'member-end baseline',
      'member-start wide',
      'epoch wide',
      'done wide',
      'member-end wide',
      'study-end',
    ],
  );
  const study = JSON.parse(fs.readFileSync(path.join(out, 'study.json'), 'utf8')) as StudyFile;
  assert.equal(study.baseline, 'baseline');
  assert.deepEqual(
    study.members.map((m) => m.name),
    ['baseline', 'wide'],
  );
  assert.match(fs.readFileSync(path.join(out, 'specs', 'wide.yaml'), 'utf8'), /units: 64/);
  for (const m of ['baseline', 'wide']) assert.ok(fs.existsSync(path.join(out, 'runs', m, 'metrics.json')));
  // Re-running into the same directory keeps complete runs instead of training them again.
  const again = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '1'], { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /\[baseline\] already complete, kept/);
  // A different study may not reuse the directory.
  const other = writeSpec(
    dir,
    BASE + 'variants: { baseline: {}, wide: { model.layers.1.dense.units: 128 } }\n',
    'other.yaml',
  );
  const refused = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), other, out, '1'], {
    encoding: 'utf8',
  });
  assert.equal(refused.status, 2);
  assert.match(
    refused.stderr,
    /holds another study \(tiny, 2 members, hash [0-9a-f]{10}; this one is tiny, 2 members, hash [0-9a-f]{10}\); a study directory holds one study: choose another directory/,
  );
});

test('a failing member does not stop the others, and the study exits 1 naming it', () => {
  const dir = tmpdir();
  const spec = writeSpec(
    dir,
    BASE + 'variants: { ok1: {}, fail: { training.epochs: 3 }, ok2: { training.epochs: 4 } }\n',
  );
  const out = path.join(dir, 'study');
  const r = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '2'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  // The terminal gets one line per member; what each printed is in its log.
  assert.match(
    r.stderr,
    new RegExp(
      `^\\[fail\\] failed \\(exit 1\\) in \\d+\\.\\ds: see ${path.relative(process.cwd(), path.join(out, 'logs', 'fail.log'))}$`,
      'm',
    ),
  );
  assert.match(r.stderr, /^\[ok2\] done in \d+\.\ds$/m);
  assert.match(fs.readFileSync(path.join(out, 'logs', 'fail.log'), 'utf8'), /^training fail\nsecond line\nboom\n$/);
  assert.match(fs.readFileSync(path.join(out, 'logs', 'ok2.log'), 'utf8'), /^training ok2$/m);
  assert.match(r.stderr, /failed: fail \(exit 1\)/);
  assert.ok(fs.existsSync(path.join(out, 'runs', 'ok2', 'metrics.json')));
});

test('--jobs 2 runs two members at once', () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, BASE + 'repeats: 4\n');
  const out = path.join(dir, 'study');
  const r = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '2'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  let running = 0;
  let peak = 0;
  for (const line of fs.readFileSync(path.join(out, 'fake.log'), 'utf8').trim().split('\n').sort()) {
    running += line.includes(' start ') ? 1 : -1;
    peak = Math.max(peak, running);
  }
  assert.equal(peak, 2);
});

test('SIGINT reaches the running members, starts no new ones, the study exits 130, and a rerun resumes it', async () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, BASE + 'variants: { slow: {}, later: { training.epochs: 3 } }\n');
  const out = path.join(dir, 'study');
  const child = spawn(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  // The member's own lines go to its log: interrupt once it is training.
  const memberLog = path.join(out, 'logs', 'slow.log');
  while (!(fs.existsSync(memberLog) && fs.readFileSync(memberLog, 'utf8').includes('training slow')))
    await new Promise((resolve) => setTimeout(resolve, 50));
  child.kill('SIGINT');
  const code = await closed;
  assert.equal(code, 130, stderr);
  assert.equal(
    JSON.parse(fs.readFileSync(path.join(out, 'runs', 'slow', 'metrics.json'), 'utf8')).status,
    'incomplete',
  );
  assert.equal(fs.existsSync(path.join(out, 'runs', 'later')), false);
  assert.match(stderr, /1 not started/);
  // Running the study again continues the interrupted member (run refuses a non-empty --out) and runs the rest.
  const again = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '1'], { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  const log = fs
    .readFileSync(path.join(out, 'fake.log'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(' ').slice(1).join(' '));
  assert.deepEqual(log, ['start slow', 'end slow', 'resume slow', 'end slow', 'start later', 'end later']);
});

/** A directory with `regtrain` on PATH, as on a node where regtrain is installed. */
function regtrainOnPath(dir: string): NodeJS.ProcessEnv {
  const binDir = path.join(dir, 'path-bin');
  fs.mkdirSync(binDir, { recursive: true });
  if (!fs.existsSync(path.join(binDir, 'regtrain'))) fs.symlinkSync(BIN, path.join(binDir, 'regtrain'));
  return { ...process.env, PATH: `${binDir}${path.delimiter}${process.env.PATH ?? ''}` };
}

const TWO_BY_TWO =
  BASE + 'variants: { baseline: {}, l2: { model.layers.1.dense.kernelRegularizer: l2 } }\nrepeats: 2\n';

test('plan --format lines writes members.txt into studies/<name>-<hash>, prints its path, and each line runs as printed with no path of this machine', () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, TWO_BY_TWO);
  const r = cli(['plan', spec], dir);
  assert.equal(r.status, 0, r.stderr);
  const artifact = r.stdout.trim();
  assert.match(artifact, /^studies\/tiny-[0-9a-f]{10}\/members\.txt$/);
  const studyDir = path.dirname(artifact);
  const lines = fs.readFileSync(path.join(dir, artifact), 'utf8').trim().split('\n');
  assert.deepEqual(
    lines,
    [0, 1, 2, 3].map((i) => `regtrain run-member ${studyDir} --index ${i}`),
  );
  assert.match(
    r.stderr,
    new RegExp(`^planned study tiny: 4 members in ${studyDir}; .*afterwards: regtrain compare ${studyDir}\n$`),
  );
  // The line itself runs from a shell where regtrain is installed (--help: the test must not train).
  const help = spawnSync('sh', ['-c', `${lines[0]} --help`], { encoding: 'utf8', cwd: dir, env: regtrainOnPath(dir) });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /Usage: regtrain run-member/);
  const study = JSON.parse(fs.readFileSync(path.join(dir, studyDir, 'study.json'), 'utf8')) as StudyFile;
  assert.deepEqual(
    study.members.map((m) => [m.name, m.spec, m.runDir]),
    ['baseline-seed1234', 'baseline-seed1235', 'l2-seed1234', 'l2-seed1235'].map((n) => [
      n,
      `specs/${n}.yaml`,
      `runs/${n}`,
    ]),
  );
  for (const m of study.members)
    assert.equal(cli(['validate', path.join(dir, studyDir, m.spec!)], dir).status, 0, `${m.spec!} does not validate`);
});

test("every artifact is free of this machine's absolute paths, and --json prints one line naming the study directory, the artifact and the member count", () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, TWO_BY_TWO);
  for (const format of ['slurm', 'k8s', 'parallel', 'lines']) {
    const r = cli(['plan', spec, '--format', format, '--json', '--jobs', '2', '--regtrain', 'npx regtrain'], dir);
    assert.equal(r.status, 0, r.stderr);
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

test('planning the same study again reuses its directory and keeps its files; the same spec with another --set is another study', () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, TWO_BY_TWO);
  const first = cli(['plan', spec, '--format', 'parallel'], dir);
  const second = cli(['plan', spec, '--format', 'slurm'], dir);
  assert.equal(first.status, 0, first.stderr);
  assert.equal(second.status, 0, second.stderr);
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
  const other = cli(['plan', spec, '--set', 'training.epochs=3'], dir);
  assert.equal(other.status, 0, other.stderr);
  assert.notEqual(path.dirname(other.stdout.trim()), studyDir);
  assert.equal(fs.readdirSync(path.join(dir, 'studies')).length, 2);
});

test('a study directory holds one study: another study, a run directory or a folder of other files is refused and left untouched', () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, TWO_BY_TWO);
  const studyDir = path.join(dir, 'S');
  assert.equal(cli(['plan', spec, '--out', studyDir], dir).status, 0);
  const snapshot = (d: string) =>
    fs
      .readdirSync(d, { recursive: true })
      .map(String)
      .sort()
      .map((f) => [f, fs.statSync(path.join(d, f)).isFile() ? fs.readFileSync(path.join(d, f), 'utf8') : 'dir']);
  const before = snapshot(studyDir);
  const other = writeSpec(dir, BASE + 'variants: { x: {}, y: { training.epochs: 3 } }\n', 'other.yaml');
  const r = cli(['plan', other, '--out', studyDir], dir);
  assert.equal(r.status, 2);
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
  const intoRun = cli(['plan', other, '--study-dir', runDir], dir);
  assert.equal(intoRun.status, 2);
  assert.equal(intoRun.stderr, `error: ${runDir}: is a run directory, not a study directory; choose another\n`);
  assert.deepEqual(fs.readdirSync(runDir).sort(), ['metrics.json', 'spec.yaml', 'weights.bin']);
  const misc = path.join(dir, 'misc');
  fs.mkdirSync(misc);
  fs.writeFileSync(path.join(misc, 'notes.txt'), 'mine');
  const intoMisc = cli(['plan', other, '--study-dir', misc], dir);
  assert.equal(intoMisc.status, 2);
  assert.equal(
    intoMisc.stderr,
    `error: ${misc}: exists, is not empty and holds no study.json; choose an empty or new directory\n`,
  );
  // `run STUDY --out` obeys the same rule.
  const run = cli(['run', other, '--out', studyDir, '--dry-run'], dir);
  assert.equal(run.status, 0, 'a dry run writes nothing');
  const runInto = cli(['run', other, '--out', studyDir], dir);
  assert.equal(runInto.status, 2);
  assert.match(runInto.stderr, /holds another study/);
  assert.deepEqual(snapshot(studyDir), before);
});

test('two plans of different studies racing for one directory: exactly one is written, the other is refused', async () => {
  const dir = tmpdir();
  for (let round = 0; round < 3; round++) {
    const studyDir = path.join(dir, `race-${round}`);
    const specs = ['a', 'b'].map((v) =>
      writeSpec(dir, BASE + `variants: { ${v}1: {}, ${v}2: { training.epochs: 3 } }\n`, `${v}.yaml`),
    );
    const results = await Promise.all(
      specs.map((spec) => regtrain(['plan', spec, '--study-dir', studyDir], { cwd: dir, env: ON_PATH })),
    );
    assert.deepEqual(results.map((r) => r.code).sort(), [0, 2], results.map((r) => r.stderr).join('\n'));
    const winner = results.findIndex((r) => r.code === 0) === 0 ? 'a' : 'b';
    const study = JSON.parse(fs.readFileSync(path.join(studyDir, 'study.json'), 'utf8')) as StudyFile;
    assert.deepEqual(
      study.members.map((m) => m.name),
      [`${winner}1`, `${winner}2`],
    );
    assert.deepEqual(fs.readdirSync(path.join(studyDir, 'specs')).sort(), [`${winner}1.yaml`, `${winner}2.yaml`]);
  }
});

test("a study's member count is checked before it is expanded: a huge sweep is refused at once, naming the count and how to raise the cap", () => {
  const dir = tmpdir();
  const values = `[${Array.from({ length: 1000 }, (_, i) => i + 1).join(', ')}]`;
  const spec = writeSpec(
    dir,
    BASE +
      `sweep: { training.batchSize: ${values}, training.epochs: ${values} }\nrepeats: 1000\nvariants: { a: {}, b: {} }\n`,
  );
  const r = cli(['plan', spec], dir);
  assert.equal(r.status, 2);
  assert.equal(
    r.stderr,
    `error: study.yaml: the study has 2 × 1000 × 1000 × 1000 = 2000000000 members, more than the limit of 10000; raise it with --max-members N (or REGTRAIN_MAX_MEMBERS=N) if you mean it\n`,
  );
  assert.equal(fs.existsSync(path.join(dir, 'studies')), false);
  const small = writeSpec(dir, BASE + 'repeats: 3\n', 'small.yaml');
  const capped = cli(['plan', small, '--max-members', '2'], dir);
  assert.equal(capped.status, 2);
  assert.match(capped.stderr, /the study has 1 × 3 = 3 members, more than the limit of 2/);
  const viaEnv = regtrainSync(['run', small, '--dry-run'], {
    cwd: dir,
    env: { ...process.env, REGTRAIN_MAX_MEMBERS: '2' },
  });
  assert.equal(viaEnv.status, 2);
  assert.match(viaEnv.stderr, /more than the limit of 2/);
  assert.equal(cli(['plan', small, '--max-members', '3'], dir).status, 0);
  const bad = cli(['plan', small, '--max-members', 'lots'], dir);
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr, 'error: --max-members: expected a positive integer, got "lots"\n');
});

test('plan refuses bad site options with one line naming the option', () => {
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
    const r = cli(['plan', spec, ...args], dir);
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stderr.split('\n')[0], message);
  }
  assert.equal(fs.existsSync(path.join(dir, 'studies')), false, 'nothing written');
});

test('plan refuses a spec that is not a study', () => {
  const dir = tmpdir();
  const r = cli(['plan', writeSpec(dir, BASE)], dir);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /not a study/);
});
