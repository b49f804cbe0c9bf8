// tfjs-core's gradients and its chained ops (`x.add(y)`), registered as the `@tensorflow/tfjs` package registers
// them: tfjs-core's own entry leaves them out. They exist only as ES modules, which Node 20 cannot require, so the
// build bundles them, as tfjs's does (build.mjs): into the CLI's dist/regtrain.js, and into dist/src/tfjs-ops.js
// in place of its one-file transpile, for the compiled modules tests load.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';
