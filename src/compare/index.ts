/**
 * `compare`: collect (read run and study directories) → group (aggregate per variant, pair with
 * the baseline, order) → format (text, Markdown, CSV, JSON Lines). The HTML report is src/report/.
 */
export * from './collect';
export * from './statistics';
export * from './spec-diff';
export * from './histograms';
export * from './group';
export * from './format';
