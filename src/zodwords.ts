import type { z } from 'zod';

/**
 * zod's own messages ("Invalid input: expected object, received number") in regtrain's words.
 * Passed as the per-parse error map (`schema.safeParse(v, { error: inRegtrainWords })`), so a
 * message a schema states itself wins; this covers every issue a schema leaves unworded.
 * The caller adds the path and ", got <value>".
 */
const TYPE_WORDS: Record<string, string> = {
  object: 'a map',
  record: 'a map',
  map: 'a map',
  array: 'a list',
  tuple: 'a list',
  set: 'a list',
  string: 'text',
  number: 'a number',
  int: 'an integer',
  bigint: 'an integer',
  boolean: 'true or false',
  null: 'null',
  date: 'a date',
  literal: 'a fixed value',
};

const SIZE_WORDS: Record<string, string> = { array: 'items', set: 'items', string: 'characters', file: 'bytes' };

type Issue = z.core.$ZodRawIssue;

export function inRegtrainWords(issue: Issue): string {
  const i = issue as Issue & Record<string, unknown>;
  switch (i.code) {
    case 'invalid_type':
      return `expected ${TYPE_WORDS[String(i.expected)] ?? String(i.expected)}`;
    case 'too_small': {
      const unit = SIZE_WORDS[String(i.origin)];
      const min = String(i.minimum);
      return unit ? `expected at least ${min} ${unit}` : `expected a value ${i.inclusive ? '≥' : '>'} ${min}`;
    }
    case 'too_big': {
      const unit = SIZE_WORDS[String(i.origin)];
      const max = String(i.maximum);
      return unit ? `expected at most ${max} ${unit}` : `expected a value ${i.inclusive ? '≤' : '<'} ${max}`;
    }
    case 'invalid_value': {
      const values = Array.isArray(i.values)
        ? (i.values as unknown[]).map((v) => (typeof v === 'string' ? v : JSON.stringify(v)))
        : [];
      return values.length === 1 ? `expected ${values[0]}` : `expected one of ${values.join(', ')}`;
    }
    case 'invalid_format':
      return i.format === 'regex' ? 'expected text of the allowed form' : `expected ${String(i.format)} text`;
    case 'not_multiple_of':
      return `expected a multiple of ${String(i.divisor)}`;
    case 'unrecognized_keys':
      return 'unknown key';
    case 'invalid_key': {
      const inner = (i.issues as { message?: string }[] | undefined)?.[0]?.message;
      return inner ? `invalid key: ${inner}` : 'invalid key';
    }
    case 'invalid_element':
      return 'invalid element';
    case 'invalid_union':
      return 'expected one of the allowed forms';
    default:
      return 'invalid value';
  }
}

/** True for the wording zod uses when a schema states no message of its own (tests look for leaks). */
export const ZOD_WORDING =
  /Invalid input|Invalid option|Invalid key|Invalid element|Invalid string|received |Too (big|small)|Unrecognized key|expected (object|array|string|number|boolean|record|tuple)\b/;

/** A value as a message shows it: "a list", "a map", "null", 42, "text". */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (Array.isArray(v)) return 'a list';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'a map';
  return String(v);
}

/** One zod issue as "dotted.path: message, got value" (the value looked up in `root`). */
export function issueLine(issue: z.core.$ZodIssue, root: unknown): string {
  const p = issue.path.map(String);
  let v: unknown = root;
  for (const seg of p) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[seg] : undefined;
  const got =
    issue.code === 'custom' ||
    / got /.test(issue.message) ||
    issue.code === 'unrecognized_keys' ||
    issue.code === 'invalid_key'
      ? ''
      : `, got ${describeValue(v)}`;
  return `${p.length ? `${p.join('.')}: ` : ''}${issue.message}${got}`;
}
