/**
 * The report's learning curves, drawn in process from the fixture study (test/fixtures/runs/study):
 * accuracy panels share one y scale, so variants compare at a glance; loss panels each get their
 * own, since a penalty puts one variant's loss far above another's (a shared scale drew the small
 * ones as flat lines at the bottom).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { collectRuns, compareRuns } from '../src/compare';
import { renderCharts } from '../src/report';
import { ticks } from '../src/report/svg';

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
