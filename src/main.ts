/**
 * The CLI as bin/regtrain loads it: the entry of the bundle dist/regtrain.js (bundle.mjs). Stop signals
 * exit 130 from its first statement: this import comes first, so it runs before any other module's code.
 */
import './signals-installed';

export { main } from './cli';
