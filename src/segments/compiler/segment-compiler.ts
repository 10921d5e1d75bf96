/**
 * The segment compiler core: CRM records in, a segment store out. Synchronous and source-agnostic: the file
 * driver (compile-files.ts) streams CSV/NDJSON into it, the demo (src/fixtures/demo.ts) and the bench feed
 * generated records directly, so all of them run the same code path.
 *
 *   const c = new SegmentCompiler(validatedSegmentation, { eidSource, idMap });
 *   for each record: c.addRecord(values)      // values[i] is the record's value of column c.columns[i]
 *   const { store, report } = c.finish(createdAt);
 *
 * Per record: crm rules (compiled to JS functions over the columns they read, see compileCrmRules), third-party segments from the
 * `tp_segments` column, group bits (any descendant), the user's bidder keys (own columns buyeruid / ifa /
 * email_sha256, or the id map by crm_id; trimmed, and hashed as the bid path hashes them: key-hash.ts). After the
 * last record: repeated keys are settled, lookalike tables are learned from the users' provider segments (kept
 * in typed arrays, ~4 bytes a segment a user), CRM users who pass get the lookalike bit, the volumes are counted
 * and the store is built (rows deduplicated). Contextual segments are request-time only: never set here.
 * Memory is O(users) typed arrays (the store must be held to be written), never the CRM text.
 *
 * Duplicates: a key (buyeruid, ifa, hashed email; with an id map, every key of a CRM id) in several records
 * keeps the LAST record's segments. Last wins rather than a union: a CRM export's record is the user's current
 * state, and a union would keep a customer in "at risk" or "lapsed" after a later record took them out. A record
 * whose every key comes again later is superseded: neither stored nor counted, so the volumes (CRM users,
 * members, activable, 3rd-party data, lookalike base and seed) count each user once; one that keeps a key of its
 * own is still served through it, and counted. Records without any key are counted as they come (nothing tells
 * two of them apart). The report says how many keys were repeated and how many records were superseded.
 */
import type { SegmentationDef } from '../../config/types.js';
import { KEY_KIND, hashIfa, hashKey, keyHash } from '../key-hash.js';
import { GrowableU32, GrowableU8 } from '../growable.js';
import { buildDictionary } from '../segmentation.js';
import { SegmentStoreBuilder, type LookalikeTable, type SegmentStore } from '../segment-store.js';
import {
  TP_COLUMN,
  applyGroups,
  canonical,
  compileCrmRules,
  groupMasks,
  numeric,
  numericColumns,
  parseTpSegments,
  ruleColumns,
  thirdPartyFeatures,
  type CompiledCrmRules,
  type CrmRule,
  type LookalikeRule,
  type ThirdPartyRule,
} from '../rules.js';
import { ID_KINDS, hashEid, keyText, type IdKind, type IdMap } from './id-map.js';
import { DEFAULT_MIN_SUPPORT, learnLookalike } from './lookalike.js';
import { isDeviceId } from '../user-keys.js';

/** CRM columns holding the user's own bidder keys, used when there is no id map. */
export const OWN_KEY_COLUMNS = ['buyeruid', 'ifa', 'email_sha256'] as const;
export const CRM_ID_COLUMN = 'crm_id';

export interface CompilerOptions {
  /** eid `source` of hashed emails (email_sha256 keys); null/absent = such keys are skipped and counted. */
  eidSource?: string | null;
  /** CRM id -> keys; absent = the record's own key columns. */
  idMap?: IdMap | null;
  /** Minimum seed users carrying a provider segment for it to enter a lookalike table. */
  lookalikeMinSupport?: number;
}

export interface SegmentVolume {
  id: string;
  name: string;
  kind: string;
  bit: number;
  /** CRM users in the segment (compiled membership; 0 for contextual). */
  users: number;
  /** Of those, users with at least one bidder key (reachable at bid time through the store). */
  activable: number;
  /** users / CRM users. */
  share: number;
  /** Also (or only) decided per request from the bid request (third_party, contextual, lookalike, groups of those). */
  bidTime: boolean;
  lookalike?: LookalikeTable;
}

export interface CompileReport {
  /** CRM users: records read, less those superseded by later records (see the module comment). */
  users: number;
  usersWithKeys: number;
  /** Distinct keys in the store, by kind. */
  keys: Record<string, number>;
  /** Keys found in more than one record (each keeps its last record's segments). */
  duplicateKeys: number;
  /** Records whose every key comes again in a later record: not stored, not counted. */
  supersededRecords: number;
  skippedKeys: Record<string, number>;
  usersWithThirdParty: number;
  segments: SegmentVolume[];
  distinctRows: number;
  storeBytes: number;
  /** Problems worth a line in the report (not fatal). */
  notes: string[];
}

const EMPTY: readonly number[] = [];
/** Per-record flags (SegmentCompiler.userFlags). */
const USER_KEYED = 1;
const USER_THIRD_PARTY = 2;

export class SegmentCompiler {
  /** Columns addRecord expects, in order. */
  readonly columns: string[];
  private readonly def: SegmentationDef;
  private readonly words: number;
  private readonly bitOf: ReadonlyMap<string, number>;
  private readonly builder: SegmentStoreBuilder;
  private readonly crm: CompiledCrmRules;
  private readonly groups: { bit: number; mask: Uint32Array }[];
  private readonly ruleColumnCount: number;
  private readonly isNumeric: Uint8Array;
  private readonly texts: string[];
  private readonly nums: Float64Array;
  private readonly row: Uint32Array;
  private readonly tpIndex: number;
  private readonly keyIndex: number;
  private readonly idMap: IdMap | null;
  private readonly eidSource: string | null;
  private readonly minSupport: number;
  // third-party data: vocabulary, per-user CSR (kept only when lookalikes need it), feature -> tp bits
  private readonly tpBitsByFeature = new Map<string, number[]>();
  private readonly vocabulary: string[] = [];
  private readonly featureOf = new Map<string, number>();
  private readonly featureBits: (readonly number[])[] = [];
  private readonly seen = new GrowableU32();
  private generation = 0;
  private readonly keepFeatures: boolean;
  private readonly featStart = new GrowableU32(4096);
  private readonly featIds = new GrowableU32(4096);
  private readonly tpScratch: string[] = [];
  // volumes: per record what it has (USER_KEYED, USER_THIRD_PARTY), per key its kind; counted at finish() over the
  // records the store keeps (a record superseded by later ones is not a user of its own)
  private readonly userFlags = new GrowableU8(4096);
  private readonly keyKinds = new GrowableU8(4096);
  private records = 0;
  private readonly skippedKeys: Record<string, number> = {};

  constructor(def: SegmentationDef, options: CompilerOptions = {}) {
    this.def = def;
    const dictionary = buildDictionary(def, '', []);
    this.words = dictionary.words;
    this.bitOf = dictionary.bitOf;
    this.builder = new SegmentStoreBuilder(dictionary);
    this.idMap = options.idMap ?? null;
    this.eidSource = options.eidSource ?? null;
    this.minSupport = options.lookalikeMinSupport ?? DEFAULT_MIN_SUPPORT;
    const columns: string[] = [];
    for (const s of def.segments) if (s.kind === 'crm') ruleColumns(s.rule as CrmRule, columns);
    this.ruleColumnCount = columns.length;
    const numericCols = new Set<string>();
    for (const s of def.segments) if (s.kind === 'crm') numericColumns(s.rule as CrmRule, numericCols);
    this.isNumeric = Uint8Array.from(columns, (c) => (numericCols.has(c) ? 1 : 0));
    const colIndex = (c: string) => columns.indexOf(c);
    const crmRules = def.segments.filter((s) => s.kind === 'crm').map((s) => ({ bit: this.bitOf.get(s.id)!, rule: s.rule as CrmRule }));
    this.crm = compileCrmRules(crmRules, colIndex);
    for (const s of def.segments) {
      if (s.kind === 'third_party') {
        for (const f of thirdPartyFeatures(s.rule as ThirdPartyRule)) {
          const bits = this.tpBitsByFeature.get(f) ?? [];
          if (!bits.includes(this.bitOf.get(s.id)!)) bits.push(this.bitOf.get(s.id)!);
          this.tpBitsByFeature.set(f, bits);
        }
      }
    }
    this.groups = groupMasks(def, this.bitOf, this.words);
    const hasLookalikes = def.segments.some((s) => s.kind === 'lookalike');
    this.keepFeatures = hasLookalikes;
    this.tpIndex = hasLookalikes || this.tpBitsByFeature.size > 0 ? columns.push(TP_COLUMN) - 1 : -1;
    this.keyIndex = columns.length;
    if (this.idMap) columns.push(CRM_ID_COLUMN);
    else columns.push(...OWN_KEY_COLUMNS);
    this.columns = columns;
    this.texts = new Array<string>(this.ruleColumnCount).fill('');
    this.nums = new Float64Array(this.ruleColumnCount);
    this.row = new Uint32Array(this.words);
    this.featStart.push(0);
  }

  /** Adds one CRM record: values[i] is the value of column this.columns[i] (undefined when absent). */
  addRecord(values: readonly unknown[]): void {
    const texts = this.texts;
    const nums = this.nums;
    const isNumeric = this.isNumeric;
    for (let i = 0; i < this.ruleColumnCount; i++) {
      const t = canonical(values[i]);
      texts[i] = t;
      if (isNumeric[i] === 1) nums[i] = numeric(t); // text-only columns (in-lists of strings) skip Number()
    }
    const row = this.row;
    row.fill(0);
    this.crm(texts, nums, row);
    const thirdParty = this.tpIndex >= 0 && this.thirdParty(values[this.tpIndex], row);
    if (this.keepFeatures) this.featStart.push(this.featIds.length);
    applyGroups(this.groups, row);
    const user = this.builder.addUserRow(row);
    this.records++;
    const hasKeys = this.addKeys(values, user);
    this.userFlags.push((hasKeys ? USER_KEYED : 0) | (thirdParty ? USER_THIRD_PARTY : 0));
  }

  /** Sets the record's third-party bits; true when it carries 3rd-party data. */
  private thirdParty(raw: unknown, row: Uint32Array): boolean {
    const items = parseTpSegments(raw, this.tpScratch);
    if (items.length === 0) return false;
    this.generation = (this.generation + 1) >>> 0 || 1;
    for (let i = 0; i < items.length; i++) {
      let f = this.featureOf.get(items[i]);
      if (f === undefined) {
        f = this.vocabulary.length;
        this.vocabulary.push(items[i]);
        this.featureOf.set(items[i], f);
        this.featureBits.push(this.tpBitsByFeature.get(items[i]) ?? EMPTY);
        this.seen.push(0);
      }
      if (this.seen.data[f] === this.generation) continue; // listed twice: counts once
      this.seen.data[f] = this.generation;
      if (this.keepFeatures) this.featIds.push(f);
      const bits = this.featureBits[f];
      for (let b = 0; b < bits.length; b++) row[bits[b] >>> 5] |= 1 << (bits[b] & 31);
    }
    return true;
  }

  private addKeys(values: readonly unknown[], user: number): boolean {
    const k0 = this.keyIndex;
    let any = false;
    if (this.idMap) {
      const crmId = keyText(values[k0]);
      if (crmId.length === 0) return false;
      for (let k = this.idMap.first(crmId); k !== -1; k = this.idMap.nextKey(k)) {
        this.addKey(user, this.idMap.hi(k), this.idMap.lo(k), this.idMap.kind(k));
        any = true;
      }
      return any;
    }
    // Key columns are trimmed whatever the quoting or format (keyText): padding is never part of an id.
    const buyeruid = keyText(values[k0]);
    if (buyeruid.length > 0) {
      hashKey(KEY_KIND.buyeruid, buyeruid);
      this.addKey(user, keyHash.hi, keyHash.lo, 'buyeruid');
      any = true;
    }
    const ifa = keyText(values[k0 + 1]);
    if (isDeviceId(ifa)) {
      // (The all-zero id of devices without ad tracking names no one: the bidder never looks it up.)
      hashIfa(ifa);
      this.addKey(user, keyHash.hi, keyHash.lo, 'ifa');
      any = true;
    }
    const email = keyText(values[k0 + 2]);
    if (email.length > 0) {
      if (this.eidSource === null) {
        this.count(this.skippedKeys, 'email_sha256 without --eid-source');
      } else {
        hashEid(this.eidSource, email);
        this.addKey(user, keyHash.hi, keyHash.lo, 'email_sha256');
        any = true;
      }
    }
    return any;
  }

  private addKey(user: number, hi: number, lo: number, kind: IdKind): void {
    this.builder.addKey(user, hi, lo);
    this.keyKinds.push(ID_KINDS.indexOf(kind));
  }

  private count(into: Record<string, number>, name: string): void {
    into[name] = (into[name] ?? 0) + 1;
  }

  /** Settles repeated keys, learns the lookalikes, sets their bits, counts the volumes, builds the store. Once. */
  finish(createdAt = new Date().toISOString()): { store: SegmentStore; report: CompileReport } {
    const tables: LookalikeTable[] = [];
    const notes: string[] = [];
    const flags = this.userFlags.data;
    const { served, duplicateKeys, supersededUsers } = this.builder.resolveKeys();
    // The records that are users: served through a key of their own, or without any key.
    const live = new Uint8Array(this.records);
    for (let u = 0; u < this.records; u++) live[u] = served[u] === 1 || (flags[u] & USER_KEYED) === 0 ? 1 : 0;
    const featStart = this.featStart.view();
    const data = { users: this.records, featStart, featIds: this.featIds.view(), vocabulary: this.vocabulary, live };
    for (const s of this.def.segments) {
      if (s.kind !== 'lookalike') continue;
      const rule = s.rule as LookalikeRule;
      const bit = this.bitOf.get(s.id)!;
      const seedBit = this.bitOf.get(rule.seed)!;
      const { table, scores } = learnLookalike(s.id, rule, data, (u) => this.builder.hasBit(u, seedBit), this.minSupport);
      tables.push(table);
      if (table.scoredBase === 0) notes.push(`lookalike ${s.id}: no CRM user carries 3rd-party data (column ${TP_COLUMN}); nobody can be scored`);
      else if (table.weights.length === 0) notes.push(`lookalike ${s.id}: no provider segment is over-represented in seed ${rule.seed}; the table is empty`);
      const containing = this.groups.filter((g) => (g.mask[bit >>> 5] & (1 << (bit & 31))) !== 0);
      for (let u = 0; u < this.records; u++) {
        if (live[u] === 0 || featStart[u] === featStart[u + 1] || scores[u] < table.threshold || this.builder.hasBit(u, seedBit)) continue;
        this.builder.setBit(u, bit);
        for (const g of containing) this.builder.setBit(u, g.bit);
      }
    }
    // Volumes, over the users (live records) only.
    const counts = new Float64Array(this.words * 32);
    const activable = new Float64Array(this.words * 32);
    let users = 0;
    let usersWithKeys = 0;
    let usersWithThirdParty = 0;
    for (let u = 0; u < this.records; u++) {
      if (live[u] === 0) continue;
      users++;
      const keyed = (flags[u] & USER_KEYED) !== 0;
      if (keyed) usersWithKeys++;
      if ((flags[u] & USER_THIRD_PARTY) !== 0) usersWithThirdParty++;
      for (let w = 0; w < this.words; w++) {
        let x = this.builder.rowWord(u, w);
        while (x !== 0) {
          const low = x & -x;
          const bit = (w << 5) + 31 - Math.clz32(low);
          x ^= low;
          counts[bit]++;
          if (keyed) activable[bit]++;
        }
      }
    }
    const keys: Record<string, number> = {};
    const kinds = this.keyKinds.data;
    this.builder.forEachFinalKey((k) => this.count(keys, ID_KINDS[kinds[k]]));
    // The volumes travel in the store header (aligned with its `segments`, i.e. by bit), and the report below is
    // read back from them, so what `segbid compile` prints is what the brief and the console later read.
    const nSegments = this.def.segments.length;
    const store = this.builder.build(createdAt, {
      lookalikes: tables,
      crmUsers: users,
      segmentUsers: Array.from(counts.subarray(0, nSegments)),
      segmentActivable: Array.from(activable.subarray(0, nSegments)),
    });
    const header = store.header;
    const segments: SegmentVolume[] = this.def.segments.map((s) => {
      const bit = this.bitOf.get(s.id)!;
      const table = tables.find((t) => t.segment === s.id);
      const members = header.segmentUsers![bit];
      return {
        id: s.id,
        name: s.name,
        kind: s.kind,
        bit,
        users: members,
        activable: header.segmentActivable![bit],
        share: users === 0 ? 0 : members / users,
        bidTime: s.kind !== 'crm' && !(s.kind === 'group' && this.groupIsCrmOnly(s.id)),
        ...(table ? { lookalike: table } : {}),
      };
    });
    return {
      store,
      report: {
        users,
        usersWithKeys,
        keys,
        duplicateKeys,
        supersededRecords: supersededUsers,
        skippedKeys: this.skippedKeys,
        usersWithThirdParty,
        segments,
        distinctRows: store.header.rowCount,
        storeBytes: 0,
        notes,
      },
    };
  }

  private groupIsCrmOnly(id: string): boolean {
    const g = this.groups.find((x) => x.bit === this.bitOf.get(id));
    if (!g) return true;
    for (const s of this.def.segments) {
      const bit = this.bitOf.get(s.id)!;
      if ((g.mask[bit >>> 5] & (1 << (bit & 31))) !== 0 && s.kind !== 'crm') return false;
    }
    return true;
  }
}
