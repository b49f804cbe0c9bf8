import { pairedLine, tableCells, type CompareResult, type Group } from './compare';

/**
 * The HTML report: one self-contained file (inline SVG and CSS, no script, no network) with
 * learning curves, the generalization gap, weight histograms and sparsity vs λ, plus the table.
 * Every chart is also returned as a standalone SVG. Each chart's root carries
 * data-series="N" and each series is a <g class="series">, so tests can count them.
 */

export interface Chart {
  /** File-name-safe id, e.g. "loss", "hist-1-dense_1". */
  id: string;
  title: string;
  svg: string;
  series: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const color = (i: number) => PALETTE[i % PALETTE.length]!;

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** The largest of `xs` (at least `floor`), without spreading them into Math.max's arguments (a 200k-bin histogram would overflow the stack). */
function maxOf(xs: readonly number[], floor: number): number {
  let m = floor;
  for (const x of xs) if (x > m) m = x;
  return m;
}

const r2 = (x: number) => (Math.round(x * 100) / 100).toString();
const safeId = (s: string) => s.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 80);

/** About `count` round tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}
const tickLabel = (v: number) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(0) : String(Number(v.toPrecision(4))));

function extent(values: number[], pad = 0.05): [number, number] {
  const xs = values.filter(Number.isFinite);
  if (xs.length === 0) return [0, 1];
  let lo = -maxOf(
    xs.map((x) => -x),
    -Infinity,
  );
  let hi = maxOf(xs, -Infinity);
  if (lo === hi) [lo, hi] = [lo - (Math.abs(lo) || 1) * 0.1, hi + (Math.abs(hi) || 1) * 0.1];
  const p = (hi - lo) * pad;
  return [lo - p, hi + p];
}

interface Frame {
  w: number;
  h: number;
  left: number;
  top: number;
  right: number;
  bottom: number;
}

function svgOpen(id: string, title: string, w: number, h: number, series: number): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${esc(id)}" data-series="${series}" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="${esc(title)}" font-family="system-ui, sans-serif" font-size="11"><title>${esc(title)}</title><rect width="${w}" height="${h}" fill="#fff"/><text x="${w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">${esc(title)}</text>`;
}

function axes(
  f: Frame,
  x: { lo: number; hi: number; ticks: { v: number; label: string }[]; label: string },
  y: { lo: number; hi: number; label: string },
  sx: (v: number) => number,
  sy: (v: number) => number,
): string {
  const parts: string[] = [];
  const x0 = f.left;
  const x1 = f.w - f.right;
  const y0 = f.h - f.bottom;
  const y1 = f.top;
  for (const t of ticks(y.lo, y.hi)) {
    parts.push(
      `<line x1="${x0}" x2="${x1}" y1="${r2(sy(t))}" y2="${r2(sy(t))}" stroke="#e5e5e5"/><text x="${x0 - 4}" y="${r2(sy(t) + 3)}" text-anchor="end">${esc(tickLabel(t))}</text>`,
    );
  }
  for (const t of x.ticks)
    parts.push(
      `<line x1="${r2(sx(t.v))}" x2="${r2(sx(t.v))}" y1="${y0}" y2="${y0 + 4}" stroke="#333"/><text x="${r2(sx(t.v))}" y="${y0 + 15}" text-anchor="middle">${esc(t.label)}</text>`,
    );
  parts.push(`<line x1="${x0}" x2="${x1}" y1="${y0}" y2="${y0}" stroke="#333"/><line x1="${x0}" x2="${x0}" y1="${y0}" y2="${y1}" stroke="#333"/>`);
  parts.push(`<text x="${(x0 + x1) / 2}" y="${f.h - 6}" text-anchor="middle">${esc(x.label)}</text>`);
  parts.push(`<text transform="translate(12 ${(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">${esc(y.label)}</text>`);
  return parts.join('');
}

function legend(items: { name: string; color: string; dash?: boolean }[], x: number, y: number): string {
  return items
    .map(
      (it, i) =>
        `<g transform="translate(${x} ${y + i * 14})"><line x1="0" x2="18" y1="-4" y2="-4" stroke="${it.color}" stroke-width="2"${it.dash ? ' stroke-dasharray="4 3"' : ''}/><text x="22" y="0">${esc(it.name)}</text></g>`,
    )
    .join('');
}

interface LineSeries {
  name: string;
  color: string;
  dash?: boolean;
  points: [number, number][];
}

function lineChart(id: string, title: string, xLabel: string, yLabel: string, series: LineSeries[], xCategories?: string[]): Chart {
  const legendWidth = Math.min(
    260,
    30 +
      maxOf(
        series.map((s) => s.name.length),
        0,
      ) *
        6,
  );
  const f: Frame = { w: 560 + legendWidth, h: Math.max(300, 50 + series.length * 14), left: 56, top: 28, right: 20 + legendWidth, bottom: 40 };
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const [xlo, xhi] = xCategories ? [-0.3, xCategories.length - 0.7] : extent(xs, 0.02);
  const [ylo, yhi] = extent(ys);
  const sx = (v: number) => f.left + ((v - xlo) / (xhi - xlo)) * (f.w - f.left - f.right);
  const sy = (v: number) => f.h - f.bottom - ((v - ylo) / (yhi - ylo)) * (f.h - f.top - f.bottom);
  const xTicks = xCategories
    ? xCategories.map((label, i) => ({ v: i, label }))
    : ticks(xlo, xhi)
        .filter((t) => Number.isInteger(t) || xhi - xlo > 10)
        .map((v) => ({ v, label: tickLabel(v) }));
  const body = series
    .map((s) => {
      const pts = s.points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
      const d = pts.map((p, i) => `${i ? 'L' : 'M'}${r2(sx(p[0]))} ${r2(sy(p[1]))}`).join('');
      const marks =
        pts.length <= 30
          ? pts.map((p) => `<circle cx="${r2(sx(p[0]))}" cy="${r2(sy(p[1]))}" r="2.5" fill="${s.color}"><title>${esc(`${s.name}: ${tickLabel(p[1])}`)}</title></circle>`).join('')
          : '';
      return `<g class="series" data-name="${esc(s.name)}"><path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.8"${s.dash ? ' stroke-dasharray="5 4"' : ''}/>${marks}</g>`;
    })
    .join('');
  const svg =
    svgOpen(id, title, f.w, f.h, series.length) +
    axes(f, { lo: xlo, hi: xhi, ticks: xTicks, label: xLabel }, { lo: ylo, hi: yhi, label: yLabel }, sx, sy) +
    body +
    legend(series, f.w - f.right + 14, f.top + 10) +
    '</svg>';
  return { id, title, svg, series: series.length };
}

function curveCharts(groups: Group[]): Chart[] {
  const make = (metric: 'loss' | 'accuracy'): Chart => {
    const series: LineSeries[] = [];
    groups.forEach((g, i) => {
      const pick = (k: 'loss' | 'accuracy' | 'val_loss' | 'val_accuracy') => g.curve.filter((p) => p[k] !== null).map((p): [number, number] => [p.epoch, p[k]!]);
      const train = pick(metric);
      const val = pick(metric === 'loss' ? 'val_loss' : 'val_accuracy');
      if (train.length) series.push({ name: `${g.name} train`, color: color(i), points: train });
      if (val.length) series.push({ name: `${g.name} val`, color: color(i), dash: true, points: val });
    });
    return lineChart(metric, `Learning curves: ${metric} (solid train, dashed validation)`, 'epoch', metric === 'loss' ? 'loss (data + penalty)' : 'accuracy', series);
  };
  return [make('loss'), make('accuracy')];
}

function gapChart(groups: Group[]): Chart {
  const withGap = groups.filter((g) => g.gap);
  const f: Frame = { w: 640, h: 320, left: 56, top: 28, right: 20, bottom: 70 };
  const vals = withGap.flatMap((g) => [g.gap!.mean + (g.gap!.std ?? 0), g.gap!.mean - (g.gap!.std ?? 0), 0]);
  const [ylo, yhi] = extent(vals);
  const band = (f.w - f.left - f.right) / Math.max(1, withGap.length);
  const sx = (i: number) => f.left + band * (i + 0.5);
  const sy = (v: number) => f.h - f.bottom - ((v - ylo) / (yhi - ylo)) * (f.h - f.top - f.bottom);
  const bars = withGap
    .map((g, i) => {
      const m = g.gap!.mean;
      const sd = g.gap!.std;
      const x = sx(i) - band * 0.3;
      const [top, bottom] = m >= 0 ? [sy(m), sy(0)] : [sy(0), sy(m)];
      const err = sd ? `<line x1="${r2(sx(i))}" x2="${r2(sx(i))}" y1="${r2(sy(m - sd))}" y2="${r2(sy(m + sd))}" stroke="#222"/>` : '';
      return `<g class="series" data-name="${esc(g.name)}"><rect x="${r2(x)}" y="${r2(top)}" width="${r2(band * 0.6)}" height="${r2(Math.max(0.5, bottom - top))}" fill="${color(groups.indexOf(g))}"><title>${esc(`${g.name}: ${m.toFixed(4)}${sd ? ` ± ${sd.toFixed(4)}` : ''}`)}</title></rect>${err}<text transform="translate(${r2(sx(i))} ${f.h - f.bottom + 12}) rotate(25)" font-size="10">${esc(g.name)}</text></g>`;
    })
    .join('');
  const title = 'Generalization gap: train accuracy − test accuracy (± std over seeds)';
  const zero = `<line x1="${f.left}" x2="${f.w - f.right}" y1="${r2(sy(0))}" y2="${r2(sy(0))}" stroke="#333"/>`;
  const axis = axes({ ...f, bottom: f.bottom }, { lo: 0, hi: 1, ticks: [], label: '' }, { lo: ylo, hi: yhi, label: 'accuracy gap' }, () => 0, sy);
  return { id: 'gap', title, svg: svgOpen('gap', title, f.w, f.h, withGap.length) + axis + zero + bars + '</svg>', series: withGap.length };
}

/** One chart per layer: a panel per variant on a shared, symmetric x axis (L1's spike at 0 vs L2's narrower bell). */
function histogramCharts(groups: Group[]): Chart[] {
  const nLayers = maxOf(
    groups.map((g) => g.histograms.length),
    0,
  );
  const charts: Chart[] = [];
  for (let li = 0; li < nLayers; li++) {
    const panels = groups.filter((g) => g.histograms[li]);
    const layer = panels[0]!.histograms[li]!.layer;
    let maxAbs = 1e-9;
    for (const g of panels) for (const e of g.histograms[li]!.edges) if (Number.isFinite(e)) maxAbs = Math.max(maxAbs, Math.abs(e));
    const cols = Math.min(3, panels.length);
    const pw = 240;
    const ph = 150;
    const w = cols * pw;
    const h = 28 + Math.ceil(panels.length / cols) * ph;
    const body = panels
      .map((g, k) => {
        const hist = g.histograms[li]!;
        const ox = (k % cols) * pw;
        const oy = 28 + Math.floor(k / cols) * ph;
        const [l, t, iw, ih] = [ox + 14, oy + 18, pw - 28, ph - 44];
        const total = hist.counts.reduce((a, b) => a + b, 0) || 1;
        const top = maxOf(hist.counts, 1);
        const sx = (v: number) => l + ((v + maxAbs) / (2 * maxAbs)) * iw;
        const rects = hist.counts
          .map((c, j) => {
            const x0 = sx(hist.edges[j]!);
            const x1 = sx(hist.edges[j + 1]!);
            const bh = (c / top) * ih;
            return `<rect x="${r2(x0)}" y="${r2(t + ih - bh)}" width="${r2(Math.max(0.3, x1 - x0))}" height="${r2(bh)}" fill="${color(groups.indexOf(g))}"><title>${esc(`[${tickLabel(hist.edges[j]!)}, ${tickLabel(hist.edges[j + 1]!)}): ${c} (${((100 * c) / total).toFixed(1)}%)`)}</title></rect>`;
          })
          .join('');
        const axis = `<line x1="${l}" x2="${l + iw}" y1="${t + ih}" y2="${t + ih}" stroke="#333"/><line x1="${r2(sx(0))}" x2="${r2(sx(0))}" y1="${t}" y2="${t + ih}" stroke="#999" stroke-dasharray="2 2"/><text x="${l}" y="${t + ih + 12}" font-size="9">${esc(tickLabel(-maxAbs))}</text><text x="${r2(sx(0))}" y="${t + ih + 12}" font-size="9" text-anchor="middle">0</text><text x="${l + iw}" y="${t + ih + 12}" font-size="9" text-anchor="end">${esc(tickLabel(maxAbs))}</text>`;
        return `<g class="series" data-name="${esc(g.name)}"><text x="${ox + pw / 2}" y="${oy + 12}" text-anchor="middle" font-weight="600">${esc(g.name)}</text>${rects}${axis}</g>`;
      })
      .join('');
    const id = `hist-${li + 1}-${safeId(layer)}`;
    const title = `Final kernel weights of ${layer} (layer ${li + 1}), per variant`;
    charts.push({ id, title, svg: svgOpen(id, title, w, h, panels.length) + body + '</svg>', series: panels.length });
  }
  return charts;
}

/** Sparsity (|w| < 1e-3) vs each numeric sweep path: one series per layer per rest-of-grid combination. */
function sparsityCharts(r: CompareResult): Chart[] {
  return r.sweepPaths.flatMap((p): Chart[] => {
    const gs = r.groups.filter((g) => typeof g.sweep[p] === 'number');
    if (gs.length < 2) return [];
    const xsSorted = [...new Set(gs.map((g) => g.sweep[p] as number))].sort((a, b) => a - b);
    // Groups that differ only in this path form one line.
    const rest = (g: Group) =>
      [
        g.variant ?? '',
        ...Object.entries(g.sweep)
          .filter(([k]) => k !== p)
          .map(([k, v]) => `${k.split('.').pop()}=${JSON.stringify(v)}`),
      ]
        .filter(Boolean)
        .join(' ');
    const lines = new Map<string, Group[]>();
    for (const g of gs) lines.set(rest(g), [...(lines.get(rest(g)) ?? []), g]);
    const series: LineSeries[] = [];
    let i = 0;
    for (const [name, members] of lines) {
      const nLayers = maxOf(
        members.map((g) => g.layers.length),
        0,
      );
      for (let li = 0; li < nLayers; li++) {
        const points = members
          .filter((g) => g.layers[li]?.sparsity1e3)
          .map((g): [number, number] => [xsSorted.indexOf(g.sweep[p] as number), g.layers[li]!.sparsity1e3!.mean * 100])
          .sort((a, b) => a[0] - b[0]);
        const layer = members.find((g) => g.layers[li])!.layers[li]!.layer;
        series.push({ name: `${name ? `${name} ` : ''}${layer}`, color: color(i++), points });
      }
    }
    const id = `sparsity-${safeId(p)}`;
    return [
      lineChart(
        id,
        `Sparsity (% of |w| < 1e-3) vs ${p}`,
        p,
        'sparsity %',
        series,
        xsSorted.map((v) => tickLabel(v)),
      ),
    ];
  });
}

export function renderCharts(r: CompareResult): Chart[] {
  return [...curveCharts(r.groups), gapChart(r.groups), ...histogramCharts(r.groups), ...sparsityCharts(r)];
}

const STYLE = `body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;white-space:nowrap}th{background:#f4f4f4}
tr.best td{font-weight:600;background:#f1f8e9}tr.baseline td:first-child{font-style:italic}.chart{max-width:100%;height:auto;display:block;margin:8px 0}
.note{color:#555;font-size:12px}.scroll{overflow-x:auto}ul{font-size:12px}`;

/** The self-contained HTML report and its charts. */
export function renderReport(r: CompareResult, title = 'regtrain comparison'): { html: string; charts: Chart[] } {
  const charts = renderCharts(r);
  const { header, rows } = tableCells(r);
  const table = `<div class="scroll"><table><thead><tr>${header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map(
      (row, i) =>
        `<tr class="${[r.groups[i]!.best ? 'best' : '', r.groups[i]!.isBaseline ? 'baseline' : ''].join(' ').trim()}">${row.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`,
    )
    .join('')}</tbody></table></div>`;
  const section = (heading: string, content: string) => `<section><h2>${esc(heading)}</h2>${content}</section>`;
  const byPrefix = (prefix: string) =>
    charts
      .filter((c) => c.id.startsWith(prefix))
      .map((c) => c.svg)
      .join('\n');
  const paired = r.paired.length
    ? `<ul>${r.paired.map((p) => `<li>${esc(pairedLine(p))}</li>`).join('')}</ul>`
    : '<p class="note">No paired comparison: it needs at least two seeds on both the baseline and the variant.</p>';
  const skipped =
    r.skipped.length || r.warnings.length
      ? section('Skipped runs and warnings', `<ul>${[...r.skipped.map((s) => `skipped ${s.dir}: ${s.reason}`), ...r.warnings].map((t) => `<li>${esc(t)}</li>`).join('')}</ul>`)
      : '';
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title><style>${STYLE}</style></head>
<body><h1>${esc(title)}</h1>
<p class="note">${r.groups.reduce((a, g) => a + g.runs.length, 0)} runs in ${r.groups.length} variants; baseline: ${esc(r.baseline ?? '—')}. Mean ± std over seeds; * marks the best test accuracy.</p>
${section('Results', table)}
${section(`Paired comparison against the baseline (${r.baseline ?? '—'})`, paired)}
${section('Learning curves', byPrefix('loss') + '\n' + byPrefix('accuracy'))}
${section('Generalization gap', byPrefix('gap'))}
${section('Weight histograms', byPrefix('hist-'))}
${byPrefix('sparsity-') ? section('Sparsity vs regularization strength', byPrefix('sparsity-')) : ''}
${skipped}
</body></html>
`;
  return { html, charts: charts.map((c) => ({ ...c, svg: `<?xml version="1.0" encoding="UTF-8"?>\n${c.svg}\n` })) };
}
