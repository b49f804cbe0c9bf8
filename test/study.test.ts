import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { parseSpec, SpecError } from '../src/spec';
import { expandStudy, isStudy, runStudy, type StudyFile } from '../src/study';
import { InputError } from '../src/errors';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'regtrain');
const FAKE = path.join(ROOT, 'test', 'fixtures', 'bin');

const BASE = `
name: tiny
seed: 1234
data: { trainLimit: 1000, testLimit: 500, validation: { size: 200 } }
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
function cli(args: string[], cwd = ROOT) {
  return spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8' });
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
    ['baseline-batchSize=16-seed1234', 'baseline-batchSize=16-seed1235', 'baseline-batchSize=64-seed1234', 'baseline-batchSize=64-seed1235', 'l1-batchSize=16-seed1234', 'l1-batchSize=16-seed1235', 'l1-batchSize=64-seed1234', 'l1-batchSize=64-seed1235'],
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
  const long = expandStudy(parseSpec(BASE + `sweep: { data.normalize: [${'a'.repeat(0)}scale01], model.layers.1.dense.activation: [relu, selu] }\nvariants: { ${'v'.repeat(60)}: {} }\n`, 'study.yaml')).map((m) => m.name);
  assert.equal(new Set(long).size, 2);
  for (const n of long) assert.ok(n.length <= 64 && /-[0-9a-f]{8}$/.test(n), n);
  const short = expandStudy(parseSpec(BASE + 'sweep: { model.layers.1.dense.kernelRegularizer.l1: [0, 1e-4, 1e-3, 1e-2] }\n', 'study.yaml')).map((m) => m.name);
  assert.deepEqual(short, ['base-l1=0', 'base-l1=0.0001', 'base-l1=0.001', 'base-l1=0.01']);
});

test('a bad value in a variant is reported with the variant and the path', () => {
  const loaded = parseSpec(BASE + 'variants:\n  ok: {}\n  l1: { model.layers.1.dense.kernelRegularizer.l1: -1 }\n', 'study.yaml');
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
  assert.throws(() => expandStudy(loaded), (err: unknown) => err instanceof InputError && /variant 'odd'.*'model layers' is not a dotted path/.test(err.message));
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
  const events = writes.join('').trim().split('\n').map((l) => JSON.parse(l) as { event: string; member: string; overrides: unknown[] });
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
  const r = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '1', '--json'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    events.map((e) => `${e.event}${e.member ? ` ${e.member}` : ''}`),
    ['study', 'member-start baseline', 'epoch baseline', 'done baseline', 'member-end baseline', 'member-start wide', 'epoch wide', 'done wide', 'member-end wide', 'study-end'],
  );
  const study = JSON.parse(fs.readFileSync(path.join(out, 'study.json'), 'utf8')) as StudyFile;
  assert.equal(study.baseline, 'baseline');
  assert.deepEqual(study.members.map((m) => m.name), ['baseline', 'wide']);
  assert.match(fs.readFileSync(path.join(out, 'specs', 'wide.yaml'), 'utf8'), /units: 64/);
  for (const m of ['baseline', 'wide']) assert.ok(fs.existsSync(path.join(out, 'runs', m, 'metrics.json')));
  // Re-running into the same directory keeps complete runs instead of training them again.
  const again = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '1'], { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /\[baseline\] already complete, kept/);
  // A different study may not reuse the directory.
  const other = writeSpec(dir, BASE + 'variants: { baseline: {}, wide: { model.layers.1.dense.units: 128 } }\n', 'other.yaml');
  const refused = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), other, out, '1'], { encoding: 'utf8' });
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /holds a different study/);
});

test('a failing member does not stop the others, and the study exits 1 naming it', () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, BASE + 'variants: { ok1: {}, fail: { training.epochs: 3 }, ok2: { training.epochs: 4 } }\n');
  const out = path.join(dir, 'study');
  const r = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '2'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /\[fail\] boom/);
  assert.match(r.stderr, /\[ok2\] training ok2/);
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
  const child = spawn(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let sent = false;
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (!sent && stderr.includes('training slow')) sent = child.kill('SIGINT');
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 130, stderr);
  assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'runs', 'slow', 'metrics.json'), 'utf8')).status, 'incomplete');
  assert.equal(fs.existsSync(path.join(out, 'runs', 'later')), false);
  assert.match(stderr, /1 not started/);
  // Running the study again continues the interrupted member (run refuses a non-empty --out) and runs the rest.
  const again = spawnSync(process.execPath, [path.join(FAKE, 'study-driver.js'), spec, out, '1'], { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  const log = fs.readFileSync(path.join(out, 'fake.log'), 'utf8').trim().split('\n').map((l) => l.split(' ').slice(1).join(' '));
  assert.deepEqual(log, ['start slow', 'end slow', 'resume slow', 'end slow', 'start later', 'end later']);
});

test('plan writes the member specs and prints commands that run as printed', () => {
  const dir = tmpdir();
  const spec = writeSpec(dir, BASE + 'variants: { baseline: {}, l2: { model.layers.1.dense.kernelRegularizer: l2 } }\nrepeats: 2\n');
  const out = path.join(dir, 'my study'); // a space, so quoting matters
  const r = cli(['plan', spec, '--out', out], dir);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 4);
  assert.match(r.stderr, /regtrain compare/);
  for (const line of lines) {
    // The shell's own reading of the line: node, bin/regtrain, run, SPEC, --out, DIR.
    const argv = spawnSync('sh', ['-c', `set -- ${line}; printf '%s\\0' "$@"`], { encoding: 'utf8' }).stdout.split('\0').slice(0, -1);
    assert.equal(argv[0], process.execPath);
    assert.equal(argv[1], BIN);
    assert.equal(argv[2], 'run');
    assert.equal(argv[4], '--out');
    assert.ok(argv[5]!.startsWith(path.join(out, 'runs') + path.sep));
    assert.equal(cli(['validate', argv[3]!], dir).status, 0, `${argv[3]} does not validate`);
    // And the line itself executes from a shell (--help: the test must not train).
    const help = spawnSync('sh', ['-c', `${line} --help`], { encoding: 'utf8', cwd: os.tmpdir() });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /Usage: regtrain run/);
  }
  const study = JSON.parse(fs.readFileSync(path.join(out, 'study.json'), 'utf8')) as StudyFile;
  assert.deepEqual(study.members.map((m) => m.name), ['baseline-seed1234', 'baseline-seed1235', 'l2-seed1234', 'l2-seed1235']);
});

test('plan refuses a spec that is not a study', () => {
  const dir = tmpdir();
  const r = cli(['plan', writeSpec(dir, BASE)], dir);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /not a study/);
});
