/**
 * Hardening round 2, spec families: YAML that would change meaning silently (tags, %YAML 1.1,
 * collection keys), --set/variant/sweep paths that match nothing, and zod's own wording.
 * In-process through parseSpec/expandStudy for the many cases; through the real CLI where stderr
 * (Node warnings) is the point.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InputError } from '../src/errors';
import { applyOverrides, parseSetFlag, parseSpec, experimentSpec } from '../src/spec';
import { expandStudy } from '../src/study';
import { ZOD_WORDING } from '../src/zodwords';
import { regtrain } from './helpers/cli';
import { scratchDir } from './helpers/scratch';

const ROOT = path.resolve(__dirname, '../..');
const QUICK_TEXT = fs.readFileSync(path.join(ROOT, 'configs', 'quick.yaml'), 'utf8');

/** The error lines parseSpec gives for `text` with `sets`; [] when it validates. */
function errors(text: string, sets: string[] = []): string[] {
  try {
    parseSpec(text, 'spec.yaml', sets.map(parseSetFlag));
    return [];
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    return err.message.split('\n');
  }
}

const cli = (args: string[]) => regtrain(args, { cwd: ROOT });

/** quick.yaml with `seed: 1234` replaced by `seed: <value>`. */
const withSeed = (value: string) => QUICK_TEXT.replace('seed: 1234', `seed: ${value}`);

describe('YAML values that are not plain scalars, maps or lists are refused at their path', () => {
  const TAGGED: [string, string][] = [
    ['!!omap [ {a: 1} ]', '!!omap'],
    ['!!set {a, b}', '!!set'],
    ['!!pairs [ {a: 1} ]', '!!pairs'],
    ['!!timestamp 2001-12-14', '!!timestamp'],
    ['!!binary aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=', '!!binary'],
    ['!custom 3', '!custom'],
    ['!!js/function "return 1"', '!!js/function'],
    ['!<tag:example.com,2000:x> 3', '!<tag:example.com,2000:x>'],
  ];

  test('each of 8 tags in a spec file: one line naming seed, the tag and its position', () => {
    for (const [value, tag] of TAGGED) {
      const lines = errors(withSeed(value));
      const shown = tag.startsWith('!<') ? 'tag:example.com,2000:x' : tag;
      assert.deepEqual(
        lines,
        [
          `! seed: the YAML tag ${shown} is not supported: write a plain value, map or list (spec.yaml:3:${7 + value.indexOf(' ') + 1})`,
        ],
        value,
      );
    }
  });

  test('a !!binary value gives one error, not one per decoded byte', () => {
    assert.equal(errors(withSeed('!!binary ' + Buffer.alloc(3000, 7).toString('base64'))).length, 1);
  });

  test('a tagged collection deep in the model is named by its dotted path', () => {
    const text = QUICK_TEXT.replace('kernelRegularizer: { l2: 0.001 }', 'kernelRegularizer: !!omap [ {l2: 0.001} ]');
    assert.deepEqual(errors(text), [
      '! model.layers.2.dense.kernelRegularizer: the YAML tag !!omap is not supported: write a plain value, map or list (spec.yaml:13:72)',
    ]);
  });

  test("the core schema's own tags (!!str, !!int, !!float, !!bool, !!null, !!map, !!seq) are plain and accepted", () => {
    const text = withSeed('!!int "7"')
      .replace('epochs: 3', 'epochs: !!int 3')
      .replace('batchSize: 32', 'batchSize: !!int 32')
      .replace('name: quick', 'name: !!str quick');
    assert.deepEqual(errors(text), []);
    assert.equal(parseSpec(text, 'spec.yaml').spec.seed, 7);
  });

  test('%YAML 1.1 (yes/no booleans, octal 010, sexagesimal 1:20) is refused, not read with other meanings', () => {
    assert.deepEqual(errors(`%YAML 1.1\n---\n${QUICK_TEXT}`), [
      '! invalid YAML: %YAML 1.1 is not supported (regtrain reads YAML 1.2, where yes, 010 and 1:20 keep their plain meaning) (spec.yaml:1:1)',
    ]);
    // Without the directive, 010 is ten (YAML 1.2), not eight.
    // The position is the value's (the node after its tag).
    assert.equal(parseSpec(QUICK_TEXT.replace('epochs: 3', 'epochs: 010'), 'spec.yaml').spec.training.epochs, 10);
  });

  test('a map or list used as a map key is refused', () => {
    assert.deepEqual(errors(QUICK_TEXT.replace('seed: 1234', '? [a, b]\n: 3')), [
      '! a map key must be a plain value, not a map, list or tagged value (spec.yaml:3:3)',
    ]);
  });

  test('a __proto__ key in a spec file is an unknown key, never a hidden default (epochs stays unread)', () => {
    const text = QUICK_TEXT.replace('training:\n', 'training:\n  __proto__: { epochs: 99 }\n');
    assert.deepEqual(errors(text), ['! training.__proto__: unknown key (spec.yaml:18:3)']);
  });

  test('the same rules hold in a --set value, naming the flag and the full path', () => {
    const cases: [string, string][] = [
      [
        'seed=!!binary aGVsbG8=',
        '--set seed=!!binary aGVsbG8=: seed: the YAML tag !!binary is not supported: write a plain value, map or list',
      ],
      [
        'training={epochs: !!set {3}}',
        '--set training={epochs: !!set {3}}: training.epochs: the YAML tag !!set is not supported: write a plain value, map or list',
      ],
      [
        'seed=!!timestamp 2001-12-14',
        '--set seed=!!timestamp 2001-12-14: seed: the YAML tag !!timestamp is not supported: write a plain value, map or list',
      ],
      ['seed=!foo 3', '--set seed=!foo 3: seed: the YAML tag !foo is not supported: write a plain value, map or list'],
    ];
    for (const [flag, message] of cases) assert.throws(() => parseSetFlag(flag), { name: 'InputError', message }, flag);
  });

  test('no Node warning reaches stderr: a custom tag in a spec file and in a --set value (real CLI)', async () => {
    const dir = scratchDir('regtrain-h2-');
    try {
      const file = path.join(dir, 'tagged.yaml');
      fs.writeFileSync(file, withSeed('!weird 3'));
      const a = await cli(['validate', file]);
      assert.equal(a.code, 2);
      assert.equal(
        a.stderr,
        `! seed: the YAML tag !weird is not supported: write a plain value, map or list (tagged.yaml:3:14)\n`,
      );
      const b = await cli(['validate', 'configs/quick.yaml', '--set', 'training.epochs=!weird 3']);
      assert.equal(b.code, 2);
      assert.equal(
        b.stderr,
        'error: --set training.epochs=!weird 3: training.epochs: the YAML tag !weird is not supported: write a plain value, map or list\n',
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('override paths must name a field the schema knows or an existing list element, canonically', () => {
  const refused: [string, string][] = [
    [
      'model.layers.01.dense.units=50',
      "--set model.layers.01.dense.units=50: model.layers: '01' is not written as a list index (write 1)",
    ],
    [
      'model.layers.001.dense.units=50',
      "--set model.layers.001.dense.units=50: model.layers: '001' is not written as a list index (write 1)",
    ],
    [
      'model.layers.00.flatten.inputShape=[28, 28]',
      "--set model.layers.00.flatten.inputShape=[28, 28]: model.layers: '00' is not written as a list index (write 0)",
    ],
    [
      'model.layers.5.dense.units=3',
      '--set model.layers.5.dense.units=3: model.layers has 5 items; index 5 is past the end',
    ],
    [
      'model.layers.0.flatten.inputShape.2=28',
      '--set model.layers.0.flatten.inputShape.2=28: model.layers.0.flatten.inputShape has 2 items; index 2 is past the end',
    ],
    [
      'model.layers.0.flatten.inputShape.01=28',
      "--set model.layers.0.flatten.inputShape.01=28: model.layers.0.flatten.inputShape: '01' is not written as a list index (write 1)",
    ],
    [
      'model.layers.dense.units=3',
      "--set model.layers.dense.units=3: model.layers is a list; expected an index, got 'dense'",
    ],
    [
      'model.layers.1.dense.units.x=3',
      "--set model.layers.1.dense.units.x=3: model.layers.1.dense.units is a single value, so it has no field 'x'",
    ],
    ['training.epochs.0=3', "--set training.epochs.0=3: training.epochs is a single value, so it has no field '0'"],
    ['training.epoch=3', "! training.epoch: unknown key (did you mean 'epochs'?) (--set training.epoch=3)"],
    ['trainig.epochs=3', "! trainig: unknown key (did you mean 'training'?) (--set trainig.epochs=3)"],
    [
      'data.validation.sise=3',
      "! data.validation.size: unknown key (did you mean 'size'?) (--set data.validation.sise=3)".replace(
        'validation.size',
        'validation.sise',
      ),
    ],
    ['optimizer.sgd.lr=0.1', '! optimizer.sgd.lr: unknown key (--set optimizer.sgd.lr=0.1)'],
    [
      'model.layers.1.dense.kernelRegularizer.l3=0.1',
      "! model.layers.1.dense.kernelRegularizer.l3: unknown key (did you mean 'l1'?) (--set model.layers.1.dense.kernelRegularizer.l3=0.1)",
    ],
    ['foo=1', '! foo: unknown key (--set foo=1)'],
  ];

  test(`${refused.length} paths that match nothing are refused with one line naming the flag`, () => {
    for (const [flag, line] of refused) {
      const lines = errors(QUICK_TEXT, [flag]);
      assert.deepEqual(lines, [line], flag);
    }
  });

  test('paths that name a real field work, including fields the file leaves to their defaults', () => {
    const ok = [
      'model.layers.1.dense.units=50',
      'training.earlyStopping.patience=2',
      'model.layers.4.dense.kernelRegularizer.l1=0.001',
      'data.validation.stratify=true',
      'optimizer.sgd.momentum=0.9',
      'model.layers.0.flatten.inputShape.1=28',
    ];
    const { spec } = parseSpec(QUICK_TEXT, 'spec.yaml', ok.map(parseSetFlag));
    assert.equal(spec.model.layers[1]!.dense!.units, 50);
    assert.deepEqual(spec.training.earlyStopping, {
      monitor: 'val_loss',
      patience: 2,
      minDelta: 0,
      restoreBestWeights: false,
    });
    assert.deepEqual(spec.model.layers[4]!.dense!.kernelRegularizer, { l1: 0.001, l2: 0 });
    assert.equal(spec.data.validation.stratify, true);
    assert.equal(spec.optimizer.sgd!.momentum, 0.9);
  });

  test('variants and sweeps follow the same rule: a sweep over model.layers.01 is refused, not expanded into identical members', () => {
    const sweep = parseSpec(`${QUICK_TEXT}sweep:\n  model.layers.01.dense.units: [50, 100]\n`, 'study.yaml');
    assert.throws(() => expandStudy(sweep), {
      message: "sweep model.layers.01.dense.units=50: model.layers: '01' is not written as a list index (write 1)",
    });
    const variant = parseSpec(`${QUICK_TEXT}variants:\n  wide: { model.layers.7.dense.units: 400 }\n`, 'study.yaml');
    assert.throws(() => expandStudy(variant), {
      message: "variant 'wide': model.layers.7.dense.units: model.layers has 5 items; index 7 is past the end",
    });
  });

  test('applyOverrides never leaves the document changed in a place no field reads', () => {
    const raw = parseSpec(QUICK_TEXT, 'spec.yaml').raw;
    const before = JSON.stringify(raw);
    assert.throws(() =>
      applyOverrides(raw, [{ path: ['model', 'layers', '01', 'dense', 'units'], value: 50, label: 'x' }]),
    );
    assert.equal(JSON.stringify(raw), before);
  });
});

describe("every spec message is in regtrain's words, never zod's", () => {
  /** Every path to a value in the resolved spec (maps, lists and leaves). */
  function allPaths(v: unknown, p: string[] = [], out: string[][] = []): string[][] {
    if (p.length) out.push(p);
    if (Array.isArray(v)) v.forEach((x, i) => allPaths(x, [...p, String(i)], out));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) allPaths(x, [...p, k], out);
    return out;
  }
  const WRONG: unknown[] = [7, 'text', [1, 2], { x: 1 }, true];

  test('each wrong-typed value (number, text, list, map, boolean) at each path of a resolved spec names the path, without zod wording', () => {
    const resolved = experimentSpec.parse(parseSpec(QUICK_TEXT, 'spec.yaml').raw);
    const paths = allPaths({ ...resolved, variants: { a: {} }, sweep: { 'training.epochs': [1] } });
    let cases = 0;
    for (const p of paths) {
      for (const value of WRONG) {
        let lines: string[];
        try {
          parseSpec(QUICK_TEXT, 'spec.yaml', [
            { path: p, value, label: `--set ${p.join('.')}=${JSON.stringify(value)}` },
          ]);
          continue; // a value of the right type
        } catch (err) {
          if (!(err instanceof InputError)) throw err;
          lines = err.message.split('\n');
        }
        cases++;
        for (const line of lines) {
          assert.doesNotMatch(line, ZOD_WORDING, `${p.join('.')}=${JSON.stringify(value)}: ${line}`);
          assert.ok(line.length < 300, line);
        }
        // Each line names a dotted path (or the flag) first; cross-field checks may name another field.
        for (const line of lines) assert.match(line, /^(! [A-Za-z0-9_.]+[^:]*: |--set )/, `${p.join('.')}: ${line}`);
      }
    }
    assert.ok(cases > 200, `only ${cases} refused cases`);
  });

  test('the examples from the issue read in regtrain words', () => {
    assert.deepEqual(errors(QUICK_TEXT, ['data=5']), ['! data: expected a map, got 5 (--set data=5)']);
    assert.deepEqual(errors(QUICK_TEXT, ['variants=5']), ['! variants: expected a map, got 5 (--set variants=5)']);
    assert.deepEqual(errors(QUICK_TEXT, ['training=[1]']), [
      '! training: expected a map, got a list (--set training=[1])',
    ]);
    assert.deepEqual(errors(`${QUICK_TEXT}variants: { "bad name!": {} }\n`), [
      '! variants.bad name!: invalid key: expected a variant name of letters, digits, ".", "_" or "-" (spec.yaml:20:26)',
    ]);
  });
});

test('a --set value nested deeper than a spec may be is refused by the same limit, not by the stack', () => {
  const deep = `${'['.repeat(100)}${']'.repeat(100)}`;
  // The 65th bracket is where the limit of 64 levels is passed.
  assert.deepEqual(errors(QUICK_TEXT, [`model=${deep}`]), [
    `! YAML nesting deeper than 64 levels (--set model=${deep}:1:65)`,
  ]);
});

test('a spec with more YAML aliases than any spec needs is refused at the alias that passes the limit, before the YAML library resolves the chain', () => {
  const chain = ['a0: &a0 [1]', ...Array.from({ length: 3000 }, (_, i) => `a${i + 1}: &a${i + 1} [*a${i}]`)].join('\n');
  // Line 102 holds the 101st alias (lines 2 onwards hold one each), at its column 14 in `a101: &a101 [*a100]`.
  assert.deepEqual(errors(chain), ['! more than 100 YAML aliases (*name) (spec.yaml:102:14)']);
});
