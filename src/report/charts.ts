import type { CompareResult, Group } from '../compare';
import type { Stat } from '../compare/statistics';
import { withThousands } from '../thousands';
import {
  axes,
  color,
  CHART_WIDTH,
  esc,
  extent,
  lineChart,
  maxOf,
  r2,
  safeId,
  sequential,
  svgOpen,
  tickLabel,
  ticks,
  type Chart,
  type LineSeries,
} from './svg';

/**
 * The report's charts, each a function of the comparison: learning curves as small multiples, the
 * generalization gap, weight histograms (log counts), charts against a swept parameter, test
 * accuracy and calibration error vs training-set size, and for a single variant its per-class accuracy and confusion matrix.
 */

/**
 * One colour per group. A sweep over one numeric parameter colours its groups by the parameter's
 * value (dark → light as it grows), so the order of colours is the order of λ; otherwise each
 * group keeps a distinct colour in table order.
 */
export function groupColors(r: CompareResult): Map<Group, string> {
  const out = new Map<Group, string>();
  const p = r.sweepPaths.length === 1 ? r.sweepPaths[0]! : null;
  const swept = p ? r.groups.filter((g) => typeof g.sweep[p] === 'number') : [];
  const variants = new Set(swept.map((g) => g.variant));
  if (p && swept.length >= 2 && variants.size === 1) {
    const values = [...new Set(swept.map((g) => g.sweep[p] as number))].sort((a, b) => a - b);
    for (const g of swept)
      out.set(g, sequential(values.indexOf(g.sweep[p] as number) / Math.max(1, values.length - 1)));
  }
  let i = 0;
  for (const g of r.groups) if (!out.has(g)) out.set(g, g.isBaseline && out.size > 0 ? '#555' : color(i++));
  return out;
}

/** Small multiples: one panel per variant, train solid and validation dashed in the variant's colour, every panel on the same axes. */
function curvePanels(r: CompareResult, colors: Map<Group, string>, metric: 'accuracy' | 'loss'): Chart {
  const groups = r.groups.filter((g) => g.curve.length > 0);
  const valKey = metric === 'loss' ? 'val_loss' : 'val_accuracy';
  const cols = Math.min(4, Math.max(2, groups.length));
  const pw = CHART_WIDTH / cols;
  const ph = 230;
  const top = 52;
  const h = top + Math.ceil(groups.length / cols) * ph;
  const valuesOf = (gs: Group[]) =>
    gs
      .flatMap((g) => g.curve.flatMap((p) => [p[metric], p[valKey]]))
      .filter((v): v is number => v !== null && Number.isFinite(v));
  // Accuracy shares one y scale, so panels compare at a glance; a loss gets its own, since a penalty can
  // put one variant's loss a hundred times above another's and squash it flat on a shared scale.
  const shared = metric === 'accuracy' ? extent(valuesOf(groups)) : null;
  const maxEpoch = maxOf(
    groups.flatMap((g) => g.curve.map((p) => p.epoch)),
    1,
  );
  const [xlo, xhi] = [Math.min(1, maxEpoch) - 0.2, maxEpoch + 0.2];
  const xTicks = ticks(1, maxEpoch, Math.min(5, maxEpoch))
    .filter((t) => Number.isInteger(t))
    .map((v) => ({ v, label: tickLabel(v) }));
  const panels = groups
    .map((g, k) => {
      const ox = (k % cols) * pw;
      const oy = top + Math.floor(k / cols) * ph;
      const [ylo, yhi] = shared ?? extent(valuesOf([g]));
      const f = { w: pw, h: ph, left: 58, top: 26, right: 14, bottom: 40 };
      const sx = (v: number) => ox + f.left + ((v - xlo) / (xhi - xlo)) * (f.w - f.left - f.right);
      const sy = (v: number) => oy + f.h - f.bottom - ((v - ylo) / (yhi - ylo)) * (f.h - f.top - f.bottom);
      const line = (key: 'loss' | 'accuracy' | 'val_loss' | 'val_accuracy', dash: boolean) => {
        const pts = g.curve.filter((p) => p[key] !== null && Number.isFinite(p[key]!));
        if (pts.length === 0) return '';
        const d = pts.map((p, i) => `${i ? 'L' : 'M'}${r2(sx(p.epoch))} ${r2(sy(p[key]!))}`).join('');
        const marks =
          pts.length <= 30
            ? pts
                .map(
                  (p) =>
                    `<circle cx="${r2(sx(p.epoch))}" cy="${r2(sy(p[key]!))}" r="2.2" fill="${dash ? '#fff' : colors.get(g)}" stroke="${colors.get(g)}"/>`,
                )
                .join('')
            : '';
        return `<path d="${d}" fill="none" stroke="${colors.get(g)}" stroke-width="2"${dash ? ' stroke-dasharray="6 4" stroke-opacity="0.75"' : ''}/>${marks}`;
      };
      const frame = { ...f, w: ox + f.w, h: oy + f.h, left: ox + f.left, top: oy + f.top };
      const axis = axes(
        frame,
        { lo: xlo, hi: xhi, ticks: xTicks, label: 'epoch' },
        { lo: ylo, hi: yhi, label: metric },
        sx,
        sy,
      ).replace(/<text transform="translate\(12 /, `<text transform="translate(${ox + 12} `);
      return `<g class="series" data-name="${esc(g.name)}"><text x="${r2(ox + f.left + (f.w - f.left - f.right) / 2)}" y="${oy + 16}" text-anchor="middle" font-weight="600" fill="${colors.get(g)}">${esc(g.name)}</text>${axis}${line(metric, false)}${line(valKey, true)}</g>`;
    })
    .join('');
  const key = `<g transform="translate(${CHART_WIDTH / 2 - 110} 38)"><line x1="0" x2="26" y1="-4" y2="-4" stroke="#333" stroke-width="2"/><text x="32" y="0">train</text><line x1="90" x2="116" y1="-4" y2="-4" stroke="#333" stroke-width="2" stroke-dasharray="6 4"/><text x="122" y="0">validation</text></g>`;
  const id = `curves-${metric}`;
  const title = `Learning curves: ${metric === 'loss' ? 'loss (data + penalty), each panel on its own scale,' : 'accuracy'} per variant, mean over seeds`;
  return {
    id,
    title,
    svg: svgOpen(id, title, CHART_WIDTH, h, groups.length) + key + panels + '</svg>',
    series: groups.length,
  };
}

function gapChart(r: CompareResult, colors: Map<Group, string>): Chart {
  const withGap = r.groups.filter((g) => g.gap);
  const f = { w: CHART_WIDTH, h: 300, left: 64, top: 30, right: 24, bottom: 56 };
  const vals = withGap.flatMap((g) => [g.gap!.mean + (g.gap!.std ?? 0), g.gap!.mean - (g.gap!.std ?? 0), 0]);
  const [ylo, yhi] = extent(vals);
  const band = (f.w - f.left - f.right) / Math.max(1, withGap.length);
  const sx = (i: number) => f.left + band * (i + 0.5);
  const sy = (v: number) => f.h - f.bottom - ((v - ylo) / (yhi - ylo)) * (f.h - f.top - f.bottom);
  const bars = withGap
    .map((g, i) => {
      const m = g.gap!.mean;
      const sd = g.gap!.std;
      const bw = Math.min(90, band * 0.6);
      const [top, bottom] = m >= 0 ? [sy(m), sy(0)] : [sy(0), sy(m)];
      const err = sd
        ? `<line x1="${r2(sx(i))}" x2="${r2(sx(i))}" y1="${r2(sy(m - sd))}" y2="${r2(sy(m + sd))}" stroke="#222" stroke-width="1.5"/>`
        : '';
      return `<g class="series" data-name="${esc(g.name)}"><rect x="${r2(sx(i) - bw / 2)}" y="${r2(top)}" width="${r2(bw)}" height="${r2(Math.max(0.5, bottom - top))}" fill="${colors.get(g)}"><title>${esc(`${g.name}: ${m.toFixed(4)}${sd ? ` ± ${sd.toFixed(4)}` : ''}`)}</title></rect>${err}<text x="${r2(sx(i))}" y="${f.h - f.bottom + 16}" text-anchor="middle">${esc(g.name)}</text><text x="${r2(sx(i))}" y="${f.h - f.bottom + 30}" text-anchor="middle" fill="#555">${esc(tickLabel(Number(m.toFixed(4))))}</text></g>`;
    })
    .join('');
  const title = 'Generalization gap: train accuracy − test accuracy (± std over seeds)';
  const zero = `<line x1="${f.left}" x2="${f.w - f.right}" y1="${r2(sy(0))}" y2="${r2(sy(0))}" stroke="#333"/>`;
  const axis = axes(
    f,
    { lo: 0, hi: 1, ticks: [], label: '' },
    { lo: ylo, hi: yhi, label: 'accuracy gap' },
    () => 0,
    sy,
  );
  return {
    id: 'gap',
    title,
    svg: svgOpen('gap', title, f.w, f.h, withGap.length) + axis + zero + bars + '</svg>',
    series: withGap.length,
  };
}

/**
 * One chart per layer: a panel per variant, every panel on the same bins (the shared lattice, all
 * seeds added up), the same x range and the same logarithmic count axis, so L1's spike at zero and
 * L2's bell are both visible and comparable.
 */
function histogramCharts(r: CompareResult, colors: Map<Group, string>): Chart[] {
  const nLayers = maxOf(
    r.groups.map((g) => g.histograms.length),
    0,
  );
  const charts: Chart[] = [];
  for (let li = 0; li < nLayers; li++) {
    const panels = r.groups.filter((g) => g.histograms[li]);
    const layer = panels[0]!.histograms[li]!.layer;
    // The x range: where any panel has weights (the lattice may reach further for one outlier).
    let maxAbs = 1e-9;
    let top = 1;
    for (const g of panels) {
      const h = g.histograms[li]!;
      h.counts.forEach((c, j) => {
        if (c > 0) maxAbs = Math.max(maxAbs, Math.abs(h.edges[j]!), Math.abs(h.edges[j + 1]!));
        top = Math.max(top, c);
      });
    }
    const decades = Math.max(1, Math.ceil(Math.log10(top + 1)));
    const cols = Math.min(4, Math.max(2, panels.length));
    const pw = CHART_WIDTH / cols;
    const ph = 210;
    const h = 30 + Math.ceil(panels.length / cols) * ph;
    const xt = ticks(-maxAbs, maxAbs, 4).filter((t) => Math.abs(t) <= maxAbs);
    const body = panels
      .map((g, k) => {
        const hist = g.histograms[li]!;
        const ox = (k % cols) * pw;
        const oy = 30 + Math.floor(k / cols) * ph;
        const [l, t, iw, ih] = [ox + 58, oy + 26, pw - 72, ph - 64];
        const total = hist.counts.reduce((a, b) => a + b, 0) || 1;
        const sx = (v: number) => l + ((Math.max(-maxAbs, Math.min(maxAbs, v)) + maxAbs) / (2 * maxAbs)) * iw;
        const sy = (c: number) => t + ih - (Math.log10(1 + c) / decades) * ih;
        // One filled step outline per panel (thousands of 0.005-wide bins would alias as separate bars).
        let d = '';
        let peak = 0;
        hist.counts.forEach((c, j) => {
          peak = Math.max(peak, c);
          const x0 = sx(hist.edges[j]!);
          const x1 = sx(hist.edges[j + 1]!);
          if (x1 <= x0 && c === 0) return;
          d += `${d ? 'L' : 'M'}${r2(x0)} ${r2(sy(c))}H${r2(x1)}`;
        });
        const base = r2(t + ih);
        const area = d
          ? `<path d="M${r2(sx(hist.edges[0]!))} ${base}${d.replace(/^M/, 'L')}L${r2(sx(hist.edges[hist.edges.length - 1]!))} ${base}Z" fill="${colors.get(g)}" fill-opacity="0.85" stroke="${colors.get(g)}" stroke-width="0.6"><title>${esc(`${g.name}: ${withThousands(total)} weights; the fullest bin holds ${((100 * peak) / total).toFixed(1)}%`)}</title></path>`
          : '';
        const yTicks = Array.from({ length: decades + 1 }, (_, d) => 10 ** d)
          .map(
            (v) =>
              `<line x1="${l}" x2="${l + iw}" y1="${r2(sy(v))}" y2="${r2(sy(v))}" stroke="#ececec"/><text x="${l - 4}" y="${r2(sy(v) + 3)}" text-anchor="end" font-size="10">${esc(tickLabel(v))}</text>`,
          )
          .join('');
        const xTicks = xt
          .map(
            (v) =>
              `<line x1="${r2(sx(v))}" x2="${r2(sx(v))}" y1="${t + ih}" y2="${t + ih + 4}" stroke="#333"/><text x="${r2(sx(v))}" y="${t + ih + 15}" text-anchor="middle" font-size="10">${esc(tickLabel(v))}</text>`,
          )
          .join('');
        const axis = `<line x1="${l}" x2="${l + iw}" y1="${t + ih}" y2="${t + ih}" stroke="#333"/><line x1="${l}" x2="${l}" y1="${t}" y2="${t + ih}" stroke="#333"/><line x1="${r2(sx(0))}" x2="${r2(sx(0))}" y1="${t}" y2="${t + ih}" stroke="#999" stroke-dasharray="2 2"/><text transform="translate(${ox + 14} ${t + ih / 2}) rotate(-90)" text-anchor="middle" font-size="10">weights (log scale)</text><text x="${l + iw / 2}" y="${t + ih + 30}" text-anchor="middle" font-size="10">w</text>`;
        return `<g class="series" data-name="${esc(g.name)}" data-peak-share="${(peak / total).toFixed(4)}"><text x="${r2(l + iw / 2)}" y="${oy + 16}" text-anchor="middle" font-weight="600">${esc(g.name)}</text>${yTicks}${area}${axis}${xTicks}</g>`;
      })
      .join('');
    const id = `hist-${li + 1}-${safeId(layer)}`;
    const title = `Final kernel weights of ${layer} (layer ${li + 1}) per variant, all seeds, bins of 0.005, log count`;
    charts.push({
      id,
      title,
      svg: svgOpen(id, title, CHART_WIDTH, h, panels.length) + body + '</svg>',
      series: panels.length,
    });
  }
  return charts;
}

/** Groups with a numeric value for `p`, and the name of the line each belongs to (the variant and the other swept values). */
function sweepLines(r: CompareResult, p: string): Map<string, Group[]> {
  const lines = new Map<string, Group[]>();
  for (const g of r.groups) {
    if (typeof g.sweep[p] !== 'number') continue;
    const rest = [
      g.variant ?? '',
      ...Object.entries(g.sweep)
        .filter(([k]) => k !== p)
        .map(([k, v]) => `${k.split('.').pop()}=${JSON.stringify(v)}`),
    ]
      .filter(Boolean)
      .join(' ');
    lines.set(rest, [...(lines.get(rest) ?? []), g]);
  }
  for (const gs of lines.values()) gs.sort((a, b) => (a.sweep[p] as number) - (b.sweep[p] as number));
  return lines;
}

/** For each numeric swept path: test accuracy vs its values and sparsity vs its values, points coloured by the value. */
function sweepCharts(r: CompareResult): Chart[] {
  return r.sweepPaths.flatMap((p): Chart[] => {
    const lines = sweepLines(r, p);
    const gs = [...lines.values()].flat();
    if (gs.length < 2) return [];
    const values = [...new Set(gs.map((g) => g.sweep[p] as number))].sort((a, b) => a - b);
    const valueColor = (g: Group) => sequential(values.indexOf(g.sweep[p] as number) / Math.max(1, values.length - 1));
    const xOf = (g: Group) => values.indexOf(g.sweep[p] as number);
    const many = lines.size > 1;
    const accSeries: LineSeries[] = [...lines].map(([name, members], i) => ({
      name: name || 'test accuracy',
      color: many ? color(i) : '#bbb',
      points: members.map((g): [number, number] => [xOf(g), g.testAccuracy.mean]),
      errors: members.map((g) => g.testAccuracy.std),
      pointColors: members.map(valueColor),
    }));
    const sparsity: LineSeries[] = [];
    let i = 0;
    for (const [name, members] of lines) {
      const nLayers = maxOf(
        members.map((g) => g.layers.length),
        0,
      );
      for (let li = 0; li < nLayers; li++) {
        const with_ = members.filter((g) => g.layers[li]?.sparsity1e3);
        const layer = members.find((g) => g.layers[li])!.layers[li]!.layer;
        sparsity.push({
          name: `${name ? `${name} ` : ''}${layer}`,
          color: color(i++),
          dash: li > 0,
          points: with_.map((g): [number, number] => [xOf(g), g.layers[li]!.sparsity1e3!.mean * 100]),
          pointColors: with_.map(valueColor),
        });
      }
    }
    const categories = values.map((v) => tickLabel(v));
    const charts = [
      lineChart(
        `sparsity-${safeId(p)}`,
        `Sparsity (% of kernel weights with |w| < 1e-3) vs ${p}`,
        p,
        'sparsity %',
        sparsity,
        { xCategories: categories },
      ),
    ];
    if (p !== 'data.trainLimit')
      charts.unshift(
        lineChart(
          `accuracy-vs-${safeId(p)}`,
          `Test accuracy vs ${p} (mean ± std over seeds)`,
          p,
          'test accuracy',
          accSeries,
          { xCategories: categories },
        ),
      );
    return charts;
  });
}

/**
 * A sweep over data.trainLimit: test accuracy, and the test calibration error when the runs
 * measured it, vs the training images each run really had, one line per variant.
 */
function trainSizeCharts(r: CompareResult): Chart[] {
  const p = 'data.trainLimit';
  if (!r.sweepPaths.includes(p)) return [];
  const lines = sweepLines(r, p);
  const gs = [...lines.values()].flat();
  if (gs.length < 2) return [];
  const seriesOf = (metric: (g: Group) => Stat | null, fallbackName: string): LineSeries[] =>
    [...lines].map(([name, members], i) => {
      const sorted = members
        .filter((g) => g.trainSize && metric(g))
        .sort((a, b) => a.trainSize!.mean - b.trainSize!.mean);
      return {
        name: name || fallbackName,
        color: color(i),
        points: sorted.map((g): [number, number] => [g.trainSize!.mean, metric(g)!.mean]),
        errors: sorted.map((g) => metric(g)!.std),
      };
    });
  const accuracy = seriesOf((g) => g.testAccuracy, 'test accuracy');
  const sizes = accuracy.flatMap((s) => s.points.map((q) => q[0]));
  const logX = Math.min(...sizes) > 0 && Math.max(...sizes) / Math.min(...sizes) >= 4;
  const xLabel = `training images${logX ? ' (log scale)' : ''}`;
  const charts = [
    lineChart(
      'accuracy-vs-train-size',
      'Test accuracy vs training-set size, per variant (mean ± std over seeds)',
      xLabel,
      'test accuracy',
      accuracy,
      { logX },
    ),
  ];
  const ece = seriesOf((g) => g.ece, 'test ECE').filter((s) => s.points.length > 0);
  if (ece.length > 0)
    charts.push(
      lineChart(
        'ece-vs-train-size',
        'Test calibration error (ECE, 15 bins) vs training-set size, per variant (mean ± std over seeds)',
        xLabel,
        'test ECE',
        ece,
        { logX },
      ),
    );
  return charts;
}

/** Per-class test accuracy of a single variant (all its seeds' predictions added up). */
function perClassChart(g: Group): Chart {
  const c = g.confusion!;
  const rows = c.matrix.map((row, i) => {
    const n = row.reduce((a, b) => a + b, 0);
    return { name: c.classNames[i]!, acc: n ? row[i]! / n : 0, n };
  });
  const f = { w: CHART_WIDTH, h: 40 + rows.length * 24, left: 130, right: 80 };
  const sx = (v: number) => f.left + v * (f.w - f.left - f.right);
  const bars = rows
    .map(
      (row, i) =>
        `<g class="series" data-name="${esc(row.name)}"><text x="${f.left - 8}" y="${44 + i * 24}" text-anchor="end">${esc(row.name)}</text><rect x="${f.left}" y="${30 + i * 24}" width="${r2(sx(row.acc) - f.left)}" height="18" fill="${sequential(row.acc)}"><title>${esc(`${row.name}: ${(100 * row.acc).toFixed(1)}% of ${row.n}`)}</title></rect><text x="${r2(sx(row.acc) + 6)}" y="${44 + i * 24}">${(100 * row.acc).toFixed(1)}%</text></g>`,
    )
    .join('');
  const grid = [0, 0.25, 0.5, 0.75, 1]
    .map(
      (v) =>
        `<line x1="${r2(sx(v))}" x2="${r2(sx(v))}" y1="26" y2="${f.h - 8}" stroke="#e5e5e5"/><text x="${r2(sx(v))}" y="${f.h}" text-anchor="middle" font-size="10">${v * 100}%</text>`,
    )
    .join('');
  const title = `Test accuracy per class: ${g.name}`;
  return {
    id: 'per-class',
    title,
    svg: svgOpen('per-class', title, f.w, f.h + 6, rows.length) + grid + bars + '</svg>',
    series: rows.length,
  };
}

/** The confusion matrix as a heatmap: rows the true class, columns the predicted one, shade by the row's share. */
function confusionChart(g: Group): Chart {
  const c = g.confusion!;
  const n = c.classNames.length;
  const cell = 52;
  const left = 130;
  const top = 120;
  const w = left + n * cell + 20;
  const h = top + n * cell + 40;
  const ox = (CHART_WIDTH - w) / 2;
  const cells = c.matrix
    .map((row, i) => {
      const total = row.reduce((a, b) => a + b, 0) || 1;
      const squares = row
        .map((v, j) => {
          const share = v / total;
          const fill =
            i === j
              ? `rgba(31,119,180,${(0.1 + 0.9 * share).toFixed(3)})`
              : `rgba(214,39,40,${Math.min(1, share * 4).toFixed(3)})`;
          const ink = share > 0.55 ? '#fff' : '#222';
          return `<rect x="${r2(ox + left + j * cell)}" y="${top + i * cell}" width="${cell - 1}" height="${cell - 1}" fill="${fill}"><title>${esc(`true ${c.classNames[i]}, predicted ${c.classNames[j]}: ${v} (${(100 * share).toFixed(1)}%)`)}</title></rect><text x="${r2(ox + left + j * cell + cell / 2)}" y="${top + i * cell + cell / 2 + 4}" text-anchor="middle" font-size="11" fill="${ink}">${v}</text>`;
        })
        .join('');
      return `<g class="series" data-name="${esc(c.classNames[i]!)}"><text x="${r2(ox + left - 8)}" y="${top + i * cell + cell / 2 + 4}" text-anchor="end">${esc(c.classNames[i]!)}</text>${squares}</g>`;
    })
    .join('');
  const colLabels = c.classNames
    .map(
      (name, j) =>
        `<text transform="translate(${r2(ox + left + j * cell + cell / 2 + 4)} ${top - 8}) rotate(-45)">${esc(name)}</text>`,
    )
    .join('');
  const axisNames = `<text x="${r2(ox + left + (n * cell) / 2)}" y="${top - 84}" text-anchor="middle" font-weight="600">predicted class</text><text transform="translate(${r2(ox + 16)} ${top + (n * cell) / 2}) rotate(-90)" text-anchor="middle" font-weight="600">true class</text>`;
  const title = `Confusion matrix on the test set: ${g.name} (counts; blue: correct, red: mistakes, shaded by the row's share)`;
  return {
    id: 'confusion',
    title,
    svg: svgOpen('confusion', title, CHART_WIDTH, h, n) + axisNames + colLabels + cells + '</svg>',
    series: n,
  };
}

/** A group's reliability bins, every run's added up (confidence and accuracy weighted by count); null when no run measured calibration. */
function groupReliability(
  g: Group,
): { lower: number; upper: number; count: number; confidence: number; accuracy: number }[] | null {
  const measured = g.runs.map((r) => r.metrics.calibration).filter((c) => c !== undefined);
  if (measured.length === 0) return null;
  const first = measured[0]!.bins;
  return first.map((b, i) => {
    let count = 0;
    let conf = 0;
    let acc = 0;
    for (const c of measured) {
      const x = c.bins[i];
      if (!x || x.lower !== b.lower || x.upper !== b.upper || !x.count) continue;
      count += x.count;
      conf += x.count * x.confidence!;
      acc += x.count * x.accuracy!;
    }
    return {
      lower: b.lower,
      upper: b.upper,
      count,
      confidence: count ? conf / count : 0,
      accuracy: count ? acc / count : 0,
    };
  });
}

/**
 * A reliability diagram per variant (Guo et al. 2017, figure 1): per confidence bin, a bar as tall as
 * the accuracy of the test images in it (every seed added up), against the diagonal a calibrated model
 * would follow; bars below it are over-confident. The ECE is in the title.
 */
function reliabilityCharts(r: CompareResult, colors: Map<Group, string>): Chart[] {
  return r.groups.flatMap((g, gi) => {
    const bins = groupReliability(g);
    if (!bins) return [];
    const f = { w: 560, h: 420, left: 64, top: 30, right: 24, bottom: 56 };
    const sx = (v: number) => f.left + v * (f.w - f.left - f.right);
    const sy = (v: number) => f.h - f.bottom - v * (f.h - f.top - f.bottom);
    const total = bins.reduce((a, b) => a + b.count, 0);
    const bars = bins
      .filter((b) => b.count > 0)
      .map(
        (b) =>
          `<g class="series" data-name="${esc(`${b.lower.toFixed(3)}–${b.upper.toFixed(3)}`)}"><rect x="${r2(sx(b.lower) + 1)}" y="${r2(sy(b.accuracy))}" width="${r2(sx(b.upper) - sx(b.lower) - 2)}" height="${r2(Math.max(0.5, sy(0) - sy(b.accuracy)))}" fill="${colors.get(g)}" fill-opacity="0.8"><title>${esc(`confidence ${b.lower.toFixed(3)}–${b.upper.toFixed(3)}: ${b.count} images (${((100 * b.count) / total).toFixed(1)}%), mean confidence ${b.confidence.toFixed(4)}, accuracy ${b.accuracy.toFixed(4)}`)}</title></rect><line x1="${r2(sx(b.lower) + 1)}" x2="${r2(sx(b.upper) - 1)}" y1="${r2(sy(b.confidence))}" y2="${r2(sy(b.confidence))}" stroke="#d62728" stroke-width="2"/></g>`,
      )
      .join('');
    const diagonal = `<line x1="${r2(sx(0))}" x2="${r2(sx(1))}" y1="${r2(sy(0))}" y2="${r2(sy(1))}" stroke="#333" stroke-dasharray="4 3"/>`;
    const xticks = [0, 0.2, 0.4, 0.6, 0.8, 1].map((v) => ({ v, label: tickLabel(v) }));
    const axis = axes(
      f,
      { lo: 0, hi: 1, ticks: xticks, label: 'confidence (top probability); red: mean confidence per bin' },
      { lo: 0, hi: 1, label: 'accuracy' },
      sx,
      sy,
    );
    const ece = g.ece ? `, ECE ${g.ece.mean.toFixed(4)}${g.ece.n > 1 ? ` (mean of ${g.ece.n})` : ''}` : '';
    const title = `Reliability: ${g.name}${ece}`;
    const id = `reliability-${gi + 1}-${safeId(g.name)}`;
    const n = bins.filter((b) => b.count > 0).length;
    return [{ id, title, svg: svgOpen(id, title, f.w, f.h, n) + axis + diagonal + bars + '</svg>', series: n }];
  });
}

export function renderCharts(r: CompareResult): Chart[] {
  const colors = groupColors(r);
  const single =
    r.groups.length === 1 && r.groups[0]!.confusion ? [perClassChart(r.groups[0]!), confusionChart(r.groups[0]!)] : [];
  return [
    curvePanels(r, colors, 'accuracy'),
    curvePanels(r, colors, 'loss'),
    gapChart(r, colors),
    ...reliabilityCharts(r, colors),
    ...histogramCharts(r, colors),
    ...trainSizeCharts(r),
    ...sweepCharts(r),
    ...single,
  ];
}
