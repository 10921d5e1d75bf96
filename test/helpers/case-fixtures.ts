/**
 * What the JSON fixture suites share (test/decision-cases.test.ts, test/debug-*.test.ts): a case config is
 * test/cases/base.json with the case's JSON merge patch applied, and the case's users become a segment store built
 * with the compiler's own key hashing (the id map's hashIdKey: what `segbid compile` stores for each kind of key,
 * e.g. a device id folded to lower case).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateConfigDocument } from '../../src/config/load.js';
import { compileConfig, type CompiledConfig } from '../../src/config/compile.js';
import { SegmentStoreBuilder, type SegmentStore } from '../../src/segments/segment-store.js';
import { keyHash } from '../../src/segments/key-hash.js';
import { hashIdKey } from '../../src/segments/compiler/id-map.js';

export const CASES_DIR = fileURLToPath(new URL('../cases/', import.meta.url));
export const BASE_FILE = join(CASES_DIR, 'base.json');

export interface CaseUser {
  keys: { buyeruid?: string; userid?: string; ifa?: string; eids?: { source: string; id: string }[] };
  segments: string[];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else (arrays too) replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isPlainObject(target) ? structuredClone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

/** base.json with each patch applied in turn, validated and compiled (`name` prefixes the errors). */
export function compileCaseConfig(name: string, ...patches: unknown[]): CompiledConfig {
  let doc: unknown = JSON.parse(readFileSync(BASE_FILE, 'utf8'));
  for (const patch of patches) if (patch !== undefined) doc = mergePatch(doc, patch);
  return compileConfig(validateConfigDocument(doc, CASES_DIR, name));
}

export function buildStore(config: CompiledConfig, users: readonly CaseUser[]): SegmentStore {
  const builder = new SegmentStoreBuilder(config.dictionary);
  for (const user of users) {
    const bits = user.segments.map((id) => {
      const bit = config.dictionary.bitOf.get(id);
      if (bit === undefined) throw new Error(`fixture user has unknown segment "${id}"`);
      return bit;
    });
    const row = builder.addUser(bits);
    const { buyeruid, userid, ifa, eids } = user.keys;
    const add = (kind: string, value: string, source?: string) => {
      if (!hashIdKey(kind, value, source, null)) throw new Error(`fixture key ${kind} ${value} cannot be hashed`);
      builder.addKey(row, keyHash.hi, keyHash.lo);
    };
    if (buyeruid !== undefined) add('buyeruid', buyeruid);
    if (userid !== undefined) add('userid', userid);
    if (ifa !== undefined) add('ifa', ifa);
    for (const eid of eids ?? []) add('eid', eid.id, eid.source);
  }
  return builder.build('2026-01-01T00:00:00.000Z');
}
