import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeIdx,
  parseIdx,
  IDX_IMAGES_HEADER_BYTES,
  IDX_LABELS_HEADER_BYTES,
  IDX_MAGIC_IMAGES,
  IDX_MAGIC_LABELS,
} from '../src/data/idx';
import { InputError } from '../src/errors';

const images = (count: number): Buffer => encodeIdx([count, 28, 28], new Uint8Array(count * 784).fill(7));

function throwsInput(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof InputError, `expected InputError, got ${String(err)}`);
    assert.equal(err.message, message);
    return true;
  });
}

test('the format constants are the IDX magics 2049 and 2051 and their header sizes', () => {
  assert.equal(IDX_MAGIC_LABELS, 2049);
  assert.equal(IDX_MAGIC_IMAGES, 2051);
  assert.equal(IDX_LABELS_HEADER_BYTES, 8);
  assert.equal(IDX_IMAGES_HEADER_BYTES, 16);
  assert.equal(images(1).length, IDX_IMAGES_HEADER_BYTES + 784);
});

test('a well-formed image file parses into its magic, dims and a view of the pixels', () => {
  const parsed = parseIdx(images(3), 'imgs', { magic: IDX_MAGIC_IMAGES, dims: [3, 28, 28] });
  assert.equal(parsed.magic, IDX_MAGIC_IMAGES);
  assert.deepEqual(parsed.dims, [3, 28, 28]);
  assert.equal(parsed.data.length, 3 * 784);
  assert.equal(parsed.data[0], 7);
});

test('a label file parses and a null expected dim accepts any count', () => {
  const parsed = parseIdx(encodeIdx([4], Uint8Array.from([1, 2, 3, 4])), 'labels', {
    magic: IDX_MAGIC_LABELS,
    dims: [null],
  });
  assert.deepEqual([...parsed.data], [1, 2, 3, 4]);
});

test('a label file where images are expected is rejected by its magic, naming the file', () => {
  throwsInput(
    () => parseIdx(encodeIdx([4], new Uint8Array(4)), 'train-images-idx3-ubyte', { magic: IDX_MAGIC_IMAGES }),
    'train-images-idx3-ubyte: bad IDX magic 0x00000801, expected 0x00000803',
  );
});

test('a file that is not IDX at all is rejected by its magic', () => {
  throwsInput(
    () => parseIdx(Buffer.from('<html>oops</html>'), 'x.idx'),
    'x.idx: bad IDX magic 0x3c68746d, expected an unsigned-byte IDX magic',
  );
});

test('images with the wrong dimensions are rejected', () => {
  throwsInput(
    () => parseIdx(encodeIdx([2, 27, 28], new Uint8Array(2 * 27 * 28)), 'imgs', { dims: [null, 28, 28] }),
    'imgs: IDX dimensions [2, 27, 28], expected [*, 28, 28]',
  );
  throwsInput(
    () => parseIdx(images(2), 'imgs', { dims: [3, 28, 28] }),
    'imgs: IDX dimensions [2, 28, 28], expected [3, 28, 28]',
  );
});

test('a truncated header is rejected', () => {
  throwsInput(() => parseIdx(Buffer.from([0, 0]), 'imgs'), 'imgs: truncated IDX header (2 bytes)');
  throwsInput(() => parseIdx(images(1).subarray(0, 10), 'imgs'), 'imgs: truncated IDX header (10 bytes, need 16)');
});

test('truncated data and trailing bytes are both rejected', () => {
  const full = images(2);
  throwsInput(
    () => parseIdx(full.subarray(0, full.length - 1), 'imgs'),
    'imgs: truncated: header [2, 28, 28] needs 1568 data bytes, file has 1567',
  );
  throwsInput(
    () => parseIdx(Buffer.concat([full, Buffer.from([0])]), 'imgs'),
    'imgs: too long: header [2, 28, 28] needs 1568 data bytes, file has 1569',
  );
});
