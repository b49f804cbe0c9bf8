/**
 * How a group's resolved spec differs from the baseline's, as `path=value` text (like `dvc exp
 * diff`): the label of a variant in `compare`'s legend and CSV.
 */

/** Leaf values of a nested object by dotted path (lists by index; null and {} are leaves). */
export function flatten(value: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (value !== null && typeof value === 'object' && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) out[prefix] = value;
  return out;
}

/** Fields that say which run of a group this is, not what was run. */
export const IDENTITY_FIELDS = new Set(['name', 'seed']);

/** YAML-flow-like compact text: `{l1: 0.001, l2: 0}`, `[28, 28]`, `relu`. */
export function compact(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(compact).join(', ')}]`;
  if (v !== null && typeof v === 'object')
    return `{${Object.entries(v)
      .map(([k, x]) => `${k}: ${compact(x)}`)
      .join(', ')}}`;
  return typeof v === 'string' ? v : JSON.stringify(v);
}

export function getPath(v: unknown, dotted: string): unknown {
  return dotted
    .split('.')
    .reduce<unknown>(
      (o, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined),
      v,
    );
}

/**
 * `path=value` for each field where `spec` differs from `base`. Where the base has a leaf (e.g.
 * `kernelRegularizer: null`) above the differing field, the whole value there is shown once
 * (`…kernelRegularizer={l1: 0.001, l2: 0}`); fields `spec` lacks are implied by a parent. The same
 * change on several layers is written once: `model.layers.{1,2,3}.dense.kernelRegularizer={l2: 0.01}`.
 */
export function specChanges(spec: Record<string, unknown> | null, base: Record<string, unknown> | null): string[] {
  if (!spec || !base) return [];
  const a = flatten(spec);
  const b = flatten(base);
  const out: string[] = [];
  // Inserting a layer shifts every later index: describe the whole stack instead of each shifted field.
  const layersOf = (s: Record<string, unknown>) =>
    (getPath(s, 'model.layers') as Record<string, Record<string, unknown>>[] | undefined) ?? [];
  const restacked = layersOf(spec).length !== layersOf(base).length;
  if (restacked) out.push(`model.layers=[${layersOf(spec).map(layerBrief).join(', ')}]`);
  for (const k of Object.keys(a)) {
    if (restacked && k.startsWith('model.layers.')) continue;
    if (IDENTITY_FIELDS.has(k) || JSON.stringify(a[k]) === JSON.stringify(b[k])) continue;
    let at = k;
    if (!(k in b)) {
      const segs = k.split('.');
      for (let n = segs.length - 1; n > 0; n--) {
        const prefix = segs.slice(0, n).join('.');
        if (prefix in b) {
          at = prefix;
          break;
        }
      }
      // A branch the base lacks altogether (another optimizer): its whole value, once.
      if (at === k) {
        const n = segs.findIndex((_, i) => getPath(base, segs.slice(0, i + 1).join('.')) === undefined);
        if (n >= 0 && n < segs.length - 1) at = segs.slice(0, n + 1).join('.');
      }
    }
    const text = `${at}=${compact(at === k ? a[k] : getPath(spec, at))}`;
    if (!out.includes(text)) out.push(text);
  }
  return mergeLayerIndexes(out);
}

export function specDiff(spec: Record<string, unknown> | null, base: Record<string, unknown> | null): string {
  return specChanges(spec, base).join(', ');
}

/** `model.layers.1.x=v`, `model.layers.2.x=v` → `model.layers.{1,2}.x=v`, at the first one's place. */
function mergeLayerIndexes(changes: string[]): string[] {
  const indexes = new Map<string, string[]>();
  for (const c of changes) {
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(c);
    if (m) indexes.set(m[2]!, [...(indexes.get(m[2]!) ?? []), m[1]!]);
  }
  const out: string[] = [];
  for (const c of changes) {
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(c);
    if (!m) out.push(c);
    else {
      const at = indexes.get(m[2]!)!;
      if (at.length === 1) out.push(c);
      else if (at[0] === m[1]) out.push(`model.layers.{${at.join(',')}}.${m[2]}`);
    }
  }
  return out;
}

/** "dense 200 relu", "dropout 0.2", "flatten". */
function layerBrief(layer: Record<string, unknown>): string {
  const [type, cfg] = Object.entries(layer)[0] ?? ['?', {}];
  const c = (cfg ?? {}) as Record<string, unknown>;
  if (type === 'dense') return `dense ${c.units}${c.activation && c.activation !== 'linear' ? ` ${c.activation}` : ''}`;
  if (type === 'dropout') return `dropout ${c.rate}`;
  return type === 'batchNormalization' ? 'batchnorm' : type;
}
