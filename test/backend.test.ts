import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { QUICK, regtrainSync, sliceFlags } from './helpers/cli';
import { sharedDataDir } from './helpers/data';
import { scratchDir } from './helpers/scratch';

/**
 * Every backend and training-step path `regtrain run` can choose, driven through the CLI:
 * each is run where this machine has it and skipped with the reason where it does not.
 */
const tmp = scratchDir('regtrain-backend-');
/** The verified data every test file shares: these runs only read it. */
const dataDir = sharedDataDir();
const tiny = sliceFlags({ train: 300, validation: 100, test: 100, epochs: 1 });

function hasModule(name: string): string | null {
  try {
    require(name);
    return null;
  } catch (err) {
    return `${name} does not load here (${(err as Error).message.split('\n')[0]})`;
  }
}
const noTfjsNode = hasModule('@tensorflow/tfjs-node');
const noBlas = ((): string | null => {
  const { loadBlas } = require('../src/accel/blas') as typeof import('../src/accel/blas');
  const b = loadBlas();
  return b.ok ? null : `OpenBLAS is not available: ${b.reason}`;
})();

interface Events {
  start: { backend: string; backendReason: string };
  training: {
    step: string;
    blas: { installed: boolean; reason: string };
    gemm: { kind: string | null; reason: string };
  };
}

function run(
  args: string[],
  env: Record<string, string> = {},
): { status: number | null; events: Events; stderr: string } {
  const r = regtrainSync(
    ['run', QUICK, ...tiny, '--json', '--out', fs.mkdtempSync(path.join(tmp, 'run-')) + '/r', ...args],
    {
      cwd: tmp,
      env: { ...process.env, REGTRAIN_DATA_DIR: dataDir, ...env },
    },
  );
  const events = Object.fromEntries(
    r.stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { event: string })
      .map((e) => [e.event, e]),
  ) as unknown as Events;
  return { status: r.status, events, stderr: r.stderr };
}

/** One process per (args, env), made by the first test that asks: tests that read different things from the same run share it. */
const shared = new Map<string, ReturnType<typeof run>>();
const sharedRun = (args: string[]) => {
  const key = JSON.stringify(args);
  if (!shared.has(key)) shared.set(key, run(args));
  return shared.get(key)!;
};
const biasPenalty = ['--set', 'model.layers.2.dense.biasRegularizer={l2: 0.001}'];
/** The tutorial's model (the lean step's) on auto at batch 256, where only a model on the autodiff step would move to tfjs-node. */
const autoLean256 = () => sharedRun(['--backend', 'auto', '--set', 'training.batchSize=256']);
/** A model with a bias penalty (the autodiff step's) on auto at batch 128: wasm with regtrain's kernels. */
const autoBias128 = () => sharedRun(['--backend', 'auto', ...biasPenalty, '--set', 'training.batchSize=128']);

test("auto picks wasm with regtrain's kernels whether or not tfjs-node loads, and says why", () => {
  const r = autoLean256();
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.events.start.backend, 'wasm');
  assert.equal(
    r.events.start.backendReason,
    `auto: wasm + ${noBlas ? "regtrain's relaxed-SIMD WebAssembly" : 'OpenBLAS'} matmuls, faster than tfjs-node`,
  );
  const plain = run(['--backend', 'auto'], { REGTRAIN_BLAS: 'off', REGTRAIN_RELAXED_SIMD: 'off' });
  assert.equal(
    plain.events.start.backendReason,
    "auto: wasm + regtrain's SIMD WebAssembly matmuls, faster than tfjs-node",
  );
});

test("auto without regtrain's fast kernels takes tfjs-node when it loads, else suggests it", () => {
  const r = run(['--backend', 'auto'], { REGTRAIN_BLAS: 'off', REGTRAIN_SIMD: 'off' });
  assert.equal(r.status, 0, r.stderr);
  const without = "regtrain's fast kernels are unavailable (disabled by REGTRAIN_BLAS; disabled by REGTRAIN_SIMD)";
  if (noTfjsNode) {
    assert.equal(r.events.start.backend, 'wasm');
    assert.equal(
      r.events.start.backendReason,
      `auto: wasm with tfjs's own kernels: ${without}; tfjs-node is not installed (installing it would be faster here: README "Backends")`,
    );
  } else {
    assert.equal(r.events.start.backend, 'tensorflow');
    assert.match(
      r.events.start.backendReason,
      new RegExp(
        `^auto: tfjs-node \\(TensorFlow \\d+\\.\\d+\\.\\d+\\), faster than tfjs's own kernels on wasm: ${without.replace(/[()]/g, '\\$&')}$`,
      ),
    );
  }
});

test(
  'an explicit tfjs-node that cannot load is a clear exit 2, not a silent fallback',
  { skip: noTfjsNode ? false : 'tfjs-node loads here' },
  () => {
    const r = run(['--backend', 'tfjs-node']);
    assert.equal(r.status, 2);
    assert.match(
      r.stderr,
      /^error: backend tfjs-node: tfjs-node is not installed; install it \(README "Backends"\) or choose --backend wasm$/m,
    );
  },
);

test('tfjs-node trains with the lean step', { skip: noTfjsNode ?? false }, () => {
  const r = run(['--backend', 'tfjs-node']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.events.training.step, /^lean step/);
});

for (const backend of ['wasm', 'cpu']) {
  test(`${backend} with OpenBLAS trains the tutorial model with the lean step`, { skip: noBlas ?? false }, () => {
    const r = run(['--backend', backend]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.events.start.backend, backend);
    assert.equal(r.events.training.blas.installed, true);
    assert.match(r.events.training.step, /^lean step \(hand-written gradients\) \+ OpenBLAS matmuls \(1 thread\)$/);
  });

  test(`${backend} without OpenBLAS trains with the lean step on regtrain's own SIMD WebAssembly matmuls`, () => {
    const r = run(['--backend', backend], { REGTRAIN_BLAS: 'off' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.events.training.blas.installed, false);
    assert.equal(r.events.training.gemm.kind, 'wasm-relaxed-simd');
    assert.equal(
      r.events.training.step,
      "lean step (hand-written gradients) + regtrain's relaxed-SIMD WebAssembly matmuls",
    );
    const plain = run(['--backend', backend], { REGTRAIN_BLAS: 'off', REGTRAIN_RELAXED_SIMD: 'off' });
    assert.equal(plain.status, 0, plain.stderr);
    assert.equal(
      plain.events.training.step,
      "lean step (hand-written gradients) + regtrain's SIMD WebAssembly matmuls",
    );
  });

  test(`${backend} with neither OpenBLAS nor the SIMD kernels falls back to the reference step and says why`, () => {
    const r = run(['--backend', backend], { REGTRAIN_BLAS: 'off', REGTRAIN_SIMD: 'off' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.events.training.gemm.kind, null);
    assert.equal(
      r.events.training.step,
      'tfjs autodiff + optimizer (no fast matmul kernels: disabled by REGTRAIN_BLAS; disabled by REGTRAIN_SIMD)',
    );
  });
}

test('REGTRAIN_ACCEL=off keeps tfjs kernels and the reference step', () => {
  const r = run(['--backend', 'wasm'], { REGTRAIN_ACCEL: 'off' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.events.training.step, 'tfjs autodiff + optimizer (REGTRAIN_ACCEL=off)');
});

test('a model with a bias penalty uses the reference step, whatever the kernels', () => {
  // On wasm with regtrain's kernels installed (OpenBLAS or its SIMD WebAssembly GEMM).
  const r = autoBias128();
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.events.start.backend, 'wasm');
  assert.notEqual(r.events.training.gemm.kind, null);
  assert.equal(r.events.training.step, 'tfjs autodiff + optimizer (activity or bias penalties need autodiff)');
});

test('auto puts a model on the autodiff step on tfjs-node from batch 256, where it is faster, and suggests it where it is missing', () => {
  const kernels = noBlas ? "regtrain's relaxed-SIMD WebAssembly matmuls" : 'OpenBLAS matmuls';
  const small = autoBias128();
  assert.equal(small.status, 0, small.stderr);
  assert.equal(small.events.start.backendReason, `auto: wasm + ${kernels}, faster than tfjs-node`);
  const big = run(['--backend', 'auto', ...biasPenalty, '--set', 'training.batchSize=256']);
  assert.equal(big.status, 0, big.stderr);
  const why = 'the model trains on the autodiff step, where TensorFlow is faster from batch 256 (batch 256)';
  if (noTfjsNode) {
    assert.equal(big.events.start.backend, 'wasm');
    assert.equal(
      big.events.start.backendReason,
      `auto: wasm + ${kernels}; tfjs-node is not installed, though ${why}: installing it would be faster here (README "Backends")`,
    );
  } else {
    assert.equal(big.events.start.backend, 'tensorflow');
    assert.match(
      big.events.start.backendReason,
      new RegExp(`^auto: tfjs-node \\(TensorFlow \\d+\\.\\d+\\.\\d+\\): ${why.replace(/[()]/g, '\\$&')}$`),
    );
  }
  // The lean step's model at the same batch stays on wasm.
  const lean = autoLean256();
  assert.equal(lean.events.start.backend, 'wasm');
});
