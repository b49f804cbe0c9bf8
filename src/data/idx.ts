/**
 * The IDX format (yann.lecun.com/exdb/mnist): a big-endian header of a 4-byte magic
 * (0, 0, element type, number of dimensions) and one uint32 per dimension, then the data.
 * Only unsigned-byte IDX files are used here (Fashion-MNIST's images and labels).
 */
import { InputError } from '../errors';

/** Element type byte for unsigned bytes. */
export const IDX_TYPE_UBYTE = 0x08;
/** Labels: ubyte, 1 dimension (count). 0x00000801 = 2049. */
export const IDX_MAGIC_LABELS = 0x00000801;
/** Images: ubyte, 3 dimensions (count, rows, cols). 0x00000803 = 2051. */
export const IDX_MAGIC_IMAGES = 0x00000803;
/** magic + 1 dimension */
export const IDX_LABELS_HEADER_BYTES = 8;
/** magic + 3 dimensions */
export const IDX_IMAGES_HEADER_BYTES = 16;

const MAGIC_BYTES = 4;
const DIM_BYTES = 4;

export interface IdxArray {
  magic: number;
  dims: number[];
  /** The elements after the header: a view into the input buffer, not a copy. */
  data: Uint8Array;
}

export interface IdxExpectation {
  magic?: number;
  /** Expected dimensions; a null entry accepts any size along that axis. */
  dims?: readonly (number | null)[];
}

function hex32(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}

/**
 * Parses an unsigned-byte IDX buffer. `what` names the file in errors. Checks the magic,
 * the dimensions (against `expect` if given) and that the data length matches the header
 * exactly: a short file is truncated, a long one is not what the header describes.
 */
export function parseIdx(buf: Uint8Array, what: string, expect: IdxExpectation = {}): IdxArray {
  const { magic, dims, headerBytes } = parseIdxHeader(buf, buf.length, what, expect);
  return { magic, dims, data: buf.subarray(headerBytes) };
}

/** The most bytes an IDX header can take: the magic and 255 dimensions. */
export const IDX_MAX_HEADER_BYTES = MAGIC_BYTES + DIM_BYTES * 0xff;

/**
 * parseIdx's checks on a file of `fileBytes` bytes from its first bytes only (`buf`: at least
 * min(fileBytes, IDX_MAX_HEADER_BYTES) of them), so that its data can be read as far as needed.
 */
export function parseIdxHeader(
  buf: Uint8Array,
  fileBytes: number,
  what: string,
  expect: IdxExpectation = {},
): { magic: number; dims: number[]; headerBytes: number } {
  if (fileBytes < MAGIC_BYTES) throw new InputError(`${what}: truncated IDX header (${fileBytes} bytes)`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const magic = view.getUint32(0);
  const ndims = magic & 0xff;
  const validMagic = magic >>> 16 === 0 && ((magic >>> 8) & 0xff) === IDX_TYPE_UBYTE && ndims > 0;
  if (!validMagic || (expect.magic !== undefined && magic !== expect.magic)) {
    const wanted = expect.magic !== undefined ? hex32(expect.magic) : 'an unsigned-byte IDX magic';
    throw new InputError(`${what}: bad IDX magic ${hex32(magic)}, expected ${wanted}`);
  }
  const headerBytes = MAGIC_BYTES + DIM_BYTES * ndims;
  if (fileBytes < headerBytes)
    throw new InputError(`${what}: truncated IDX header (${fileBytes} bytes, need ${headerBytes})`);
  const dims: number[] = [];
  for (let i = 0; i < ndims; i++) dims.push(view.getUint32(MAGIC_BYTES + DIM_BYTES * i));
  if (expect.dims) {
    const ok = expect.dims.length === ndims && expect.dims.every((d, i) => d === null || d === dims[i]);
    if (!ok) {
      const wanted = expect.dims.map((d) => (d === null ? '*' : String(d))).join(', ');
      throw new InputError(`${what}: IDX dimensions [${dims.join(', ')}], expected [${wanted}]`);
    }
  }
  const dataBytes = dims.reduce((a, b) => a * b, 1);
  const actual = fileBytes - headerBytes;
  if (actual !== dataBytes) {
    const kind = actual < dataBytes ? 'truncated' : 'too long';
    throw new InputError(
      `${what}: ${kind}: header [${dims.join(', ')}] needs ${dataBytes} data bytes, file has ${actual}`,
    );
  }
  return { magic, dims, headerBytes };
}

/** Builds an unsigned-byte IDX buffer (for tests and fixtures). */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Buffer {
  const headerBytes = MAGIC_BYTES + DIM_BYTES * dims.length;
  const out = Buffer.alloc(headerBytes + data.length);
  out.writeUInt32BE(((IDX_TYPE_UBYTE << 8) | dims.length) >>> 0, 0);
  dims.forEach((d, i) => out.writeUInt32BE(d, MAGIC_BYTES + DIM_BYTES * i));
  out.set(data, headerBytes);
  return out;
}
