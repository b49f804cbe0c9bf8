import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withThousands } from '../src/thousands';

test('integers get a comma between thousands, as the model summary prints parameter counts', () => {
  assert.equal(withThousands(0), '0');
  assert.equal(withThousands(999), '999');
  assert.equal(withThousands(1000), '1,000');
  assert.equal(withThousands(178110), '178,110');
  assert.equal(withThousands(1234567), '1,234,567');
  assert.equal(withThousands(-1234), '-1,234');
  assert.equal(withThousands(12.6), '13');
});

test("withThousands writes what toLocaleString('en-US') writes for whole numbers of every length", () => {
  for (let digits = 1; digits <= 15; digits++)
    for (const lead of [1, 5, 9]) {
      const n = lead * 10 ** (digits - 1) + (digits > 1 ? 7 : 0);
      assert.equal(withThousands(n), n.toLocaleString('en-US'), `${n}`);
      assert.equal(withThousands(-n), (-n).toLocaleString('en-US'), `${-n}`);
    }
});
