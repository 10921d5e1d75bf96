/**
 * Case of hex user keys: a device advertising id (IDFA upper case, GAID lower case, exchanges send either) and a
 * hex id in an eid (hashed emails, UUIDs) match whatever case the CRM and the bid request write them in; opaque
 * ids (buyeruid, user.id, other eids) keep their case. Checked end to end: a CRM export (own key columns, or an
 * id map) compiled by `segbid compile`, then the request's keys as the bid path collects them (UserKeys).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileFiles } from '../src/segments/compiler/compile-files.js';
import { readStore, type SegmentStore } from '../src/segments/segment-store.js';
import { UserKeys } from '../src/segments/user-keys.js';
import { KEY_KIND, hashBegin, hashEnd, hashEidKey, hashFeed, hashFeedFolded, hashIfa, hashKey, isHexId, keyHash } from '../src/segments/key-hash.js';

let dir: string;
const p = (name: string) => join(dir, name);

const SOURCE = 'crm.example';
const IDFA = '6D92078A-8246-4BA4-AE5B-76104861E7DC';
const GAID = '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9';
const EMAIL = createHash('sha256').update('jane@example.com').digest('hex'); // lower-case hex, as most tools write it
const EMAIL_UPPER = EMAIL.toUpperCase();

const segmentation = {
  width: 32,
  segments: [{ id: 'big', name: 'Big spenders', kind: 'crm', rule: { col: 'monetary', gte: 500 } }],
};

/** Whether the request's keys, as the bid path collects them, find a user in the store. */
function known(store: SegmentStore, req: unknown): boolean {
  const keys = new UserKeys();
  const n = keys.collect(req);
  const out = new Uint32Array(store.words);
  let any = false;
  for (let k = 0; k < n; k++) any = store.orInto(keys.hi[k], keys.lo[k], out) || any;
  return any;
}

const withIfa = (ifa: string) => ({ id: 'r', imp: [], device: { ifa } });
const withEid = (source: string, id: string) => ({ id: 'r', imp: [], user: { eids: [{ source, uids: [{ id }] }] } });
const withBuyeruid = (buyeruid: string) => ({ id: 'r', imp: [], user: { buyeruid } });

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'segbid-key-case-'));
  writeFileSync(p('seg.json'), JSON.stringify(segmentation));
  writeFileSync(
    p('crm.csv'),
    [
      'crm_id,buyeruid,ifa,email_sha256,monetary',
      `c1,,${IDFA},,900`, // an IDFA, upper case as iOS writes it
      `c2,,${GAID},,900`, // a GAID, lower case as Android writes it
      `c3,,,${EMAIL_UPPER},900`, // a hashed email written in upper-case hex
      'c4,OpaqueUID-AbC,,,900', // an opaque cookie id: its case is part of it
    ].join('\n') + '\n',
  );
  writeFileSync(
    p('ids.csv'),
    [
      'crm_id,kind,value,source',
      `m1,ifa,${GAID.toUpperCase()},`,
      `m2,email_sha256,${EMAIL},`,
      `m3,eid,${IDFA},partner.example`, // a UUID in a generic eid (e.g. a shared publisher id)
      'm4,eid,Opaque-Partner-ID,partner.example',
    ].join('\n') + '\n',
  );
  writeFileSync(p('crm-ids.csv'), ['crm_id,monetary', 'm1,900', 'm2,900', 'm3,900', 'm4,900'].join('\n') + '\n');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('hex user keys match in any case', () => {
  it('own key columns: an IDFA, a GAID and a hashed email match a request in the other case; an opaque buyeruid keeps its case', async () => {
    await compileFiles({ segments: p('seg.json'), crm: p('crm.csv'), out: p('a.store'), eidSource: SOURCE });
    const store = readStore(p('a.store'));
    expect(known(store, withIfa(IDFA))).toBe(true);
    expect(known(store, withIfa(IDFA.toLowerCase()))).toBe(true);
    expect(known(store, withIfa(GAID))).toBe(true);
    expect(known(store, withIfa(GAID.toUpperCase()))).toBe(true);
    expect(known(store, withEid(SOURCE, EMAIL))).toBe(true);
    expect(known(store, withEid(SOURCE, EMAIL_UPPER))).toBe(true);
    expect(known(store, withBuyeruid('OpaqueUID-AbC'))).toBe(true);
    expect(known(store, withBuyeruid('opaqueuid-abc'))).toBe(false);
    expect(known(store, withIfa('7D92078A-8246-4BA4-AE5B-76104861E7DC'))).toBe(false);
  });

  it('id map: the same for its ifa, email_sha256 and eid kinds; an opaque eid keeps its case', async () => {
    await compileFiles({ segments: p('seg.json'), crm: p('crm-ids.csv'), ids: p('ids.csv'), out: p('b.store'), eidSource: SOURCE });
    const store = readStore(p('b.store'));
    expect(known(store, withIfa(GAID))).toBe(true);
    expect(known(store, withEid(SOURCE, EMAIL_UPPER))).toBe(true);
    expect(known(store, withEid('partner.example', IDFA.toLowerCase()))).toBe(true);
    expect(known(store, withEid('partner.example', 'Opaque-Partner-ID'))).toBe(true);
    expect(known(store, withEid('partner.example', 'opaque-partner-id'))).toBe(false);
  });

  it('the request side: an upper-case IFA or hex eid gives the keys of its lower-case form; buyeruid and user.id do not fold', () => {
    const keysOf = (req: unknown) => {
      const k = new UserKeys();
      const n = k.collect(req);
      return Array.from({ length: n }, (_, i) => `${k.hi[i]}:${k.lo[i]}`);
    };
    expect(keysOf(withIfa(IDFA))).toEqual(keysOf(withIfa(IDFA.toLowerCase())));
    expect(keysOf(withEid(SOURCE, EMAIL_UPPER))).toEqual(keysOf(withEid(SOURCE, EMAIL)));
    expect(keysOf(withBuyeruid('ABC'))).not.toEqual(keysOf(withBuyeruid('abc')));
    expect(keysOf({ id: 'r', imp: [], user: { id: 'ABC' } })).not.toEqual(keysOf({ id: 'r', imp: [], user: { id: 'abc' } }));
    // A short or non-hex eid id is opaque (base64 ids, ID5, UID2 tokens...).
    expect(keysOf(withEid(SOURCE, 'ID5*AbCdEf'))).not.toEqual(keysOf(withEid(SOURCE, 'id5*abcdef')));
  });
});

describe('key-hash case folding', () => {
  const hash = (fn: () => void) => {
    fn();
    return `${keyHash.hi}:${keyHash.lo}`;
  };

  it('hashFeedFolded(s) hashes exactly what hashFeed hashes for the ASCII lower case of s', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom('a', 'F', 'z', 'Z', 'A', '0', '-', '@', '[', '`', '{', 'É', 'é', 'ß') }), (s) => {
        const lower = s.replace(/[A-Z]/g, (c) => c.toLowerCase());
        const folded = hash(() => {
          hashBegin(KEY_KIND.ifa);
          hashFeedFolded(s);
          hashEnd();
        });
        expect(folded).toBe(hash(() => hashKey(KEY_KIND.ifa, lower)));
      }),
      { numRuns: 300 },
    );
  });

  it('hashIfa folds; hashEidKey folds hex ids only (the stored form of a lower-case key is unchanged)', () => {
    expect(hash(() => hashIfa(IDFA))).toBe(hash(() => hashKey(KEY_KIND.ifa, IDFA.toLowerCase())));
    expect(hash(() => hashIfa('Opaque-CTV-Id'))).toBe(hash(() => hashKey(KEY_KIND.ifa, 'opaque-ctv-id')));
    const eid = (source: string, id: string) =>
      hash(() => {
        hashBegin(KEY_KIND.eid);
        hashFeed(source);
        hashFeed(id);
        hashEnd();
      });
    expect(hash(() => hashEidKey(SOURCE, EMAIL_UPPER))).toBe(eid(SOURCE, EMAIL));
    expect(hash(() => hashEidKey(SOURCE, 'Opaque-Partner-ID'))).toBe(eid(SOURCE, 'Opaque-Partner-ID'));
  });

  it('isHexId: UUIDs and hex digests (32+ hex digits, dashes allowed), nothing else', () => {
    expect(isHexId(IDFA)).toBe(true);
    expect(isHexId(GAID)).toBe(true);
    expect(isHexId(EMAIL_UPPER)).toBe(true);
    expect(isHexId('d41d8cd98f00b204e9800998ecf8427E')).toBe(true); // md5, 32 digits
    expect(isHexId('D41D8CD98F00B204E9800998ECF842')).toBe(false); // 30 digits: too short to be a digest
    expect(isHexId('6D92078A-8246-4BA4-AE5B-76104861E7DG')).toBe(false);
    expect(isHexId('--------------------------------------')).toBe(false);
    expect(isHexId('')).toBe(false);
  });
});
