import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BIN, QUICK as quick, killAfterFirstEpoch, launch, regtrainSync, sliceFlags, SMALL_SLICE } from './helpers/cli';
import { sharedDataDir } from './helpers/data';
import { inProcessRegtrain } from './helpers/resume-runs';
import { scratchDir } from './helpers/scratch';

const tmp = scratchDir('regtrain-resume-');
const dataDir = sharedDataDir();
const env = { ...process.env, REGTRAIN_DATA_DIR: dataDir };
const small = [...SMALL_SLICE, '--backend', 'wasm'];

/** `regtrain` as a real child process: for what is about the process (the resume of a run SIGKILLed, a resume
 * choosing its backend when it starts, the exit code and stderr of a refusal, a run on the reference step). */
function regtrain(args: string[], extraEnv: Record<string, string> = {}) {
  return regtrainSync(args, { cwd: tmp, env: { ...env, ...extraEnv } });
}
/** `regtrain` in this process (the same program and error boundary): the uninterrupted reference runs, the resumes
 * whose numbers and files a test compares, and the refusals. A run killed by a signal is always a real process. */
const regtrainHere = inProcessRegtrain(tmp, { REGTRAIN_DATA_DIR: dataDir });

/** A run SIGKILLed after its first epoch (so a checkpoint exists), with `extraEnv`. */
const runAndKillAfterFirstEpoch = (args: string[], extraEnv: Record<string, string> = {}) =>
  killAfterFirstEpoch(args, tmp, { ...env, ...extraEnv });

/** The spec file `killed-once` was started from: a copy of quick.yaml, which the tests that change or break the
 * spec a run started from overwrite (and the others put back). */
const OWN_SPEC = path.join(tmp, 'own-spec.yaml');
const QUICK_TEXT = fs.readFileSync(quick, 'utf8');

const read = (dir: string, file: string) => fs.readFileSync(path.join(tmp, dir, file));
const history = (dir: string) =>
  (JSON.parse(read(dir, 'history.json').toString()) as { epochs: Record<string, unknown>[] }).epochs.map(
    ({ seconds: _s, ...rest }) => rest,
  );

before(async () => {
  const r = await regtrainHere(['run', quick, ...small, '--out', 'whole', '-q']);
  assert.equal(r.code, 0, r.stderr);
  // One run of the same training (quick.yaml's text, from a file of its own) killed after its first epoch; the
  // tests that resume, damage or change such a run each take a copy (a run directory names no path of its own,
  // so a copy resumes as the original would).
  fs.writeFileSync(OWN_SPEC, QUICK_TEXT);
  await runAndKillAfterFirstEpoch(['run', OWN_SPEC, ...small, '--out', 'killed-once']);
});

/** A copy, named `dir`, of the run of quick.yaml's text on the small slice that was SIGKILLed after its first epoch. */
const killedRun = (dir: string) => killedOwnSpecRun(dir, QUICK_TEXT);
/** The same copy, with OWN_SPEC holding `specText` (the spec the run started from, changed or not). */
const killedOwnSpecRun = (dir: string, specText: string) => {
  fs.writeFileSync(OWN_SPEC, specText);
  fs.cpSync(path.join(tmp, 'killed-once'), path.join(tmp, dir), { recursive: true });
};

test('a run killed with SIGKILL and resumed ends with the same history and weights as an uninterrupted run', () => {
  killedRun('killed');
  assert.ok(fs.existsSync(path.join(tmp, 'killed', 'checkpoint.json')), 'the first epoch left a checkpoint');
  assert.ok(!fs.existsSync(path.join(tmp, 'killed', 'metrics.json')), 'a killed run has no metrics yet');
  const r = regtrain(['run', '--resume', 'killed', '-q']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(history('killed'), history('whole'));
  assert.ok(read('killed', 'weights.bin').equals(read('whole', 'weights.bin')), 'weights.bin is byte-identical');
  const metrics = JSON.parse(read('killed', 'metrics.json').toString()) as {
    status: string;
    test: { accuracy: number };
  };
  const wholeMetrics = JSON.parse(read('whole', 'metrics.json').toString()) as { test: { accuracy: number } };
  assert.equal(metrics.status, 'complete');
  assert.equal(metrics.test.accuracy, wholeMetrics.test.accuracy);
  assert.ok(
    !fs.readdirSync(path.join(tmp, 'killed')).some((f) => f.startsWith('checkpoint')),
    'a finished run keeps no checkpoint',
  );
});

test('a finished run cannot be resumed by mistake, and the refusal says how to train it longer', async () => {
  // Through a real process: its exit code and its whole stderr, one line (no stack).
  const r = regtrain(['run', '--resume', 'whole']);
  assert.equal(r.status, 2);
  assert.equal(r.stdout, '');
  assert.equal(
    r.stderr.trim(),
    `error: --resume whole: the run already finished (a finished run keeps no checkpoint to go on from); to train it for more epochs, start a new run from its spec: node ${BIN} run whole/spec.yaml --set training.epochs=N`,
  );
  // The suggested command, with N filled in, trains a new run from the finished run's spec.
  const longer = await regtrainHere([
    'run',
    'whole/spec.yaml',
    '--set',
    `training.epochs=${(JSON.parse(read('whole', 'metrics.json').toString()) as { epochsRun: number }).epochsRun + 1}`,
    '--out',
    'longer',
    '-q',
  ]);
  assert.equal(longer.code, 0, longer.stderr);
});

test('a run whose spec file changed since is refused unless --force', async () => {
  const specFile = OWN_SPEC;
  killedOwnSpecRun('changed', fs.readFileSync(quick, 'utf8').replace('seed: 1234', 'seed: 99'));
  const refused = await regtrainHere(['run', '--resume', 'changed']);
  assert.equal(refused.code, 2);
  assert.equal(
    refused.stderr.trim(),
    `error: --resume changed: ${specFile} changed since the run started; pass --force to continue with the changed spec`,
  );
  const forced = await regtrainHere(['run', '--resume', 'changed', '--force', '-q']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(read('changed', 'spec.yaml').toString(), /^seed: 99$/m);
});

test('resuming a directory that is not a run is refused with exit 2', async () => {
  fs.mkdirSync(path.join(tmp, 'empty'), { recursive: true });
  const r = await regtrainHere(['run', '--resume', 'empty']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim(), 'error: --resume empty: spec.yaml is missing; not a run directory');
});

for (const momentum of [0, 0.9]) {
  test(`a checkpoint from one training path resumes on the other (momentum ${momentum}) and the run completes`, async () => {
    const withMomentum = [...small, '--set', `optimizer.sgd.momentum=${momentum}`];
    // Lean step (OpenBLAS) → reference step (REGTRAIN_ACCEL=off), and back.
    for (const [first, second, name] of [
      [{}, { REGTRAIN_ACCEL: 'off' }, `lean-to-ref-${momentum}`],
      [{ REGTRAIN_ACCEL: 'off' }, {}, `ref-to-lean-${momentum}`],
    ] as const) {
      // Killed on the lean step at momentum 0 (SGD's default) is the shared killed run.
      if (momentum === 0 && !('REGTRAIN_ACCEL' in first)) killedRun(name);
      else await runAndKillAfterFirstEpoch(['run', quick, ...withMomentum, '--out', name], first);
      // The reference step (REGTRAIN_ACCEL=off, read when the backend starts) takes a process of its own; the
      // lean step resumes in this process, on the kernels the killed run used.
      const r =
        'REGTRAIN_ACCEL' in second
          ? regtrain(['run', '--resume', name, '-q'], second)
          : await regtrainHere(['run', '--resume', name, '-q']);
      assert.equal('status' in r ? r.status : r.code, 0, `${name}: ${r.stderr}`);
      // The switch really happened, and the user is told what it means.
      const [from, to] = name.startsWith('lean') ? ['lean', 'reference'] : ['reference', 'lean'];
      assert.match(
        r.stderr,
        new RegExp(
          `^warning: the checkpoint was written on wasm \\(${from} step\\), this run trains on wasm \\(${to} step\\): the result matches an uninterrupted run to float32 rounding, not bit for bit$`,
          'm',
        ),
      );
      assert.equal(history(name).length, 3);
      assert.ok(!fs.existsSync(path.join(tmp, name, '.regtrain.lock')), 'the lock is released');
    }
  });
}

test('a damaged checkpoint is refused with exit 2 and leaves no lock behind', async () => {
  killedRun('damaged');
  const bin = fs.readdirSync(path.join(tmp, 'damaged')).find((f) => /^checkpoint-\d+\.bin$/.test(f))!;
  const file = path.join(tmp, 'damaged', bin);
  const bytes = fs.readFileSync(file);
  bytes[100] ^= 0xff; // one weight's bits flipped, the size unchanged
  fs.writeFileSync(file, bytes);
  const r = await regtrainHere(['run', '--resume', 'damaged']);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr.trim(),
    `error: ${path.join(tmp, 'damaged', bin)}: does not match the hash in checkpoint.json (damaged checkpoint)`,
  );
  assert.ok(!fs.existsSync(path.join(tmp, 'damaged', '.regtrain.lock')), 'the lock is released');
});

test('a run with Adam, a cosine schedule and ReduceLROnPlateau killed with SIGKILL resumes bit for bit', async () => {
  const sets = [
    ...small,
    '--set',
    'optimizer={adam: {learningRate: {cosineDecay: {initialLearningRate: 0.002, decaySteps: 60, alpha: 0.1}}}}',
    '--set',
    'training.reduceLrOnPlateau={monitor: val_accuracy, patience: 0, factor: 0.5, minDelta: 0.5}',
  ];
  const whole = await regtrainHere(['run', quick, ...sets, '--out', 'adam-whole', '-q']);
  assert.equal(whole.code, 0, whole.stderr);
  await runAndKillAfterFirstEpoch(['run', quick, ...sets, '--out', 'adam-killed']);
  const r = await regtrainHere(['run', '--resume', 'adam-killed', '-q']);
  assert.equal(r.code, 0, r.stderr);
  const lrs = history('adam-whole').map((e) => e.lr as number);
  // 32 steps an epoch: the cosine is at 0.002·(0.9·½(1 + cos(32π/60)) + 0.1) after epoch 1 and at its floor 0.0002 from step 60;
  // minDelta 0.5 makes epoch 2 a plateau, so epoch 3 runs at half the floor.
  const want = [0.002 * (0.9 * 0.5 * (1 + Math.cos((32 * Math.PI) / 60)) + 0.1), 0.0002, 0.0001];
  lrs.forEach((lr, i) => assert.ok(Math.abs(lr - want[i]!) < 1e-9, `epoch ${i + 1}: lr ${lr}, expected ${want[i]}`));
  assert.deepEqual(history('adam-killed'), history('adam-whole'));
  assert.ok(
    read('adam-killed', 'weights.bin').equals(read('adam-whole', 'weights.bin')),
    'weights.bin is byte-identical',
  );
});

test('a run killed after the checkpoint of the epoch early stopping ended it resumes to the same end, training no extra epoch', async () => {
  // patience 0 and a minDelta no epoch can beat: training stops after epoch 2 of 5.
  const sets = [
    ...small,
    '--set',
    'training.epochs=5',
    '--set',
    'training.earlyStopping={monitor: val_loss, patience: 0, minDelta: 1000, restoreBestWeights: true}',
    '--set',
    'data.testLimit=10000',
  ];
  const whole = await regtrainHere(['run', quick, ...sets, '--out', 'es-whole', '-q']);
  assert.equal(whole.code, 0, whole.stderr);
  assert.equal(history('es-whole').length, 2);
  // Freeze the run the moment epoch 2 is reported (after its checkpoint), then kill it.
  for (let attempt = 0; ; attempt++) {
    const dir = `es-killed-${attempt}`;
    await launch(['run', quick, ...sets, '--out', dir, '--json'], {
      cwd: tmp,
      env,
      onStdout: (all, child) => {
        if (all.includes('"event":"epoch","epoch":2')) {
          child.kill('SIGSTOP');
          child.kill('SIGKILL');
        }
      },
    }).done;
    if (fs.existsSync(path.join(tmp, dir, 'metrics.json'))) {
      assert.ok(attempt < 3, 'the run finished before it could be killed, three times');
      continue;
    }
    const cp = JSON.parse(read(dir, 'checkpoint.json').toString()) as {
      body: { epoch: number; loop: { stopTraining: string | null } };
    };
    assert.deepEqual(
      [cp.body.epoch, cp.body.loop.stopTraining],
      [2, 'early-stopping'],
      'the checkpoint records the decision to stop',
    );
    const r = await regtrainHere(['run', '--resume', dir, '-q']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(history(dir), history('es-whole'));
    assert.ok(read(dir, 'weights.bin').equals(read('es-whole', 'weights.bin')), 'weights.bin is byte-identical');
    break;
  }
});

test('a spec.yaml edited in the run directory is refused on resume unless --force', async () => {
  killedRun('edited');
  const file = path.join(tmp, 'edited', 'spec.yaml');
  fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(/^seed: \d+$/m, 'seed: 7'));
  const r = await regtrainHere(['run', '--resume', 'edited']);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr.trim(),
    'error: --resume edited: spec.yaml was edited since the run started (its hash differs from run.json); pass --force to train with it',
  );
});

test('--resume refuses --dry-run and --out instead of ignoring them', async () => {
  const dry = await regtrainHere(['run', '--resume', 'whole', '--dry-run']);
  assert.equal(dry.code, 2);
  assert.equal(dry.stderr.trim(), 'error: --dry-run does not go with --resume (a resume trains the run it names)');
  const out = await regtrainHere(['run', '--resume', 'whole', '--out', 'elsewhere']);
  assert.equal(out.code, 2);
  assert.equal(out.stderr.trim(), 'error: --out does not go with --resume: the run continues in whole');
});

test("--resume --force continues from the run directory's own spec when the original spec file no longer loads", async () => {
  const specFile = OWN_SPEC;
  killedOwnSpecRun('orphan', 'name: [this is not a spec\n');
  const refused = await regtrainHere(['run', '--resume', 'orphan']);
  assert.equal(refused.code, 2, refused.stderr);
  const forced = await regtrainHere(['run', '--resume', 'orphan', '--force', '-q']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(
    forced.stderr,
    new RegExp(
      `^warning: ${specFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} no longer loads \\(.+\\); resuming with the run directory's own spec.yaml$`,
      'm',
    ),
  );
  assert.deepEqual(history('orphan'), history('whole'));
});

/** How the start line names the matmul kernels regtrain installs on this machine (OpenBLAS when it loads). */
const kernels = (() => {
  const { loadBlas } = require('../src/accel/blas') as typeof import('../src/accel/blas');
  return loadBlas().ok ? 'OpenBLAS matmuls' : "regtrain's relaxed-SIMD WebAssembly matmuls";
})();
const runJsonBackend = (dir: string) => (JSON.parse(read(dir, 'run.json').toString()) as { backend?: unknown }).backend;

test('a resume without --backend keeps the backend and kernels run.json recorded, bit for bit, though auto would choose another', async () => {
  // Half the small slice: the pure-JS cpu backend is slow, and what is checked does not depend on the slice.
  const onCpu = [...sliceFlags({ train: 500, validation: 100, test: 300, epochs: 3 }), '--backend', 'cpu'];
  // The uninterrupted run on cpu in this process (the same kernels as a process of its own); the resume, which
  // chooses its backend when it starts, is a real process.
  const whole = await regtrainHere(['run', quick, ...onCpu, '--out', 'cpu-whole', '-q']);
  assert.equal(whole.code, 0, whole.stderr);
  await runAndKillAfterFirstEpoch(['run', quick, ...onCpu, '--out', 'cpu-killed']);
  const recorded = runJsonBackend('cpu-killed') as { name: string; kernels: string };
  assert.equal(recorded.name, 'cpu');
  const r = regtrain(['run', '--resume', 'cpu-killed']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^Backend: cpu — the run's own \\(run\\.json\\): ${kernels}$`, 'm'));
  assert.doesNotMatch(r.stderr, /warning/);
  assert.deepEqual(history('cpu-killed'), history('cpu-whole'));
  assert.ok(
    read('cpu-killed', 'weights.bin').equals(read('cpu-whole', 'weights.bin')),
    'weights.bin is byte-identical',
  );
  assert.deepEqual(runJsonBackend('cpu-killed'), recorded);
});

test('a resume with another --backend says that it switches, and run.json records the new backend', async () => {
  killedRun('switched');
  assert.equal((runJsonBackend('switched') as { name: string }).name, 'wasm');
  const r = await regtrainHere(['run', '--resume', 'switched', '--backend', 'cpu']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stderr,
    new RegExp(
      `^warning: the run trained on wasm with ${kernels} so far; it continues on cpu with ${kernels} \\(--backend cpu\\)$`,
      'm',
    ),
  );
  assert.match(
    r.stderr,
    /^warning: the checkpoint was written on wasm \(lean step\), this run trains on cpu \(lean step\): the result matches an uninterrupted run to float32 rounding, not bit for bit$/m,
  );
  assert.equal((runJsonBackend('switched') as { name: string }).name, 'cpu');
  assert.equal(history('switched').length, 3);
});

test('a damaged backend record in run.json is refused on resume in one line naming the field', async () => {
  killedRun('bad-backend');
  const file = path.join(tmp, 'bad-backend', 'run.json');
  fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(/"name": "wasm"/, '"name": "webgl"'));
  const r = await regtrainHere(['run', '--resume', 'bad-backend']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim(), `error: ${file}: backend.name: expected tensorflow, wasm or cpu, got "webgl"`);
});
