/**
 * Property-based fuzzing of spec loading: random mutations of the valid specs in configs/
 * (text edits, structural edits, random --set flags) must either validate or be refused with an
 * InputError (exit 2 at the CLI) — never another exception (an "internal error" with a stack),
 * and never take long. Most cases run in-process through parseSpec; a handful go through the
 * real CLI. Seeds are fixed, so a failure is reproducible (fast-check prints the counterexample).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import * as YAML from 'yaml';
import { InputError } from '../src/errors';
import { parseSetFlag, parseSpec, type Override } from '../src/spec';
import { ROOT, regtrain } from './helpers/cli';
import { regtrainInProcess, type InProcessResult } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

const CONFIGS = path.join(ROOT, 'configs');
const SEEDS: string[] = fs
  .readdirSync(CONFIGS)
  .filter((f) => /\.ya?ml$/.test(f))
  .sort()
  .map((f) => fs.readFileSync(path.join(CONFIGS, f), 'utf8'));
/** One case may use this much CPU in-process (a quadratic blow-up or a hang would exceed it). */
const CASE_MS = 2000;
/** FUZZ_RUNS / FUZZ_SEED widen a local hunt; the defaults keep the suite fast and reproducible. */
const RUNS = Number(process.env.FUZZ_RUNS) || 300;
const SEED_OFFSET = Number(process.env.FUZZ_SEED) || 0;

/** YAML fragments that tend to break things: syntax, anchors, tags, odd numbers, hostile keys. */
const TOKENS = [
  ':',
  ': ',
  '- ',
  '[',
  ']',
  '{',
  '}',
  ',',
  '"',
  "'",
  '#',
  '&a ',
  '*a',
  '<<: *a',
  '!!binary ',
  '!!js/function ',
  '!custom ',
  '? ',
  '|',
  '>',
  '\t',
  '\n',
  '\n  ',
  '---\n',
  '...',
  '%YAML 1.1\n',
  '1e9',
  '1e999',
  '-1e999',
  '.nan',
  '.inf',
  '-0',
  '0x1F',
  '0o17',
  '4294967296',
  '-1',
  '0',
  '2.5',
  'null',
  '~',
  'true',
  'yes',
  '""',
  '[]',
  '{}',
  '__proto__',
  'constructor',
  'prototype',
  'units',
  'dense',
  'layers',
  'model',
  '\u0000',
  '\uFEFF',
  '\u2028',
  '😀',
];

interface Outcome {
  ok: boolean;
  message: string;
}

/** The own keys of the shared prototypes: a polluting key (`__proto__.x`, `constructor.prototype.x`) would add one. */
const prototypeKeys = () => [
  Object.getOwnPropertyNames(Object.prototype).sort().join(','),
  Object.getOwnPropertyNames(Array.prototype).sort().join(','),
];
const CLEAN_PROTOTYPES = prototypeKeys();
/** The keys that reach prototypes; the generators below produce them, and counters prove they did. */
const HOSTILE_KEYS = ['__proto__', 'constructor', 'prototype'];
const hostileSeen = { text: 0, struct: 0, set: 0 };

/** parseSpec must return or throw InputError, quickly, and leave the prototypes alone; anything else fails the property. */
function check(text: string, sets: Override[] = []): Outcome {
  // CPU time of this process, not wall time: other processes on a loaded machine do not count against a case.
  const cpu0 = process.cpuUsage();
  let outcome: Outcome;
  try {
    parseSpec(text, 'fuzz.yaml', sets, 'fuzz');
    outcome = { ok: true, message: '' };
  } catch (err) {
    if (!(err instanceof InputError))
      throw new Error(
        `crash (not an InputError): ${err instanceof Error ? err.stack : String(err)}\n--- input ---\n${text}`,
      );
    outcome = { ok: false, message: err.message };
  }
  assert.deepEqual(
    prototypeKeys(),
    CLEAN_PROTOTYPES,
    `a prototype gained a key from:\n${text.slice(0, 300)}\n${sets.map((o) => o.label).join('\n')}`,
  );
  const used = process.cpuUsage(cpu0);
  const ms = (used.user + used.system) / 1000;
  assert.ok(ms < CASE_MS, `took ${ms.toFixed(0)} ms of CPU (limit ${CASE_MS}):\n${text.slice(0, 500)}`);
  if (!outcome.ok) {
    assert.ok(
      outcome.message.length > 0 && !/\n\s+at /.test(outcome.message),
      `a stack trace in the message:\n${outcome.message}`,
    );
    for (const line of outcome.message.split('\n'))
      assert.ok(line.trim().length > 0, `an empty line in:\n${outcome.message}`);
  }
  return outcome;
}

/** A text edit at a position given as a fraction of the length. */
const textEdit = fc.oneof(
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    what: fc.oneof(
      fc.constantFrom(...TOKENS),
      fc.string({ maxLength: 8 }),
      fc.string({ unit: 'binary', maxLength: 4 }),
    ),
  }),
  fc.record({
    kind: fc.constant('delete' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    len: fc.integer({ min: 1, max: 20 }),
  }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({ kind: fc.constant('dupline' as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
  fc.record({
    kind: fc.constant('swaplines' as const),
    a: fc.double({ min: 0, max: 1, noNaN: true }),
    b: fc.double({ min: 0, max: 1, noNaN: true }),
  }),
  // A line whose key reaches a prototype, at the indentation of the line it follows (so often valid YAML).
  fc.record({
    kind: fc.constant('hostileKey' as const),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    key: fc.constantFrom('__proto__', 'constructor', 'prototype'),
    nested: fc.boolean(),
  }),
);
type TextEdit = typeof textEdit extends fc.Arbitrary<infer T> ? T : never;

function applyTextEdit(text: string, e: TextEdit): string {
  const pos = (f: number) => Math.min(text.length, Math.floor(f * text.length));
  const lines = text.split('\n');
  const line = (f: number) => Math.min(lines.length - 1, Math.floor(f * lines.length));
  switch (e.kind) {
    case 'insert':
      return text.slice(0, pos(e.at)) + e.what + text.slice(pos(e.at));
    case 'delete':
      return text.slice(0, pos(e.at)) + text.slice(pos(e.at) + e.len);
    case 'truncate':
      return text.slice(0, pos(e.at));
    case 'dupline': {
      const i = line(e.at);
      lines.splice(i, 0, lines[i]!);
      return lines.join('\n');
    }
    case 'hostileKey': {
      const i = line(e.at);
      const indent = /^\s*(- )?/.exec(lines[i]!)![0].replace('- ', '  ');
      lines.splice(
        i + 1,
        0,
        `${indent}${e.key}: ${e.nested ? '{ prototype: { polluted: 1, epochs: 99 } }' : '{ polluted: 1, epochs: 99 }'}`,
      );
      return lines.join('\n');
    }
    case 'swaplines': {
      const [i, j] = [line(e.a), line(e.b)];
      [lines[i], lines[j]] = [lines[j]!, lines[i]!];
      return lines.join('\n');
    }
  }
}

/** Values a structural edit may put anywhere: JSON-ish, special numbers, deep nesting, big lists. */
const weirdValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  // A map whose keys reach prototypes, with a payload that would show up everywhere if it got there.
  fc.constantFrom(...HOSTILE_KEYS).map(
    (k) =>
      Object.defineProperty({}, k, {
        value: { polluted: 1, epochs: 99 },
        enumerable: true,
        writable: true,
        configurable: true,
      }) as unknown,
  ),
  fc.constantFrom(
    NaN,
    Infinity,
    -Infinity,
    -0,
    1e9,
    2 ** 53,
    -1,
    0,
    0.5,
    65537,
    1e308,
    '',
    'relu',
    'softmax',
    'l1',
    'l3',
    null,
    true,
    [],
    {},
  ),
  fc.integer({ min: 1, max: 300 }).map((d) => JSON.parse('['.repeat(d) + ']'.repeat(d)) as unknown),
  fc.integer({ min: 0, max: 2000 }).map((n) => Array.from({ length: n }, () => ({ dense: { units: 1 } }))),
);

/** All paths to values inside a parsed document. */
function paths(v: unknown, prefix: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(prefix);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...prefix, i], out));
  else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...prefix, k], out);
  return out;
}

const structEdit = fc.record({
  pick: fc.double({ min: 0, max: 1, noNaN: true }),
  kind: fc.constantFrom('replace', 'delete', 'addKey', 'wrapList', 'wrapMap'),
  value: weirdValue,
  key: fc.oneof(
    fc.constantFrom('units', 'dense', 'sgd', 'l1', 'version', 'name', 'x', ''),
    fc.constantFrom(...HOSTILE_KEYS),
    fc.string({ maxLength: 6 }),
  ),
});
type StructEdit = typeof structEdit extends fc.Arbitrary<infer T> ? T : never;

function applyStructEdit(doc: unknown, e: StructEdit): unknown {
  const all = paths(doc);
  const p = all[Math.min(all.length - 1, Math.floor(e.pick * all.length))]!;
  if (p.length === 0) return e.kind === 'replace' ? e.value : doc;
  let parent = doc as Record<string | number, unknown>;
  for (const seg of p.slice(0, -1)) parent = parent[seg] as Record<string | number, unknown>;
  const last = p[p.length - 1]!;
  if (e.kind === 'replace') parent[last] = e.value;
  else if (e.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else if (e.kind === 'addKey') {
    const target = parent[last];
    if (target && typeof target === 'object' && !Array.isArray(target))
      Object.defineProperty(target, e.key, { value: e.value, enumerable: true, writable: true, configurable: true });
  } else if (e.kind === 'wrapList') parent[last] = [parent[last]];
  else parent[last] = { [e.key]: parent[last] };
  return doc;
}

test(`${RUNS} random text mutations of valid specs never crash and never take long`, { timeout: 120_000 }, () => {
  let refused = 0;
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: SEEDS.length - 1 }),
      fc.array(textEdit, { minLength: 1, maxLength: 5 }),
      (seed, edits) => {
        const text = edits.reduce(applyTextEdit, SEEDS[seed]!);
        if (HOSTILE_KEYS.some((k) => text.includes(k))) hostileSeen.text++;
        if (!check(text).ok) refused++;
      },
    ),
    { numRuns: RUNS, seed: 20240611 + SEED_OFFSET },
  );
  assert.ok(refused > RUNS / 4, `only ${refused} of ${RUNS} mutations were refused: the mutations are too weak`);
});

test(
  `${RUNS} random structural mutations (weird values anywhere) never crash and never take long`,
  { timeout: 120_000 },
  () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: SEEDS.length - 1 }),
        fc.array(structEdit, { minLength: 1, maxLength: 4 }),
        (seed, edits) => {
          const doc = edits.reduce(applyStructEdit, YAML.parse(SEEDS[seed]!) as unknown);
          let text: string;
          try {
            text = YAML.stringify(doc, { aliasDuplicateObjects: false });
          } catch {
            return; // not representable as YAML (e.g. a lone surrogate); nothing to test
          }
          if (HOSTILE_KEYS.some((k) => new RegExp(`(^|[\\s{,])${k}:`, 'm').test(text))) hostileSeen.struct++;
          check(text);
        },
      ),
      { numRuns: RUNS, seed: 777 + SEED_OFFSET },
    );
  },
);

test(`${RUNS} random --set flags never crash`, { timeout: 120_000 }, () => {
  const segment = fc.oneof(
    fc.constantFrom(
      'model',
      'layers',
      '0',
      '1',
      '4',
      '5',
      '6',
      '99999999',
      'dense',
      'units',
      'training',
      'epochs',
      'data',
      'validation',
      'size',
      '__proto__',
      'constructor',
      'prototype',
      'variants',
      'sweep',
    ),
    fc.stringMatching(/^[A-Za-z0-9_]{1,6}$/),
  );
  const flag = fc.oneof(
    fc
      .tuple(
        fc.array(segment, { minLength: 1, maxLength: 6 }),
        fc.oneof(fc.constantFrom(...TOKENS), fc.string({ maxLength: 10 })),
      )
      .map(([p, v]) => `${p.join('.')}=${v}`),
    fc.string({ maxLength: 20 }),
  );
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: SEEDS.length - 1 }),
      fc.array(flag, { minLength: 1, maxLength: 3 }),
      (seed, flags) => {
        if (flags.some((f) => HOSTILE_KEYS.some((k) => f.split('=')[0]!.split('.').includes(k)))) hostileSeen.set++;
        let sets: Override[];
        try {
          sets = flags.map(parseSetFlag);
        } catch (err) {
          if (err instanceof InputError) return;
          throw err;
        }
        check(SEEDS[seed]!, sets);
      },
    ),
    { numRuns: RUNS, seed: 4242 + SEED_OFFSET },
  );
  // The generators must really produce the hostile keys (else the prototype check above proves nothing).
  assert.ok(
    hostileSeen.set > RUNS / 10,
    `only ${hostileSeen.set} of ${RUNS} --set cases had a __proto__/constructor/prototype segment`,
  );
  assert.deepEqual(prototypeKeys(), CLEAN_PROTOTYPES);
});

test('the text and structural generators produce __proto__, constructor and prototype keys', () => {
  // Runs after the two properties above (node:test runs a file's tests in order).
  assert.ok(hostileSeen.text > 0, 'no text mutation inserted a hostile key');
  assert.ok(
    hostileSeen.struct > RUNS / 20,
    `only ${hostileSeen.struct} of ${RUNS} structural mutations wrote a hostile key`,
  );
});

test(
  'a handful of mutated specs through the CLI exit 0 or 2, never with a stack, never hanging; a real process prints the same',
  { timeout: 60_000 },
  async () => {
    const dir = scratchDir('regtrain-fuzz-');
    try {
      const samples = fc.sample(
        fc.tuple(fc.integer({ min: 0, max: SEEDS.length - 1 }), fc.array(textEdit, { minLength: 1, maxLength: 5 })),
        { numRuns: 8, seed: 99 },
      );
      const files = samples.map(([seed, edits], i) => {
        const file = path.join(dir, `m${i}.yaml`);
        fs.writeFileSync(file, edits.reduce(applyTextEdit, SEEDS[seed]!));
        return file;
      });
      // Every sample through the real program in process (one after another: calls share the cwd).
      const runs: ({ file: string } & InProcessResult)[] = [];
      for (const file of files) runs.push({ file, ...(await regtrainInProcess(['validate', file])) });
      for (const r of runs) {
        const input = fs.readFileSync(r.file, 'utf8');
        assert.ok(r.code === 0 || r.code === 2, `${r.file}: exit ${r.code}\n${r.stderr}\n--- input ---\n${input}`);
        assert.doesNotMatch(r.stderr, /internal error|^ {4}at /m, `${r.file}:\n${r.stderr}`);
      }
      // The first refused and the first accepted sample through a real process: the same exit and first line.
      const picked = [runs.find((r) => r.code === 2), runs.find((r) => r.code === 0)].filter((r) => r !== undefined);
      const real = await Promise.all(picked.map((r) => regtrain(['validate', r.file], { timeoutMs: 120_000 })));
      picked.forEach((r, i) => {
        assert.equal(real[i]!.signal, null, `${r.file} was killed (hang?)`);
        assert.equal(real[i]!.code, r.code, `${r.file}: exit ${real[i]!.code}\n${real[i]!.stderr}`);
        assert.equal(real[i]!.stderr.split('\n')[0], r.stderr.split('\n')[0], r.file);
        assert.doesNotMatch(real[i]!.stderr, /internal error|^ {4}at /m, `${r.file}:\n${real[i]!.stderr}`);
      });
      assert.ok(
        runs.some((r) => r.code === 2),
        'at least one sample is refused',
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
