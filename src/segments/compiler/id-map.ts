/**
 * The id map: CRM ids -> bidder keys (hashed exactly as the bid path hashes them, src/segments/key-hash.ts).
 *
 * Input records (CSV with header, or NDJSON): `crm_id`, `kind`, `value`, and `source` for generic eids.
 *   kind buyeruid      -> KEY_KIND.buyeruid(value)           (user.buyeruid)
 *   kind userid        -> KEY_KIND.userid(value)             (user.id)
 *   kind ifa           -> KEY_KIND.ifa(value)                (device.ifa)
 *   kind email_sha256  -> KEY_KIND.eid(eidSource, value)     (user.eids[{source: eidSource}]; needs --eid-source)
 *   kind eid           -> KEY_KIND.eid(source, value)        (user.eids[{source}])
 * Held in typed arrays, not a Map of strings: a CRM id costs its 64-bit hash in an open-addressing table, each
 * key 16 bytes (hash + next link + kind), so tens of millions of ids fit. CRM ids are matched by 64-bit hash
 * (a collision between two CRM ids is ~N^2/2^65: negligible below billions).
 * Values are trimmed (keyText), and hashed as the bid path hashes the request's keys: an ifa, and a hex eid value
 * (email_sha256 included), in any case (key-hash.ts).
 */
import { KEY_KIND, hashEidKey, hashIfa, hashKey, keyHash } from '../key-hash.js';
import { GrowableU32 } from '../growable.js';
import { canonical } from '../rules.js';
import { trimAscii } from './csv.js';

export const ID_KINDS = ['buyeruid', 'userid', 'ifa', 'email_sha256', 'eid'] as const;
export type IdKind = (typeof ID_KINDS)[number];
export const ID_MAP_COLUMNS = ['crm_id', 'kind', 'value', 'source'] as const;

/** Hashes a bidder key of an id-map kind into keyHash; false when it cannot be keyed (no eid source). */
export function hashIdKey(kind: string, value: string, source: string | undefined, eidSource: string | null): boolean {
  switch (kind) {
    case 'buyeruid':
      hashKey(KEY_KIND.buyeruid, value);
      return true;
    case 'userid':
      hashKey(KEY_KIND.userid, value);
      return true;
    case 'ifa':
      hashIfa(value);
      return true;
    case 'email_sha256':
      if (eidSource === null) return false;
      hashEid(eidSource, value);
      return true;
    case 'eid':
      if (source === undefined || source.length === 0) return false;
      hashEid(source, value);
      return true;
    default:
      return false;
  }
}

/** An eid key, as the bid path hashes user.eids[].source + uids[].id (user-keys.ts). */
export function hashEid(source: string, id: string): void {
  hashEidKey(source, id);
}

/**
 * The text of a key or id column: canonical() trimmed of ASCII whitespace, whatever the format (a quoted CSV
 * value, an NDJSON string). Spaces around an id are an export's padding, never part of an id an exchange sends.
 */
export function keyText(raw: unknown): string {
  return trimAscii(canonical(raw));
}

export class IdMap {
  private readonly crmHi = new GrowableU32();
  private readonly crmLo = new GrowableU32();
  private readonly keyHi = new GrowableU32();
  private readonly keyLo = new GrowableU32();
  private readonly keyKind = new GrowableU32();
  private next: Int32Array = new Int32Array(0);
  private tableHi: Uint32Array = new Uint32Array(0);
  private tableLo: Uint32Array = new Uint32Array(0);
  private tableHead: Int32Array = new Int32Array(0);
  private mask = 0;
  /** Records that could not become a key, by reason (unknown kind, email without --eid-source...). */
  readonly skipped = new Map<string, number>();
  readonly keysByKind = new Map<string, number>();
  private sealed = false;

  constructor(private readonly eidSource: string | null) {}

  /** Adds one id-map record; values in ID_MAP_COLUMNS order. */
  add(values: readonly unknown[]): void {
    const crmId = typeof values[0] === 'string' || typeof values[0] === 'number' ? keyText(values[0]) : '';
    const kind = values[1];
    const value = values[2];
    const source = values[3];
    if (crmId.length === 0) return this.skip('no crm_id');
    const kindText = typeof kind === 'string' ? trimAscii(kind) : kind;
    if (typeof kindText !== 'string' || !(ID_KINDS as readonly string[]).includes(kindText)) return this.skip(`unknown kind "${String(kind)}"`);
    const valueText = typeof value === 'string' ? trimAscii(value) : '';
    if (valueText.length === 0) return this.skip('empty value');
    if (!hashIdKey(kindText, valueText, typeof source === 'string' ? trimAscii(source) : undefined, this.eidSource)) {
      return this.skip(kindText === 'email_sha256' ? 'email_sha256 without --eid-source' : 'eid without source');
    }
    this.keyHi.push(keyHash.hi);
    this.keyLo.push(keyHash.lo);
    this.keyKind.push(ID_KINDS.indexOf(kindText as IdKind));
    hashKey(KEY_KIND.crm, crmId);
    this.crmHi.push(keyHash.hi);
    this.crmLo.push(keyHash.lo);
    this.keysByKind.set(kindText, (this.keysByKind.get(kindText) ?? 0) + 1);
  }

  private skip(reason: string): void {
    this.skipped.set(reason, (this.skipped.get(reason) ?? 0) + 1);
  }

  get size(): number {
    return this.keyHi.length;
  }

  /** Builds the lookup table; call once after the last add(). */
  seal(): void {
    const n = this.keyHi.length;
    let capacity = 16;
    while (capacity < n * 2) capacity *= 2;
    this.mask = capacity - 1;
    this.tableHi = new Uint32Array(capacity);
    this.tableLo = new Uint32Array(capacity);
    this.tableHead = new Int32Array(capacity).fill(-1);
    this.next = new Int32Array(n);
    const hiArr = this.crmHi.data;
    const loArr = this.crmLo.data;
    // Insert in reverse so a CRM id's chain lists its keys in file order.
    for (let k = n - 1; k >= 0; k--) {
      const slot = this.find(hiArr[k], loArr[k]);
      this.tableHi[slot] = hiArr[k];
      this.tableLo[slot] = loArr[k];
      this.next[k] = this.tableHead[slot];
      this.tableHead[slot] = k;
    }
    this.sealed = true;
  }

  private find(hi: number, lo: number): number {
    let slot = lo & this.mask;
    while (this.tableHead[slot] !== -1 && !(this.tableHi[slot] === hi && this.tableLo[slot] === lo)) slot = (slot + 1) & this.mask;
    return slot;
  }

  /** First key of a CRM id, or -1; iterate with next(). */
  first(crmId: string): number {
    if (!this.sealed) this.seal();
    hashKey(KEY_KIND.crm, crmId); // (the caller passes keyText of the CRM record's crm_id: trimmed as in add())
    return this.tableHead[this.find(keyHash.hi, keyHash.lo)];
  }

  nextKey(k: number): number {
    return this.next[k];
  }

  hi(k: number): number {
    return this.keyHi.data[k];
  }

  lo(k: number): number {
    return this.keyLo.data[k];
  }

  kind(k: number): IdKind {
    return ID_KINDS[this.keyKind.data[k]];
  }
}
