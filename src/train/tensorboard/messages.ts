/**
 * The Event, Summary and HistogramProto messages of an events file, encoded by field number in
 * proto3's canonical form (fields in number order, plain fields at their default left out).
 * The numbers are those of TensorBoard's tensorboard/compat/proto/event.proto, summary.proto and
 * histogram.proto (the same as TensorFlow's); only the fields regtrain writes are listed.
 */
import { ProtoWriter } from './wire';
import type { Histogram } from './histogram';

/** event.proto: message Event. `file_version`, `summary` and `session_log` are one `oneof what`. */
const EVENT = { wallTime: 1, step: 2, fileVersion: 3, summary: 5, sessionLog: 7, sourceMetadata: 10 } as const;
/** event.proto: message SourceMetadata. */
const SOURCE_METADATA = { writer: 1 } as const;
/** event.proto: message SessionLog, and its SessionStatus enum's START. */
const SESSION_LOG = { status: 1 } as const;
const SESSION_START = 1;
/** summary.proto: message Summary (`repeated Value value = 1`) and Summary.Value (`simple_value`, `histo` are one `oneof value`). */
const SUMMARY = { value: 1 } as const;
const VALUE = { tag: 1, simpleValue: 2, histo: 5 } as const;
/** histogram.proto: message HistogramProto. */
const HISTOGRAM = { min: 1, max: 2, num: 3, sum: 4, sumSquares: 5, bucketLimit: 6, bucket: 7 } as const;

/** The version every events file starts with; TensorBoard reads "brain.Event:2" as "restarts are marked by SessionLog START". */
export const FILE_VERSION = 'brain.Event:2';

export type SummaryValue = { tag: string; simpleValue: number } | { tag: string; histogram: Histogram };

/** What an Event carries (its `oneof what`). */
export type EventContent =
  { fileVersion: string; sourceWriter: string } | { sessionStart: true } | { summary: SummaryValue[] };

export function encodeEvent(wallTime: number, step: number, content: EventContent): Uint8Array {
  const w = new ProtoWriter().double(EVENT.wallTime, wallTime).int64(EVENT.step, step);
  if ('fileVersion' in content) {
    w.string(EVENT.fileVersion, content.fileVersion, 'explicit');
    w.bytesField(
      EVENT.sourceMetadata,
      new ProtoWriter().string(SOURCE_METADATA.writer, content.sourceWriter).finish(),
      'explicit',
    );
  } else if ('sessionStart' in content) {
    w.bytesField(EVENT.sessionLog, new ProtoWriter().int64(SESSION_LOG.status, SESSION_START).finish(), 'explicit');
  } else {
    w.bytesField(EVENT.summary, encodeSummary(content.summary), 'explicit');
  }
  return w.finish();
}

function encodeSummary(values: SummaryValue[]): Uint8Array {
  const w = new ProtoWriter();
  for (const v of values) w.bytesField(SUMMARY.value, encodeValue(v), 'explicit');
  return w.finish();
}

function encodeValue(value: SummaryValue): Uint8Array {
  const w = new ProtoWriter().string(VALUE.tag, value.tag);
  // 'explicit': a oneof member is written even at 0, its presence says which member is set.
  if ('simpleValue' in value) w.float(VALUE.simpleValue, value.simpleValue, 'explicit');
  else w.bytesField(VALUE.histo, encodeHistogram(value.histogram), 'explicit');
  return w.finish();
}

function encodeHistogram(h: Histogram): Uint8Array {
  return new ProtoWriter()
    .double(HISTOGRAM.min, h.min)
    .double(HISTOGRAM.max, h.max)
    .double(HISTOGRAM.num, h.num)
    .double(HISTOGRAM.sum, h.sum)
    .double(HISTOGRAM.sumSquares, h.sumSquares)
    .packedDoubles(HISTOGRAM.bucketLimit, h.bucketLimit)
    .packedDoubles(HISTOGRAM.bucket, h.bucket)
    .finish();
}
