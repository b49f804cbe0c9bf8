import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { FailureError, InputError, errorMessage } from '../errors';
import { writeFileAtomic } from '../fsutil';
import { collectRuns, compareRuns, formatCsv, formatJsonLines, formatMarkdown, formatText } from '../compare';
import { renderReport } from '../report';
import { stderr, stdout } from '../output';

export function compareCommand(): Command {
  return new Command('compare')
    .description(
      'compare run and study directories: one row per variant (mean ± std over seeds), paired test against the baseline, optional HTML report',
    )
    .argument('<dirs...>', 'run directories, study directories, or folders of runs')
    .option(
      '--wide',
      'every column (loss, best validation epoch, per-layer sparsity and norms, epochs, seconds) and the spec changes in the table',
    )
    .option(
      '--json',
      'print JSON Lines: a comparison line, one line per variant, per paired comparison, per skipped directory and per duplicate',
    )
    .option('--csv', 'print every column as CSV')
    .option('--md', 'print the table as Markdown')
    .option(
      '--baseline <variant>',
      "the variant (or run directory) to compare against (default: the study's baseline, else the first)",
    )
    .option(
      '--report <file.html>',
      'also write a self-contained HTML report, and its charts as SVG files in <file>-charts/',
    )
    .action(
      (
        dirs: string[],
        opts: { wide?: boolean; json?: boolean; csv?: boolean; md?: boolean; baseline?: string; report?: string },
      ) => {
        if ([opts.json, opts.csv, opts.md].filter(Boolean).length > 1)
          throw new InputError('choose one of --json, --csv, --md');
        if (opts.wide && (opts.json || opts.csv))
          throw new InputError(
            `--wide is for the table (text or --md); --${opts.json ? 'json' : 'csv'} always carries every column`,
          );
        const collected = collectRuns(dirs);
        for (const s of collected.skipped) stderr().write(`warning: skipped ${s.dir}: ${s.reason}\n`);
        if (collected.runs.length === 0) throw new InputError(`no complete runs to compare in ${dirs.join(', ')}`);
        const result = compareRuns(collected, { baseline: opts.baseline });
        for (const w of result.warnings) stderr().write(`warning: ${w}\n`);
        if (opts.report) {
          const { html, charts } = renderReport(result);
          const file = path.resolve(opts.report);
          const chartDir = file.replace(/\.html?$/i, '') + '-charts';
          try {
            fs.mkdirSync(chartDir, { recursive: true });
            for (const c of charts) writeFileAtomic(path.join(chartDir, `${c.id}.svg`), c.svg);
            writeFileAtomic(file, html);
          } catch (err) {
            throw new FailureError(`cannot write the report ${file}: ${errorMessage(err)}`);
          }
          stderr().write(`report: ${file} (${charts.length} charts also in ${chartDir})\n`);
        }
        const format = { wide: opts.wide ?? false };
        const text = opts.json
          ? formatJsonLines(result)
          : opts.csv
            ? formatCsv(result)
            : opts.md
              ? formatMarkdown(result, format)
              : formatText(result, format);
        stdout().write(text);
        // A wide table wraps into a mess on a terminal: say how to read it.
        const widest = Math.max(...text.split('\n').map((l) => l.length));
        if (opts.wide && stdout().isTTY && widest > stdout().columns)
          stderr().write(
            `(rows are up to ${widest} characters wide: page them with \`| less -S\`, or use --csv for a spreadsheet)\n`,
          );
      },
    );
}
