/**
 * The README's optimizer table lists exactly the optimizers of the registry
 * (src/train/optimizers/registry.ts), each with its schema's fields and defaults: an optimizer
 * added to the registry and not to the table, or a default changed in one place only, fails here.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OPTIMIZERS, OPTIMIZER_TYPES } from '../src/train/optimizers/registry';

const ROOT = path.resolve(__dirname, '../..');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The table's rows: optimizer name → field → default, as written (`as X, with f V` rows resolved against X). */
function readmeTable(): Map<string, Map<string, string>> {
  const section = README.slice(README.indexOf('### Optimizers and learning-rate schedules'));
  const lines = section.slice(section.indexOf('| optimizer |')).split('\n').slice(2);
  const rows = lines.slice(
    0,
    lines.findIndex((l) => !l.startsWith('|')),
  );
  const table = new Map<string, Map<string, string>>();
  for (const row of rows) {
    const [, nameCell, fieldsCell] = row.split('|').map((c) => c.trim());
    const name = /^`(\w+)`$/.exec(nameCell!)![1]!;
    const as = /^as `(\w+)`, with `(\w+)` (\S+)$/.exec(fieldsCell!);
    if (as) {
      const fields = new Map(table.get(as[1]!));
      assert.ok(fields.has(as[2]!), `${name}: ${as[1]} has no field ${as[2]}`);
      fields.set(as[2]!, as[3]!);
      table.set(name, fields);
    } else {
      table.set(name, new Map([...fieldsCell!.matchAll(/`(\w+)` \(([^)]*)\)/g)].map((m) => [m[1]!, m[2]!])));
    }
  }
  return table;
}

test('the README optimizer table names exactly the registry optimizers, in its order', () => {
  assert.deepEqual([...readmeTable().keys()], [...OPTIMIZER_TYPES]);
});

for (const d of OPTIMIZERS) {
  test(`the README row of ${d.name} gives its schema's fields and defaults`, () => {
    const defaults = d.schema.parse({}) as Record<string, unknown>;
    const row = readmeTable().get(d.name)!;
    assert.deepEqual([...row.keys()].sort(), Object.keys(defaults).sort());
    for (const [field, value] of row) assert.equal(value, JSON.stringify(defaults[field]), `${d.name}.${field}`);
  });
}
