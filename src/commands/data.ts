import * as fs from 'node:fs';
import { Command, Option } from 'commander';
import * as cliProgress from 'cli-progress';
import { FailureError, InputError } from '../errors';
import {
  fetchDataset,
  loadManifest,
  resolveDataDir,
  verifyCache,
  DEFAULT_TIMEOUT_MS,
  MAX_TIMEOUT_MS,
  type CacheStatus,
  type FetchProgress,
  type Manifest,
} from '../data/fetch';
import { parseIdx } from '../data/idx';
import { jsonLine } from '../console';
import { shellQuote } from '../shell';
import { regtrainCommand } from '../invocation';
import { stderr, stdout } from '../output';

const MB = 1024 * 1024;
/** Without a TTY: one progress line per quarter of a file, or at least this often. */
const PLAIN_PROGRESS_INTERVAL_MS = 10_000;
const PLAIN_PROGRESS_STEPS = 4;

interface CommonOpts {
  dataDir?: string;
  source: string[];
  json?: boolean;
}

const DATA_DIR_HELP =
  'cache directory (default: $REGTRAIN_DATA_DIR, else $XDG_CACHE_HOME/regtrain/datasets/fashion-mnist, else ~/.cache/...)';

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function withCommonOptions(cmd: Command, sources: boolean): Command {
  cmd
    .option('--data-dir <dir>', DATA_DIR_HELP)
    .option('--json', 'print the result as one JSON line on stdout (messages stay on stderr)');
  if (sources)
    cmd.option(
      '--source <url-or-dir>',
      'URL prefix or directory to fetch from, repeatable; replaces the default list (Debian dir, then official mirrors)',
      collect,
      [],
    );
  return cmd.exitOverride();
}

function printJson(value: unknown): void {
  stdout().write(jsonLine(value));
}

/** `regtrain data fetch`, keeping the --data-dir the user gave, for hints. */
function fetchHint(opts: CommonOpts): string {
  return `${regtrainCommand()} data fetch${opts.dataDir !== undefined ? ` --data-dir ${shellQuote(opts.dataDir)}` : ''}`;
}

function formatBytes(n: number): string {
  return n < MB ? `${(n / 1024).toFixed(1)} KB` : `${(n / MB).toFixed(1)} MB`;
}

/** Progress on stderr: a bar on a TTY, occasional plain lines otherwise (never bar redraws into a pipe). */
function progressReporter(): { update: (e: FetchProgress) => void; stop: () => void } {
  const stream = stderr();
  if (stream.isTTY) {
    let bar: cliProgress.SingleBar | null = null;
    let current = '';
    const stop = (): void => {
      bar?.stop();
      bar = null;
    };
    return {
      update: (e) => {
        if (e.url !== current) {
          stop();
          current = e.url;
          bar = new cliProgress.SingleBar(
            { stream, format: `${e.name.padEnd(12)} [{bar}] {percentage}% | {mb} MB | {rate} MB/s`, hideCursor: true },
            cliProgress.Presets.shades_classic,
          );
          bar.start(e.total ?? e.bytes, 0, { mb: '0.0', rate: '0.0' });
        }
        if (e.total === null) bar?.setTotal(e.bytes);
        bar?.update(e.bytes, { mb: (e.bytes / MB).toFixed(1), rate: (e.rate / MB).toFixed(1) });
        if (e.done) stop();
      },
      stop,
    };
  }
  let lastUrl = '';
  let lastTime = 0;
  let lastStep = 0;
  return {
    update: (e) => {
      const now = Date.now();
      // The final quarter is reported by the 'done' event, not twice.
      const step = e.total
        ? Math.min(Math.floor((e.bytes / e.total) * PLAIN_PROGRESS_STEPS), PLAIN_PROGRESS_STEPS - 1)
        : 0;
      const first = e.url !== lastUrl;
      if (!first && !e.done && step === lastStep && now - lastTime < PLAIN_PROGRESS_INTERVAL_MS) return;
      lastUrl = e.url;
      lastTime = now;
      lastStep = step;
      const size = e.total ? `${formatBytes(e.bytes)}/${formatBytes(e.total)}` : formatBytes(e.bytes);
      const what = first ? `downloading ${e.url}` : e.done ? `${e.name}: done` : `${e.name}:`;
      stream.write(`${what} ${size} (${(e.rate / MB).toFixed(1)} MB/s)\n`);
    },
    stop: () => undefined,
  };
}

function fetchAction(manifest: () => Manifest) {
  return async (opts: CommonOpts & { offline?: boolean; timeout: string }): Promise<void> => {
    const timeoutSec = Number(opts.timeout);
    if (!(timeoutSec > 0)) throw new InputError(`--timeout must be a positive number of seconds, got ${opts.timeout}`);
    // Refused rather than capped: Node's timers cannot wait longer, and a longer one would fire at once.
    if (timeoutSec * 1000 > MAX_TIMEOUT_MS)
      throw new InputError(
        `--timeout ${opts.timeout}: at most ${Math.floor(MAX_TIMEOUT_MS / 1000)} seconds (~24.8 days, the longest timer Node.js can set)`,
      );
    const progress = progressReporter();
    let result;
    try {
      result = await fetchDataset({
        manifest: manifest(),
        // What `data fetch` says is verified, it has hashed this time.
        rehash: true,
        timeoutMs: timeoutSec * 1000,
        onProgress: progress.update,
        ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
        ...(opts.source.length > 0 ? { sources: opts.source } : {}),
        ...(opts.offline ? { offline: true } : {}),
      });
    } finally {
      progress.stop();
    }
    const files = result.files.map((f) => ({
      name: f.name,
      file: f.file,
      bytes: f.bytes,
      sha256: f.sha256,
      verified: true,
      source: f.source,
      fromCache: f.fromCache,
    }));
    if (opts.json) return printJson({ dataDir: result.dataDir, files });
    for (const f of files)
      stdout().write(
        `${f.name.padEnd(12)} ${f.file.padEnd(24)} ${f.fromCache ? 'cached, from' : 'fetched from'} ${f.source}\n`,
      );
    stdout().write(`verified (sha256) into ${result.dataDir}\n`);
  };
}

/** Exit status shared by verify and info: mismatch is a failure (1), missing files need a fetch (2). */
function throwForCache(statuses: CacheStatus[], dataDir: string, opts: CommonOpts): void {
  const bad = statuses.filter((s) => s.state === 'mismatch');
  if (bad.length > 0)
    throw new FailureError(
      `${bad.map((s) => s.file).join(', ')} in ${dataDir} fail${bad.length === 1 ? 's' : ''} sha256 verification; replace with: ${fetchHint(opts)}`,
    );
  const missing = statuses.filter((s) => s.state === 'missing');
  if (missing.length > 0)
    throw new InputError(
      `${missing.map((s) => s.file).join(', ')} missing from ${dataDir}; get ${missing.length === 1 ? 'it' : 'them'} with: ${fetchHint(opts)}`,
    );
}

function existingDataDir(opts: CommonOpts): string {
  const dir = resolveDataDir(opts.dataDir);
  if (!fs.existsSync(dir)) throw new InputError(`data dir ${dir} does not exist; fill it with: ${fetchHint(opts)}`);
  return dir;
}

function fileJson(s: CacheStatus): Record<string, unknown> {
  return {
    name: s.name,
    file: s.file,
    state: s.state,
    verified: s.state === 'ok',
    sha256: s.actual,
    expected: s.expected,
    source: s.source,
  };
}

function verifyAction(manifest: () => Manifest) {
  return (opts: CommonOpts): void => {
    const dir = existingDataDir(opts);
    const statuses = verifyCache(dir, manifest());
    if (opts.json) {
      printJson({ dataDir: dir, ok: statuses.every((s) => s.state === 'ok'), files: statuses.map(fileJson) });
    } else {
      for (const s of statuses) {
        const detail =
          s.state === 'ok'
            ? `sha256 ${s.expected.slice(0, 16)}… from ${s.source ?? 'unknown origin'}`
            : s.state === 'mismatch'
              ? `sha256 ${s.actual}, expected ${s.expected}`
              : s.path;
        stdout().write(`${s.state.toUpperCase().padEnd(8)} ${s.name.padEnd(12)} ${s.file.padEnd(24)} ${detail}\n`);
      }
    }
    throwForCache(statuses, dir, opts);
  };
}

interface SplitInfo {
  count: number;
  shape: [number, number];
  classCounts: Record<string, number>;
  mean: number;
  std: number;
}

function splitInfo(
  { classCounts, pixelStats, IMAGE_COLS, IMAGE_ROWS }: typeof import('../data/dataset'),
  images: CacheStatus | undefined,
  labels: CacheStatus | undefined,
  classNames: string[],
): SplitInfo | null {
  if (!images?.data || !labels?.data) return null;
  const img = parseIdx(images.data.bytes(), images.path, { dims: [null, IMAGE_ROWS, IMAGE_COLS] });
  const lab = parseIdx(labels.data.bytes(), labels.path, { dims: [img.dims[0]!] });
  const counts = classCounts(lab.data, classNames.length);
  const { mean, std } = pixelStats(img.data);
  return {
    count: img.dims[0]!,
    shape: [IMAGE_ROWS, IMAGE_COLS],
    classCounts: Object.fromEntries(classNames.map((c, k) => [c, counts[k]!])),
    mean,
    std,
  };
}

function infoAction(manifest: () => Manifest) {
  return async (opts: CommonOpts): Promise<void> => {
    const m = manifest();
    const dir = existingDataDir(opts);
    const statuses = verifyCache(dir, m);
    const byName = new Map(statuses.map((s) => [s.name, s]));
    // Loaded here, not at startup: data/dataset.ts brings tfjs, which the other data commands never need.
    const dataset = await import('../data/dataset');
    const train = splitInfo(dataset, byName.get('trainImages'), byName.get('trainLabels'), m.classNames);
    const test = splitInfo(dataset, byName.get('testImages'), byName.get('testLabels'), m.classNames);
    if (opts.json) {
      printJson({ dataset: m.name, dataDir: dir, train, test, files: statuses.map(fileJson) });
    } else {
      const out: string[] = [`${m.name} in ${dir}`];
      for (const [name, s] of [
        ['train', train],
        ['test', test],
      ] as const) {
        if (!s) {
          out.push(`${name}: not available (files missing or unverified)`);
          continue;
        }
        out.push(
          `${name}: ${s.count} images ${s.shape.join('x')}, pixel mean ${s.mean.toFixed(4)} std ${s.std.toFixed(4)} (of x/255)`,
        );
        out.push(
          '  ' +
            Object.entries(s.classCounts)
              .map(([c, k]) => `${c}: ${k}`)
              .join(', '),
        );
      }
      out.push('files:');
      for (const s of statuses)
        out.push(
          `  ${s.file.padEnd(24)} ${s.state === 'ok' ? 'verified' : s.state.padEnd(8)} from ${s.source ?? 'unknown origin'}`,
        );
      stdout().write(out.join('\n') + '\n');
    }
    throwForCache(statuses, dir, opts);
  };
}

/** Each subcommand's help tells its own exit codes, and only its own. */
const FETCH_EXIT_HELP = `
Exit codes:
  0    the four files are in the cache, verified
  1    no source gave a verified copy of a file (or the cache cannot be written)
  2    bad options or an unusable --data-dir / --source
  130  interrupted (SIGINT/SIGTERM/SIGHUP); no partial file is kept`;

const CHECK_EXIT_HELP = `
Exit codes:
  0    every file is present and verified
  1    a cached file fails its sha256 check (fetch again)
  2    the cache directory or a file is missing (fetch first)
  130  interrupted (SIGINT/SIGTERM/SIGHUP)`;

export function dataCommand(): Command {
  const manifest = (): Manifest => loadManifest();
  const data = new Command('data')
    .description('Fashion-MNIST: fetch it into the cache, verify the cache, show what is in it')
    .exitOverride();

  withCommonOptions(
    data
      .command('fetch')
      .description('get the four files into the cache, verified by sha256 (cache, then local dirs, then mirrors)')
      .addHelpText('after', FETCH_EXIT_HELP),
    true,
  )
    .option('--offline', 'use only the cache and local directories')
    .addOption(
      new Option('--timeout <seconds>', 'give up on a download that sends nothing for this long').default(
        String(DEFAULT_TIMEOUT_MS / 1000),
        `${DEFAULT_TIMEOUT_MS / 1000} seconds`,
      ),
    )
    .action(fetchAction(manifest));

  withCommonOptions(
    data
      .command('verify')
      .description('re-hash the cached files: OK, MISMATCH or MISSING each')
      .addHelpText('after', CHECK_EXIT_HELP),
    false,
  ).action(verifyAction(manifest));

  withCommonOptions(
    data
      .command('info')
      .description('per split: count, image shape, class counts, pixel mean/std; per file: source and verification')
      .addHelpText('after', CHECK_EXIT_HELP),
    false,
  ).action(infoAction(manifest));

  return data;
}
