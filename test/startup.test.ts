import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as nodeModule from 'node:module';
import * as path from 'node:path';
import { BIN, ROOT, QUICK, regtrainSync, sliceFlags } from './helpers/cli';
import { sharedDataDir } from './helpers/data';
import { scratchDir } from './helpers/scratch';

// Commands that never touch a tensor start without tfjs (about half a CPU-second a process):
// each runs as a real process with a preload that lists, at exit, every module it loaded.
const tmp = scratchDir('regtrain-startup-');
const HOOK = path.join(tmp, 'loaded-modules.js');
fs.writeFileSync(
  HOOK,
  `process.on('exit', () => require('fs').writeFileSync(process.env.LOADED_MODULES_FILE, Object.keys(require.cache).join('\\n')));\n`,
);
const STUDY_FIXTURE = path.join(ROOT, 'test', 'fixtures', 'runs', 'study');
/** The CLI as bin/regtrain loads it: regtrain and its pure-JS dependencies in one file (build.mjs). */
const BUNDLE = path.join(ROOT, 'dist', 'regtrain.js');

/** The modules `regtrain ...args` loaded, after checking it exited with `code`. */
function modulesLoadedBy(args: string[], code: number): string[] {
  const list = path.join(tmp, `modules-${process.hrtime.bigint()}.txt`);
  const r = regtrainSync(args, {
    cwd: tmp,
    env: { ...process.env, NODE_OPTIONS: `--require ${HOOK}`, LOADED_MODULES_FILE: list },
  });
  assert.equal(r.status, code, r.stderr);
  return fs.readFileSync(list, 'utf8').split('\n');
}

const tfjsModules = (loaded: string[]) => loaded.filter((m) => m.includes(`${path.sep}@tensorflow${path.sep}`));

for (const [what, args, code] of [
  ['validate', ['validate', QUICK], 0],
  ['--help', ['--help'], 0],
  ['a refused spec', ['run', QUICK, '--set', 'training.epochs=0'], 2],
  ['a study dry run', ['run', path.join(ROOT, 'configs', 'study.yaml'), '--dry-run'], 0],
  ['plan', ['plan', path.join(ROOT, 'configs', 'study.yaml'), '--study-dir', path.join(tmp, 'planned')], 0],
  ['status', ['status', STUDY_FIXTURE], 0],
  ['compare', ['compare', STUDY_FIXTURE], 0],
  ['data verify of a missing cache', ['data', 'verify', '--data-dir', path.join(tmp, 'no-cache')], 2],
] as const) {
  test(`${what} runs without loading tfjs`, () => {
    const loaded = modulesLoadedBy([...args], code);
    assert.ok(loaded.includes(BUNDLE), 'the hook saw the CLI load');
    assert.deepEqual(tfjsModules(loaded), []);
  });
}

test('a run that reaches its data loads tfjs (the check above can see it), and regtrain only from its bundle', () => {
  const loaded = modulesLoadedBy(
    ['run', QUICK, '--out', path.join(tmp, 'run'), '--data-dir', path.join(tmp, 'empty'), '--source', tmp],
    1,
  );
  assert.notDeepEqual(tfjsModules(loaded), []);
  // One copy of each module: a second (dist/src/errors.js beside the bundle's) would fail the error boundary's
  // instanceof checks. The signal handling comes first, on its own (build.mjs), then the loader of the bundle's code
  // cache (src/code-cache.ts).
  assert.deepEqual(
    loaded.filter((m) => m.startsWith(ROOT + path.sep) && !m.includes(`${path.sep}node_modules${path.sep}`)),
    [BIN, path.join(ROOT, 'dist', 'signals.js'), path.join(ROOT, 'dist', 'code-cache.js'), BUNDLE],
  );
});

test('a start keeps its compiled code in the temp directory where Node has a compile cache, and starts without one on Node 20', () => {
  const tmpdir = fs.mkdtempSync(path.join(tmp, 'tmpdir-'));
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmpdir };
  delete env.NODE_COMPILE_CACHE; // Node itself would fill this one: the test is of regtrain's own call
  delete env.NODE_DISABLE_COMPILE_CACHE;
  const r = regtrainSync(['validate', QUICK], { cwd: tmp, env });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const cache = path.join(tmpdir, 'node-compile-cache');
  // One file per module compiled: here dist/code-cache.js, the one module `validate` loads after the call (the bundle
  // is compiled by it, with regtrain's own cache: test/code-cache.test.ts).
  const files = fs.existsSync(cache)
    ? fs.readdirSync(cache, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length
    : 0;
  // module.enableCompileCache: Node 22.1 and later.
  if (typeof (nodeModule as { enableCompileCache?: unknown }).enableCompileCache === 'function')
    assert.equal(files, 1, `${cache} holds ${files} files`);
  else assert.equal(files, 0);
});

test("a run on regtrain's WebAssembly kernels finds their builds and starts the GEMM pool's worker, from the bundle", () => {
  // The kernels' files stay in dist/src/accel/ while their code runs from dist/regtrain.js (src/accel/files.ts).
  const log = path.join(tmp, 'workers.txt');
  const hook = path.join(tmp, 'workers.js');
  fs.writeFileSync(
    hook,
    [
      "const wt = require('worker_threads');",
      "const log = (line) => require('fs').appendFileSync(process.env.WORKERS_FILE, line + '\\n');",
      'wt.Worker = class extends wt.Worker {',
      '  constructor(file, opts) {',
      '    super(file, opts);',
      "    log('started ' + file);",
      "    this.on('online', () => log('online')).on('error', (e) => log('error ' + e.message));",
      '  }',
      '};',
    ].join('\n'),
  );
  const r = regtrainSync(
    [
      'run',
      QUICK,
      ...sliceFlags({ train: 2048, validation: 100, test: 100 }),
      // Batch 512: products large enough for the two-thread pool (gemm-pool.ts).
      ...['--set', 'training.epochs=1', '--set', 'training.batchSize=512'],
      ...['--out', path.join(tmp, 'wasm-run'), '--json'],
    ],
    {
      cwd: tmp,
      env: {
        ...process.env,
        REGTRAIN_DATA_DIR: sharedDataDir(),
        REGTRAIN_BLAS: 'off',
        REGTRAIN_GEMM_THREADS: '2',
        NODE_OPTIONS: `--require ${hook}`,
        WORKERS_FILE: log,
      },
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const training = r.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { event: string; gemm?: { kind: string | null } })
    .find((e) => e.event === 'training');
  assert.match(String(training?.gemm?.kind), /^wasm-(relaxed-)?simd$/);
  assert.deepEqual(fs.readFileSync(log, 'utf8').split('\n').filter(Boolean), [
    `started ${path.join(ROOT, 'dist', 'src', 'accel', 'gemm-worker.js')}`,
    'online',
  ]);
});
