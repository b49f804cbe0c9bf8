/**
 * The report's learning curves, drawn in process from the fixture study (test/fixtures/runs/study):
 * accuracy panels share one y scale, so variants compare at a glance; loss panels each get their
 * own, since a penalty puts one variant's loss far above another's (a shared scale drew the small
 * ones as flat lines at the bottom).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { collectRuns, compareRuns } from '../src/compare';
import { renderCharts } from '../src/report';
import { ticks } from '../src/report/svg';
import { scratchDir } from './helpers/scratch';

const STUDY = path.resolve(__dirname, '../../test/fixtures/runs/study');

/** Each panel's y tick labels in the chart `id`, by variant. */
function yTicksByPanel(id: string): Map<string, string[]> {
  const chart = renderCharts(compareRuns(collectRuns([STUDY]))).find((c) => c.id === id);
  assert.ok(chart, `no chart ${id}`);
  const panels = new Map<string, string[]>();
  for (const m of chart.svg.matchAll(
    /<g class="series" data-name="([^"]+)">(.*?)<\/g>(?=<g class="series"|<\/svg>)/gs,
  )) {
    // The y axis's labels are right-aligned (text-anchor="end"); the x axis's are centred.
    panels.set(
      m[1]!,
      [...m[2]!.matchAll(/<text [^>]*text-anchor="end"[^>]*>([^<]*)<\/text>/g)].map((t) => t[1]!),
    );
  }
  return panels;
}

test('accuracy panels share one y scale', () => {
  const panels = yTicksByPanel('curves-accuracy');
  assert.deepEqual([...panels.keys()], ['baseline', 'l1', 'l2']);
  const [first, ...rest] = [...panels.values()];
  assert.ok(first!.length >= 2, `too few ticks: ${first!.join(' ')}`);
  for (const ticks of rest) assert.deepEqual(ticks, first);
});

test('each loss panel gets its own y scale, fitted to that variant', () => {
  const panels = yTicksByPanel('curves-loss');
  assert.deepEqual([...panels.keys()], ['baseline', 'l1', 'l2']);
  const scales = new Set([...panels.values()].map((t) => t.join(' ')));
  assert.equal(
    scales.size,
    panels.size,
    `panels share a scale: ${[...panels.entries()].map(([k, v]) => `${k}: ${v.join(' ')}`).join('; ')}`,
  );
});

test('a symmetric weight range gets ticks on both sides of zero, not a lone 0', () => {
  // ±0.42 in 4 steps: the raw step 0.21 rounds up to 0.5, past the range's half.
  assert.deepEqual(ticks(-0.42, 0.42, 4), [-0.4, -0.2, 0, 0.2, 0.4]);
  assert.deepEqual(ticks(-1.1, 1.1, 4), [-1, 0, 1]);
});

test('an axis from 0 to 1 keeps its five round ticks', () => {
  assert.deepEqual(ticks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
});

/** The small-data fixture study (2 variants × trainLimit 400, 1000 × 3 seeds) in a temporary copy. */
function smallDataCopy(): string {
  const dir = path.join(scratchDir('regtrain-charts-'), 'small-data');
  fs.cpSync(path.resolve(__dirname, '../../test/fixtures/runs/small-data'), dir, { recursive: true });
  return dir;
}

/** The `<title>` of each point of the chart `id`, in drawing order. */
function pointTitles(dir: string, id: string): string[] | null {
  const chart = renderCharts(compareRuns(collectRuns([dir]))).find((c) => c.id === id);
  return chart ? [...chart.svg.matchAll(/<circle [^>]*><title>([^<]*)<\/title>/g)].map((m) => m[1]!) : null;
}

test('a sweep over training-set size charts the mean test ECE of each variant at each size', () => {
  const dir = smallDataCopy();
  // ECE = 0.1 + 0.01·seed at 400 images, half of that at 1000; l1 adds 0.2: means 0.12, 0.06, 0.32, 0.26.
  for (const run of fs.readdirSync(path.join(dir, 'runs'))) {
    const [, variant, size, seed] = /^(\w+)-trainLimit=(\d+)-seed(\d)$/.exec(run)!;
    const ece = ((0.1 + 0.01 * Number(seed)) * (size === '400' ? 1 : 0.5) + (variant === 'l1' ? 0.2 : 0)).toFixed(4);
    const file = path.join(dir, 'runs', run, 'metrics.json');
    const metrics = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    metrics.calibration = { ece: Number(ece), brier: 0.3, nll: 0.5, bins: [] };
    fs.writeFileSync(file, JSON.stringify(metrics));
  }
  assert.deepEqual(pointTitles(dir, 'ece-vs-train-size'), ['baseline: 0.12', 'baseline: 0.06', 'l1: 0.32', 'l1: 0.26']);
});

test('runs written before regtrain measured calibration get the accuracy chart over sizes but no ECE chart', () => {
  const dir = smallDataCopy();
  assert.equal(pointTitles(dir, 'accuracy-vs-train-size')?.length, 4);
  assert.equal(pointTitles(dir, 'ece-vs-train-size'), null);
});
