/**
 * `segbid compile` end to end on files: CSV and NDJSON CRM exports, an id map, the volume report with its
 * activation warnings, invalid inputs, and the command line wiring (commander).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { compileFiles } from '../src/segments/compiler/compile-files.js';
import { formatReport } from '../src/segments/compiler/report.js';
import { registerCompileCommand } from '../src/cli/compile-command.js';
import { readStore, type SegmentStore } from '../src/segments/segment-store.js';
import { KEY_KIND, hashIfa, hashKey, keyHash } from '../src/segments/key-hash.js';
import { hashEid } from '../src/segments/compiler/id-map.js';
import { SegbidError } from '../src/common/errors.js';

let dir: string;
const p = (name: string) => join(dir, name);

const segmentation = {
  width: 64,
  segments: [
    { id: 'customers', name: 'Customers', kind: 'group' },
    { id: 'big', name: 'Big spenders', parent: 'customers', kind: 'crm', rule: { col: 'monetary', gte: 500 } },
    { id: 'vip', name: 'VIP "gold"', parent: 'customers', kind: 'crm', rule: { col: 'tier', in: ['gold', 'platinum, inc'] } },
    { id: 'auto', name: 'Auto', kind: 'third_party', rule: { provider: '6', segments: ['123'] } },
    { id: 'news', name: 'News', kind: 'contextual', rule: { cat: ['IAB12'] } },
  ],
};

function segmentsOf(store: SegmentStore, hash: () => void): string[] {
  hash();
  const out = new Uint32Array(store.words);
  if (!store.orInto(keyHash.hi, keyHash.lo, out)) return ['<unknown>'];
  return segmentation.segments.filter((_s, i) => (out[i >>> 5] & (1 << (i & 31))) !== 0).map((s) => s.id);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'segbid-compile-'));
  writeFileSync(p('seg.json'), JSON.stringify(segmentation));
  writeFileSync(
    p('crm.csv'),
    [
      'crm_id,buyeruid,ifa,email_sha256,monetary,tier,tp_segments',
      'c1,b1,,e1,900,silver,6:123;6:9',
      'c2,b2,i2,,100,"platinum, inc",',
      '"c3",b3,,,"50",gold,"6:1"',
      'c4,,,,1000,gold,6:123',
      'c5,b5,,,bad,"unterminated',
    ].join('\r\n') + '\r\n',
  );
  writeFileSync(
    p('crm.ndjson'),
    ['{"crm_id":"c1","monetary":900,"tier":"silver","tp_segments":["6:123"]}', '{"crm_id":"c2","monetary":"100","tier":"platinum, inc"}', 'garbage'].join('\n'),
  );
  writeFileSync(
    p('ids.csv'),
    ['crm_id,kind,value,source', 'c1,buyeruid,B-1,', 'c1,email_sha256,E-1,', 'c2,ifa,I-2,', 'c2,eid,X-2,partner.example', 'c9,buyeruid,B-9,', 'c2,fax,123,'].join('\n') + '\n',
  );
  // Values padded with spaces, as exports with ", " separators write them.
  writeFileSync(
    p('crm-spaces.csv'),
    ['crm_id , buyeruid , ifa , email_sha256 , monetary , tier', 'c1 , b1 , , , 900 , gold', 'c2,\tb2\t,,,100," gold "', 'c3," b3 ",,,100,silver'].join('\n') + '\n',
  );
  writeFileSync(p('crm-spaces.ndjson'), '{"crm_id":"c4","buyeruid":" b4 ","monetary":900}\n');
  writeFileSync(p('crm-ids-spaces.csv'), ['crm_id,monetary', ' c1 ,900'].join('\n') + '\n');
  writeFileSync(p('ids-spaces.csv'), ['crm_id , kind , value , source', 'c1 , buyeruid , B-1 ,', 'c1,eid," X-1 ", partner.example '].join('\n') + '\n');
  // The same user key in several records.
  writeFileSync(
    p('crm-dup.csv'),
    [
      'crm_id,buyeruid,ifa,email_sha256,monetary,tier,tp_segments',
      'c1,b1,,,900,silver,6:123', // superseded: its only key comes again below
      'c2,b2,,,100,gold,',
      'c1,b1,,,100,gold,', // the user's current record
      'c5,b5,i5,,900,silver,', // b5 comes again below, i5 does not: still served (through i5)
      'c5b,b5,,,100,silver,',
      'c6,,,,900,silver,', // no key: nothing to tell it from another record
    ].join('\n') + '\n',
  );
  writeFileSync(p('crm-dup.ndjson'), ['{"crm_id":"c1","monetary":900}', '{"crm_id":"c2","monetary":100}', '{"crm_id":"c1","monetary":100}'].join('\n') + '\n');
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('compileFiles', () => {
  it('CSV with own key columns: rules, groups, third party, keys, malformed rows reported', async () => {
    const r = await compileFiles({ segments: p('seg.json'), crm: p('crm.csv'), out: p('a.store'), eidSource: 'crm.example', createdAt: '2026-01-01T00:00:00Z' });
    const store = readStore(p('a.store'));
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'b1'))).toEqual(['customers', 'big', 'auto']);
    expect(segmentsOf(store, () => hashEid('crm.example', 'e1'))).toEqual(['customers', 'big', 'auto']);
    expect(segmentsOf(store, () => hashKey(KEY_KIND.ifa, 'i2'))).toEqual(['customers', 'vip']);
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'b3'))).toEqual(['customers', 'vip']);
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'b5'))).toEqual(['<unknown>']);
    expect(r.report.users).toBe(4);
    expect(r.report.usersWithKeys).toBe(3);
    expect(r.crm.malformed).toBe(1);
    const big = r.report.segments.find((s) => s.id === 'big')!;
    expect(big.users).toBe(2);
    expect(big.activable).toBe(1);
    const text = formatReport(r.report, 2);
    expect(text).toMatch(/WARNING: segment big \(crm\): 1 activable users < --min-activation 2/);
    expect(text).not.toMatch(/WARNING: segment news/);
    expect(text).toMatch(/1 malformed CRM records skipped \(lines 6\)/);
  });

  it('an id map replaces the own key columns; NDJSON is read by extension', async () => {
    const r = await compileFiles({ segments: p('seg.json'), crm: p('crm.ndjson'), ids: p('ids.csv'), out: p('b.store'), eidSource: 'crm.example' });
    const store = readStore(p('b.store'));
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'B-1'))).toEqual(['customers', 'big', 'auto']);
    expect(segmentsOf(store, () => hashEid('crm.example', 'E-1'))).toEqual(['customers', 'big', 'auto']);
    expect(segmentsOf(store, () => hashIfa('I-2'))).toEqual(['customers', 'vip']); // a device id: stored case-folded
    expect(segmentsOf(store, () => hashEid('partner.example', 'X-2'))).toEqual(['customers', 'vip']);
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'b1'))).toEqual(['<unknown>']);
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'B-9'))).toEqual(['<unknown>']);
    expect(r.report.keys).toEqual({ buyeruid: 1, email_sha256: 1, ifa: 1, eid: 1 });
    expect(r.report.skippedKeys).toEqual({ 'id map: unknown kind "fax"': 1 });
    expect(r.crm.malformed).toBe(1);
  });

  it('hashed emails without --eid-source are skipped and counted', async () => {
    const r = await compileFiles({ segments: p('seg.json'), crm: p('crm.csv'), out: p('c.store') });
    expect(r.report.skippedKeys).toEqual({ 'email_sha256 without --eid-source': 1 });
  });

  it('CSV values padded with spaces: unquoted values and every key are trimmed, a quoted rule value is kept as given', async () => {
    const r = await compileFiles({ segments: p('seg.json'), crm: p('crm-spaces.csv'), out: p('s.store'), eidSource: 'crm.example' });
    const store = readStore(p('s.store'));
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'b1'))).toEqual(['customers', 'big', 'vip']);
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'b2'))).toEqual([]); // " gold " quoted: not "gold"
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'b3'))).toEqual([]); // a quoted key is trimmed too
    expect(r.report.keys).toEqual({ buyeruid: 3 }); // the blank ifa and email_sha256 values are no keys
  });

  it('NDJSON keys and id-map values are trimmed too', async () => {
    await compileFiles({ segments: p('seg.json'), crm: p('crm-spaces.ndjson'), out: p('t.store') });
    expect(segmentsOf(readStore(p('t.store')), () => hashKey(KEY_KIND.buyeruid, 'b4'))).toEqual(['customers', 'big']);
    const r = await compileFiles({ segments: p('seg.json'), crm: p('crm-ids-spaces.csv'), ids: p('ids-spaces.csv'), out: p('u.store') });
    const store = readStore(p('u.store'));
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'B-1'))).toEqual(['customers', 'big']);
    expect(segmentsOf(store, () => hashEid('partner.example', 'X-1'))).toEqual(['customers', 'big']);
    expect(r.report.skippedKeys).toEqual({});
  });

  it('a key in several records: the last record wins, volumes count each user once, the duplicates are reported', async () => {
    const r = await compileFiles({ segments: p('seg.json'), crm: p('crm-dup.csv'), out: p('g.store'), createdAt: '2026-01-01T00:00:00Z' });
    const store = readStore(p('g.store'));
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'b1'))).toEqual(['customers', 'vip']);
    expect(segmentsOf(store, () => hashKey(KEY_KIND.buyeruid, 'b5'))).toEqual([]);
    expect(segmentsOf(store, () => hashKey(KEY_KIND.ifa, 'i5'))).toEqual(['customers', 'big']);
    expect(r.report.duplicateKeys).toBe(2); // b1 and b5
    expect(r.report.supersededRecords).toBe(1); // the first c1
    // 6 records, the superseded one left out: c2, c1 (last), c5, c5b, c6.
    expect(r.report.users).toBe(5);
    expect(r.report.usersWithKeys).toBe(4);
    expect(r.report.usersWithThirdParty).toBe(0); // only the superseded record had 3rd-party data
    expect(r.report.keys).toEqual({ buyeruid: 3, ifa: 1 });
    const seg = (id: string) => r.report.segments.find((s) => s.id === id)!;
    expect([seg('big').users, seg('big').activable]).toEqual([2, 1]); // c5 and c6 (no key)
    expect([seg('vip').users, seg('vip').activable]).toEqual([2, 2]); // c2 and the last c1
    expect([seg('customers').users, seg('customers').activable]).toEqual([4, 3]);
    expect(seg('big').share).toBeCloseTo(2 / 5);
    expect(store.header.userCount).toBe(4);
    expect(store.header.crmUsers).toBe(5);
    const text = formatReport(r.report, 0);
    expect(text).toMatch(/CRM users 5, with a bidder key 4 /);
    expect(text).toMatch(/duplicate keys: 2 keys in more than one record \(the last record kept\); 1 record superseded by later ones, not counted/);
  });

  it('an id map: a CRM id in several records counts once, its keys are duplicates', async () => {
    const r = await compileFiles({ segments: p('seg.json'), crm: p('crm-dup.ndjson'), ids: p('ids.csv'), out: p('h.store'), eidSource: 'crm.example' });
    expect(segmentsOf(readStore(p('h.store')), () => hashKey(KEY_KIND.buyeruid, 'B-1'))).toEqual([]); // the last c1: 100
    expect(r.report.duplicateKeys).toBe(2); // c1's buyeruid and hashed email
    expect(r.report.supersededRecords).toBe(1);
    expect(r.report.users).toBe(2);
    expect(r.report.segments.find((s) => s.id === 'big')!.users).toBe(0);
  });

  it('no duplicates: nothing reported', async () => {
    const r = await compileFiles({ segments: p('seg.json'), crm: p('crm.csv'), out: p('a2.store'), eidSource: 'crm.example' });
    expect(r.report.duplicateKeys).toBe(0);
    expect(r.report.supersededRecords).toBe(0);
    expect(formatReport(r.report, 0)).not.toMatch(/duplicate/);
  });

  it('invalid segmentation and unreadable files are SegbidErrors with paths', async () => {
    writeFileSync(p('bad.json'), JSON.stringify({ segments: [{ id: 'x', name: 'x', kind: 'crm', rule: { col: 'a', gte: 'high' } }] }));
    const err = await compileFiles({ segments: p('bad.json'), crm: p('crm.csv'), out: p('d.store') }).catch((e) => e);
    expect(err).toBeInstanceOf(SegbidError);
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.details).toEqual([{ path: '/segments/0/rule/gte', message: 'must be number' }]);
    const missing = await compileFiles({ segments: p('seg.json'), crm: p('nope.csv'), out: p('d.store') }).catch((e) => e);
    expect(missing.code).toBe('CONFIG_UNREADABLE');
    const ext = await compileFiles({ segments: p('seg.json'), crm: p('seg.yaml.xyz'), out: p('d.store') }).catch((e) => e);
    expect(ext).toBeInstanceOf(SegbidError);
  });
});

describe('segbid compile (command line)', () => {
  async function run(args: string[]): Promise<{ stdout: string; stderr: string; exitCode: number | undefined }> {
    const program = new Command().exitOverride();
    registerCompileCommand(program);
    let stdout = '';
    let stderr = '';
    const out = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
    const err = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
    const before = process.exitCode;
    try {
      await program.parseAsync(['node', 'segbid', 'compile', ...args]);
      return { stdout, stderr, exitCode: process.exitCode === undefined ? undefined : Number(process.exitCode) };
    } finally {
      out.mockRestore();
      err.mockRestore();
      process.exitCode = before;
    }
  }

  it('compiles and prints the volume report', async () => {
    const r = await run(['--segments', p('seg.json'), '--crm', p('crm.csv'), '--out', p('e.store'), '--min-activation', '2', '--eid-source', 'crm.example']);
    expect(r.exitCode).toBeUndefined();
    expect(r.stdout).toMatch(/^segment\s+kind\s+bit\s+users\s+share\s+activable/);
    expect(r.stdout).toMatch(/big\s+crm\s+1\s+2\s+50\.0%\s+1/);
    expect(r.stdout).toMatch(/WARNING: segment big/);
    expect(r.stdout).toMatch(/wrote .*e\.store/);
    expect(r.stderr).toBe(''); // no progress bar off a TTY
  });

  it('prints the duplicate keys', async () => {
    const r = await run(['--segments', p('seg.json'), '--crm', p('crm-dup.csv'), '--out', p('g2.store')]);
    expect(r.exitCode).toBeUndefined();
    expect(r.stdout).toMatch(/CRM users 5,/);
    expect(r.stdout).toMatch(/duplicate keys: 2 keys in more than one record/);
  });

  it('exits 2 with the error paths on an invalid segmentation', async () => {
    const r = await run(['--segments', p('bad.json'), '--crm', p('crm.csv'), '--out', p('f.store')]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/CONFIG_INVALID[\s\S]*\/segments\/0\/rule\/gte: must be number/);
  });
});
