/**
 * Helpers of the `?debug=1` suites (test/debug-*.test.ts): a case config is test/cases/base.json with debug
 * enabled and a JSON merge patch applied; the segment store is built from the case's users with the bidder's
 * key hashing (the same construction as test/decision-cases.test.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateConfigDocument } from '../../src/config/load.js';
import { compileConfig, type CompiledConfig } from '../../src/config/compile.js';
import { SegmentStoreBuilder, type SegmentStore } from '../../src/segments/segment-store.js';
import { KEY_KIND, hashBegin, hashEnd, hashFeed, hashKey, keyHash } from '../../src/segments/key-hash.js';

const CASES_DIR = fileURLToPath(new URL('../cases/', import.meta.url));
const BASE_FILE = join(CASES_DIR, 'base.json');

export interface DebugCaseUser {
  keys: { buyeruid?: string; userid?: string; ifa?: string; eids?: { source: string; id: string }[] };
  segments: string[];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isPlainObject(target) ? structuredClone(target) : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

export function compileDebugCase(patch: unknown, name: string): CompiledConfig {
  const base: unknown = JSON.parse(readFileSync(BASE_FILE, 'utf8'));
  const doc = mergePatch(mergePatch(base, { debug: { enabled: true } }), patch ?? {});
  return compileConfig(validateConfigDocument(doc, CASES_DIR, name));
}

export function buildStore(config: CompiledConfig, users: readonly DebugCaseUser[]): SegmentStore {
  const builder = new SegmentStoreBuilder(config.dictionary);
  for (const user of users) {
    const row = builder.addUser(
      user.segments.map((id) => {
        const bit = config.dictionary.bitOf.get(id);
        if (bit === undefined) throw new Error(`fixture user has unknown segment "${id}"`);
        return bit;
      }),
    );
    const keys: [number, string | undefined][] = [
      [KEY_KIND.buyeruid, user.keys.buyeruid],
      [KEY_KIND.userid, user.keys.userid],
      [KEY_KIND.ifa, user.keys.ifa],
    ];
    for (const [kind, value] of keys) {
      if (value === undefined) continue;
      hashKey(kind as 1, value);
      builder.addKey(row, keyHash.hi, keyHash.lo);
    }
    for (const eid of user.keys.eids ?? []) {
      hashBegin(KEY_KIND.eid);
      hashFeed(eid.source);
      hashFeed(eid.id);
      hashEnd();
      builder.addKey(row, keyHash.hi, keyHash.lo);
    }
  }
  return builder.build('2026-01-01T00:00:00.000Z');
}

