import {
  fmtNum,
  legendSentences,
  pairedHeading,
  pairedLine,
  pairedMetrics,
  tableCells,
  variantLegend,
  type CompareResult,
} from '../compare';
import { getPath } from '../compare/spec-diff';
import { renderCharts } from './charts';
import { esc, type Chart } from './svg';
import { withThousands } from '../thousands';

/**
 * The HTML report: one self-contained file (inline SVG and CSS, no script, no network), as wide
 * as the window: the study's settings, the readable table and its legend (every column in a
 * closed <details>), the paired comparison, then the charts.
 */

const STYLE = `body{font-family:system-ui,sans-serif;margin:20px 24px;color:#222}h1{font-size:22px;margin:0 0 6px}h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;white-space:nowrap}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.best td{font-weight:600;background:#f1f8e9}tr.baseline td:first-child{font-style:italic}
.chart{width:100%;height:auto;display:block;margin:8px 0}.note{color:#555;font-size:13px;max-width:110ch}.scroll{overflow-x:auto;max-width:100%}
dl.settings{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:13px;margin:8px 0}dl.settings dt{color:#555}dl.settings dd{margin:0}
dl.legend{font-size:13px}dl.legend dt{font-weight:600;margin-top:4px}dl.legend dd{margin:0 0 0 16px;overflow-wrap:anywhere}dl.legend code{font-size:12px}
.row{display:flex;flex-wrap:wrap;gap:8px}.row .chart{width:560px;max-width:100%}
ul{font-size:13px}details{margin-top:10px;font-size:13px}summary{cursor:pointer}`;

const fmtInt = withThousands;

/** The distinct values of a setting over every run, sorted: "15", "1,000 – 5,000", "sgd lr 0.01, adam lr 0.001". */
function distinct(values: (string | number | null | undefined)[]): string {
  const seen = [...new Set(values.filter((v): v is string | number => v !== null && v !== undefined))];
  if (seen.length === 0) return '—';
  if (seen.every((v) => typeof v === 'number')) {
    const ns = (seen as number[]).sort((a, b) => a - b);
    return ns.length > 3
      ? `${fmtInt(ns[0]!)} – ${fmtInt(ns[ns.length - 1]!)} (${ns.length} values)`
      : ns.map(fmtInt).join(', ');
  }
  return seen.map(String).sort().join('; ');
}

function optimizerText(spec: Record<string, unknown> | null): string | null {
  const opt = getPath(spec, 'optimizer') as Record<string, Record<string, unknown>> | undefined;
  if (!opt) return null;
  const [name, cfg] = Object.entries(opt)[0] ?? [];
  if (!name) return null;
  const lr = cfg?.learningRate;
  const lrText = typeof lr === 'number' ? `lr ${lr}` : lr && typeof lr === 'object' ? `lr ${Object.keys(lr)[0]}` : '';
  const extras = ['momentum', 'weightDecay']
    .filter((k) => typeof cfg?.[k] === 'number' && cfg[k] !== 0)
    .map((k) => `${k} ${cfg![k]}`);
  return [name, lrText, ...extras].filter(Boolean).join(', ');
}

/** The settings every reader asks about first, over every run compared. */
export function studySettings(r: CompareResult): [string, string][] {
  const runs = r.groups.flatMap((g) => g.runs);
  const spec = (k: string) => runs.map((x) => getPath(x.spec, k) as number | string | undefined);
  const seeds = [...new Set(runs.map((x) => x.metrics.seed))].sort((a, b) => a - b);
  const studies = [...new Set(runs.map((x) => x.study?.file.name).filter(Boolean))];
  return [
    ...(studies.length ? [['study', studies.join(', ')] as [string, string]] : []),
    [
      'runs',
      `${runs.length} in ${r.groups.length} variant${r.groups.length === 1 ? '' : 's'}; Δ against the variant ${r.baseline ?? '—'}`,
    ],
    ['epochs', distinct(spec('training.epochs'))],
    ['batch size', distinct(spec('training.batchSize'))],
    ['optimizer', distinct(runs.map((x) => optimizerText(x.spec)))],
    ['training images', distinct(runs.map((x) => x.metrics.dataset.sizes.train))],
    ['validation images', distinct(runs.map((x) => x.metrics.dataset.sizes.validation))],
    ['test images', distinct(runs.map((x) => x.metrics.dataset.sizes.test))],
    ['seeds', seeds.length > 8 ? `${seeds.length} seeds, ${seeds[0]} – ${seeds[seeds.length - 1]}` : seeds.join(', ')],
    ['backend', distinct(runs.map((x) => x.metrics.backend.name))],
    ['regtrain', distinct(runs.map((x) => x.metrics.regtrainVersion))],
  ];
}

function htmlTable(r: CompareResult, wide: boolean): string {
  const { header, numeric, rows } = tableCells(r, { wide });
  return `<table><thead><tr>${header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map(
      (row, i) =>
        `<tr class="${[r.groups[i]!.best ? 'best' : '', r.groups[i]!.isBaseline ? 'baseline' : ''].join(' ').trim()}">${row.map((c, j) => `<td${numeric[j] ? ' class="num"' : ''}>${esc(c)}</td>`).join('')}</tr>`,
    )
    .join('')}</tbody></table>`;
}

/** The self-contained HTML report and its charts. */
export function renderReport(r: CompareResult, title = 'regtrain comparison'): { html: string; charts: Chart[] } {
  const charts = renderCharts(r);
  const section = (heading: string, content: string) =>
    content ? `<section><h2>${esc(heading)}</h2>${content}</section>` : '';
  const byPrefix = (...prefixes: string[]) =>
    charts
      .filter((c) => prefixes.some((p) => c.id.startsWith(p)))
      .map((c) => c.svg)
      .join('\n');
  const settings = `<dl class="settings">${studySettings(r)
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`)
    .join('')}</dl>`;
  const legend = variantLegend(r);
  const variants = legend.length
    ? `<p class="note">Variants (what differs from the baseline):</p><dl class="legend">${legend.map((v) => `<dt>${esc(v.name)}</dt><dd>${v.changes.map((c) => `<code>${esc(c)}</code>`).join(', ')}</dd>`).join('')}</dl>`
    : '';
  const table = `<div class="scroll">${htmlTable(r, false)}</div><p class="note">${esc(legendSentences(r).join(' '))}</p>${variants}<details><summary>Every column</summary><div class="scroll">${htmlTable(r, true)}</div></details>`;
  const noPairs =
    '<p class="note">No paired comparison: it needs at least two seeds on both the baseline and the variant.</p>';
  const paired = (m: (typeof r.paired)[number]['metric']) =>
    `<ul>${r.paired
      .filter((p) => p.metric === m)
      .map((p) => `<li>${esc(pairedLine(p))}</li>`)
      .join('')}</ul>`;
  const pairedSections = r.paired.length
    ? pairedMetrics(r)
        .map((m) => section(pairedHeading(r, m), paired(m)))
        .join('\n')
    : section(pairedHeading(r), noPairs);
  const skipped =
    r.skipped.length || r.warnings.length
      ? section(
          'Skipped runs and warnings',
          `<ul>${[...r.skipped.map((s) => `skipped ${s.dir}: ${s.reason}`), ...r.warnings].map((t) => `<li>${esc(t)}</li>`).join('')}</ul>`,
        )
      : '';
  const best = r.groups.find((g) => g.best);
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>${esc(title)}</title><style>${STYLE}</style></head>
<body><h1>${esc(title)}</h1>
${settings}
${best ? `<p class="note">Best test accuracy: ${esc(best.name)} (${fmtNum(best.testAccuracy.mean, 4)}).</p>` : ''}
${section('Results', table)}
${r.groups.length > 1 ? pairedSections : ''}
${section('Test accuracy and calibration vs training-set size', byPrefix('accuracy-vs-train-size', 'ece-vs-train-size'))}
${section('Against the swept parameter', byPrefix('accuracy-vs-', 'sparsity-').replace(/<svg[^>]*data-chart="accuracy-vs-train-size"[\s\S]*?<\/svg>/, ''))}
${section('Per class', byPrefix('per-class', 'confusion'))}
${section('Learning curves', byPrefix('curves-'))}
${section('Generalization gap', byPrefix('gap'))}
${section('Calibration: reliability diagrams', byPrefix('reliability') && `<div class="row">${byPrefix('reliability')}</div>`)}
${section('Weight histograms', byPrefix('hist-'))}
${skipped}
</body></html>
`;
  return { html, charts: charts.map((c) => ({ ...c, svg: `<?xml version="1.0" encoding="UTF-8"?>\n${c.svg}\n` })) };
}
