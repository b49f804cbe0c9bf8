/**
 * SVG building blocks of the report: escaping, scales and ticks, axes, the chart's root element
 * and a line chart. Each chart's root carries data-series="N" and each series (a line, a panel,
 * a bar) is a <g class="series">, so tests can count them.
 */

export interface Chart {
  /** File-name-safe id, e.g. "loss", "hist-1-dense_1". */
  id: string;
  title: string;
  svg: string;
  series: number;
}

export const PALETTE = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];
export const color = (i: number) => PALETTE[i % PALETTE.length]!;

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** The largest of `xs` (at least `floor`), without spreading them into Math.max's arguments (a 200k-bin histogram would overflow the stack). */
export function maxOf(xs: readonly number[], floor: number): number {
  let m = floor;
  for (const x of xs) if (x > m) m = x;
  return m;
}

export const r2 = (x: number) => (Math.round(x * 100) / 100).toString();
export const safeId = (s: string) => s.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 80);

/**
 * About `count` round tick values covering [lo, hi], and never fewer than three: rounding the step
 * up to 1, 2 or 5 can make it larger than half the range (±0.42 in 4 steps gives a step of 0.5,
 * leaving only `0` on a weight histogram's axis), so a too-coarse step is halved in count's terms.
 */
export function ticks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step)
    out.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  return out.length < 3 && count < 64 ? ticks(lo, hi, count * 2) : out;
}
/** A tick's text: round numbers, thousands as `5k`, tiny ones in exponent form, negative ones with a minus sign. */
export const tickLabel = (v: number) =>
  (Math.abs(v) >= 1e6 && Number.isInteger(v / 1e6)
    ? `${v / 1e6}M`
    : Math.abs(v) >= 1e4 && Number.isInteger(v / 1000)
      ? `${v / 1000}k`
      : Math.abs(v) >= 1e5 || (Math.abs(v) < 1e-3 && v !== 0)
        ? v.toExponential(0)
        : String(Number(v.toPrecision(4)))
  ).replace('-', '\u2212');

/** Every chart's width in SVG units; the page scales it to the window. */
export const CHART_WIDTH = 1320;

/** Sequential colours (viridis-like, dark blue → yellow) for an ordered parameter: t in [0, 1]. */
export function sequential(t: number): string {
  const stops = [
    [68, 1, 84],
    [59, 82, 139],
    [33, 145, 140],
    [94, 201, 98],
    [216, 196, 30],
  ];
  const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x));
  const f = x - i;
  const c = stops[i]!.map((a, k) => Math.round(a + (stops[i + 1]![k]! - a) * f));
  return `rgb(${c.join(',')})`;
}

export function extent(values: number[], pad = 0.05): [number, number] {
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

export interface Frame {
  w: number;
  h: number;
  left: number;
  top: number;
  right: number;
  bottom: number;
}

export function svgOpen(id: string, title: string, w: number, h: number, series: number): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart="${esc(id)}" data-series="${series}" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="${esc(title)}" font-family="system-ui, sans-serif" font-size="11"><title>${esc(title)}</title><rect width="${w}" height="${h}" fill="#fff"/><text x="${w / 2}" y="16" text-anchor="middle" font-size="13" font-weight="600">${esc(title)}</text>`;
}

export function axes(
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
  parts.push(
    `<line x1="${x0}" x2="${x1}" y1="${y0}" y2="${y0}" stroke="#333"/><line x1="${x0}" x2="${x0}" y1="${y0}" y2="${y1}" stroke="#333"/>`,
  );
  parts.push(`<text x="${(x0 + x1) / 2}" y="${f.h - 6}" text-anchor="middle">${esc(x.label)}</text>`);
  parts.push(
    `<text transform="translate(12 ${(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">${esc(y.label)}</text>`,
  );
  return parts.join('');
}

export function legend(items: { name: string; color: string; dash?: boolean }[], x: number, y: number): string {
  return items
    .map(
      (it, i) =>
        `<g transform="translate(${x} ${y + i * 16})"><line x1="0" x2="18" y1="-4" y2="-4" stroke="${it.color}" stroke-width="2"${it.dash ? ' stroke-dasharray="4 3"' : ''}/><text x="22" y="0">${esc(it.name)}</text></g>`,
    )
    .join('');
}

export interface LineSeries {
  name: string;
  color: string;
  dash?: boolean;
  points: [number, number][];
  /** ± error bar per point (e.g. std over seeds). */
  errors?: (number | null)[];
  /** A colour per point (e.g. by the swept parameter's value); the line keeps `color`. */
  pointColors?: string[];
}

export interface LineChartOptions {
  /** Category labels: x values are their indexes. */
  xCategories?: string[];
  /** A logarithmic x axis (positive x values). */
  logX?: boolean;
  width?: number;
  height?: number;
}

/** A line chart, its legend on the right. */
export function lineChart(
  id: string,
  title: string,
  xLabel: string,
  yLabel: string,
  series: LineSeries[],
  opts: LineChartOptions = {},
): Chart {
  const legendWidth = Math.min(
    320,
    40 +
      maxOf(
        series.map((s) => s.name.length),
        0,
      ) *
        6.5,
  );
  const w = opts.width ?? CHART_WIDTH;
  const f: Frame = {
    w,
    h: Math.max(opts.height ?? 320, 60 + series.length * 16),
    left: 64,
    top: 30,
    right: 24 + legendWidth,
    bottom: 44,
  };
  const tx = (v: number) => (opts.logX ? Math.log10(v) : v);
  const xs = series.flatMap((s) => s.points.map((p) => tx(p[0])));
  const ys = series.flatMap((s) =>
    s.points.flatMap((p, i) => [p[1] - (s.errors?.[i] ?? 0), p[1] + (s.errors?.[i] ?? 0)]),
  );
  const [xlo, xhi] = opts.xCategories ? [-0.3, opts.xCategories.length - 0.7] : extent(xs, 0.04);
  const [ylo, yhi] = extent(ys);
  const sx = (v: number) => f.left + ((tx(v) - xlo) / (xhi - xlo)) * (f.w - f.left - f.right);
  const sy = (v: number) => f.h - f.bottom - ((v - ylo) / (yhi - ylo)) * (f.h - f.top - f.bottom);
  const xTicks = opts.xCategories
    ? opts.xCategories.map((label, i) => ({ v: i, label }))
    : opts.logX
      ? [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))]
          .sort((a, b) => a - b)
          .map((v) => ({ v, label: tickLabel(v) }))
      : ticks(xlo, xhi)
          .filter((t) => Number.isInteger(t) || xhi - xlo > 10)
          .map((v) => ({ v, label: tickLabel(v) }));
  const body = series
    .map((s) => {
      const pts = s.points.map((p, i) => ({ p, i })).filter(({ p }) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
      const d = pts.map(({ p }, k) => `${k ? 'L' : 'M'}${r2(sx(p[0]))} ${r2(sy(p[1]))}`).join('');
      const bars = pts
        .filter(({ i }) => s.errors?.[i])
        .map(
          ({ p, i }) =>
            `<line x1="${r2(sx(p[0]))}" x2="${r2(sx(p[0]))}" y1="${r2(sy(p[1] - s.errors![i]!))}" y2="${r2(sy(p[1] + s.errors![i]!))}" stroke="${s.pointColors?.[i] ?? s.color}" stroke-width="1.5"/>`,
        )
        .join('');
      const marks =
        pts.length <= 40
          ? pts
              .map(
                ({ p, i }) =>
                  `<circle cx="${r2(sx(p[0]))}" cy="${r2(sy(p[1]))}" r="${s.pointColors ? 5 : 3}" fill="${s.pointColors?.[i] ?? s.color}" stroke="#fff" stroke-width="0.8"><title>${esc(`${s.name}: ${tickLabel(p[1])}`)}</title></circle>`,
              )
              .join('')
          : '';
      return `<g class="series" data-name="${esc(s.name)}"><path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="6 4"' : ''}/>${bars}${marks}</g>`;
    })
    .join('');
  const svg =
    svgOpen(id, title, f.w, f.h, series.length) +
    axes(
      f,
      {
        lo: xlo,
        hi: xhi,
        ticks: xTicks.map((t) => ({
          v: opts.logX || opts.xCategories ? (opts.logX ? Math.log10(t.v) : t.v) : t.v,
          label: t.label,
        })),
        label: xLabel,
      },
      { lo: ylo, hi: yhi, label: yLabel },
      (v) => f.left + ((v - xlo) / (xhi - xlo)) * (f.w - f.left - f.right),
      sy,
    ) +
    body +
    legend(series, f.w - f.right + 16, f.top + 12) +
    '</svg>';
  return { id, title, svg, series: series.length };
}
