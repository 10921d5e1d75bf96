/**
 * Structural diff of two config documents, for the dry-run endpoint and the one-line summaries of the version
 * history and the audit log.
 *
 * Contract:
 *   - Arrays whose elements are all objects with a unique string `id` (line items, creatives, segments,
 *     campaigns) are "collections": diffed BY ID, not by position, into added / removed / changed ids, each
 *     changed id with its field changes (JSON-pointer paths relative to the item, e.g. `/bid/cpm`), plus
 *     `reordered` when the ids both sides share changed order (it matters for segments: bits are assigned in
 *     declaration order). Collections are keyed by the JSON pointer of the array in the document.
 *   - Everything else is diffed as JSON: objects key by key, other arrays and scalars replaced whole when they
 *     differ, each change with its JSON-pointer path in the document.
 *   - Pure: no I/O, inputs untouched.
 */

export interface ValueChange {
  /** JSON pointer: in the document for `changes`, in the item for a collection's `changed[].changes`. */
  path: string;
  op: 'add' | 'remove' | 'replace';
  before?: unknown;
  after?: unknown;
}

export interface ItemChange {
  id: string;
  changes: ValueChange[];
}

export interface CollectionDiff {
  added: string[];
  removed: string[];
  changed: ItemChange[];
  /** The ids present on both sides are in a different order. */
  reordered: boolean;
}

export interface ConfigDiff {
  identical: boolean;
  /** Keyed by the JSON pointer of the array, e.g. `/lineItems`, `/segmentation/segments`. Only those that differ. */
  collections: Record<string, CollectionDiff>;
  /** Changes outside collections. */
  changes: ValueChange[];
}

type Json = unknown;

function isObject(v: Json): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function jsonEqual(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (isObject(a)) {
    if (!isObject(b)) return false;
    const ka = Object.keys(a).filter((k) => a[k] !== undefined);
    const kb = Object.keys(b).filter((k) => b[k] !== undefined);
    if (ka.length !== kb.length) return false;
    for (const k of ka) if (!(k in b) || !jsonEqual(a[k], b[k])) return false;
    return true;
  }
  return false;
}

/** The ids of an array of objects with unique string ids, or null when it is not such a collection. */
function collectionIds(v: Json): string[] | null {
  if (!Array.isArray(v)) return null;
  const ids: string[] = [];
  const seen = new Set<string>();
  for (const item of v) {
    if (!isObject(item) || typeof item.id !== 'string' || seen.has(item.id)) return null;
    seen.add(item.id);
    ids.push(item.id);
  }
  return ids;
}

function diffCollection(before: Json[], after: Json[]): CollectionDiff {
  const beforeById = new Map(before.map((x) => [(x as { id: string }).id, x]));
  const afterById = new Map(after.map((x) => [(x as { id: string }).id, x]));
  const out: CollectionDiff = { added: [], removed: [], changed: [], reordered: false };
  for (const [id] of beforeById) if (!afterById.has(id)) out.removed.push(id);
  for (const [id, item] of afterById) {
    const old = beforeById.get(id);
    if (old === undefined) {
      out.added.push(id);
      continue;
    }
    const changes: ValueChange[] = [];
    // Inside an item everything is plain JSON: nested collections are rare and read fine as field changes.
    diffPlain(old, item, '', changes);
    if (changes.length) out.changed.push({ id, changes });
  }
  const commonBefore = [...beforeById.keys()].filter((id) => afterById.has(id));
  const commonAfter = [...afterById.keys()].filter((id) => beforeById.has(id));
  out.reordered = commonBefore.some((id, i) => commonAfter[i] !== id);
  return out;
}

function diffPlain(before: Json, after: Json, path: string, out: ValueChange[]): void {
  if (jsonEqual(before, after)) return;
  if (before === undefined) {
    out.push({ path, op: 'add', after });
  } else if (after === undefined) {
    out.push({ path, op: 'remove', before });
  } else if (isObject(before) && isObject(after)) {
    const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
    for (const k of keys) diffPlain(before[k], after[k], `${path}/${escapePointer(k)}`, out);
  } else {
    out.push({ path, op: 'replace', before, after });
  }
}

function diffInto(before: Json, after: Json, path: string, diff: ConfigDiff): void {
  if (jsonEqual(before, after)) return;
  const idsBefore = before === undefined ? [] : collectionIds(before);
  const idsAfter = after === undefined ? [] : collectionIds(after);
  // A collection appearing, emptied or going whole is still reported by id: "campaign c1 added" reads better.
  if (idsBefore !== null && idsAfter !== null && idsBefore.length + idsAfter.length > 0) {
    diff.collections[path] = diffCollection((before as Json[] | undefined) ?? [], (after as Json[] | undefined) ?? []);
    return;
  }
  if (isObject(before) && isObject(after)) {
    const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
    for (const k of keys) diffInto(before[k], after[k], `${path}/${escapePointer(k)}`, diff);
    return;
  }
  diffPlain(before, after, path, diff.changes);
}

export function diffConfigs(before: Json, after: Json): ConfigDiff {
  const diff: ConfigDiff = { identical: true, collections: {}, changes: [] };
  diffInto(before, after, '', diff);
  diff.identical = diff.changes.length === 0 && Object.keys(diff.collections).length === 0;
  return diff;
}

function short(v: Json): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? 'undefined';
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

function listIds(ids: string[], max = 5): string {
  return ids.length <= max ? ids.join(', ') : `${ids.slice(0, max).join(', ')} and ${ids.length - max} more`;
}

function describeChange(c: ValueChange): string {
  if (c.op === 'replace' && (c.before === null || typeof c.before !== 'object') && (c.after === null || typeof c.after !== 'object')) {
    return `${c.path} ${short(c.before)} -> ${short(c.after)}`;
  }
  if (c.op === 'add') return `${c.path} added`;
  if (c.op === 'remove') return `${c.path} removed`;
  return `${c.path} changed`;
}

/** One line for the version history and the audit log, e.g. `/lineItems: changed li-1 (/bid/cpm 2 -> 3)`. */
export function summarizeDiff(diff: ConfigDiff, maxLength = 500): string {
  if (diff.identical) return 'no change';
  const parts: string[] = [];
  for (const [path, c] of Object.entries(diff.collections)) {
    const bits: string[] = [];
    if (c.added.length) bits.push(`added ${listIds(c.added)}`);
    if (c.removed.length) bits.push(`removed ${listIds(c.removed)}`);
    if (c.changed.length) {
      const shown = c.changed.slice(0, 5).map((i) => {
        const fields = i.changes.slice(0, 3).map(describeChange).join(', ');
        return `${i.id} (${fields}${i.changes.length > 3 ? ', ...' : ''})`;
      });
      bits.push(`changed ${shown.join(', ')}${c.changed.length > 5 ? ` and ${c.changed.length - 5} more` : ''}`);
    }
    if (c.reordered) bits.push('reordered');
    parts.push(`${path}: ${bits.join('; ')}`);
  }
  if (diff.changes.length) {
    const shown = diff.changes.slice(0, 5).map(describeChange);
    parts.push(shown.join(', ') + (diff.changes.length > 5 ? ` and ${diff.changes.length - 5} more` : ''));
  }
  const line = parts.join('; ');
  return line.length > maxLength ? line.slice(0, maxLength - 3) + '...' : line;
}
