/**
 * The README's Commands table and `--help` (commander's own option lists) name the same
 * commands and the same options: an option added to one and not the other fails here.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { buildProgram } from '../src/cli';

const ROOT = path.resolve(__dirname, '../..');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** Options every command has, which the table leaves out. */
const EVERYWHERE = new Set(['--help']);

/** Each command's long options as the README's Commands table gives them (with the note under it). */
function readmeOptions(): Map<string, Set<string>> {
  const section = README.slice(README.indexOf('## Commands'), README.indexOf('### Exit codes'));
  const out = new Map<string, Set<string>>();
  const add = (name: string, opts: Iterable<string>) => {
    const set = out.get(name) ?? new Set<string>();
    for (const o of opts) set.add(o);
    out.set(name, set);
  };
  for (const row of section.split('\n').filter((l) => l.startsWith('| `regtrain '))) {
    const cell = row.split(' | ')[0]!.slice(2);
    // A cell may hold several commands: `regtrain data fetch …`, `data verify`, `data info` (each with `[--data-dir DIR] [--json]`).
    const names = [...cell.matchAll(/`(?:regtrain )?((?:data )?[a-z-]+)(?: |`)/g)].map((m) => m[1]!);
    const opts = [...cell.matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0]);
    const shared = /\(each with ([^)]*)\)/.exec(cell);
    for (const name of names)
      add(name, name === names[0] ? opts : shared ? [...shared[1]!.matchAll(/--[a-z][a-z-]*/g)].map((m) => m[0]) : []);
  }
  const note = /^`run`, `run-member`, `evaluate` and `predict` also take `--data-dir` and `--source`\.$/m.exec(section);
  assert.ok(note, 'the note on --data-dir and --source under the table');
  for (const name of ['run', 'run-member', 'evaluate', 'predict']) add(name, ['--data-dir', '--source']);
  return out;
}

/** Each (sub)command's visible long options as --help lists them. */
function helpOptions(): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const visit = (cmd: Command, prefix: string) => {
    for (const sub of cmd.commands) {
      const name = prefix + sub.name();
      if (sub.commands.length) visit(sub, `${name} `);
      else
        out.set(
          name,
          new Set(sub.options.filter((o) => !o.hidden && o.long && !EVERYWHERE.has(o.long)).map((o) => o.long!)),
        );
    }
  };
  visit(buildProgram(), '');
  return out;
}

test("the README's Commands table lists every command and exactly the options its --help lists", () => {
  const readme = readmeOptions();
  const help = helpOptions();
  assert.deepEqual([...readme.keys()].sort(), [...help.keys()].sort(), 'the same commands');
  for (const [name, opts] of help)
    assert.deepEqual([...readme.get(name)!].sort(), [...opts].sort(), `regtrain ${name}: README vs --help`);
});

test('the README says how to print the version, as --help does', () => {
  assert.ok(buildProgram().helpInformation().includes('-V, --version'));
  assert.match(README, /`regtrain --version`/);
});
