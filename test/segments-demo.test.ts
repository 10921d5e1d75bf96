/** The demo store is compiled by the segment compiler from a generated CRM, keeps the demo key assignment and is reproducible. */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEMO_EID_SOURCE,
  compileDemoStore,
  demoEmailHash,
  demoIfa,
  demoSegmentation,
  demoUserId,
  generateDemoCrm,
  writeDemo,
  writeDemoCrmCsv,
  writeDemoStore,
} from '../src/fixtures/demo.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';
import { hashEid } from '../src/segments/compiler/id-map.js';
import { evalCrmRule, type CrmRule } from '../src/segments/rules.js';
import { compileFiles } from '../src/segments/compiler/compile-files.js';
import { STORE_FORMAT_VERSION, encodeStore, peekStoreVersion, readStore } from '../src/segments/segment-store.js';

const USERS = 20_000;

describe('demo store', () => {
  const started = performance.now();
  const { store, report } = compileDemoStore(USERS);
  const ms = performance.now() - started;

  it('is compiled quickly (100k users must stay under 5 s; 20k here)', () => {
    expect(ms).toBeLessThan(2500);
    expect(store.header.userCount).toBe(USERS);
  });

  it('keeps the demo key assignment: buyeruid for all, ifa for even n, hashed email for n % 5 == 0', () => {
    const out = new Uint32Array(store.words);
    for (const n of [0, 1, 2, 5, 7, 10, 19_999]) {
      hashKey(KEY_KIND.buyeruid, demoUserId(n));
      expect(store.orInto(keyHash.hi, keyHash.lo, out)).toBe(true);
      hashKey(KEY_KIND.ifa, demoIfa(n));
      expect(store.orInto(keyHash.hi, keyHash.lo, out)).toBe(n % 2 === 0);
      hashEid(DEMO_EID_SOURCE, demoEmailHash(n));
      expect(store.orInto(keyHash.hi, keyHash.lo, out)).toBe(n % 5 === 0);
    }
    hashKey(KEY_KIND.buyeruid, demoUserId(USERS));
    expect(store.orInto(keyHash.hi, keyHash.lo, out)).toBe(false);
  });

  it('rows are the demoSegmentation rules evaluated on the generated CRM', () => {
    const crm = demoSegmentation.segments.map((s, bit) => ({ s, bit })).filter(({ s }) => s.kind === 'crm');
    generateDemoCrm(2000, (rec, n) => {
      hashKey(KEY_KIND.buyeruid, demoUserId(n));
      const out = new Uint32Array(store.words);
      store.orInto(keyHash.hi, keyHash.lo, out);
      for (const { s, bit } of crm) expect((out[bit >>> 5] >>> (bit & 31)) & 1).toBe(evalCrmRule(s.rule as CrmRule, rec) ? 1 : 0);
      const customer = crm.some(({ s }) => evalCrmRule(s.rule as CrmRule, rec));
      expect(out[0] & 1).toBe(customer ? 1 : 0);
      expect(customer).toBe(Number(rec.frequency) >= 1);
    });
  });

  it('learns a lookalike table from the hidden correlation, within its reach', () => {
    const t = store.header.lookalikes![0];
    expect(t.segment).toBe('lookalike-loyal');
    expect(t.segmentIds).toEqual(expect.arrayContaining(['777', 'lux']));
    expect(t.passing / t.scoredBase).toBeLessThanOrEqual(0.08);
    expect(report.segments.find((s) => s.id === 'lookalike-loyal')!.users).toBeGreaterThan(100);
  });

  it('is byte-identical run to run, and the same as `segbid compile` on the CSV export', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'segbid-demo-'));
    try {
      writeDemoStore(join(dir, 'a.store'), 3000);
      writeDemoStore(join(dir, 'b.store'), 3000);
      const a = readFileSync(join(dir, 'a.store'));
      expect(a.equals(readFileSync(join(dir, 'b.store')))).toBe(true);
      writeDemoCrmCsv(join(dir, 'crm.csv'), 3000);
      writeFileSync(join(dir, 'seg.json'), JSON.stringify(demoSegmentation));
      await compileFiles({ segments: join(dir, 'seg.json'), crm: join(dir, 'crm.csv'), out: join(dir, 'c.store'), eidSource: DEMO_EID_SOURCE, createdAt: '2026-01-01T00:00:00.000Z' });
      expect(encodeStore(readStore(join(dir, 'c.store'))).equals(a)).toBe(true);
      // writeDemo regenerates a store left by an older format version.
      writeDemo(dir, { users: 1000 });
      const stale = readFileSync(join(dir, 'segments.store'));
      stale.writeUInt32LE(1, 4);
      writeFileSync(join(dir, 'segments.store'), stale);
      writeDemo(dir, { users: 1000, storeOnlyIfMissing: true });
      expect(peekStoreVersion(join(dir, 'segments.store'))).toBe(STORE_FORMAT_VERSION);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
