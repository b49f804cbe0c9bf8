import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import * as YAML from 'yaml';
import { FailureError, InputError, InterruptedError, errorMessage } from './errors';
import { checkArtifactText, shellQuote } from './shell';
import { packageRoot, readRegularFile, sha256, writeFileAtomic, UnreadableFileError } from './fsutil';
import {
  MAX_SPEC_BYTES,
  SpecError,
  specToYaml,
  validateSpec,
  applyOverrides,
  type ExperimentSpec,
  type SweepAlongside,
  type LoadedSpec,
  type Override,
} from './spec';
import { readRunStatus, readStudy, STUDY_FILE } from './rundir';
import { type StudyFile } from './runformat';
import { regtrainCommand } from './invocation';
import { StudyProgress } from './study-progress';
import { stderr, stdout } from './output';
export { readStudy, STUDY_FILE };

/**
 * Studies: a spec with `variants:`, `sweep:` and/or `repeats: N` stands for a grid of single
 * runs (variants × sweep points × seeds). Each grid point becomes a plain, fully resolved spec
 * in `<study>/specs/<member>.yaml` and runs as `regtrain run-member <study> --index I` into
 * `<study>/runs/<member>/`, so that `plan` can hand the very same work to GNU parallel, Slurm
 * or Kubernetes, and `compare` reads the results with no knowledge of how they ran.
 *
 * The study directory is the unit of work and holds exactly one study, named by a hash of its
 * resolved members; everything in it refers to its files by paths relative to it.
 *
 *   studies/<name>-<study hash>/
 *     study.json          StudyFile
 *     specs/<member>.yaml one resolved single-run spec per member
 *     runs/<member>/      one run directory per member (src/runformat.ts)
 */

export const STUDY_FORMAT_VERSION = 1;
const STUDY_KEYS = ['variants', 'sweep', 'repeats'] as const;
const MAX_MEMBER_NAME = 64;
/** More members than this is almost always a typo in a sweep; --max-members / REGTRAIN_MAX_MEMBERS raise it. */
export const DEFAULT_MAX_MEMBERS = 10_000;
const DOTTED_PATH = /^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/;

export interface StudyMember {
  /** Filesystem-safe, unique, ≤ 64 chars, e.g. `l1-l1=0.001-seed1235`. Names the spec file and run directory. */
  name: string;
  /** The variant name, or "base" when the spec has no variants. */
  variant: string;
  /** The member without its seed: repeats of one group differ only in seed, e.g. `l1-l1=0.001`. */
  group: string;
  /** The sweep point, dotted path → value (empty without a sweep). */
  sweep: Record<string, unknown>;
  seed: number;
  /** 0-based repeat index. */
  repeat: number;
  /** Applied in order to the base spec: the variant's paths, the sweep point, `seed`. */
  overrides: Override[];
  spec: ExperimentSpec;
}

export type { StudyFile };

/** A spec is a study when it asks for more than one run, or names variants/sweeps at all. */
export function isStudy(raw: unknown): boolean {
  if (raw === null || typeof raw !== 'object') return false;
  const r = raw as Record<string, unknown>;
  const nonEmpty = (v: unknown) =>
    v !== null && v !== undefined && (typeof v !== 'object' || Object.keys(v as object).length > 0);
  return nonEmpty(r.variants) || nonEmpty(r.sweep) || (typeof r.repeats === 'number' && r.repeats > 1);
}

/** The comparison baseline: a variant named `baseline`, else the first one. */
export function baselineVariant(variants: string[]): string {
  return variants.includes('baseline') ? 'baseline' : (variants[0] ?? 'base');
}

/** Short, filesystem-safe text for a value in a member name. */
function nameValue(v: unknown): string {
  const s = typeof v === 'string' ? v : typeof v === 'number' ? String(v) : JSON.stringify(v);
  return s.replace(/[^A-Za-z0-9._+-]+/g, '_').replace(/^_+|_+$/g, '') || '_';
}

/**
 * Short names for sweep keys: the last segment, plus the segments where keys sharing that last
 * segment differ (`model.layers.1.dense.kernelRegularizer.l1` and `…layers.2…` → `1.l1`, `2.l1`).
 */
function shortKeys(keys: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const k of keys) {
    const segs = k.split('.');
    const rivals = keys.filter((o) => o !== k && o.split('.').pop() === segs[segs.length - 1]).map((o) => o.split('.'));
    const keep = segs.filter((seg, i) => i === segs.length - 1 || rivals.some((r) => r[i] !== seg));
    out.set(k, keep.join('.'));
  }
  return out;
}

/** Caps a name at 64 chars; a hash of the full name keeps truncated names distinct. */
function capName(name: string): string {
  if (name.length <= MAX_MEMBER_NAME) return name;
  const hash = crypto.createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${name.slice(0, MAX_MEMBER_NAME - 9).replace(/[-._=]+$/, '')}-${hash}`;
}

function checkPath(key: string, where: string): string[] {
  if (!DOTTED_PATH.test(key))
    throw new InputError(
      `${where}: '${key}' is not a dotted path (expected e.g. model.layers.1.dense.kernelRegularizer.l1)`,
    );
  return key.split('.');
}

/** A spec error that says which variant/sweep point it came from, keeping each issue's path. */
function validateMember(raw: unknown, where: string, overrides: Override[]): ExperimentSpec {
  // validateSpec's origin: overridden paths are attributed to the override's label, the rest to `where`.
  const origin: Parameters<typeof validateSpec>[1] = {
    file: where,
    doc: null,
    lines: new YAML.LineCounter(),
    sets: overrides.map((o) => ({ path: o.path, flag: o.label })),
  };
  return validateSpec(raw, origin);
}

/** The sweep's grid dimensions: its keys with a list of values (not those moving `alongside` another). */
function gridKeys(sweep: ExperimentSpec['sweep']): Record<string, unknown[]> {
  return Object.fromEntries(Object.entries(sweep ?? {}).filter((e): e is [string, unknown[]] => Array.isArray(e[1])));
}

/**
 * The sweep's keys that move alongside a grid key, checked: each names a list key of the same
 * sweep and has one value per value of it.
 */
function alongsideKeys(sweep: ExperimentSpec['sweep'], file: string): [string, SweepAlongside][] {
  const grid = gridKeys(sweep);
  const out: [string, SweepAlongside][] = [];
  for (const [key, entry] of Object.entries(sweep ?? {})) {
    if (Array.isArray(entry)) continue;
    checkPath(key, `${file}: sweep`);
    const lead = grid[entry.alongside];
    if (!lead)
      throw new InputError(
        `${file}: sweep.${key}.alongside: '${entry.alongside}' is not a swept list in this sweep (expected one of: ${Object.keys(grid).join(', ') || 'none'})`,
      );
    if (entry.values.length !== lead.length)
      throw new InputError(
        `${file}: sweep.${key}.values: ${entry.values.length} value${entry.values.length === 1 ? '' : 's'} for the ${lead.length} of ${entry.alongside} (expected one per value)`,
      );
    out.push([key, entry]);
  }
  return out;
}

/** The member count, computed from the spec's sizes without expanding anything, and how it was reached. */
export function studySize(loaded: LoadedSpec): { count: number; formula: string } {
  const variants = loaded.spec.variants ? Object.keys(loaded.spec.variants).length || 1 : 1;
  const factors = [variants, ...Object.values(gridKeys(loaded.spec.sweep)).map((v) => v.length), loaded.spec.repeats];
  return { count: factors.reduce((a, b) => a * b, 1), formula: factors.join(' × ') };
}

/** The member cap: --max-members, else REGTRAIN_MAX_MEMBERS, else DEFAULT_MAX_MEMBERS. */
export function memberCap(flag?: string): number {
  const [raw, where] =
    flag !== undefined
      ? [flag, '--max-members']
      : process.env.REGTRAIN_MAX_MEMBERS
        ? [process.env.REGTRAIN_MAX_MEMBERS, 'REGTRAIN_MAX_MEMBERS']
        : [String(DEFAULT_MAX_MEMBERS), 'default'];
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < 1)
    throw new InputError(`${where}: expected a positive integer, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

/**
 * Expands a study spec into its members: variants × sweep points × repeats, in that order.
 * Each member spec is the base document (without variants/sweep/repeats) with the member's
 * overrides applied, validated in full; a bad path or value names the variant and the path.
 */
export function expandStudy(loaded: LoadedSpec, maxMembers = memberCap()): StudyMember[] {
  const size = studySize(loaded);
  if (size.count > maxMembers) {
    throw new InputError(
      `${loaded.file}: the study has ${size.formula} = ${size.count} members, more than the limit of ${maxMembers}; raise it with --max-members N (or REGTRAIN_MAX_MEMBERS=N) if you mean it`,
    );
  }
  const base: Record<string, unknown> = { ...loaded.raw };
  for (const k of STUDY_KEYS) delete base[k];
  const file = loaded.file;
  const variantMap =
    loaded.spec.variants && Object.keys(loaded.spec.variants).length ? loaded.spec.variants : { base: {} };
  const sweep = gridKeys(loaded.spec.sweep);
  const sweepKeys = Object.keys(sweep);
  const alongside = alongsideKeys(loaded.spec.sweep, file);
  const shorts = shortKeys(sweepKeys);
  const repeats = loaded.spec.repeats;

  // Cartesian product of the sweep's lists, first key outermost; a key alongside a list takes the
  // value at the same index. Only the lists name members and group them in `compare`.
  let points: { point: Record<string, unknown>; along: Record<string, unknown> }[] = [{ point: {}, along: {} }];
  for (const key of sweepKeys) {
    checkPath(key, `${file}: sweep`);
    const followers = alongside.filter(([, e]) => e.alongside === key);
    points = points.flatMap((p) =>
      sweep[key]!.map((v, i) => ({
        point: { ...p.point, [key]: v },
        along: { ...p.along, ...Object.fromEntries(followers.map(([k, e]) => [k, e.values[i]])) },
      })),
    );
  }

  const members: StudyMember[] = [];
  const used = new Set<string>();
  for (const [variant, paths] of Object.entries(variantMap)) {
    const variantOverrides: Override[] = Object.entries(paths).map(([key, value]) => ({
      path: checkPath(key, `${file}: variant '${variant}'`),
      value,
      label: `variant '${variant}': ${key}`,
    }));
    for (const { point, along } of points) {
      const pointOverrides: Override[] = Object.entries({ ...point, ...along }).map(([key, value]) => ({
        path: key.split('.'),
        value,
        label: `sweep ${key}=${JSON.stringify(value)}`,
      }));
      const where = `${file}: variant '${variant}'${pointOverrides.length ? `, ${pointOverrides.map((o) => o.label).join(', ')}` : ''}`;
      const pre = [...variantOverrides, ...pointOverrides];
      const raw = applyOverrides(base, pre);
      // Validate once without the seed, so a bad variant is reported once, not per repeat.
      let first: ExperimentSpec;
      try {
        first = validateMember(raw, where, pre);
      } catch (err) {
        if (err instanceof SpecError)
          throw new SpecError(
            err.issues.map((i) => ({ ...i, where: i.where === where ? where : `${file}: ${i.where}` })),
          );
        throw err;
      }
      const group = [variant, ...Object.entries(point).map(([k, v]) => `${shorts.get(k)}=${nameValue(v)}`)].join('-');
      for (let r = 0; r < repeats; r++) {
        const seed = first.seed + r;
        let name = capName(repeats > 1 ? `${group}-seed${seed}` : group);
        for (let n = 2; used.has(name); n++) name = capName(`${group}-${n}`);
        used.add(name);
        // The run's own name is the member name, so metrics.json identifies it; `=` is not allowed there.
        const overrides: Override[] = [
          ...pre,
          { path: ['seed'], value: seed, label: `repeat ${r + 1}: seed` },
          { path: ['name'], value: name.replace(/=/g, '_'), label: 'member name' },
        ];
        const spec = validateMember(applyOverrides(base, overrides), where, overrides);
        members.push({
          name,
          variant,
          group: capName(group),
          sweep: point,
          seed,
          repeat: r,
          overrides: overrides.filter((o) => o.path[0] !== 'name'),
          spec,
        });
      }
    }
  }
  return members;
}

// ---------- the study directory ----------

/** What `regtrain run` passes for a study spec: --out, --jobs, --dry-run, --json (and --set, already applied). */
export interface StudyOptions {
  /** --out / --study-dir: the study directory. Default: studies/<name>-<study hash>/ under the cwd. */
  out?: string;
  /** --jobs: members run at once (default 1). */
  jobs?: number;
  /** --json: JSON lines on stdout; each child's lines get a "member" field. */
  json?: boolean;
  /** --dry-run: list the members and commands, write and run nothing. */
  dryRun?: boolean;
  /** The spec path as given (recorded in study.json). */
  specFile?: string;
  /** The raw --set flags (recorded in study.json; already applied to `loaded`). */
  sets?: string[];
  /** --max-members (default: memberCap()). */
  maxMembers?: number;
  /** Passed on to every member's `regtrain run-member`, e.g. ['--backend', 'wasm', '--data-dir', 'D']. */
  extraArgs?: string[];
  /** Test seam: a script run by node instead of bin/regtrain (same arguments). */
  runner?: string;
}

export interface MemberResult {
  name: string;
  runDir: string;
  /** Child exit code; 0 also for members skipped because their run was already complete. */
  exitCode: number;
  skipped: boolean;
}

export interface PreparedStudy {
  studyDir: string;
  members: StudyMember[];
  /** False when the directory already held this very study (planned before): nothing was rewritten. */
  created: boolean;
}

/** The identity of a study: its members' names and resolved spec texts. */
export function studyHash(members: StudyMember[], texts = members.map((m) => specToYaml(m.spec))): string {
  return sha256(Buffer.from(JSON.stringify(members.map((m, i) => [m.name, texts[i]])))).slice(0, 10);
}

/** studies/<name>-<hash>: planning the same study again finds the same directory. */
export function defaultStudyDir(name: string, hash: string): string {
  return path.resolve('studies', `${name}-${hash}`);
}

export function memberSpecPath(studyDir: string, member: string): string {
  return path.join(studyDir, 'specs', `${member}.yaml`);
}
export function memberRunDir(studyDir: string, member: string): string {
  return path.join(studyDir, 'runs', member);
}

/** Why `dir` cannot hold a new study, or null when it may (absent or empty). */
function notAStudyDir(dir: string): string | null {
  let entries: string[];
  try {
    if (!fs.statSync(dir).isDirectory()) return 'exists and is not a directory';
    entries = fs.readdirSync(dir);
  } catch {
    return null;
  }
  if (entries.length === 0) return null;
  if (entries.includes('spec.yaml') || entries.includes('metrics.json') || entries.includes('.regtrain.lock'))
    return 'is a run directory, not a study directory; choose another';
  return `exists, is not empty and holds no ${STUDY_FILE}; choose an empty or new directory`;
}

/**
 * Creates the study directory (or finds this same study already in it): study.json, then
 * specs/<member>.yaml. A directory holds exactly one study: one holding another study, a run
 * or anything else is refused; study.json is created with an atomic no-replace link, so two
 * `plan`s racing for one directory cannot both write it.
 */
export function prepareStudy(loaded: LoadedSpec, opts: StudyOptions = {}): PreparedStudy {
  // The study directory's name reaches members.txt and the scheduler files: refused before anything is created.
  if (opts.out !== undefined) checkArtifactText('--out', opts.out);
  const members = expandStudy(loaded, opts.maxMembers);
  const texts = members.map((m) => specToYaml(m.spec));
  const hash = studyHash(members, texts);
  const studyDir = path.resolve(opts.out ?? defaultStudyDir(loaded.spec.name, hash));
  const studyFile = path.join(studyDir, STUDY_FILE);
  const where = opts.out !== undefined ? `${opts.out}` : studyDir;

  /** Same study → fine; another study → refused. */
  const checkExisting = (): void => {
    const existing = readStudy(studyDir);
    const same =
      existing.studyHash !== undefined
        ? existing.studyHash === hash
        : existing.members.length === members.length &&
          members.every(
            (m, i) =>
              existing.members[i]!.name === m.name && readIfExists(memberSpecPath(studyDir, m.name)) === texts[i],
          );
    if (!same)
      throw new InputError(
        `${where}: holds another study (${existing.name}, ${existing.members.length} members${existing.studyHash ? `, hash ${existing.studyHash}` : ''}; this one is ${loaded.spec.name}, ${members.length} members, hash ${hash}); a study directory holds one study: choose another directory`,
      );
  };

  let created = false;
  if (fs.existsSync(studyFile)) checkExisting();
  else {
    const why = notAStudyDir(studyDir);
    if (why) throw new InputError(`${where}: ${why}`);
    const variants = [...new Set(members.map((m) => m.variant))];
    const study: StudyFile = {
      formatVersion: STUDY_FORMAT_VERSION,
      name: loaded.spec.name,
      studyHash: hash,
      // Relative to the study directory, like every path in it: no host paths.
      specFile: path.relative(studyDir, path.resolve(opts.specFile ?? loaded.file)),
      sets: opts.sets ?? [],
      createdAt: new Date().toISOString(),
      baseline: baselineVariant(variants),
      variants,
      sweep: gridKeys(loaded.spec.sweep),
      repeats: loaded.spec.repeats,
      members: members.map((m) => ({
        name: m.name,
        variant: m.variant,
        group: m.group,
        sweep: m.sweep,
        seed: m.seed,
        repeat: m.repeat,
        overrides: m.overrides.map((o) => ({ path: o.path.join('.'), value: o.value })),
        spec: path.relative(studyDir, memberSpecPath(studyDir, m.name)),
        runDir: path.relative(studyDir, memberRunDir(studyDir, m.name)),
      })),
    };
    try {
      fs.mkdirSync(studyDir, { recursive: true });
      const tmp = path.join(studyDir, `.${STUDY_FILE}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`);
      writeFileAtomic(tmp, JSON.stringify(study, null, 2) + '\n');
      try {
        fs.linkSync(tmp, studyFile);
        created = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      } finally {
        fs.rmSync(tmp, { force: true });
      }
    } catch (err) {
      throw new FailureError(`cannot write the study to ${studyDir}: ${errorMessage(err)}`);
    }
    if (!created) checkExisting(); // another plan won the race: fine if it planned the same study
  }
  try {
    fs.mkdirSync(path.join(studyDir, 'specs'), { recursive: true });
    fs.mkdirSync(path.join(studyDir, 'runs'), { recursive: true });
    members.forEach((m, i) => {
      const file = memberSpecPath(studyDir, m.name);
      const text = readIfExists(file);
      if (text === null) writeFileAtomic(file, texts[i]!);
      else if (text !== texts[i])
        throw new InputError(
          `${path.join(where, 'specs', `${m.name}.yaml`)}: differs from the study's member spec (edited by hand?); a study's specs are frozen`,
        );
    });
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new FailureError(`cannot write the study to ${studyDir}: ${errorMessage(err)}`);
  }
  return { studyDir, members, created };
}

function readIfExists(file: string): string | null {
  try {
    return readRegularFile(file, { maxBytes: MAX_SPEC_BYTES }).toString('utf8');
  } catch (err) {
    if (err instanceof UnreadableFileError && err.code === 'ENOENT') return null;
    throw err;
  }
}

export type RunState = 'absent' | 'started' | 'complete' | 'failed';

/** How far a member's run directory got, from its files alone (no lock: see status for liveness). */
export function runState(runDir: string): RunState {
  const status = readRunStatus(runDir);
  if (status === 'complete') return 'complete';
  if (status === 'failed') return 'failed';
  try {
    return fs.readdirSync(runDir).length > 0 ? 'started' : 'absent';
  } catch {
    return 'absent';
  }
}

// ---------- running ----------

/** Calls `onLine` per complete line of a stream (the last partial line at the end). */
function lines(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  if (!stream) return;
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  stream.on('end', () => {
    if (buf) onLine(buf);
  });
}

/**
 * Runs a study: writes the specs, then each member as a child `regtrain run` process, `jobs` at
 * a time. A failing member does not stop the others; SIGINT/SIGTERM are forwarded to running
 * children, no new member starts, and the study ends with exit 130. Resolves when every member
 * succeeded; otherwise throws (FailureError 1, InputError 2 when every failure was bad input,
 * InterruptedError 130).
 */
export async function runStudy(loaded: LoadedSpec, opts: StudyOptions = {}): Promise<MemberResult[]> {
  const jobs = opts.jobs ?? 1;
  if (!Number.isInteger(jobs) || jobs < 1) throw new InputError(`--jobs: expected a positive integer, got ${jobs}`);
  const out = (obj: object) => stdout().write(JSON.stringify(obj) + '\n');
  const say = (text: string) => stderr().write(text + '\n');

  if (opts.dryRun) {
    if (opts.out !== undefined) checkArtifactText('--out', opts.out);
    const members = expandStudy(loaded, opts.maxMembers);
    const studyDir = path.resolve(opts.out ?? defaultStudyDir(loaded.spec.name, studyHash(members)));
    for (const m of members) {
      const overrides = m.overrides.map((o) => `${o.path.join('.')}=${JSON.stringify(o.value)}`);
      if (opts.json)
        out({
          event: 'member',
          member: m.name,
          variant: m.variant,
          group: m.group,
          seed: m.seed,
          sweep: m.sweep,
          overrides: m.overrides.map((o) => ({ path: o.path.join('.'), value: o.value })),
          runDir: memberRunDir(studyDir, m.name),
        });
      else stdout().write(`${m.name}\t${overrides.join(' ')}\n`);
    }
    say(
      `dry run: ${members.length} member${members.length === 1 ? '' : 's'} would run into ${studyDir} (nothing written)`,
    );
    return members.map((m) => ({ name: m.name, runDir: memberRunDir(studyDir, m.name), exitCode: 0, skipped: true }));
  }

  const { studyDir, members } = prepareStudy(loaded, opts);
  say(
    `study ${loaded.spec.name}: ${members.length} runs into ${studyDir}${jobs > 1 ? `, ${jobs} at a time` : ''}${opts.json ? '' : `; each run's output goes to ${path.join(studyDir, 'logs', '<member>.log')}`}`,
  );
  if (opts.json) out({ event: 'study', studyDir, members: members.map((m) => m.name) });
  // Human output: one line per member that ends and one progress line; the members' own lines go to their logs.
  const toRun = members.filter((m) => runState(memberRunDir(studyDir, m.name)) !== 'complete').length;
  const view = opts.json ? null : new StudyProgress(toRun, members.length);
  const note = (text: string) => (view ? view.say(text) : say(text));

  const results: MemberResult[] = [];
  const running = new Set<ChildProcess>();
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (!interrupted) note(`${sig}: stopping the running members (finished runs are kept)`);
    interrupted = true;
    for (const c of running) c.kill(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Children live in their own process group (so a terminal's Ctrl-C reaches them once, through us); don't orphan them.
  const onExit = () => {
    for (const c of running) c.kill('SIGTERM');
  };
  process.on('exit', onExit);

  const runOne = (m: StudyMember, index: number): Promise<MemberResult> => {
    const runDir = memberRunDir(studyDir, m.name);
    const tag = `[${m.name}]`;
    const state = runState(runDir);
    if (state === 'complete') {
      note(`${tag} already complete, kept`);
      if (opts.json) out({ event: 'member-end', member: m.name, runDir, exitCode: 0, skipped: true });
      return Promise.resolve({ name: m.name, runDir, exitCode: 0, skipped: true });
    }
    const starting = `${tag} ${state === 'started' ? 'resuming' : 'starting'} (--index ${index})`;
    // The view's progress line names the running members; only the JSON mode says each start.
    if (view) view.memberStarted(m.name);
    else say(starting);
    if (opts.json) out({ event: 'member-start', member: m.name, runDir });
    const passThrough = jobs === 1 && !view;
    const logFile = view ? StudyProgress.logFile(studyDir, m.name) : null;
    const log = logFile === null ? null : fs.openSync(logFile, 'a');
    let testLine = '';
    let errorLine = '';
    const toLog = (line: string) => {
      fs.writeSync(log!, line + '\n');
      view!.memberLine(m.name, line);
      if (line.startsWith('Test: ')) testLine = line;
      if (line.startsWith('error: ')) errorLine = line.slice('error: '.length);
    };
    return new Promise((resolve) => {
      // The same command a cluster runs: it starts the member, or resumes it when it was interrupted.
      const args = [
        opts.runner ?? path.join(packageRoot(), 'bin', 'regtrain'),
        'run-member',
        studyDir,
        '--index',
        String(index),
        ...(opts.json ? ['--json'] : []),
        ...(opts.extraArgs ?? []),
      ];
      const child = spawn(process.execPath, args, {
        stdio: ['ignore', opts.json || !passThrough ? 'pipe' : 'inherit', passThrough ? 'inherit' : 'pipe'],
        detached: true,
      });
      running.add(child);
      lines(child.stdout, (line) => {
        if (opts.json) {
          let obj: unknown;
          try {
            obj = JSON.parse(line);
          } catch {
            obj = undefined;
          }
          if (obj && typeof obj === 'object' && !Array.isArray(obj)) out({ ...(obj as object), member: m.name });
          else say(`${tag} ${line}`);
        } else if (log !== null) toLog(line);
        else stdout().write(`${tag} ${line}\n`);
      });
      lines(child.stderr, (line) => (log !== null ? toLog(line) : say(`${tag} ${line}`)));
      let settled = false;
      const finish = (exitCode: number) => {
        if (settled) return;
        settled = true;
        running.delete(child);
        if (view) {
          fs.closeSync(log!);
          const rel = path.relative(process.cwd(), logFile!);
          const acc = /accuracy: (\S+)/.exec(testLine)?.[1];
          view.memberEnded(
            m.name,
            exitCode,
            exitCode === 0 ? (acc ? `test accuracy ${acc}` : '') : `${errorLine ? `${errorLine}; ` : ''}see ${rel}`,
          );
        } else say(`${tag} ${exitCode === 0 ? 'done' : `failed (exit ${exitCode})`}`);
        if (opts.json) out({ event: 'member-end', member: m.name, runDir, exitCode, skipped: false });
        resolve({ name: m.name, runDir, exitCode, skipped: false });
      };
      child.on('error', (err) => {
        note(`${tag} cannot start: ${err.message}`);
        finish(1);
      });
      child.on('close', (code, signal) => finish(code ?? (signal === 'SIGINT' || signal === 'SIGTERM' ? 130 : 1)));
    });
  };

  try {
    let next = 0;
    const worker = async () => {
      while (!interrupted && next < members.length) {
        const i = next++;
        results[i] = await runOne(members[i]!, i);
      }
    };
    await Promise.all(Array.from({ length: Math.min(jobs, members.length) }, worker));
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
  }

  view?.stop();
  const done = results.filter((r) => r !== undefined);
  const failed = done.filter((r) => r.exitCode !== 0);
  const notStarted = members.length - done.length;
  const summary = {
    event: 'study-end',
    studyDir,
    ok: done.length - failed.length,
    failed: failed.map((r) => ({ member: r.name, exitCode: r.exitCode })),
    notStarted,
  };
  if (opts.json) out(summary);
  say(
    `study: ${summary.ok}/${members.length} runs ok${failed.length ? `, failed: ${failed.map((r) => `${r.name} (exit ${r.exitCode})`).join(', ')}` : ''}${notStarted ? `, ${notStarted} not started` : ''}; compare with: ${regtrainCommand()} compare ${shellQuote(path.relative(process.cwd(), studyDir) || '.')}`,
  );
  if (interrupted)
    throw new InterruptedError(
      `study interrupted; run the same command again (or ${regtrainCommand()} run-member ${shellQuote(studyDir)} --index I) to finish the remaining runs`,
    );
  if (failed.length && failed.every((r) => r.exitCode === 2))
    throw new InputError(`${failed.length} of ${members.length} runs refused their input`);
  if (failed.length) throw new FailureError(`${failed.length} of ${members.length} runs failed`);
  return done;
}
