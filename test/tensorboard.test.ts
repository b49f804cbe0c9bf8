/**
 * TensorBoard event files, written to real files and read back by an independent reader:
 * - the TFRecord framing and both masked CRC-32Cs of every record are checked with the crc-32
 *   package's CRC-32C (not regtrain's), the mask re-derived here from TensorFlow's definition;
 * - every Event is decoded by protobufjs from the message types below, written from the field
 *   numbers of TensorBoard's tensorboard/compat/proto/event.proto, summary.proto and histogram.proto
 *   (not from regtrain's encoder), and re-encoded to the very same bytes (so nothing unknown is in it).
 *
 * Hand-computed numbers:
 * - CRC-32C("123456789") = 0xE3069283 (the standard check value). Masked: crc >>> 15 = 0x1C60D,
 *   (crc << 17) mod 2^32 = 0x1283 << 17 = 0x25060000, rotated 0x2507C60D, + 0xA282EAD8 = 0xC78AB0E5.
 * - TensorFlow's default bucket limits: 1e-12·1.1^k < 1e20 ⇔ k < 32 / log10(1.1) = 773.1, so k = 0…773:
 *   774 limits a side, plus ±DBL_MAX and 0: 2·(774 + 1) + 1 = 1551.
 * - The histogram of [0, 5e-13, 1e-12, -1e-12, 0]: -1e-12 lies in [-1e-12, 0) (limit 0); 0, 5e-13, 0
 *   in [0, 1e-12) (limit 1e-12); 1e-12 in [1e-12, 1.1e-12) (limit 1e-12·1.1). Every bucket below
 *   -1e-12 is empty (one entry, limit -1e-12, count 0), and so is every bucket above 1.1e-12 (one
 *   entry, limit DBL_MAX): limits [-1e-12, 0, 1e-12, 1e-12·1.1, DBL_MAX], counts [0, 1, 3, 1, 0].
 * - 7 × 0.25: sum 1.75, sum of squares 7 · 0.0625 = 0.4375.
 */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import * as tf from '../src/tf';
import { FailureError } from '../src/errors';
import { crc32c, maskedCrc32c } from '../src/train/tensorboard/crc32c';
import { frameRecord } from '../src/train/tensorboard/record';
import { defaultBucketLimits, histogramOf, type Histogram } from '../src/train/tensorboard/histogram';
import { TensorBoardWriter } from '../src/train/tensorboard/writer';
import { QUICK, sliceFlags } from './helpers/cli';
import { regtrainInProcess } from './helpers/in-process';
import { scratchDir } from './helpers/scratch';

// crc-32 ships types for its CRC-32 module only; its crc32c module has the same functions.
const CRC32C = require('crc-32/crc32c') as typeof import('crc-32');

const TMP = scratchDir('regtrain-tensorboard-');
const mounts: string[] = [];
after(() => {
  for (const m of mounts.reverse()) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
  fs.rmSync(TMP, { recursive: true, force: true });
});

const DBL_MAX = Number.MAX_VALUE;
let dirCount = 0;
const freshDir = (): string => path.join(TMP, `logs-${++dirCount}`);

/** A clock that starts at `start` seconds and moves one second per reading. */
function steppingClock(start: number): () => number {
  let t = start - 1;
  return () => ++t;
}

// ---- the independent reader ------------------------------------------------------------------

/** TensorBoard's protos, only the messages and fields an events file of regtrain's can hold. */
const PROTO = `
syntax = "proto3";
package tensorboard;
message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what {
    string file_version = 3;
    bytes graph_def = 4;
    Summary summary = 5;
    SessionLog session_log = 7;
  }
  SourceMetadata source_metadata = 10;
}
message SourceMetadata { string writer = 1; }
message SessionLog {
  enum SessionStatus { STATUS_UNSPECIFIED = 0; START = 1; STOP = 2; CHECKPOINT = 3; }
  SessionStatus status = 1;
  string checkpoint_path = 2;
  string msg = 3;
}
message Summary {
  message Value {
    string node_name = 7;
    string tag = 1;
    oneof value {
      float simple_value = 2;
      bytes obsolete_old_style_histogram = 3;
      HistogramProto histo = 5;
    }
  }
  repeated Value value = 1;
}
message HistogramProto {
  double min = 1;
  double max = 2;
  double num = 3;
  double sum = 4;
  double sum_squares = 5;
  repeated double bucket_limit = 6 [packed = true];
  repeated double bucket = 7 [packed = true];
}
`;
const EventType = protobuf.parse(PROTO, { keepCase: true }).root.lookupType('tensorboard.Event');

interface DecodedHistogram {
  min: number;
  max: number;
  num: number;
  sum: number;
  sum_squares: number;
  bucket_limit: number[];
  bucket: number[];
}
interface DecodedValue {
  tag: string;
  value?: 'simple_value' | 'histo';
  simple_value?: number;
  histo?: DecodedHistogram;
}
interface DecodedEvent {
  wall_time: number;
  step: number;
  what?: 'file_version' | 'summary' | 'session_log';
  file_version?: string;
  summary?: { value: DecodedValue[] };
  session_log?: { status: string };
  source_metadata?: { writer: string };
}

/** TFRecord's mask of a CRC, from TensorFlow's crc32c::Mask: rotate right by 15, add 0xA282EAD8. */
function tfMask(crc: number): number {
  const c = crc >>> 0;
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** The records of a TFRecord file, each frame and both CRCs checked (crc-32's CRC-32C). */
function readRecords(file: string): Uint8Array[] {
  const buf = fs.readFileSync(file);
  const records: Uint8Array[] = [];
  for (let offset = 0; offset < buf.length;) {
    assert.ok(offset + 12 <= buf.length, `${file}: record at byte ${offset}: header cut short`);
    const length = Number(buf.readBigUInt64LE(offset));
    assert.equal(
      buf.readUInt32LE(offset + 8),
      tfMask(CRC32C.buf(buf.subarray(offset, offset + 8))),
      `${file}: record at byte ${offset}: CRC of the length`,
    );
    assert.ok(offset + 16 + length <= buf.length, `${file}: record at byte ${offset}: ${length} data bytes cut short`);
    const data = buf.subarray(offset + 12, offset + 12 + length);
    assert.equal(
      buf.readUInt32LE(offset + 12 + length),
      tfMask(CRC32C.buf(data)),
      `${file}: record at byte ${offset}: CRC of the data`,
    );
    records.push(data);
    offset += 16 + length;
  }
  return records;
}

/** Every Event of an events file, decoded by protobufjs (absent fields read as their defaults); each must re-encode to its own bytes. */
function readEvents(file: string): DecodedEvent[] {
  return readRecords(file).map((data, i) => {
    const message = EventType.decode(data);
    assert.deepEqual(
      Buffer.from(EventType.encode(message).finish()),
      Buffer.from(data),
      `${file}: event ${i} holds fields TensorBoard's Event does not`,
    );
    return EventType.toObject(message, { longs: Number, enums: String, oneofs: true, defaults: true }) as DecodedEvent;
  });
}

/** The summary events as [step, tag, value or histogram]. */
function summaries(events: DecodedEvent[]): [number, string, number | DecodedHistogram][] {
  return events
    .filter((e) => e.what === 'summary')
    .map((e) => {
      assert.equal(e.summary!.value.length, 1);
      const v = e.summary!.value[0];
      return [e.step, v.tag, v.value === 'simple_value' ? v.simple_value! : v.histo!];
    });
}

/** Counts `values` into the buckets a HistogramProto describes: bucket i is [limit[i-1], limit[i]), the last one closed at DBL_MAX. */
function recount(values: ArrayLike<number>, h: { bucketLimit: number[] } | { bucket_limit: number[] }): number[] {
  const limits = 'bucketLimit' in h ? h.bucketLimit : h.bucket_limit;
  const counts = limits.map(() => 0);
  for (let j = 0; j < values.length; j++) {
    const v = values[j];
    const i = limits.findIndex(
      (right, k) =>
        (k === 0 ? -DBL_MAX : limits[k - 1]) <= v && (v < right || (v === DBL_MAX && k === limits.length - 1)),
    );
    assert.ok(i >= 0, `${v} lies in no bucket`);
    counts[i]++;
  }
  return counts;
}

const sumOf = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/** A 784×128 dense kernel as regtrain's tutorial model starts it: glorot-uniform, seeded. */
async function denseKernel(): Promise<Float32Array> {
  await tf.setBackend('cpu');
  const kernel = tf.initializers.glorotUniform({ seed: 7 }).apply([784, 128]);
  const values = kernel.dataSync() as Float32Array;
  kernel.dispose();
  return values;
}

// ---- CRC-32C and framing --------------------------------------------------------------------

describe('CRC-32C', () => {
  test('gives the standard check value for "123456789": 0xE3069283, masked 0xC78AB0E5', () => {
    const bytes = new TextEncoder().encode('123456789');
    assert.equal(crc32c(bytes), 0xe3069283);
    assert.equal(maskedCrc32c(bytes), 0xc78ab0e5);
  });

  test('agrees with the crc-32 package on any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        assert.equal(crc32c(bytes), CRC32C.buf(bytes) >>> 0);
        assert.equal(maskedCrc32c(bytes), tfMask(CRC32C.buf(bytes)));
      }),
      { seed: 11, numRuns: 500 },
    );
  });
});

describe('TFRecord framing', () => {
  test("a 3-byte record is the length as uint64 LE, its masked CRC, the data and the data's masked CRC", () => {
    const data = Uint8Array.from([7, 8, 9]);
    const record = Buffer.from(frameRecord(data));
    assert.equal(record.length, 8 + 4 + 3 + 4);
    assert.deepEqual([...record.subarray(0, 8)], [3, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(record.readUInt32LE(8), tfMask(CRC32C.buf(record.subarray(0, 8))));
    assert.deepEqual([...record.subarray(12, 15)], [7, 8, 9]);
    assert.equal(record.readUInt32LE(15), tfMask(CRC32C.buf(data)));
  });
});

// ---- histogram bucketing ------------------------------------------------------------------------

describe("histogram bucketing (TensorFlow's default buckets)", () => {
  test('there are 1551 limits, -DBL_MAX … -1e-12, 0, 1e-12 … DBL_MAX, each 1.1 times the one nearer zero', () => {
    const limits = defaultBucketLimits();
    assert.equal(limits.length, 1551);
    assert.deepEqual(
      [limits[0], limits[773], limits[774], limits[775], limits[776], limits[777], limits[1549], limits[1550]],
      [-DBL_MAX, -1e-12 * 1.1, -1e-12, 0, 1e-12, 1e-12 * 1.1, limits[1549], DBL_MAX],
    );
    for (let i = 777; i < 1550; i++) assert.equal(limits[i], limits[i - 1] * 1.1, `limit ${i}`);
    for (let i = 0; i < 775; i++) assert.equal(limits[i], -limits[1550 - i], `limit ${i} mirrors ${1550 - i}`);
    assert.ok(limits[1549] < 1e20 && limits[1549] * 1.1 >= 1e20, `largest finite limit ${limits[1549]}`);
  });

  test('[0, 5e-13, 1e-12, -1e-12, 0] gives the hand-computed buckets, empty runs collapsed', () => {
    const h = histogramOf([0, 5e-13, 1e-12, -1e-12, 0], 'small');
    assert.deepEqual(h.bucketLimit, [-1e-12, 0, 1e-12, 1e-12 * 1.1, DBL_MAX]);
    assert.deepEqual(h.bucket, [0, 1, 3, 1, 0]);
    assert.deepEqual([h.min, h.max, h.num], [-1e-12, 1e-12, 5]);
    assert.ok(Math.abs(h.sum - 5e-13) < 1e-27, `sum ${h.sum}`);
    assert.ok(Math.abs(h.sumSquares - 2.25e-24) < 1e-37, `sum of squares ${h.sumSquares}`);
  });

  test('equal values all fall in the one bucket whose range holds them', () => {
    const h = histogramOf(new Float32Array(7).fill(0.25), 'equal');
    const filled = h.bucket.flatMap((count, i) => (count > 0 ? [i] : []));
    assert.equal(filled.length, 1);
    const i = filled[0];
    assert.equal(h.bucket[i], 7);
    assert.ok(
      h.bucketLimit[i - 1] <= 0.25 && 0.25 < h.bucketLimit[i],
      `[${h.bucketLimit[i - 1]}, ${h.bucketLimit[i]}) holds 0.25`,
    );
    assert.deepEqual([h.min, h.max, h.num, h.sum, h.sumSquares], [0.25, 0.25, 7, 1.75, 0.4375]);
  });

  test("no values give TensorFlow's empty histogram: one empty bucket up to DBL_MAX, min DBL_MAX, max -DBL_MAX", () => {
    const h: Histogram = histogramOf([], 'empty');
    assert.deepEqual(h, {
      min: DBL_MAX,
      max: -DBL_MAX,
      num: 0,
      sum: 0,
      sumSquares: 0,
      bucketLimit: [DBL_MAX],
      bucket: [0],
    });
  });

  test('NaN and infinite values are refused in one line that counts them, in a plain array and in float32 weights', () => {
    const values = [1, NaN, Infinity, NaN, -Infinity];
    for (const given of [values, Float32Array.from(values)]) {
      assert.throws(
        () => histogramOf(given, 'dense/kernel'),
        (err: unknown) => {
          assert.ok(err instanceof FailureError);
          assert.equal(
            err.message,
            'dense/kernel: 2 NaN and 2 infinite of 5 values; a TensorBoard histogram cannot hold them (training has diverged?)',
          );
          return true;
        },
      );
    }
  });

  test('float32 weights are bucketed exactly as the same values in a plain array (table lookup vs binary search)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 300 }),
        (values) => {
          const f32 = Float32Array.from(values);
          assert.deepEqual(histogramOf(f32, 'float32'), histogramOf(Array.from(f32), 'plain'));
        },
      ),
      { seed: 11, numRuns: 300 },
    );
    const edges = Float32Array.from([0, -0, 1e-12, -1e-12, 5e-13, 1e-45, -1e-45, 3.4e38, -3.4e38, 0.1, -0.1, 1.1e-12]);
    assert.deepEqual(histogramOf(edges, 'float32'), histogramOf(Array.from(edges), 'plain'));
  });

  test("for any finite values the counts sum to their number and match a recount into the proto's buckets", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.double({ noNaN: true, noDefaultInfinity: true }),
            fc.double({ min: -1, max: 1, noNaN: true }),
            fc.constantFrom(0, -0, 1e-12, -1e-12, DBL_MAX, -DBL_MAX),
          ),
          { maxLength: 200 },
        ),
        (values) => {
          const h = histogramOf(values, 'values');
          assert.equal(sumOf(h.bucket), values.length);
          assert.equal(h.num, values.length);
          if (values.length > 0) assert.deepEqual(h.bucket, recount(values, h));
          assert.ok(
            h.bucketLimit.every((l, i) => i === 0 || l > h.bucketLimit[i - 1]),
            'limits ascend',
          );
        },
      ),
      { seed: 5, numRuns: 300 },
    );
  });
});

// ---- the writer -----------------------------------------------------------------------------------

describe('TensorBoardWriter', () => {
  test('writes a file whose every record, CRC, tag, step and value the independent reader checks', async () => {
    const kernel = await denseKernel();
    const dir = freshDir();
    const writer = TensorBoardWriter.open(dir, { wallTime: steppingClock(1_700_000_000.25), host: 'testhost' });
    writer.scalar('loss', 0.6931471805599453, 1);
    writer.scalar('accuracy', 0.1, 1);
    writer.scalar('lr', 0, 1);
    writer.histogram('dense/kernel', kernel, 1);
    writer.scalar('val_loss', Math.PI, 2);
    writer.scalar('big', 1e40, 2);
    writer.scalar('nan', NaN, 3);
    writer.scalar('late', -2.5, 9_007_199_254_740_991);
    writer.scalar('early', 0.5, -3);
    writer.close();

    const events = readEvents(writer.file);
    assert.equal(events.length, 2 + 9);
    assert.deepEqual(events[0], {
      wall_time: 1_700_000_000.25,
      step: 0,
      what: 'file_version',
      file_version: 'brain.Event:2',
      source_metadata: { writer: 'regtrain' },
    });
    assert.deepEqual(events[1], {
      wall_time: 1_700_000_001.25,
      step: 0,
      what: 'session_log',
      session_log: { status: 'START', checkpoint_path: '', msg: '' },
      source_metadata: null,
    });
    assert.deepEqual(
      events.map((e) => e.wall_time),
      Array.from({ length: 11 }, (_, i) => 1_700_000_000.25 + i),
    );

    const got = summaries(events);
    const histo = got[3][2] as DecodedHistogram;
    // Scalars are float32 in the proto: each reads back as its float32 rounding, exactly.
    assert.deepEqual(
      got.map(([step, tag, value]) => [step, tag, typeof value === 'number' ? value : 'histogram']),
      [
        [1, 'loss', Math.fround(0.6931471805599453)],
        [1, 'accuracy', Math.fround(0.1)],
        [1, 'lr', 0],
        [1, 'dense/kernel', 'histogram'],
        [2, 'val_loss', Math.fround(Math.PI)],
        [2, 'big', Infinity],
        [3, 'nan', NaN],
        [9_007_199_254_740_991, 'late', -2.5],
        [-3, 'early', 0.5],
      ],
    );
    assert.equal(histo.num, 784 * 128);
    assert.equal(sumOf(histo.bucket), 784 * 128, 'the bucket counts sum to the number of weights');
    assert.deepEqual(histo.bucket, recount(kernel, histo));
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    for (const w of kernel) {
      min = Math.min(min, w);
      max = Math.max(max, w);
      sum += w;
    }
    assert.deepEqual([histo.min, histo.max, histo.sum], [min, max, sum]);
    // glorot-uniform limit for 784 → 128: sqrt(6 / (784 + 128)) = 0.0811
    assert.ok(-0.0812 < min && max < 0.0812, `weights within the glorot limit: ${min} … ${max}`);
  });

  test('names the file events.out.tfevents.<ten-digit seconds>.<host>', () => {
    const dir = freshDir();
    const w1 = TensorBoardWriter.open(dir, { wallTime: () => 1_700_000_123.9, host: 'node-7.example' });
    w1.close();
    assert.equal(w1.file, path.join(dir, 'events.out.tfevents.1700000123.node-7.example'));
    const w2 = TensorBoardWriter.open(dir, { wallTime: () => 86_400.5, host: 'odd/host name' });
    w2.close();
    assert.equal(path.basename(w2.file), 'events.out.tfevents.0000086400.odd_host_name');
    const w3 = TensorBoardWriter.open(dir);
    w3.close();
    assert.match(
      path.basename(w3.file),
      new RegExp(
        `^events\\.out\\.tfevents\\.\\d{10}\\.${os
          .hostname()
          .replace(/[^A-Za-z0-9._-]/g, '_')
          .replace(/\./g, '\\.')}$`,
      ),
    );
    assert.deepEqual(fs.readdirSync(dir).sort(), [w2.file, w1.file, w3.file].map((f) => path.basename(f)).sort());
  });

  test('only appends: each event adds one record at the end and the bytes before it stay as they were', () => {
    const dir = freshDir();
    const writer = TensorBoardWriter.open(dir, { wallTime: steppingClock(1_700_000_000), host: 'h' });
    let before = fs.readFileSync(writer.file);
    for (let epoch = 1; epoch <= 5; epoch++) {
      writer.scalar('loss', 1 / epoch, epoch);
      writer.histogram('w', [epoch, -epoch, 0.5], epoch);
      const now = fs.readFileSync(writer.file);
      assert.deepEqual(now.subarray(0, before.length), before, `epoch ${epoch} left the earlier bytes alone`);
      assert.equal(readRecords(writer.file).length, 2 + 2 * epoch);
      before = now;
    }
    writer.close();
    assert.deepEqual(fs.readFileSync(writer.file), before, 'close adds nothing');
  });

  test('a second writer on the same folder (a resumed run) starts a new file, marks its start step and leaves the first file as it was', () => {
    const dir = freshDir();
    const first = TensorBoardWriter.open(dir, { wallTime: () => 1_700_000_000, host: 'h' });
    first.scalar('loss', 0.5, 1);
    first.scalar('loss', 0.4, 2);
    first.scalar('loss', 0.3, 3);
    first.flush();
    const firstBytes = fs.readFileSync(first.file);
    // the first writer is not closed: a killed run's file stays as the kill left it

    const sameSecond = TensorBoardWriter.open(dir, { wallTime: () => 1_700_000_000, host: 'h', startStep: 3 });
    sameSecond.scalar('loss', 0.35, 3);
    sameSecond.close();
    const later = TensorBoardWriter.open(dir, { wallTime: () => 1_700_000_060, host: 'h', startStep: 4 });
    later.scalar('loss', 0.25, 4);
    later.close();
    first.close();

    const names = [first.file, sameSecond.file, later.file].map((f) => path.basename(f));
    assert.deepEqual(names, [
      'events.out.tfevents.1700000000.h',
      'events.out.tfevents.1700000000.h.1',
      'events.out.tfevents.1700000060.h',
    ]);
    assert.deepEqual(
      fs.readdirSync(dir).sort(),
      names,
      'TensorBoard reads them in name order, which is the order they were written',
    );
    assert.deepEqual(fs.readFileSync(first.file), firstBytes);
    const resumed = readEvents(sameSecond.file);
    assert.deepEqual([resumed[1].step, resumed[1].session_log?.status], [3, 'START']);
    assert.deepEqual(summaries(resumed), [[3, 'loss', Math.fround(0.35)]]);
    assert.deepEqual(summaries(readEvents(later.file)), [[4, 'loss', Math.fround(0.25)]]);
  });

  test('a NaN histogram is refused naming the file, tag and step; nothing is written and the writer goes on', () => {
    const dir = freshDir();
    const writer = TensorBoardWriter.open(dir, { wallTime: () => 1_700_000_000, host: 'h' });
    const size = fs.statSync(writer.file).size;
    assert.throws(
      () => writer.histogram('dense_1/kernel', Float32Array.from([0.1, NaN, 0.2]), 4),
      (err: unknown) => {
        assert.ok(err instanceof FailureError);
        assert.equal(
          err.message,
          `${writer.file}: histogram "dense_1/kernel" at step 4: 1 NaN of 3 values; a TensorBoard histogram cannot hold them (training has diverged?)`,
        );
        return true;
      },
    );
    assert.equal(fs.statSync(writer.file).size, size);
    writer.scalar('loss', 1, 4);
    writer.close();
    assert.deepEqual(summaries(readEvents(writer.file)), [[4, 'loss', 1]]);
  });

  test('a step that is not an integer and an empty tag are programming errors (RangeError)', () => {
    const writer = TensorBoardWriter.open(freshDir(), { host: 'h' });
    assert.throws(() => writer.scalar('loss', 1, 1.5), {
      name: 'RangeError',
      message: 'TensorBoard step must be an integer, got 1.5',
    });
    assert.throws(() => writer.histogram('', [1], 1), {
      name: 'RangeError',
      message: 'TensorBoard tag must be a non-empty string, got ""',
    });
    writer.close();
    writer.close();
    assert.throws(() => writer.scalar('loss', 1, 2), { message: `TensorBoard writer for ${writer.file} is closed` });
  });

  test('a folder that cannot be made is a FailureError naming it', () => {
    const blocker = path.join(TMP, 'a-file');
    fs.writeFileSync(blocker, 'not a folder');
    const dir = path.join(blocker, 'tensorboard');
    assert.throws(
      () => TensorBoardWriter.open(dir, { host: 'h' }),
      (err: unknown) => {
        assert.ok(err instanceof FailureError);
        assert.equal(err.message, `${dir}: cannot create the TensorBoard folder (a file is in the way of the folder)`);
        return true;
      },
    );
  });

  const NO_MOUNT = canMountTmpfs();
  test(
    'a full disk (a 16 KiB tmpfs) ends in one FailureError naming the file, and every record before it is whole',
    { skip: NO_MOUNT },
    () => {
      const disk = path.join(TMP, 'full');
      fs.mkdirSync(disk);
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', disk]);
      mounts.push(disk);
      const writer = TensorBoardWriter.open(path.join(disk, 'tensorboard'), {
        wallTime: () => 1_700_000_000,
        host: 'h',
      });
      // 400 values spread over ~400 buckets: about 6.6 KB a record, so the third cannot fit
      const values = Array.from({ length: 400 }, (_, i) => (i % 2 ? 1 : -1) * 1e-10 * 1.05 ** i);
      let written = 0;
      let failure: unknown;
      for (let step = 0; step < 50 && failure === undefined; step++) {
        try {
          writer.histogram('w', values, step);
          written++;
        } catch (err) {
          failure = err;
        }
      }
      assert.ok(failure instanceof FailureError, `expected a FailureError, got ${String(failure)}`);
      assert.equal(
        failure.message,
        `${writer.file}: cannot write (no space left on device); files written before are intact`,
      );
      assert.ok(written >= 1, 'at least one histogram fitted');
      const events = readEvents(writer.file);
      assert.equal(events.length, 2 + written);
      assert.ok(summaries(events).every(([, , h]) => sumOf((h as DecodedHistogram).bucket) === 400));
      writer.close();
      assert.equal(readEvents(writer.file).length, 2 + written, 'closing after the failure adds nothing');
    },
  );
});

/** Whether this process may mount a tmpfs (root with CAP_SYS_ADMIN); else the disk-full test is skipped with the reason. */
function canMountTmpfs(): string | false {
  const probe = path.join(TMP, 'mount-probe');
  fs.mkdirSync(probe, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return false;
  } catch {
    return 'cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)';
  }
}

describe('regtrain run', () => {
  test('writes RUN_DIR/tensorboard/train and validation as Keras does, same tags in both, that the independent reader decodes: every epoch scalar of history.json and a histogram per weight', async () => {
    const out = path.join(TMP, 'run');
    const args = [
      'run',
      QUICK,
      ...sliceFlags({ train: 1000, validation: 200, test: 300, epochs: 2 }),
      '--out',
      out,
      '-q',
    ];
    // The real program in this process (helpers/in-process.ts): what is checked is the files the run writes.
    const r = await regtrainInProcess(args, { env: { REGTRAIN_DATA_DIR: path.join(TMP, 'cache') } });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(fs.readdirSync(path.join(out, 'tensorboard')).sort(), ['train', 'validation']);
    const run = (sub: string) => {
      const files = fs.readdirSync(path.join(out, 'tensorboard', sub));
      assert.equal(files.length, 1);
      assert.match(files[0]!, /^events\.out\.tfevents\.\d{10}\.[A-Za-z0-9._-]+$/);
      return summaries(readEvents(path.join(out, 'tensorboard', sub, files[0]!)));
    };
    const got = run('train');
    const validation = run('validation');
    const history = (
      JSON.parse(fs.readFileSync(path.join(out, 'history.json'), 'utf8')) as { epochs: Record<string, unknown>[] }
    ).epochs;
    const f32 = (x: number) => Math.fround(x);
    for (const e of history) {
      const at = (tag: string, events = got) => events.find(([step, t]) => step === e.epoch && t === tag)?.[2];
      for (const [tag, key] of [
        ['epoch_loss', 'loss'],
        ['epoch_accuracy', 'accuracy'],
        ['epoch_data_loss', 'data_loss'],
        ['epoch_penalty', 'penalty'],
        ['epoch_learning_rate', 'lr'],
      ] as const)
        assert.equal(at(tag), f32(e[key] as number), `epoch ${String(e.epoch)}: train ${tag}`);
      assert.equal(
        at('epoch_loss', validation),
        f32(e.val_loss as number),
        `epoch ${String(e.epoch)}: validation epoch_loss`,
      );
      assert.equal(
        at('epoch_accuracy', validation),
        f32(e.val_accuracy as number),
        `epoch ${String(e.epoch)}: validation epoch_accuracy`,
      );
      for (const [name, v] of Object.entries(e.penalties as Record<string, number>))
        assert.equal(
          at(`penalty_at_epoch_end/${name}`),
          f32(v),
          `epoch ${String(e.epoch)}: penalty_at_epoch_end/${name}`,
        );
      // The 784×200 first kernel: its buckets count every weight.
      const kernel = at('weights/dense/kernel') as DecodedHistogram;
      assert.equal(sumOf(kernel.bucket), 784 * 200);
      assert.equal(kernel.num, 784 * 200);
    }
    assert.deepEqual(
      [...new Set(validation.map(([, t]) => t))],
      ['epoch_loss', 'epoch_accuracy'],
      'validation/ holds only the validation scalars',
    );
    assert.deepEqual([...new Set(got.filter(([, t]) => t.startsWith('weights/')).map(([, t]) => t))].sort(), [
      'weights/dense/bias',
      'weights/dense/kernel',
      'weights/dense_1/bias',
      'weights/dense_1/kernel',
      'weights/dense_2/bias',
      'weights/dense_2/kernel',
      'weights/dense_3/bias',
      'weights/dense_3/kernel',
    ]);
  });
});
