/**
 * PNG files in, 8-bit greyscale pixels out: decoded by pngjs (every bit depth, palette, interlace),
 * transparent parts composited on white, colour reduced to Rec. 601 luma.
 */
import * as zlib from 'node:zlib';
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
  if (buf.length < IHDR_SIZE_END)
    throw new InputError(`${file}: not a readable PNG (truncated header, ${buf.length} bytes)`);
  const header = checkHeader(buf, file);
  const { width, height } = header;
  if (width > MAX_PNG_SIDE || height > MAX_PNG_SIDE || width * height > MAX_PNG_PIXELS) {
    throw new InputError(
      `${file}: ${width}×${height} pixels is larger than predict reads (at most ${MAX_PNG_SIDE} a side, ${MAX_PNG_PIXELS} pixels)`,
    );
  }
  const idat = checkChunks(buf, file, header);
  checkInflatedSize(idat, header, file);
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

interface Header {
  width: number;
  height: number;
  bitDepth: number;
  colourType: number;
  interlace: number;
}

/** Bit depths the PNG spec (11.2.2, table 11.1) allows per colour type, and the samples per pixel. */
const COLOUR_TYPES: Record<number, { name: string; depths: number[]; channels: number }> = {
  0: { name: 'greyscale', depths: [1, 2, 4, 8, 16], channels: 1 },
  2: { name: 'truecolour', depths: [8, 16], channels: 3 },
  3: { name: 'indexed-colour', depths: [1, 2, 4, 8], channels: 1 },
  4: { name: 'greyscale with alpha', depths: [8, 16], channels: 2 },
  6: { name: 'truecolour with alpha', depths: [8, 16], channels: 4 },
};
/** The PNG spec's largest width or height (2^31 − 1). */
const PNG_MAX_DIMENSION = 0x7fffffff;
const IHDR_LENGTH = 13;

/** IHDR as the PNG spec (11.2.2) requires it: the first chunk, 13 bytes, every field one it defines. */
function checkHeader(buf: Buffer, file: string): Header {
  const bad = (why: string) => new InputError(`${file}: not a valid PNG (${why})`);
  const length = buf.readUInt32BE(8);
  if (buf.toString('latin1', 12, 16) !== 'IHDR') throw bad('the first chunk is not IHDR');
  if (length !== IHDR_LENGTH) throw bad(`IHDR is ${length} bytes, the PNG spec says ${IHDR_LENGTH}`);
  if (buf.length < 16 + IHDR_LENGTH)
    throw new InputError(`${file}: not a readable PNG (truncated header, ${buf.length} bytes)`);
  const h = {
    width: buf.readUInt32BE(16),
    height: buf.readUInt32BE(20),
    bitDepth: buf[24]!,
    colourType: buf[25]!,
    interlace: buf[28]!,
  };
  for (const side of ['width', 'height'] as const)
    if (h[side] === 0 || h[side] > PNG_MAX_DIMENSION)
      throw bad(`${side} ${h[side]}; the PNG spec allows 1 to ${PNG_MAX_DIMENSION}`);
  const type = COLOUR_TYPES[h.colourType];
  if (!type) throw bad(`colour type ${h.colourType}; the PNG spec defines 0, 2, 3, 4 and 6`);
  if (!type.depths.includes(h.bitDepth))
    throw bad(
      `bit depth ${h.bitDepth} with colour type ${h.colourType} (${type.name}); allowed: ${type.depths.join(', ')}`,
    );
  if (buf[26] !== 0) throw bad(`compression method ${buf[26]}; the PNG spec defines only 0`);
  if (buf[27] !== 0) throw bad(`filter method ${buf[27]}; the PNG spec defines only 0`);
  if (h.interlace > 1) throw bad(`interlace method ${h.interlace}; the PNG spec defines 0 and 1`);
  return h;
}

/**
 * Walks the chunks (length, type, data, CRC) up to IEND, so that a cut-off file is reported as
 * truncated where it ends (pngjs's sync reader only says a read request was left waiting).
 * Returns the IDAT chunks' data, joined; refuses what the PNG spec's chunk ordering rules (5.6)
 * and PLTE/tRNS rules (11.2.3, 11.3.2.1) forbid: a second IHDR, PLTE in a greyscale image, after
 * IDAT, twice or not of 1–256 RGB entries, tRNS in an image with an alpha channel, IDAT chunks
 * that are not consecutive, a palette image without PLTE and an image without IDAT.
 */
function checkChunks(buf: Buffer, file: string, header: Header): Buffer {
  const bad = (why: string) => new InputError(`${file}: not a valid PNG (${why})`);
  const idat: Buffer[] = [];
  let palette = false;
  let previous = '';
  let at = PNG_SIGNATURE.length;
  while (at + CHUNK_HEAD <= buf.length) {
    const length = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    if (at + CHUNK_HEAD + length + CHUNK_CRC > buf.length)
      throw new InputError(
        `${file}: not a readable PNG (truncated: its ${type} chunk needs ${length + CHUNK_HEAD + CHUNK_CRC} bytes from byte ${at}, the file ends at ${buf.length})`,
      );
    if (type === 'IHDR' && at !== PNG_SIGNATURE.length) throw bad(`a second IHDR chunk at byte ${at}`);
    if (type === 'PLTE') {
      if (header.colourType === 0 || header.colourType === 4)
        throw bad(`a PLTE chunk in a ${COLOUR_TYPES[header.colourType]!.name} image`);
      if (palette) throw bad(`a second PLTE chunk at byte ${at}`);
      if (idat.length > 0) throw bad('PLTE after IDAT');
      if (length === 0 || length % 3 !== 0 || length > 3 * 256)
        throw bad(`PLTE of ${length} bytes; the PNG spec allows 1 to 256 entries of 3 bytes`);
      palette = true;
    }
    if (type === 'tRNS' && (header.colourType === 4 || header.colourType === 6))
      throw bad(`a tRNS chunk in a ${COLOUR_TYPES[header.colourType]!.name} image`);
    if (type === 'IDAT') {
      if (idat.length > 0 && previous !== 'IDAT')
        throw bad(`IDAT chunks that are not consecutive (another at byte ${at})`);
      idat.push(buf.subarray(at + CHUNK_HEAD, at + CHUNK_HEAD + length));
    }
    if (type === 'IEND') {
      if (header.colourType === 3 && !palette) throw bad('indexed-colour without a PLTE chunk');
      if (idat.length === 0) throw bad('no IDAT chunk: no image data');
      return Buffer.concat(idat);
    }
    previous = type;
    at += CHUNK_HEAD + length + CHUNK_CRC;
  }
  throw new InputError(`${file}: not a readable PNG (truncated: no IEND chunk, the file ends at byte ${buf.length})`);
}

/** Adam7's passes: first column and row, then the steps between them (PNG spec 8.2). */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

/**
 * The bytes the image data must inflate to, as the header implies: per (sub)image, each row's
 * filter byte plus its packed samples; with Adam7, the seven reduced images (empty passes have no rows).
 */
export function inflatedSize(h: Pick<Header, 'width' | 'height' | 'bitDepth' | 'colourType' | 'interlace'>): number {
  const bitsPerPixel = COLOUR_TYPES[h.colourType]!.channels * h.bitDepth;
  const image = (w: number, rows: number) => (w <= 0 || rows <= 0 ? 0 : rows * (1 + Math.ceil((w * bitsPerPixel) / 8)));
  if (h.interlace === 0) return image(h.width, h.height);
  return ADAM7.reduce(
    (n, [x0, y0, dx, dy]) => n + image(Math.ceil((h.width - x0) / dx), Math.ceil((h.height - y0) / dy)),
    0,
  );
}

/**
 * Inflates the image data once with the output limit the header implies, so that a small file
 * whose data inflates to gigabytes (a "zip bomb") stops at that limit instead of filling memory;
 * pngjs inflates interlaced images without a limit.
 */
function checkInflatedSize(idat: Buffer, header: Header, file: string): void {
  const expected = inflatedSize(header);
  try {
    zlib.inflateSync(idat, { maxOutputLength: expected });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE')
      throw new InputError(
        `${file}: not a valid PNG (its image data inflates to more than the ${expected} bytes its ${header.width}×${header.height} header implies)`,
      );
    // Other zlib errors (a bad stream, a short one) are pngjs's to report, as before.
  }
}

/** pngjs's and zlib's messages, as one line. */
function describeDecodeError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.split('\n')[0]!.trim() || 'unknown decoding error';
}
