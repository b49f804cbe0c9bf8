// Importing this installs the exit-130 handling of stop signals (src/main.ts imports it first of all).
import { installDefaultSignalHandling } from './signals';

installDefaultSignalHandling();
