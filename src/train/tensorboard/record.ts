import { maskedCrc32c } from './crc32c';

/** Bytes a record adds around its data: uint64 length, its CRC, and the data's CRC. */
export const RECORD_OVERHEAD = 8 + 4 + 4;

/**
 * One TFRecord, the framing of TensorFlow's RecordWriter (and so of every events file):
 *
 *   uint64 length (little-endian) · uint32 masked CRC-32C of those 8 bytes · data · uint32 masked CRC-32C of data
 */
export function frameRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(RECORD_OVERHEAD + data.length);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}
