// Builds dist/ (`npm run build`; `npm install` runs it as the prepare script), in two steps, both with esbuild:
//
// 1. Every module of src/ and test/, transpiled one file at a time into dist/src/ and dist/test/ (CommonJS, with
//    source maps): what the tests and benches import. Transpiling only takes about a second; tsc took 20–25 CPU-s,
//    in each of CI's three lanes. The types are checked by `npm run typecheck` (tsc --noEmit), which CI runs once;
//    tsconfig's isolatedModules makes tsc refuse what a one-file transpiler could get wrong.
// 2. The CLI bundled into one file, dist/regtrain.js, which bin/regtrain loads. Reading and compiling one file
//    instead of ~250 (regtrain's modules, zod's, yaml's, commander's) saves about a tenth of a CPU-second per start.
//    What stays outside: tfjs and its backends (loaded only by the commands that train, evaluate or predict, from
//    node_modules, so that tfjs-node and tfjs-wasm register into the same tfjs-core), koffi (native), wabt (build
//    time only), and src/signals.ts, bundled alone into dist/signals.js: bin/regtrain loads it first, so stop signals
//    exit 130 before the big file is even read, and the bundle requires that same file. The GEMM worker and the
//    .wasm kernels (written next by build-simd) stay files in dist/src/accel/ (src/accel/files.ts). A CLI process
//    loads none of step 1's modules.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as esbuild from 'esbuild';

/** zod's translations of its messages into other languages (a third of its size): regtrain's messages are English. */
const noZodLocales = {
  name: 'no-zod-locales',
  setup(build) {
    // zod re-exports them all as `z.locales` and `z.core.locales`, unused here; English, the default, is imported
    // by zod's classic/schemas.js directly (../locales/en.js) and stays.
    build.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]v4[\\/](classic|core)[\\/]/.test(args.importer)
        ? { path: 'zod-locales', namespace: 'empty' }
        : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'empty' }, () => ({ contents: 'export {};', loader: 'js' }));
  },
};

/**
 * tfjs-core's gradients and chained ops (src/tfjs-ops.ts) are bundled, from tfjs-core's ES modules, with the parts
 * of tfjs-core they use: the `@tensorflow/tfjs` package's own bundle does the same. Those parts keep their state
 * (the engine, the registries, the tensor class) in tfjs-core's global namespace, so they act on the one engine.
 * Everything else of @tensorflow stays external.
 */
const tfjsExternal = {
  name: 'tfjs-external',
  setup(build) {
    build.onResolve({ filter: /^@tensorflow\// }, (args) =>
      args.path.startsWith('@tensorflow/tfjs-core/dist/') ? undefined : { path: args.path, external: true },
    );
  },
};

/** src/signals.ts is dist/signals.js, one copy in the process: bin/regtrain's, which installed the handlers. */
const signalsExternal = {
  name: 'signals-external',
  setup(build) {
    build.onResolve({ filter: /(^|\/)signals$/ }, (args) =>
      path.resolve(args.resolveDir, args.path) === path.resolve('src/signals')
        ? { path: './signals.js', external: true }
        : undefined,
    );
  },
};

const common = { platform: 'node', target: 'node20', format: 'cjs', logLevel: 'warning' };

/** The .ts files under dir, declarations left out. */
function sources(dir) {
  return fs
    .readdirSync(dir, { recursive: true })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => path.join(dir, f));
}

// Step 1. `import()` becomes require(), as tsc's CommonJS output has it: the modules are CommonJS, and a native
// import() of a CommonJS module resolves by ES rules (no extensionless paths).
await esbuild.build({
  ...common,
  entryPoints: [...sources('src'), ...sources('test')],
  outdir: 'dist',
  outbase: '.',
  sourcemap: true,
  supported: { 'dynamic-import': false },
});

// src/tfjs-ops.ts imports tfjs-core's ES modules, which a CommonJS module cannot require: dist/src/tfjs-ops.js is
// bundled instead.
await esbuild.build({ ...common, bundle: true, entryPoints: ['src/tfjs-ops.ts'], outfile: 'dist/src/tfjs-ops.js' });

// Step 2.
await esbuild.build({ ...common, bundle: true, entryPoints: ['src/signals.ts'], outfile: 'dist/signals.js' });
// bin/regtrain loads the CLI bundle through it, with V8's compiled code cached on disk (see the file).
await esbuild.build({ ...common, bundle: true, entryPoints: ['src/code-cache.ts'], outfile: 'dist/code-cache.js' });

await esbuild.build({
  ...common,
  bundle: true,
  entryPoints: ['src/cli.ts'],
  outfile: 'dist/regtrain.js',
  external: ['koffi', 'wabt'],
  plugins: [noZodLocales, tfjsExternal, signalsExternal],
  // Fewer bytes to parse at each start (about 0.02 CPU-s); names stay, and dist/regtrain.js.map maps back to
  // the sources (node --enable-source-maps). Not `keepNames`: it costs as much again at each start, and no output
  // depends on a bundled class's or function's name (a colliding one is renamed, e.g. commander's Command3).
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: 'linked',
});
