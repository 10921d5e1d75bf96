/**
 * What the JSON fixture suites share (test/decision-cases.test.ts, test/debug-*.test.ts): a case config is
 * test/cases/base.json with the case's JSON merge patch applied, and the case's users become a segment store built
 * with the bidder's own key hashing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateConfigDocument } from '../../src/config/load.js';
import { compileConfig, type CompiledConfig } from '../../src/config/compile.js';
import { SegmentStoreBuilder, type SegmentStore } from '../../src/segments/segment-store.js';
import { KEY_KIND, hashBegin, hashEnd, hashFeed, hashKey, keyHash } from '../../src/segments/key-hash.js';

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
    if (buyeruid !== undefined) {
      hashKey(KEY_KIND.buyeruid, buyeruid);
      builder.addKey(row, keyHash.hi, keyHash.lo);
    }
    if (userid !== undefined) {
      hashKey(KEY_KIND.userid, userid);
      builder.addKey(row, keyHash.hi, keyHash.lo);
    }
    if (ifa !== undefined) {
      hashKey(KEY_KIND.ifa, ifa);
      builder.addKey(row, keyHash.hi, keyHash.lo);
    }
    for (const eid of eids ?? []) {
      hashBegin(KEY_KIND.eid);
      hashFeed(eid.source);
      hashFeed(eid.id);
      hashEnd();
      builder.addKey(row, keyHash.hi, keyHash.lo);
    }
  }
  return builder.build('2026-01-01T00:00:00.000Z');
}
