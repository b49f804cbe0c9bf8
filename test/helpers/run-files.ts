/** A run directory's files in tests, read as the test expects them (the code under test validates them), and copied. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { MetricsFile } from '../../src/runformat';

/** A fresh copy of the run directory `run` at `dir`, with `mutate` applied to it: a case to tamper with. */
export function copyOfRun(run: string, dir: string, mutate: (dir: string) => void = () => {}): string {
  fs.cpSync(run, dir, { recursive: true });
  mutate(dir);
  return dir;
}

export const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(file, 'utf8')) as T;

export const metricsOf = (dir: string): MetricsFile => readJson<MetricsFile>(path.join(dir, 'metrics.json'));

/** model.json as tfjs's saver writes it: the parts the tests read or tamper with. */
export interface ModelJson {
  format: string;
  modelTopology: object;
  weightsManifest: { paths: string[]; weights: { name: string; shape: number[]; dtype: string }[] }[];
  userDefinedMetadata?: Record<string, unknown>;
}

/** A command's refusal: exit 2, nothing on stdout, and exactly `error: message` on stderr. */
export function assertRefusal(r: { code: number | null; stdout: string; stderr: string }, message: string): void {
  assert.equal(r.code, 2, `exit ${r.code}\n${r.stderr}`);
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `error: ${message}\n`);
}

/** `regtrain evaluate`'s result for a refused run directory: exit 2, exactly this one line, nothing on stdout. */
export function assertEvaluateRefused(
  r: { code: number | null; stdout: string; stderr: string },
  message: string,
): void {
  assertRefusal({ ...r, stderr: r.stderr.replace(/^Backend: .*\n/m, '') }, message);
}
