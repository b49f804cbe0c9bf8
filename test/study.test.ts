import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { parseSpec, SpecError } from '../src/spec';
import { expandStudy, isStudy, runStudy, type StudyFile } from '../src/study';
import { InputError } from '../src/errors';
import { ROOT, regtrain } from './helpers/cli';
import { regtrainInProcess } from './helpers/in-process';
import { BASE, pathWithRegtrain, tmpdir, TWO_BY_TWO, writeSpec } from './helpers/study-fixtures';

const FAKE = path.join(ROOT, 'test', 'fixtures', 'bin');

/** `regtrain` on PATH, as after the README's install: plan's Slurm and parallel artifacts need it. */
const ON_PATH = { ...process.env, PATH: pathWithRegtrain(tmpdir()) };

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

test('plan --format lines writes members.txt into studies/<name>-<hash>, prints its path, and each line runs as printed with no path of this machine', async () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, TWO_BY_TWO);
  // plan and validate run in process (test/helpers/in-process.ts); the printed line runs in a real shell.
  const cli = (args: string[]) => regtrainInProcess(args, { cwd: dir, env: { PATH: ON_PATH.PATH } });
  const r = await cli(['plan', spec]);
  assert.equal(r.code, 0, r.stderr);
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
  const help = spawnSync('sh', ['-c', `${lines[0]} --help`], { encoding: 'utf8', cwd: dir, env: ON_PATH });
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
    assert.equal((await cli(['validate', path.join(dir, studyDir, m.spec!)])).code, 0, `${m.spec!} does not validate`);
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

test('plan refuses through a real process: a usage error (commander) and a bad site option each print their one line on stderr, nothing on stdout, exit 2', async () => {
  // Every site option is checked in process (study.unit.test.ts); these two go through the real boundary.
  const dir = tmpdir();
  const spec = writeSpec(dir, TWO_BY_TWO);
  for (const [args, message] of [
    [
      ['--format', 'pbs'],
      "error: option '--format <format>' argument 'pbs' is invalid. Allowed choices are slurm, k8s, parallel, lines.",
    ],
    [['--jobs', '0'], 'error: --jobs 0: expected an integer from 1 to 100000'],
  ] as const) {
    const r = await regtrain(['plan', spec, ...args], { cwd: dir, env: ON_PATH });
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.stdout, '', args.join(' '));
    assert.equal(r.stderr.split('\n')[0], message);
    assert.doesNotMatch(r.stderr, /internal error|^ {4}at /m);
  }
  assert.equal(fs.existsSync(path.join(dir, 'studies')), false, 'nothing written');
});
