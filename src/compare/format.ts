import type { CompareResult, Group } from './group';
import type { PairedResult, Stat } from './statistics';

/**
 * `compare`, step 3: the comparison as text (fits 120 columns; `--wide` for every column),
 * Markdown (the same table), CSV (every number, one row per group) and JSON Lines.
 */

/** Lines of the text output stay within this many columns (the table's rows, the legend wrapped). */
export const TEXT_WIDTH = 120;

// ASCII hyphen-minus, as every other number regtrain prints: scripts parse these cells.
const MINUS = '-';

/** `x` with `digits` decimals, negative numbers with the ASCII minus sign, as in every table cell. */
export function fmtNum(x: number, digits: number): string {
  if (!Number.isFinite(x)) return String(x).replace('-', MINUS);
  const s = x.toFixed(digits);
  return /^-0\.?0*$/.test(s) ? s.slice(1) : s.replace('-', MINUS);
}

/** `+0.0020`, `−0.0028`. */
export function fmtSigned(x: number, digits: number): string {
  const s = fmtNum(x, digits);
  return s.startsWith(MINUS) ? s : `+${s}`;
}

export function fmtStat(s: Stat | null, digits: number, scale = 1): string {
  if (!s) return '—';
  return s.std === null
    ? fmtNum(s.mean * scale, digits)
    : `${fmtNum(s.mean * scale, digits)} ± ${fmtNum(s.std * scale, digits)}`;
}

const fmtPct = (s: Stat | null) => (s ? `${fmtNum(s.mean * 100, 1)}%` : '—');
const fmtSig = (s: Stat | null) =>
  s ? (Math.abs(s.mean) >= 100 ? fmtNum(s.mean, 0) : s.mean.toPrecision(3).replace('-', MINUS)) : '—';

export function pairedOf(
  r: CompareResult,
  g: Group,
  metric: PairedResult['metric'] = 'test accuracy',
): PairedResult | undefined {
  return r.paired.find((p) => p.group === g.name && p.metric === metric);
}

/** The paired ECE difference as deltaCell writes accuracy's; the difference of means (no CI) without pairs. */
export function eceDeltaCell(r: CompareResult, g: Group): string {
  if (g.isBaseline) return '—';
  const p = pairedOf(r, g, 'test ECE');
  if (p) return `${fmtSigned(p.meanDiff, 4)} [${fmtSigned(p.ci95[0], 4)}, ${fmtSigned(p.ci95[1], 4)}] ${p.verdict}`;
  const ref = r.groups.find((x) => x.name === g.reference) ?? r.groups.find((x) => x.isBaseline);
  if (!ref || ref === g || !g.ece || !ref.ece) return '—';
  return `${fmtSigned(g.ece.mean - ref.ece.mean, 4)} (no CI)`;
}

/** `+0.0020 [−0.0028, +0.0068] inconclusive`; without a paired interval the difference of means and why. */
export function deltaCell(r: CompareResult, g: Group): string {
  if (g.isBaseline) return '—';
  const p = pairedOf(r, g);
  if (p) return `${fmtSigned(p.meanDiff, 4)} [${fmtSigned(p.ci95[0], 4)}, ${fmtSigned(p.ci95[1], 4)}] ${p.verdict}`;
  const ref = r.groups.find((x) => x.name === g.reference) ?? r.groups.find((x) => x.isBaseline);
  if (!ref || ref === g) return '—';
  const few = Math.min(g.runs.length, ref.runs.length) < 2 ? 'one run' : 'no seeds in common';
  return `${fmtSigned(g.testAccuracy.mean - ref.testAccuracy.mean, 4)} (no CI: ${few})`;
}

interface Column {
  title: string;
  /** Numbers are right-aligned. */
  numeric: boolean;
  cell: (g: Group, r: CompareResult) => string;
}

const variantName = (g: Group) => `${g.name}${g.isBaseline && g.name !== 'baseline' ? ' (baseline)' : ''}`;
const testAcc = (g: Group) => `${fmtStat(g.testAccuracy, 4)} (${g.testAccuracy.n})`;

/** Whether any run compared measured its calibration (runs written before regtrain did have no ECE columns). */
const calibrated = (r: CompareResult) => r.groups.some((g) => g.ece);

/** The readable table: what a person looks at first. */
function readableColumns(r: CompareResult): Column[] {
  return [
    { title: 'variant', numeric: false, cell: variantName },
    { title: 'test acc ± std (n)', numeric: true, cell: testAcc },
    { title: 'Δ vs baseline [95% CI]', numeric: false, cell: (g, r) => deltaCell(r, g) },
    { title: 'gap', numeric: true, cell: (g) => (g.gap ? fmtNum(g.gap.mean, 4) : '—') },
    ...(calibrated(r)
      ? [{ title: 'ECE', numeric: true, cell: (g: Group) => (g.ece ? fmtNum(g.ece.mean, 4) : '—') }]
      : []),
    { title: 'sparsity', numeric: true, cell: (g) => fmtPct(g.layers[0]?.sparsity1e3 ?? null) },
    { title: 'penalty', numeric: true, cell: (g) => fmtPct(g.penaltyShare) },
  ];
}

/** Every column (`--wide`). */
function wideColumns(r: CompareResult): Column[] {
  return [
    { title: 'variant', numeric: false, cell: variantName },
    { title: 'changes', numeric: false, cell: (g) => (g.isBaseline ? '' : g.label || '(same spec)') },
    { title: 'n', numeric: true, cell: (g) => String(g.runs.length) },
    { title: 'test acc', numeric: true, cell: (g) => fmtStat(g.testAccuracy, 4) },
    { title: 'Δ vs baseline [95% CI]', numeric: false, cell: (g, r) => deltaCell(r, g) },
    { title: 'test loss', numeric: true, cell: (g) => fmtStat(g.testLoss, 4) },
    ...(calibrated(r)
      ? [
          { title: 'test ECE', numeric: true, cell: (g: Group) => fmtStat(g.ece, 4) },
          { title: 'Δ ECE [95% CI]', numeric: false, cell: (g: Group, r: CompareResult) => eceDeltaCell(r, g) },
          { title: 'Brier', numeric: true, cell: (g: Group) => fmtStat(g.brier, 4) },
          { title: 'test NLL', numeric: true, cell: (g: Group) => fmtStat(g.nll, 4) },
        ]
      : []),
    {
      title: 'best val acc (epoch)',
      numeric: true,
      cell: (g) =>
        g.bestValAccuracy
          ? `${fmtStat(g.bestValAccuracy, 4)} (${fmtNum(g.bestValEpoch!.mean, g.bestValEpoch!.std ? 1 : 0)})`
          : '—',
    },
    { title: 'train−test gap', numeric: true, cell: (g) => fmtStat(g.gap, 4) },
    {
      title: 'data loss / penalty',
      numeric: true,
      cell: (g) => `${fmtStat(g.dataLoss, 4)} / ${fmtStat(g.penalty, 4)}`,
    },
    { title: 'penalty share', numeric: true, cell: (g) => fmtPct(g.penaltyShare) },
    {
      title: 'sparsity |w|<1e-3 per layer',
      numeric: true,
      cell: (g) => g.layers.map((l) => fmtPct(l.sparsity1e3)).join(' / ') || '—',
    },
    { title: 'L1 per layer', numeric: true, cell: (g) => g.layers.map((l) => fmtSig(l.l1)).join(' / ') || '—' },
    { title: 'L2 per layer', numeric: true, cell: (g) => g.layers.map((l) => fmtSig(l.l2)).join(' / ') || '—' },
    {
      title: 'epochs',
      numeric: true,
      cell: (g) => (g.epochs ? fmtNum(g.epochs.mean, Number.isInteger(g.epochs.mean) ? 0 : 1) : '—'),
    },
    { title: 'seconds', numeric: true, cell: (g) => (g.seconds ? fmtNum(g.seconds.mean, 1) : '—') },
  ];
}

export interface FormatOptions {
  /** Every column, the spec changes in the table instead of the legend. */
  wide?: boolean;
}

/** The table's header and cells, as the text/Markdown/HTML outputs show them. */
export function tableCells(
  r: CompareResult,
  opts: FormatOptions = {},
): { header: string[]; numeric: boolean[]; rows: string[][] } {
  const cols = opts.wide ? wideColumns(r) : readableColumns(r);
  return {
    header: cols.map((c) => c.title),
    numeric: cols.map((c) => c.numeric),
    rows: r.groups.map((g) => cols.map((c) => c.cell(g, r))),
  };
}

/** `l1 − baseline: +0.0300 [+0.0052, +0.0548], t(2) = 5.20, p = 0.035, 3 pairs: better` (test accuracy). */
export function pairedLine(p: PairedResult): string {
  const t = Number.isFinite(p.t) ? fmtNum(p.t, 2) : p.t > 0 ? '∞' : `${MINUS}∞`;
  return `${p.group} − ${p.baseline}: ${fmtSigned(p.meanDiff, 4)} [${fmtSigned(p.ci95[0], 4)}, ${fmtSigned(p.ci95[1], 4)}], t(${p.df}) = ${t}, p ${p.p < 0.001 ? '< 0.001' : `= ${p.p.toFixed(3)}`}, ${p.pairs} pairs: ${p.verdict}`;
}

/** The paired metrics that have results, accuracy first. */
export function pairedMetrics(r: CompareResult): PairedResult['metric'][] {
  return (['test accuracy', 'test ECE'] as const).filter((m) => r.paired.some((p) => p.metric === m));
}

/** "Test accuracy paired against the baseline" or "… against the baseline, l1": never "the baseline (baseline)". */
export function pairedHeading(r: CompareResult, metric: PairedResult['metric'] = 'test accuracy'): string {
  return `${metric === 'test accuracy' ? 'Test accuracy' : 'Test ECE (lower is better)'} paired against the baseline${r.baseline && r.baseline !== 'baseline' ? `, ${r.baseline}` : ''}, matched by seed (95% CI, paired t-test)`;
}

/** What the readable table's columns mean, sentence by sentence. */
export function legendSentences(r: CompareResult, opts: FormatOptions = {}): string[] {
  const best = r.groups.find((g) => g.best);
  const out = [
    `Best test accuracy: ${best?.name ?? '—'}.`,
    'test acc: mean ± std over seeds (n runs).',
    `Δ: test accuracy minus the baseline's${r.sweepPaths.length || r.paired.some((p) => p.baseline !== r.baseline) ? ' (in a sweep, the baseline variant at the same swept values)' : ''}, paired by seed, with its 95% t interval (better or worse when the interval excludes 0).`,
  ];
  if (!opts.wide) {
    const first = r.groups.find((g) => g.layers[0])?.layers[0]?.layer;
    out.push(
      'gap: train accuracy (inference mode) − test accuracy.',
      ...(calibrated(r)
        ? ['ECE: expected calibration error of the test probabilities (15 confidence bins; 0 is perfectly calibrated).']
        : []),
      `sparsity: share of the first layer's kernel weights${first ? ` (${first})` : ''} with |w| < 1e-3.`,
      "penalty: the penalty's share of the loss at the last epoch.",
    );
  }
  return out;
}

/** Each variant's changes against the baseline (the legend under the readable table). */
export function variantLegend(r: CompareResult): { name: string; changes: string[] }[] {
  return r.groups
    .filter((g) => !g.isBaseline)
    .map((g) => ({ name: g.name, changes: g.changes.length ? g.changes : ['(same spec)'] }));
}

/** `items` on lines of at most `width` characters: the first after `first`, the others after `indent`; items end with `joiner` (trimmed) and are separated by one space. */
function wrap(items: string[], width: number, joiner: string, first: string, indent: string): string[] {
  const lines: string[] = [];
  let line = first;
  items.forEach((item, i) => {
    const piece = i < items.length - 1 ? item + joiner.trimEnd() : item;
    const next = i === 0 ? line + piece : `${line} ${piece}`;
    if (i > 0 && [...next].length > width) {
      lines.push(line);
      line = indent + piece;
    } else line = next;
  });
  lines.push(line);
  return lines;
}

export function formatText(r: CompareResult, opts: FormatOptions = {}): string {
  const { header, numeric, rows } = tableCells(r, opts);
  const marked = rows.map((row, i) => [`${r.groups[i]!.best ? '*' : ' '}${row[0]}`, ...row.slice(1)]);
  const all = [[` ${header[0]}`, ...header.slice(1)], ...marked];
  const widths = header.map((_, i) => Math.max(...all.map((row) => [...row[i]!].length)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => {
        const pad = ' '.repeat(widths[i]! - [...cell].length);
        return numeric[i] ? pad + cell : cell + pad;
      })
      .join('  ')
      .trimEnd();
  const out = [line(all[0]!), widths.map((w) => '─'.repeat(w)).join('  '), ...marked.map(line)];
  out.push('', ...wrap(legendSentences(r, opts).join(' ').split(' '), TEXT_WIDTH, ' ', '', ''));
  const legend = variantLegend(r);
  if (!opts.wide && legend.length) {
    const w = Math.max(...legend.map((v) => [...v.name].length));
    out.push('', 'Variants (what differs from the baseline):');
    for (const v of legend) {
      const head = `  ${v.name.padEnd(w)}  `;
      out.push(...wrap(v.changes.join(', ').split(', '), TEXT_WIDTH, ', ', head, ' '.repeat(head.length)));
    }
  }
  for (const m of pairedMetrics(r))
    out.push('', `${pairedHeading(r, m)}:`, ...r.paired.filter((p) => p.metric === m).map((p) => `  ${pairedLine(p)}`));
  return out.join('\n') + '\n';
}

const mdCell = (s: string) => s.replace(/\|/g, '\\|');
const mdCode = (s: string) => (s.includes('`') ? `\`\` ${s} \`\`` : `\`${s}\``);

export function formatMarkdown(r: CompareResult, opts: FormatOptions = {}): string {
  const { header, numeric, rows } = tableCells(r, opts);
  const accCol = header.findIndex((h) => h.startsWith('test acc'));
  const body = rows.map((row, i) => row.map((c, j) => (j === accCol && r.groups[i]!.best ? `**${c}**` : c)));
  const out = [
    `| ${header.map(mdCell).join(' | ')} |`,
    `| ${numeric.map((n) => (n ? '---:' : '---')).join(' | ')} |`,
    ...body.map((row) => `| ${row.map(mdCell).join(' | ')} |`),
  ];
  out.push(
    '',
    legendSentences(r, opts)
      .join(' ')
      .replace(/^Best test accuracy: [^.]*\./, 'Best test accuracy in bold.'),
  );
  const legend = variantLegend(r);
  if (!opts.wide && legend.length)
    out.push(
      '',
      'Variants (what differs from the baseline):',
      '',
      ...legend.map((v) => `- ${v.name}: ${v.changes.map(mdCode).join(', ')}`),
    );
  for (const m of pairedMetrics(r))
    out.push(
      '',
      `${pairedHeading(r, m)}:`,
      '',
      ...r.paired.filter((p) => p.metric === m).map((p) => `- ${pairedLine(p)}`),
    );
  return out.join('\n') + '\n';
}

const csvCell = (v: unknown): string => {
  const s =
    v === null || v === undefined ? '' : typeof v === 'number' ? (Number.isFinite(v) ? String(v) : '') : String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
};

export function formatCsv(r: CompareResult): string {
  const layerNames = r.groups.reduce<string[]>(
    (acc, g) => (g.layers.length > acc.length ? g.layers.map((l) => l.layer) : acc),
    [],
  );
  const statCols = (name: string, s: (g: Group) => Stat | null): [string, (g: Group) => unknown][] => [
    [name, (g) => s(g)?.mean],
    [`${name}_std`, (g) => s(g)?.std],
  ];
  const paired = (g: Group) => pairedOf(r, g);
  const cols: [string, (g: Group) => unknown][] = [
    ['variant', (g) => g.name],
    ['changes', (g) => g.label],
    ['baseline', (g) => (g.isBaseline ? 1 : 0)],
    ['best', (g) => (g.best ? 1 : 0)],
    ['runs', (g) => g.runs.length],
    ['seeds', (g) => g.seeds.join(' ')],
    ...statCols('test_accuracy', (g) => g.testAccuracy),
    ['delta', (g) => paired(g)?.meanDiff],
    ['delta_ci95_low', (g) => paired(g)?.ci95[0]],
    ['delta_ci95_high', (g) => paired(g)?.ci95[1]],
    ['delta_p', (g) => paired(g)?.p],
    ['verdict', (g) => paired(g)?.verdict],
    ...statCols('test_loss', (g) => g.testLoss),
    ...statCols('ece', (g) => g.ece),
    ['ece_delta', (g) => pairedOf(r, g, 'test ECE')?.meanDiff],
    ['ece_delta_ci95_low', (g) => pairedOf(r, g, 'test ECE')?.ci95[0]],
    ['ece_delta_ci95_high', (g) => pairedOf(r, g, 'test ECE')?.ci95[1]],
    ['ece_delta_p', (g) => pairedOf(r, g, 'test ECE')?.p],
    ['ece_verdict', (g) => pairedOf(r, g, 'test ECE')?.verdict],
    ...statCols('brier', (g) => g.brier),
    ...statCols('nll', (g) => g.nll),
    ...statCols('best_val_accuracy', (g) => g.bestValAccuracy),
    ['best_val_epoch', (g) => g.bestValEpoch?.mean],
    ...statCols('gap', (g) => g.gap),
    ...statCols('data_loss', (g) => g.dataLoss),
    ...statCols('penalty', (g) => g.penalty),
    ...statCols('penalty_share', (g) => g.penaltyShare),
    ...layerNames.flatMap((name, i): [string, (g: Group) => unknown][] => [
      [`sparsity1e3_${name}`, (g) => g.layers[i]?.sparsity1e3?.mean],
      [`sparsity1e2_${name}`, (g) => g.layers[i]?.sparsity1e2?.mean],
      [`l1_${name}`, (g) => g.layers[i]?.l1?.mean],
      [`l2_${name}`, (g) => g.layers[i]?.l2?.mean],
    ]),
    ['epochs', (g) => g.epochs?.mean],
    ['seconds', (g) => g.seconds?.mean],
  ];
  return (
    [
      cols.map(([n]) => csvCell(n)).join(','),
      ...r.groups.map((g) => cols.map(([, f]) => csvCell(f(g))).join(',')),
    ].join('\n') + '\n'
  );
}

/**
 * JSON Lines, one compact object per line, each with a `type`: first one `comparison` (the
 * baseline, counts), then one `group` per table row in the table's order (every statistic, the
 * mean learning curve and the summed histograms), one `paired` per paired comparison, one
 * `skipped` per directory left out and one `duplicate` per run counted once.
 */
export function formatJsonLines(r: CompareResult): string {
  const lines: object[] = [
    {
      type: 'comparison',
      baseline: r.baseline,
      groups: r.groups.length,
      runs: r.groups.reduce((n, g) => n + g.runs.length, 0),
      paired: r.paired.length,
      skipped: r.skipped.length,
      duplicates: r.duplicates.length,
      sweepPaths: r.sweepPaths,
    },
    ...r.groups.map(({ runs, ...g }) => ({ type: 'group', ...g, runDirs: runs.map((x) => x.dir) })),
    ...r.paired.map((p) => ({
      type: 'paired',
      ...p,
      t: Number.isFinite(p.t) ? p.t : p.t > 0 ? 'Infinity' : '-Infinity',
    })),
    ...r.skipped.map((s) => ({ type: 'skipped', ...s })),
    ...r.duplicates.map((d) => ({ type: 'duplicate', ...d })),
  ];
  return lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
}
