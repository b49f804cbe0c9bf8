/**
 * CRC-32C (Castagnoli) and TFRecord's masked form of it.
 *
 * Written here rather than taken from a package: it is a dozen lines, regtrain's runtime
 * dependencies stay as they are, and the tests check it against an independent implementation
 * (the crc-32 package's crc32c) and the standard check value ("123456789" → 0xE3069283).
 */

/** The reflected Castagnoli polynomial (iSCSI, RFC 3720). */
const POLYNOMIAL = 0x82f63b78;

/** TFRecord's mask delta (tensorflow/core/lib/hash/crc32c.h: kMaskDelta). */
const MASK_DELTA = 0xa282ead8;

const TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLYNOMIAL : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32C of `data`, as an unsigned 32-bit number. */
export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = TABLE[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/**
 * The CRC as TFRecord stores it: rotated right by 15 bits plus a constant, because a CRC of
 * data that itself holds CRCs is weak (TensorFlow's crc32c::Mask).
 */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c(data);
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}
