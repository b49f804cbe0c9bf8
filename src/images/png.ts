/**
 * PNG files in, 8-bit greyscale pixels out: decoded by pngjs (every bit depth, palette, interlace),
 * transparent parts composited on white, colour reduced to Rec. 601 luma.
 */
import { PNG } from 'pngjs';
import { InputError } from '../errors';
import { readRegularFile } from '../fsutil';

/** A photo a user classifies is far smaller; this only stops a runaway read. */
export const MAX_PNG_BYTES = 64 * 1024 * 1024;
/** Decoding allocates width × height × 4 bytes: refused from the header before pngjs allocates. */
export const MAX_PNG_SIDE = 10_000;
export const MAX_PNG_PIXELS = 25_000_000;

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Signature (8) + IHDR length and type (8) + width and height (8). */
const IHDR_SIZE_END = 24;
const WHITE = 255;
/** A chunk's length and type come first, its CRC last. */
const CHUNK_HEAD = 8;
const CHUNK_CRC = 4;

export interface GreyImage {
  width: number;
  height: number;
  /** Row-major, 0 = black, 255 = white. */
  pixels: Uint8Array;
  /** Whether the file stored colour (RGB or a palette) rather than grey levels. */
  colour: boolean;
  /** Whether the file has an alpha channel or a transparent colour. */
  alpha: boolean;
}

export function readPng(file: string): GreyImage {
  return decodePng(readRegularFile(file, { maxBytes: MAX_PNG_BYTES }), file);
}

/** `file` names the image in errors. */
export function decodePng(buf: Buffer, file: string): GreyImage {
  if (buf.length < PNG_SIGNATURE.length || !buf.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE)) {
    throw new InputError(`${file}: not a PNG image (predict reads PNG files)`);
  }
  if (buf.length < IHDR_SIZE_END) throw new InputError(`${file}: not a readable PNG (truncated header, ${buf.length} bytes)`);
  const width = buf.readUInt32BE(16);
  const height = buf.readUInt32BE(20);
  if (width > MAX_PNG_SIDE || height > MAX_PNG_SIDE || width * height > MAX_PNG_PIXELS) {
    throw new InputError(`${file}: ${width}×${height} pixels is larger than predict reads (at most ${MAX_PNG_SIDE} a side, ${MAX_PNG_PIXELS} pixels)`);
  }
  checkChunks(buf, file);
  let png: ReturnType<typeof PNG.sync.read>;
  try {
    png = PNG.sync.read(buf);
  } catch (err) {
    throw new InputError(`${file}: not a readable PNG (${describeDecodeError(err)})`);
  }
  const rgba = png.data;
  const pixels = new Uint8Array(png.width * png.height);
  for (let i = 0, p = 0; i < pixels.length; i++, p += 4) {
    const a = rgba[p + 3]!;
    const luma = 0.299 * rgba[p]! + 0.587 * rgba[p + 1]! + 0.114 * rgba[p + 2]!;
    // Composited on white: product photos are shot on white, so a cut-out looks like one.
    pixels[i] = Math.round((luma * a + WHITE * (WHITE - a)) / WHITE);
  }
  return { width: png.width, height: png.height, pixels, colour: png.color, alpha: png.alpha };
}

/**
 * Walks the chunks (length, type, data, CRC) up to IEND, so that a cut-off file is reported as
 * truncated where it ends (pngjs's sync reader only says a read request was left waiting).
 */
function checkChunks(buf: Buffer, file: string): void {
  let at = PNG_SIGNATURE.length;
  while (at + CHUNK_HEAD <= buf.length) {
    const length = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    if (at + CHUNK_HEAD + length + CHUNK_CRC > buf.length)
      throw new InputError(
        `${file}: not a readable PNG (truncated: its ${type} chunk needs ${length + CHUNK_HEAD + CHUNK_CRC} bytes from byte ${at}, the file ends at ${buf.length})`,
      );
    if (type === 'IEND') return;
    at += CHUNK_HEAD + length + CHUNK_CRC;
  }
  throw new InputError(`${file}: not a readable PNG (truncated: no IEND chunk, the file ends at byte ${buf.length})`);
}

/** pngjs's and zlib's messages, as one line. */
function describeDecodeError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.trim() || 'unknown decoding error';
}
