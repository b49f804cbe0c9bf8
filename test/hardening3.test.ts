/**
 * Hardening round 3 (issue 21), one describe per family: run-directory files through the bounded
 * non-blocking reader (best.json, spec.yaml on --resume, history.jsonl read only as far as the
 * checkpoint needs), PNG headers the spec forbids and image data that inflates past what the
 * header implies, names that would bend lines in scheduler files, and hyperparameters that float32
 * turns into something else. Real files, FIFOs, /dev/zero, sparse multi-gigabyte files, real CLI
 * processes; two tiny real runs are made once. The refusals that need no run, FIFO or shell (the memory
 * bound, every control character and flag, every float32 field) are checked in process in
 * hardening3.unit.test.ts; here a plan and a run refusal go through real processes.
 */
import { test, before, describe } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { execFileSync, spawnSync } from 'node:child_process';
import * as YAML from 'yaml';
import { PNG } from 'pngjs';
import { decodePng, inflatedSize } from '../src/images/png';
import { readFirstLines, readRegularFile } from '../src/fsutil';
import { BIN, finished, killAfterFirstEpoch, QUICK, sliceFlags, startCli, type CliResult } from './helpers/cli';
import { regtrainInProcess } from './helpers/in-process';
import { HOSTILE_STUDY_SPEC } from './helpers/hostile-study';
import { sharedDataDir } from './helpers/data';
import { scratchDir } from './helpers/scratch';

const TINY = ['--backend', 'wasm', ...sliceFlags({ train: 500, validation: 100, test: 300 }), '-q'];

let TMP = '';
/** A finished run with a best model. */
let DONE = '';
/** A run killed after its first epoch (of three): a checkpoint, one history line, no metrics. */
let KILLED = '';
let ENV: NodeJS.ProcessEnv = {};

function regtrain(args: string[], timeoutMs = 120_000): Promise<CliResult> {
  return finished(startCli(args, { cwd: TMP, env: ENV }), undefined, timeoutMs);
}

/**
 * `regtrain ...args` in this process (test/helpers/in-process.ts), for a refusal of a file that cannot hang or
 * exhaust a reader (too large, not JSON) made before a model is built: the bounded reader's refusal is the same code. A FIFO
 * and /dev/zero, where a reader that is not bounded would block or fill memory, go through real processes.
 */
function inProcess(args: string[]): Promise<{ code: number; stderr: string }> {
  return regtrainInProcess(args, { cwd: TMP, env: ENV });
}

/** A copy of `from` to damage. */
function copyOf(name: string, from: string): string {
  const dir = path.join(TMP, 'cases', name);
  fs.cpSync(from, dir, { recursive: true });
  return dir;
}

/** Replaces `file` by a FIFO (no writer), a link to /dev/zero, or a sparse file of `size` bytes. */
function replaceWith(file: string, kind: 'fifo' | 'zero' | number): void {
  fs.rmSync(file, { force: true });
  if (kind === 'fifo') execFileSync('mkfifo', [file]);
  else if (kind === 'zero') fs.symlinkSync('/dev/zero', file);
  else {
    fs.writeFileSync(file, '');
    fs.truncateSync(file, kind);
  }
}

/**
 * The epochs the killed run's checkpoint holds: 1, or 2 when the SIGKILL, sent on the first epoch's line, arrived
 * after the next epoch of these tiny ones had ended (a loaded machine).
 */
function checkpointEpoch(dir: string): number {
  const epoch = (JSON.parse(fs.readFileSync(path.join(dir, 'checkpoint.json'), 'utf8')) as { body: { epoch: number } })
    .body.epoch;
  assert.ok(epoch === 1 || epoch === 2, `the killed run's checkpoint is at epoch ${epoch}`);
  return epoch;
}

/** stderr's lines, with the check that there is no stack trace and no internal error. */
function oneLine(r: { stderr: string }): string {
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, r.stderr);
  return r.stderr.trim();
}

before(async () => {
  TMP = scratchDir('regtrain-h3-');
  ENV = { REGTRAIN_DATA_DIR: sharedDataDir(), XDG_CACHE_HOME: path.join(TMP, 'xdg') };
  DONE = path.join(TMP, 'done');
  KILLED = path.join(TMP, 'killed');
  // Made in this process: the finished run is a fixture here (the processes are the refusals below).
  const done = await inProcess([
    'run',
    QUICK,
    ...TINY,
    '--set',
    'training.epochs=2',
    '--set',
    'training.checkpoint.saveBest={monitor: val_loss}',
    '--out',
    DONE,
  ]);
  assert.equal(done.code, 0, done.stderr);
  await killAfterFirstEpoch(['run', QUICK, ...TINY, '--set', 'training.epochs=3', '--out', KILLED], TMP, {
    ...process.env,
    ...ENV,
  });
});

describe('family 1: every file through the bounded, non-blocking reader', () => {
  for (const [kind, reason] of [
    ['fifo', 'a FIFO (named pipe), not a regular file'],
    ['zero', 'a character device, not a regular file'],
    [100 * 1024 * 1024, '104857600 bytes is more than the 65536 this file may have'],
  ] as const) {
    test(`evaluate --best refuses a best/best.json that is ${kind === 'fifo' ? 'a FIFO' : kind === 'zero' ? 'a link to /dev/zero' : 'a 100 MB file'} in one line, exit 2, at once`, async () => {
      const dir = copyOf(`best-${kind}`, DONE);
      const file = path.join(dir, 'best', 'best.json');
      replaceWith(file, kind);
      const t0 = Date.now();
      const r =
        typeof kind === 'number'
          ? await inProcess(['evaluate', dir, '--best'])
          : await regtrain(['evaluate', dir, '--best'], 30_000);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(oneLine(r), `error: ${file}: ${reason}`);
      assert.ok(Date.now() - t0 < 25_000, 'it ended by itself, not by the timeout');
    });
  }

  test('predict --best refuses a best.json that is not JSON, naming the file', async () => {
    const dir = copyOf('best-garbage', DONE);
    const file = path.join(dir, 'best', 'best.json');
    fs.writeFileSync(file, '{"epoch": 1,');
    const r = await inProcess(['predict', dir, '--best', '--test-index', '0']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(oneLine(r), `error: ${file}: not valid JSON (truncated or corrupt)`);
  });

  for (const [kind, reason] of [
    ['fifo', 'a FIFO (named pipe), not a regular file'],
    ['zero', 'a character device, not a regular file'],
    [64 * 1024 * 1024, '67108864 bytes is more than the 1048576 this file may have'],
  ] as const) {
    test(`run --resume refuses a spec.yaml that is ${kind === 'fifo' ? 'a FIFO' : kind === 'zero' ? 'a link to /dev/zero' : 'a 64 MB file'} in one line, exit 2, without hanging`, async () => {
      const dir = copyOf(`resume-spec-${kind}`, KILLED);
      const file = path.join(dir, 'spec.yaml');
      replaceWith(file, kind);
      const r =
        typeof kind === 'number'
          ? await inProcess(['run', '--resume', dir, '-q'])
          : await regtrain(['run', '--resume', dir, '-q'], 30_000);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(oneLine(r), `error: ${file}: ${reason}`);
    });
  }

  test('run --resume with a 3 GB history.jsonl reads only the lines the checkpoint needs, cuts the file back and finishes', async () => {
    const dir = copyOf('resume-huge-history', KILLED);
    const file = path.join(dir, 'history.jsonl');
    const epochs = checkpointEpoch(dir);
    const needed = fs.readFileSync(file, 'utf8').split('\n').slice(0, epochs).join('\n') + '\n';
    fs.truncateSync(file, 3 * 1024 ** 3); // sparse: 3 GB of NUL bytes after the real lines, no disk used
    const r = await regtrain(['run', '--resume', dir, '-q', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    assert.equal(lines.length, 4, 'three epochs, each one line, and nothing after');
    assert.equal(lines.slice(0, epochs).join('\n') + '\n', needed);
    assert.deepEqual(
      lines.slice(0, 3).map((l) => (JSON.parse(l) as { epoch: number }).epoch),
      [1, 2, 3],
    );
  });

  test('run --resume refuses a history.jsonl whose needed line is longer than an epoch record can be', async () => {
    const dir = copyOf('resume-long-line', KILLED);
    const file = path.join(dir, 'history.jsonl');
    const epochs = checkpointEpoch(dir);
    replaceWith(file, 8 * 1024 * 1024); // 8 MB without a newline: the first "line" never ends
    // A process of its own: the refusal comes after the model is built, and a second model built in this process
    // has other variable names (tfjs appends _1) than the checkpoint's.
    const r = await regtrain(['run', '--resume', dir, '-q'], 30_000);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      oneLine(r),
      `error: ${path.join(dir, 'checkpoint.json')}: ${file}: unreadable (its first ${epochs} line(s) take more than the 4194304 bytes they may); the checkpoint needs its first ${epochs} epoch(s)`,
    );
  });

  test('readFirstLines reads a 3 GB sparse file only as far as the lines asked for', () => {
    const file = path.join(TMP, 'sparse.jsonl');
    fs.writeFileSync(file, 'one\ntwo\nthree\n');
    fs.truncateSync(file, 3 * 1024 ** 3);
    const before = process.memoryUsage().rss;
    assert.deepEqual(readFirstLines(file, 2, 1024), ['one', 'two']);
    assert.ok(process.memoryUsage().rss - before < 64 * 1024 * 1024);
    fs.rmSync(file);
  });

  test('readRegularFile reads /proc files (which report size 0) to their end, and refuses a FIFO without blocking', () => {
    const stat = readRegularFile('/proc/self/stat', { maxBytes: 4096 }).toString('utf8');
    assert.match(stat, new RegExp(`^${process.pid} \\(`));
    assert.ok(stat.endsWith('\n'), 'the whole line, not its first byte');
    const fifo = path.join(TMP, 'a-fifo');
    execFileSync('mkfifo', [fifo]);
    assert.throws(() => readRegularFile(fifo, { maxBytes: 10 }), {
      message: `${fifo}: a FIFO (named pipe), not a regular file`,
    });
  });

  test('plan refuses a study directory whose member spec was replaced by a FIFO instead of blocking on it', async () => {
    fs.writeFileSync(path.join(TMP, 'study-fifo.yaml'), HOSTILE_STUDY_SPEC);
    // In process (test/helpers/in-process.ts): planning is the same code; a real process is not what is tested.
    // A launcher that resolves here, so plan has nothing to warn about and its one line is the refusal.
    const launcher = ['--regtrain', `node ${BIN}`];
    const first = await regtrainInProcess(['plan', 'study-fifo.yaml', '--study-dir', 'st-fifo', ...launcher], {
      cwd: TMP,
    });
    assert.equal(first.code, 0, first.stderr);
    const member = fs.readdirSync(path.join(TMP, 'st-fifo', 'specs'))[0]!;
    const file = path.join(TMP, 'st-fifo', 'specs', member);
    replaceWith(file, 'fifo');
    const r = await regtrainInProcess(['plan', 'study-fifo.yaml', '--study-dir', 'st-fifo', ...launcher], { cwd: TMP });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(oneLine(r), `error: ${file}: a FIFO (named pipe), not a regular file`);
  });
});

// ---------- PNG ----------

function chunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(data.length);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body));
  return Buffer.concat([head, body, crc]);
}

/** 64 MB of zeros, deflated (to about 64 KB) once for the file: the image data of every bomb here. */
let zeros64: Buffer | undefined;
const deflatedZeros = () => (zeros64 ??= zlib.deflateSync(Buffer.alloc(64 * 1024 * 1024)));

/** A PNG from its IHDR fields and raw (filtered) image data, with `extra` chunks before IDAT. */
function png(h: Parameters<typeof pngDeflated>[0], raw: Buffer, extra: Buffer[] = []): Buffer {
  return pngDeflated(h, zlib.deflateSync(raw), extra);
}

/** The same from image data already deflated. */
function pngDeflated(
  h: {
    width: number;
    height: number;
    depth?: number;
    colour?: number;
    compression?: number;
    filter?: number;
    interlace?: number;
  },
  deflated: Buffer,
  extra: Buffer[] = [],
): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(h.width, 0);
  ihdr.writeUInt32BE(h.height, 4);
  ihdr[8] = h.depth ?? 8;
  ihdr[9] = h.colour ?? 0;
  ihdr[10] = h.compression ?? 0;
  ihdr[11] = h.filter ?? 0;
  ihdr[12] = h.interlace ?? 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...extra,
    chunk('IDAT', deflated),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

describe('family 2: PNG headers the spec forbids, and image data past the header’s size', () => {
  const refusals: [string, Parameters<typeof png>[0], string][] = [
    ['width 0', { width: 0, height: 4 }, 'width 0; the PNG spec allows 1 to 2147483647'],
    ['height 0', { width: 4, height: 0 }, 'height 0; the PNG spec allows 1 to 2147483647'],
    ['colour type 1', { width: 1, height: 1, colour: 1 }, 'colour type 1; the PNG spec defines 0, 2, 3, 4 and 6'],
    ['colour type 7', { width: 1, height: 1, colour: 7 }, 'colour type 7; the PNG spec defines 0, 2, 3, 4 and 6'],
    [
      'greyscale of depth 3',
      { width: 1, height: 1, colour: 0, depth: 3 },
      'bit depth 3 with colour type 0 (greyscale); allowed: 1, 2, 4, 8, 16',
    ],
    [
      'truecolour of depth 4',
      { width: 1, height: 1, colour: 2, depth: 4 },
      'bit depth 4 with colour type 2 (truecolour); allowed: 8, 16',
    ],
    [
      'indexed of depth 16',
      { width: 1, height: 1, colour: 3, depth: 16 },
      'bit depth 16 with colour type 3 (indexed-colour); allowed: 1, 2, 4, 8',
    ],
    [
      'grey+alpha of depth 1',
      { width: 1, height: 1, colour: 4, depth: 1 },
      'bit depth 1 with colour type 4 (greyscale with alpha); allowed: 8, 16',
    ],
    [
      'RGBA of depth 2',
      { width: 1, height: 1, colour: 6, depth: 2 },
      'bit depth 2 with colour type 6 (truecolour with alpha); allowed: 8, 16',
    ],
    [
      'compression method 1',
      { width: 1, height: 1, compression: 1 },
      'compression method 1; the PNG spec defines only 0',
    ],
    ['filter method 1', { width: 1, height: 1, filter: 1 }, 'filter method 1; the PNG spec defines only 0'],
    ['interlace method 2', { width: 1, height: 1, interlace: 2 }, 'interlace method 2; the PNG spec defines 0 and 1'],
  ];
  test('every header field the PNG spec forbids is refused with exit 2 and one line naming the field', () => {
    for (const [, h, why] of refusals)
      assert.throws(() => decodePng(png(h, Buffer.alloc(2)), 'x.png'), { message: `x.png: not a valid PNG (${why})` });
  });

  test('an IHDR that is not first or not 13 bytes, a second IHDR, indexed colour without PLTE and no IDAT are refused', () => {
    const good = png({ width: 1, height: 1 }, Buffer.from([0, 7]));
    const noIhdr = Buffer.concat([good.subarray(0, 8), chunk('tEXt', Buffer.from('a\0b')), good.subarray(8)]);
    assert.throws(() => decodePng(noIhdr, 'x.png'), {
      message: 'x.png: not a valid PNG (the first chunk is not IHDR)',
    });
    const long = Buffer.from(good);
    long.writeUInt32BE(14, 8);
    assert.throws(() => decodePng(long, 'x.png'), {
      message: 'x.png: not a valid PNG (IHDR is 14 bytes, the PNG spec says 13)',
    });
    const ihdr = good.subarray(8, 8 + 25);
    const twice = Buffer.concat([good.subarray(0, 33), ihdr, good.subarray(33)]);
    assert.throws(() => decodePng(twice, 'x.png'), {
      message: 'x.png: not a valid PNG (a second IHDR chunk at byte 33)',
    });
    assert.throws(() => decodePng(png({ width: 1, height: 1, colour: 3 }, Buffer.from([0, 0])), 'x.png'), {
      message: 'x.png: not a valid PNG (indexed-colour without a PLTE chunk)',
    });
    const noIdat = Buffer.concat([good.subarray(0, 33), chunk('IEND', Buffer.alloc(0))]);
    assert.throws(() => decodePng(noIdat, 'x.png'), {
      message: 'x.png: not a valid PNG (no IDAT chunk: no image data)',
    });
  });

  test('PLTE and tRNS where the PNG spec forbids them, and IDAT chunks that are not consecutive, are refused', () => {
    const plte = (n: number) => chunk('PLTE', Buffer.alloc(n, 128));
    const idat = chunk('IDAT', zlib.deflateSync(Buffer.from([0, 0])));
    const cases: [Buffer, string][] = [
      [png({ width: 1, height: 1, colour: 0 }, Buffer.from([0, 0]), [plte(3)]), 'a PLTE chunk in a greyscale image'],
      [
        png({ width: 1, height: 1, colour: 4 }, Buffer.from([0, 0, 0]), [plte(3)]),
        'a PLTE chunk in a greyscale with alpha image',
      ],
      [
        png({ width: 1, height: 1, colour: 3 }, Buffer.from([0, 0]), [plte(3), plte(3)]),
        'a second PLTE chunk at byte 48',
      ],
      [
        png({ width: 1, height: 1, colour: 3 }, Buffer.from([0, 0]), [plte(4)]),
        'PLTE of 4 bytes; the PNG spec allows 1 to 256 entries of 3 bytes',
      ],
      [
        png({ width: 1, height: 1, colour: 3 }, Buffer.from([0, 0]), [plte(3 * 257)]),
        'PLTE of 771 bytes; the PNG spec allows 1 to 256 entries of 3 bytes',
      ],
      [
        png({ width: 1, height: 1, colour: 6 }, Buffer.from([0, 0, 0, 0, 0]), [chunk('tRNS', Buffer.alloc(2))]),
        'a tRNS chunk in a truecolour with alpha image',
      ],
      [png({ width: 1, height: 1, colour: 3 }, Buffer.from([0, 0]), [idat, plte(3)]), 'PLTE after IDAT'],
      [
        png({ width: 1, height: 1 }, Buffer.from([0, 0]), [idat, chunk('tEXt', Buffer.from('a\0b'))]),
        'IDAT chunks that are not consecutive (another at byte 70)',
      ],
    ];
    for (const [file, why] of cases)
      assert.throws(() => decodePng(file, 'x.png'), { message: `x.png: not a valid PNG (${why})` }, why);
    // A valid palette image with tRNS, and image data split over two consecutive IDATs, still decode.
    const ok = png({ width: 1, height: 1, colour: 3 }, Buffer.from([0, 0]), [
      plte(3),
      chunk('tRNS', Buffer.from([255])),
    ]);
    assert.equal(decodePng(ok, 'ok.png').pixels[0], 128);
  });

  test('the inflated size each header implies, by hand: plain and Adam7, every colour type and packed depths', () => {
    // 8×8 grey 8-bit: 8 rows of 1 + 8 bytes.
    assert.equal(inflatedSize({ width: 8, height: 8, bitDepth: 8, colourType: 0, interlace: 0 }), 72);
    // Adam7 passes of 8×8 (cols×rows): 1×1, 1×1, 2×1, 2×2, 4×2, 4×4, 8×4 → 2 + 2 + 3 + 6 + 10 + 20 + 36.
    assert.equal(inflatedSize({ width: 8, height: 8, bitDepth: 8, colourType: 0, interlace: 1 }), 79);
    // 1×1 RGBA 16-bit interlaced: pass 1 only, 1 + 8 bytes.
    assert.equal(inflatedSize({ width: 1, height: 1, bitDepth: 16, colourType: 6, interlace: 1 }), 9);
    // 10×3 1-bit palette: rows of 1 + ceil(10/8) = 3 bytes.
    assert.equal(inflatedSize({ width: 10, height: 3, bitDepth: 1, colourType: 3, interlace: 0 }), 9);
    // 2×2 grey+alpha 8-bit interlaced: passes 1 (1×1), 6 (1×1), 7 (2×1): (1+2) + (1+2) + (1+4).
    assert.equal(inflatedSize({ width: 2, height: 2, bitDepth: 8, colourType: 4, interlace: 1 }), 11);
    // 3×1 RGB 8-bit: 1 + 9.
    assert.equal(inflatedSize({ width: 3, height: 1, bitDepth: 8, colourType: 2, interlace: 0 }), 10);
  });

  test('a hand-built interlaced 2×2 PNG decodes to its four grey levels (Adam7 passes 1, 6 and 7)', () => {
    const raw = Buffer.from([0, 10, 0, 20, 0, 30, 40]);
    const img = decodePng(png({ width: 2, height: 2, interlace: 1 }, raw), 'x.png');
    assert.deepEqual([...img.pixels], [10, 20, 30, 40]);
  });

  test('image data that inflates past the header’s size is refused at that size, for plain and interlaced images of every colour type', () => {
    for (const [colour, depth] of [
      [0, 8],
      [2, 16],
      [4, 8],
      [6, 8],
    ])
      for (const interlace of [0, 1]) {
        const h = { width: 1, height: 1, depth, colour, interlace };
        const expected = inflatedSize({ width: 1, height: 1, bitDepth: depth, colourType: colour, interlace });
        assert.throws(() => decodePng(pngDeflated(h, deflatedZeros()), 'bomb.png'), {
          message: `bomb.png: not a valid PNG (its image data inflates to more than the ${expected} bytes its 1×1 header implies)`,
        });
      }
  });

  test('predict refuses a width-0 PNG and an interlaced 1×1 PNG inflating to 64 MB in one line, exit 2, quickly', async () => {
    const zeroWide = path.join(TMP, 'zero-wide.png');
    fs.writeFileSync(zeroWide, png({ width: 0, height: 28 }, Buffer.alloc(28)));
    const bombFile = path.join(TMP, 'bomb.png');
    // 64 MB of zeros: a 64 KB file whose one pixel's data would fill 64 MB (the was 1.5 GB; the decoder
    // stops inflating at the header's size, whatever the total).
    const d = deflatedZeros();
    const bomb = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 1])),
      chunk('IDAT', d),
      chunk('IEND', Buffer.alloc(0)),
    ]);
    fs.writeFileSync(bombFile, bomb);
    // The header's refusal in process; the bomb through a real process, whose memory a reader without a bound would fill.
    const a = await inProcess(['predict', DONE, zeroWide]);
    assert.equal(a.code, 2, a.stderr);
    assert.equal(oneLine(a), `error: ${zeroWide}: not a valid PNG (width 0; the PNG spec allows 1 to 2147483647)`);
    const b = await regtrain(['predict', DONE, bombFile], 60_000);
    assert.equal(b.code, 2, b.stderr);
    assert.equal(
      oneLine(b),
      `error: ${bombFile}: not a valid PNG (its image data inflates to more than the 2 bytes its 1×1 header implies)`,
    );
  });

  test('real PNGs of every colour type pngjs writes still decode (8 and 16 bits)', () => {
    for (const [colorType, bitDepth] of [
      [0, 8],
      [2, 8],
      [4, 8],
      [6, 8],
      [6, 16],
    ] as const) {
      const p = new PNG({ width: 3, height: 2, colorType, bitDepth, inputColorType: 6 });
      p.data.fill(255);
      const img = decodePng(PNG.sync.write(p, { colorType, bitDepth, inputColorType: 6 }), 'ok.png');
      assert.deepEqual([img.width, img.height, [...img.pixels]], [3, 2, [255, 255, 255, 255, 255, 255]]);
    }
  });
});

// ---------- names that reach scheduler files ----------

describe('family 4: names and paths that reach k8s.yaml, members.txt and scripts', () => {
  test('a --study-dir with a newline is refused by a real plan process: one line on stderr, nothing on stdout, exit 2, nothing created', async () => {
    // Every control character and flag is checked in process (hardening3.unit.test.ts); this is the real boundary.
    fs.writeFileSync(path.join(TMP, 'hostile.yaml'), HOSTILE_STUDY_SPEC);
    const r = await regtrain(['plan', 'hostile.yaml', '--format', 'k8s', '--study-dir', 'new\nline']);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(
      oneLine(r),
      'error: --study-dir "new\\nline": contains a control character (U+000A); names and paths written into scheduler files may not',
    );
    assert.equal(fs.existsSync(path.join(TMP, 'new\nline')), false);
  });

  const HOSTILE = [
    `q'uo"te`,
    'dollar$(touch PWNED)',
    'back`touch PWNED`tick',
    'semi;colon & amp',
    'unicodé 中文 🙂',
    '--flag-like',
    '#hash: {a: [b]}',
  ];
  test('hostile names without control characters keep every artifact’s structure: k8s.yaml is exactly the two Jobs, members.txt one command per line with exact arguments, scripts bash -n clean', async () => {
    // The plans run in process (test/helpers/in-process.ts): the artifacts are what is tested, by a real shell.
    fs.writeFileSync(path.join(TMP, 'hostile.yaml'), HOSTILE_STUDY_SPEC);
    const argsScript = path.join(TMP, 'print-args');
    fs.writeFileSync(argsScript, '#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done\n', { mode: 0o755 });
    for (const [i, name] of HOSTILE.entries()) {
      const dir = `st-${i}-${name}`;
      for (const format of ['k8s', 'lines', 'slurm', 'parallel'] as const) {
        const r = await regtrainInProcess(
          [
            'plan',
            'hostile.yaml',
            '--format',
            format,
            '--study-dir',
            dir,
            '--regtrain',
            argsScript,
            '--data-dir',
            `data ${name}`,
          ],
          { cwd: TMP },
        );
        assert.equal(r.code, 0, `${name} ${format}: ${r.stderr}`);
      }
      const k8s = YAML.parseAllDocuments(fs.readFileSync(path.join(TMP, dir, 'k8s.yaml'), 'utf8')).map(
        (d) => d.toJS() as { kind: string; spec: { template: { spec: { containers: { workingDir: string }[] } } } },
      );
      assert.deepEqual(
        k8s.map((d) => d.kind),
        ['Job', 'Job'],
        name,
      );
      assert.equal(k8s[0]!.spec.template.spec.containers[0]!.workingDir, `/studies/${dir}`);
      const lines = fs.readFileSync(path.join(TMP, dir, 'members.txt'), 'utf8').split('\n');
      assert.equal(lines.length, 3, `${name}: two members, one line each`);
      for (const [index, line] of lines.slice(0, 2).entries()) {
        const run = spawnSync('sh', ['-c', line], { cwd: TMP, encoding: 'utf8' });
        assert.deepEqual(
          run.stdout.split('\0').slice(0, -1),
          ['run-member', dir, '--index', String(index), '--data-dir', `data ${name}`],
          name,
        );
      }
      for (const script of ['slurm.sbatch', 'parallel.sh']) {
        const n = spawnSync('bash', ['-n', path.join(TMP, dir, script)], { encoding: 'utf8' });
        assert.equal(n.status, 0, `${name} ${script}: ${n.stderr}`);
      }
      assert.equal(fs.existsSync(path.join(TMP, 'PWNED')), false, 'nothing was executed');
    }
  });
});

// ---------- float32 ----------

describe('family 5: hyperparameters validated in float32, the precision they are used in', () => {
  // Every field is checked in process (hardening3.unit.test.ts); this is the real boundary.
  test('beta2 0.99999999 through run: exit 2 at the field before any data is loaded (it used to train 0 updates and exit 0)', async () => {
    const r = await regtrain([
      'run',
      QUICK,
      '--set',
      'optimizer={adam: {beta2: 0.99999999}}',
      '--out',
      path.join(TMP, 'f32-run'),
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(
      oneLine(r),
      '! optimizer.adam.beta2: 0.99999999 is 1 in float32 (the precision training uses), so 1 − it is 0; use at most 0.99999994 (--set optimizer={adam: {beta2: 0.99999999}})',
    );
    assert.equal(fs.existsSync(path.join(TMP, 'f32-run')), false);
  });
});
