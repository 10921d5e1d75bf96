/**
 * The config manager through the admin API (in process, no HTTP): validation errors by path, dry-run diffs,
 * replace / patch / rollback / versions, the audit log (memory and NDJSON file), persistence, the request
 * rules (413, 400, 404, 405, 412) and the safety rules (whitelisted patch fields, confined file paths, an
 * invalid change leaves the running config untouched).
 */
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, mkdirSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { AdminAuth } from '../src/admin/auth.js';
import { AdminApi, type AdminResponse } from '../src/admin/admin-api.js';
import { AuditLog } from '../src/admin/audit-log.js';
import { ConfigManager, campaignsInSchema, type ConfigManagerOptions } from '../src/admin/config-manager.js';
import { diffConfigs, summarizeDiff } from '../src/admin/config-diff.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { deciderFromDocument, loadDecider } from '../src/bidding/load-decider.js';
import { Metrics } from '../src/metrics/metrics.js';
import { DEMO_DIR } from '../src/common/paths.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';

/* Config documents are plain JSON here; the tests edit them freely. */
type Doc = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const READ = 'read-token-0123456789abcdef';
const WRITE = 'write-token-fedcba9876543210';
const R = { authorization: `Bearer ${READ}` };
const W = { authorization: `Bearer ${WRITE}` };

const tmpRoot = mkdtempSync(join(tmpdir(), 'segbid-admin-config-'));
let tmpCount = 0;
function freshDir(): string {
  const dir = join(tmpRoot, String(++tmpCount));
  mkdirSync(dir);
  return dir;
}

/** Three banner sizes, one line item per size plus a catch-all; no segment store (every user unknown). */
function testConfig(cpm = 1): Doc {
  const banner = (id: string, w: number, h: number) => ({
    id,
    format: 'banner',
    w,
    h,
    adomain: ['shop.example'],
    adm: `<img src="https://cdn.shop.example/${id}.png">`,
  });
  return {
    version: 1,
    bidder: { currency: 'USD', rates: { USD: 1 }, eventBaseUrl: 'https://ev.segbid.test', defaultTmaxMs: 200, minTmaxMs: 10 },
    segmentation: {
      segments: [
        { id: 'customers', name: 'Customers', kind: 'group' },
        { id: 'loyal', name: 'Loyal', parent: 'customers', kind: 'crm', rule: { col: 'tier', eq: 'x' } },
      ],
    },
    segmentStore: null,
    creatives: [banner('cr-300x250', 300, 250), banner('cr-728x90', 728, 90), banner('cr-320x50', 320, 50)],
    lineItems: [
      { id: 'li-a', bid: { cpm }, creatives: ['cr-300x250'] },
      { id: 'li-b', bid: { cpm }, creatives: ['cr-728x90'] },
      { id: 'li-c', bid: { cpm }, creatives: ['cr-320x50'] },
      { id: 'li-d', targeting: { none: ['loyal'] }, bid: { cpm }, creatives: ['cr-300x250', 'cr-728x90', 'cr-320x50'] },
    ],
  };
}

const REQUEST = JSON.stringify({
  id: 'req-1',
  imp: [
    { id: '1', banner: { w: 300, h: 250 } },
    { id: '2', banner: { w: 728, h: 90 } },
    { id: '3', banner: { w: 320, h: 50 } },
  ],
  site: { id: 'site-1', domain: 'news.example', page: 'https://news.example/a', publisher: { id: 'pub-1' } },
  device: { devicetype: 2, ua: 'Mozilla/5.0', ip: '192.0.2.10', geo: { country: 'FRA' } },
  tmax: 150,
  cur: ['USD'],
});

interface Setup {
  api: AdminApi;
  manager: ConfigManager;
  handler: BidHandler;
  audit: AuditLog;
}

function setup(options: Partial<ConfigManagerOptions> & { doc?: Doc; baseDir?: string } = {}): Setup {
  const doc = options.doc ?? testConfig();
  const baseDir = options.baseDir ?? freshDir();
  const handler = new BidHandler(deciderFromDocument(doc, baseDir, 'test'), new Metrics({ defaultMetrics: false }));
  const audit = options.audit ?? new AuditLog();
  const manager = new ConfigManager({ source: 'test', ...options, target: handler, document: doc, baseDir, audit });
  const auth = new AdminAuth([
    { role: 'read', name: 'bob', token: READ },
    { role: 'write', name: 'alice', token: WRITE },
  ]);
  return { api: new AdminApi({ auth, manager }), manager, handler, audit };
}

function call(api: AdminApi, method: string, path: string, headers: Record<string, string>, body?: unknown): AdminResponse & { json: Doc } {
  const res = api.handle({ method, path, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  return { ...res, json: res.body === '' ? null : JSON.parse(res.body) };
}

function prices(handler: BidHandler): number[] {
  const r = handler.handle(REQUEST);
  if (r.status !== 200) return [];
  return (JSON.parse(r.body).seatbid as { bid: { price: number }[] }[]).flatMap((s) => s.bid.map((b) => b.price));
}

describe('GET /admin/config', () => {
  it('returns the running document as written, with its version as ETag', () => {
    const { api } = setup();
    const r = call(api, 'GET', '/admin/config', R);
    expect(r.status).toBe(200);
    expect(r.json).toEqual(testConfig());
    expect(r.headers.etag).toBe('"v1"');
    expect(r.headers['content-type']).toMatch(/^application\/json/);
  });
});

describe('validation', () => {
  it('reports every schema error by JSON-pointer path, and changes nothing', () => {
    const { api, handler } = setup();
    const before = handler.current;
    const doc = testConfig();
    doc.lineItems[0].bid.cpm = -1;
    doc.lineItems[2].colour = 'red';
    doc.creatives[1].format = 'hologram';
    const r = call(api, 'POST', '/admin/config/validate', R, doc);
    expect(r.status).toBe(200);
    expect(r.json.ok).toBe(false);
    const paths = r.json.errors.map((e: { path: string }) => e.path);
    expect(paths).toContain('/lineItems/0/bid/cpm');
    expect(paths).toContain('/lineItems/2');
    expect(paths).toContain('/creatives/1/format');
    expect(r.json.errors.find((e: { path: string }) => e.path === '/lineItems/2').message).toContain('colour');
    expect(handler.current).toBe(before);
  });

  it('reports cross-reference errors of the compiler by path', () => {
    const { manager } = setup();
    const doc = testConfig();
    doc.lineItems[1].creatives = ['cr-nope'];
    doc.lineItems[3].targeting = 'no-such-segment';
    const v = manager.validate(doc);
    expect(v.ok).toBe(false);
    expect(v.errors.map((e) => e.path).sort()).toEqual(['/lineItems/1/creatives/0', '/lineItems/3/targeting']);
  });

  it('accepts a valid document', () => {
    const { api } = setup();
    expect(call(api, 'POST', '/admin/config/validate', R, testConfig(3)).json).toEqual({ ok: true, errors: [] });
  });

  it('reports errors inside a segmentation file under /segmentation, naming the file', () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'seg.json'), JSON.stringify({ segments: [{ id: 'loyal', name: 'Loyal', kind: 'crm', rule: { col: 'tier', eq: 'x' } }] }));
    writeFileSync(join(dir, 'bad-seg.json'), JSON.stringify({ segments: [{ id: 'loyal', name: 'Loyal', kind: 'telepathy' }] }));
    const doc = testConfig();
    doc.segmentation = 'seg.json';
    doc.lineItems[3].targeting = 'loyal';
    const { manager } = setup({ doc, baseDir: dir });
    const bad = { ...doc, segmentation: 'bad-seg.json' };
    const v = manager.validate(bad);
    expect(v.ok).toBe(false);
    expect(v.errors[0].path).toBe('/segmentation');
    expect(v.errors[0].message).toContain('bad-seg.json /segments/0/kind');
  });

  it('refuses file paths outside the allowed directories (no reading arbitrary files)', () => {
    const { api, handler } = setup();
    const before = handler.current;
    const doc = testConfig();
    doc.segmentStore = '/etc/passwd';
    doc.segmentation = '../../../../etc/hostname';
    const r = call(api, 'PUT', '/admin/config', W, doc);
    expect(r.status).toBe(422);
    expect(r.json.error).toBe('config_rejected');
    expect(r.json.details.map((d: { path: string }) => d.path).sort()).toEqual(['/segmentStore', '/segmentation']);
    expect(JSON.stringify(r.json)).not.toContain('root:');
    expect(handler.current).toBe(before);
  });
});

describe('dry run', () => {
  it('diffs collections by id and the rest by JSON pointer, without applying anything', () => {
    const { api, handler, manager } = setup();
    const before = handler.current;
    const doc = testConfig();
    doc.lineItems[0].bid.cpm = 2.5; // li-a changed
    doc.lineItems[1].active = false; // li-b changed (field added)
    doc.lineItems.splice(2, 1); // li-c removed
    doc.lineItems.push({ id: 'li-e', bid: { cpm: 1 }, creatives: ['cr-728x90'] }); // added
    doc.creatives[0].adomain = ['other.example'];
    doc.segmentation.segments.push({ id: 'at-risk', name: 'At risk', parent: 'customers', kind: 'crm', rule: { col: 'tier', eq: 'x' } });
    doc.bidder.defaultTmaxMs = 300;
    delete doc.bidder.minTmaxMs;

    const r = call(api, 'POST', '/admin/config/dry-run', R, doc);
    expect(r.status).toBe(200);
    expect(r.json.ok).toBe(true);
    expect(r.json.baseVersion).toBe(1);
    const c = r.json.diff.collections;
    expect(c['/lineItems'].added).toEqual(['li-e']);
    expect(c['/lineItems'].removed).toEqual(['li-c']);
    expect(c['/lineItems'].changed).toEqual([
      { id: 'li-a', changes: [{ path: '/bid/cpm', op: 'replace', before: 1, after: 2.5 }] },
      { id: 'li-b', changes: [{ path: '/active', op: 'add', after: false }] },
    ]);
    expect(c['/lineItems'].reordered).toBe(false);
    expect(c['/creatives'].changed).toEqual([
      { id: 'cr-300x250', changes: [{ path: '/adomain', op: 'replace', before: ['shop.example'], after: ['other.example'] }] },
    ]);
    expect(c['/segmentation/segments'].added).toEqual(['at-risk']);
    expect(r.json.diff.changes).toEqual([
      { path: '/bidder/defaultTmaxMs', op: 'replace', before: 200, after: 300 },
      { path: '/bidder/minTmaxMs', op: 'remove', before: 10 },
    ]);
    expect(r.json.summary).toContain('/lineItems: added li-e; removed li-c; changed li-a (/bid/cpm 1 -> 2.5)');
    expect(handler.current).toBe(before);
    expect(manager.currentVersion.id).toBe(1);
  });

  it('reports a reordering (segment bits follow declaration order) and an invalid document', () => {
    const { manager } = setup();
    const doc = testConfig();
    doc.segmentation.segments.reverse();
    doc.lineItems[0].bid = { cpm: 'free' };
    const r = manager.dryRun(doc);
    expect(r.diff.collections['/segmentation/segments'].reordered).toBe(true);
    expect(r.ok).toBe(false);
    expect(r.errors.map((e) => e.path)).toContain('/lineItems/0/bid/cpm');
  });

  it('an identical document is "no change"', () => {
    const d = diffConfigs(testConfig(), testConfig());
    expect(d.identical).toBe(true);
    expect(summarizeDiff(d)).toBe('no change');
  });
});

describe('replace, patch, versions, rollback, audit', () => {
  let s: Setup;
  beforeEach(() => {
    s = setup();
  });

  it('PUT replaces the running config: new Decider swapped in, new version, audit entry', () => {
    expect(prices(s.handler)).toEqual([1, 1, 1]);
    const r = call(s.api, 'PUT', '/admin/config', W, testConfig(2));
    expect(r.status).toBe(200);
    expect(r.json.changed).toBe(true);
    expect(r.json.version).toMatchObject({ id: 2, author: 'write:alice', action: 'replace' });
    expect(r.headers.etag).toBe('"v2"');
    expect(prices(s.handler)).toEqual([2, 2, 2]);
    expect(call(s.api, 'GET', '/admin/config', R).json).toEqual(testConfig(2));
    const audit = call(s.api, 'GET', '/admin/audit', R).json.entries;
    expect(audit[0]).toMatchObject({ author: 'write:alice', action: 'replace', target: 'config', result: 'accepted', versionId: 2 });
    expect(audit[0].summary).toContain('li-a (/bid/cpm 1 -> 2)');
    expect(audit[1]).toMatchObject({ author: 'system:startup', action: 'startup', versionId: 1 });
  });

  it('an invalid PUT is 422 with every error by path; the running config, versions and document stay', () => {
    const before = s.handler.current;
    const doc = testConfig(5);
    doc.lineItems[0].creatives = ['cr-missing'];
    doc.lineItems[1].bid.cpm = 5000;
    const r = call(s.api, 'PUT', '/admin/config', W, doc);
    expect(r.status).toBe(422);
    expect(r.json.error).toBe('config_rejected');
    // Every mistake at once: the schema's, then the cross-references found on the rest (compileDocument).
    expect(r.json.details.map((d: { path: string }) => d.path)).toEqual(['/lineItems/1/bid/cpm', '/lineItems/0/creatives/0']);
    expect(s.handler.current).toBe(before);
    expect(prices(s.handler)).toEqual([1, 1, 1]);
    expect(s.manager.currentVersion.id).toBe(1);
    expect(s.manager.versions()).toHaveLength(1);
    const audit = call(s.api, 'GET', '/admin/audit?limit=1', R).json.entries;
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ author: 'write:alice', action: 'replace', result: 'rejected', errorCount: 2, versionId: 1 });
    expect(audit[0].errors[0].path).toBe('/lineItems/1/bid/cpm');
  });

  it('the same document again is accepted as "no change": no new version', () => {
    const r = call(s.api, 'PUT', '/admin/config', W, testConfig());
    expect(r.status).toBe(200);
    expect(r.json.changed).toBe(false);
    expect(s.manager.versions()).toHaveLength(1);
  });

  it('PATCH a line item: pause, resume, CPM', () => {
    let r = call(s.api, 'PATCH', '/admin/line-items/li-a', W, { active: false });
    expect(r.status).toBe(200);
    expect(r.json.version.summary).toBe('/lineItems: changed li-a (/active added)');
    expect(s.handler.current.config.lineItems.find((li) => li.id === 'li-a')!.active).toBe(false);
    r = call(s.api, 'PATCH', '/admin/line-items/li-a', W, { active: true, bid: { cpm: 7 } });
    expect(r.status).toBe(200);
    const li = s.handler.current.config.lineItems.find((x) => x.id === 'li-a')!;
    expect(li.active).toBe(true);
    expect(li.bidMicros).toBe(7_000_000);
    expect(prices(s.handler)).toEqual([7, 1, 1]);
    expect(r.json.diff.collections['/lineItems'].changed[0]).toEqual({
      id: 'li-a',
      changes: [
        { path: '/bid/cpm', op: 'replace', before: 1, after: 7 },
        { path: '/active', op: 'replace', before: false, after: true }, // `active` was added after `bid`
      ],
    });
    // null removes a field (merge patch): priority back to its default
    call(s.api, 'PATCH', '/admin/line-items/li-b', W, { priority: 5 });
    expect((s.manager.document() as Doc).lineItems[1]).toMatchObject({ id: 'li-b', priority: 5 });
    call(s.api, 'PATCH', '/admin/line-items/li-b', W, { priority: null });
    expect((s.manager.document() as Doc).lineItems[1]).not.toHaveProperty('priority');
  });

  it('PATCH outside the whitelist is 400 with the path of each forbidden field; nothing changes', () => {
    const before = s.handler.current;
    const r = call(s.api, 'PATCH', '/admin/line-items/li-a', W, { targeting: 'loyal', bid: { cpm: 3, floor: 1 }, active: false });
    expect(r.status).toBe(400);
    expect(r.json.error).toBe('patch_field_not_allowed');
    expect(r.json.details.map((d: { path: string }) => d.path)).toEqual(['/targeting', '/bid/floor']);
    expect(s.handler.current).toBe(before);
    expect(call(s.api, 'PATCH', '/admin/line-items/li-a', W, { bid: null }).json.details[0].path).toBe('/bid');
    expect(call(s.api, 'PATCH', '/admin/line-items/li-a', W, [1, 2]).status).toBe(400);
  });

  it('PATCH with an invalid value is 422 by document path; unknown id is 404', () => {
    const r = call(s.api, 'PATCH', '/admin/line-items/li-c', W, { bid: { cpm: 0 } });
    expect(r.status).toBe(422);
    expect(r.json.details.map((d: { path: string }) => d.path)).toEqual(['/lineItems/2/bid/cpm']);
    const nf = call(s.api, 'PATCH', '/admin/line-items/li-zzz', W, { active: false });
    expect(nf.status).toBe(404);
    expect(nf.json.details[0]).toEqual({ path: '/lineItems', message: 'unknown line item "li-zzz"' });
    // ids are percent-decoded
    expect(call(s.api, 'PATCH', '/admin/line-items/li%2Da', W, { active: false }).status).toBe(200);
  });

  it('PATCH an unknown campaign is 404 (with or without campaigns in the schema)', () => {
    const r = call(s.api, 'PATCH', '/admin/campaigns/camp-1', W, { paused: true });
    expect(r.status).toBe(404);
    if (!campaignsInSchema()) expect(r.json.details[0].message).toContain('no campaigns');
  });

  it('versions are listed newest first; rollback makes a past version run again as a new version', () => {
    call(s.api, 'PUT', '/admin/config', W, testConfig(2));
    call(s.api, 'PATCH', '/admin/line-items/li-b', W, { bid: { cpm: 3 } });
    expect(prices(s.handler)).toEqual([2, 3, 2]);
    const list = call(s.api, 'GET', '/admin/config/versions', R).json;
    expect(list.current).toBe(3);
    expect(list.versions.map((v: { id: number; action: string }) => [v.id, v.action])).toEqual([
      [3, 'patch_line_item'],
      [2, 'replace'],
      [1, 'startup'],
    ]);
    expect(list.versions[0].author).toBe('write:alice');
    expect(list.versions[0]).not.toHaveProperty('document');

    const r = call(s.api, 'POST', '/admin/config/rollback/1', W);
    expect(r.status).toBe(200);
    expect(r.json.version).toMatchObject({ id: 4, action: 'rollback' });
    expect(r.json.version.summary).toMatch(/^rollback to v1: /);
    expect(prices(s.handler)).toEqual([1, 1, 1]);
    expect(call(s.api, 'GET', '/admin/config', R).json).toEqual(testConfig());
    expect(call(s.api, 'POST', '/admin/config/rollback/99', W).status).toBe(404);
    expect(call(s.api, 'POST', '/admin/config/rollback/abc', W).status).toBe(400);
    const audit = call(s.api, 'GET', '/admin/audit', R).json.entries;
    expect(audit.slice(0, 2).map((e: { action: string; result: string }) => `${e.action}:${e.result}`)).toEqual([
      'rollback:rejected',
      'rollback:accepted',
    ]);
  });

  it('If-Match: a change made on a stale version is 412 and not applied', () => {
    const etag = call(s.api, 'GET', '/admin/config', R).headers.etag;
    call(s.api, 'PATCH', '/admin/line-items/li-a', W, { bid: { cpm: 2 } }); // someone else, meanwhile
    const stale = call(s.api, 'PUT', '/admin/config', { ...W, 'if-match': etag }, testConfig(9));
    expect(stale.status).toBe(412);
    expect(stale.json.error).toBe('version_conflict');
    expect(prices(s.handler)).toEqual([2, 1, 1]);
    const fresh = call(s.api, 'PUT', '/admin/config', { ...W, 'if-match': '"v2"' }, testConfig(9));
    expect(fresh.status).toBe(200);
    expect(call(s.api, 'PUT', '/admin/config', { ...W, 'if-match': 'garbage' }, testConfig(9)).status).toBe(400);
  });

  it('POST /admin/segments/reload re-reads the store without a new version', () => {
    const r = call(s.api, 'POST', '/admin/segments/reload', W);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({ version: { id: 1 }, storePath: null, storeUsers: 0 });
    expect(call(s.api, 'GET', '/admin/audit?limit=1', R).json.entries[0]).toMatchObject({ action: 'reload_store', result: 'accepted', author: 'write:alice' });
  });

  it('history is bounded; a version that fell off cannot be rolled back to', () => {
    const b = setup({ historySize: 3 });
    for (let v = 2; v <= 6; v++) call(b.api, 'PUT', '/admin/config', W, testConfig(v));
    expect(b.manager.versions().map((v) => v.id)).toEqual([6, 5, 4]);
    expect(call(b.api, 'POST', '/admin/config/rollback/2', W).status).toBe(404);
    expect(call(b.api, 'POST', '/admin/config/rollback/4', W).status).toBe(200);
  });
});

describe('request handling', () => {
  const { api } = setup();

  it('malformed JSON → 400, empty body → 400', () => {
    const r = call(api, 'PUT', '/admin/config', W, '{"version": 1,');
    expect(r.status).toBe(400);
    expect(r.json.error).toBe('invalid_json');
    expect(r.json.details[0].path).toBe('');
    expect(call(api, 'POST', '/admin/config/validate', R, '').status).toBe(400);
  });

  it('a body over the cap → 413', () => {
    const small = setup();
    const capped = new AdminApi({
      auth: new AdminAuth([{ role: 'write', token: WRITE }]),
      manager: small.manager,
      maxBodyBytes: 1024,
    });
    const big = JSON.stringify({ ...testConfig(), pad: 'x'.repeat(2000) });
    expect(capped.handle({ method: 'PUT', path: '/admin/config', headers: W, body: big }).status).toBe(413);
    expect(capped.handle({ method: 'PUT', path: '/admin/config', headers: W, body: Buffer.from(big) }).status).toBe(413);
    // the default cap is 4 MiB
    const huge = '{"pad":"' + 'x'.repeat(4 * 1024 * 1024) + '"}';
    expect(call(api, 'POST', '/admin/config/validate', R, huge).status).toBe(413);
  });

  it('unknown path → 404, wrong method → 405 with Allow, not /admin → 404', () => {
    expect(call(api, 'GET', '/admin/what', R).status).toBe(404);
    const r = call(api, 'DELETE', '/admin/config', W);
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('GET, PUT');
    expect(r.json.error).toBe('method_not_allowed');
    expect(call(api, 'GET', '/metrics', R).status).toBe(404);
    expect(call(api, 'GET', '/administrator', R).status).toBe(404);
  });

  it('accepts Buffer bodies and a trailing slash', () => {
    const r = api.handle({ method: 'POST', path: '/admin/config/validate/', headers: R, body: Buffer.from(JSON.stringify(testConfig())) });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body).ok).toBe(true);
  });

  it('audit limit is validated', () => {
    expect(call(api, 'GET', '/admin/audit?limit=0', R).status).toBe(400);
    expect(call(api, 'GET', '/admin/audit?limit=2', R).status).toBe(200);
  });
});

describe('audit log file', () => {
  it('appends one NDJSON line per attempt, accepted or rejected, without tokens or documents', () => {
    const dir = freshDir();
    const path = join(dir, 'audit', 'admin.ndjson');
    const s = setup({ audit: new AuditLog({ path }) });
    call(s.api, 'PATCH', '/admin/line-items/li-a', W, { bid: { cpm: 4 } });
    call(s.api, 'PATCH', '/admin/line-items/li-a', W, { bid: { cpm: -4 } });
    call(s.api, 'PATCH', '/admin/line-items/li-a', R, { bid: { cpm: 5 } });
    const text = readFileSync(path, 'utf8');
    expect(text).not.toContain(READ);
    expect(text).not.toContain(WRITE);
    expect(text).not.toContain('cdn.shop.example'); // no document content
    const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.action, l.author, l.result, l.versionId])).toEqual([
      ['startup', 'system:startup', 'accepted', 1],
      ['patch_line_item', 'write:alice', 'accepted', 2],
      ['patch_line_item', 'write:alice', 'rejected', 2],
      ['patch_line_item', 'read:bob', 'rejected', 2],
    ]);
    expect(lines[2].errorCount).toBe(1);
    for (const l of lines) expect(Date.parse(l.time)).not.toBeNaN();
    // a new AuditLog on the same file appends (never truncates)
    const again = new AuditLog({ path });
    again.record({ time: new Date().toISOString(), author: 'system:test', action: 'reload_file', target: 'config', result: 'accepted', summary: 'x', versionId: 2 });
    expect(readFileSync(path, 'utf8').trimEnd().split('\n')).toHaveLength(5);
  });

  it('a failed write does not fail the change; it is counted', () => {
    const dir = freshDir();
    const audit = new AuditLog({ path: dir }); // a directory: appends fail
    const s = setup({ audit });
    expect(call(s.api, 'PATCH', '/admin/line-items/li-a', W, { bid: { cpm: 4 } }).status).toBe(200);
    expect(audit.writeErrors).toBeGreaterThan(0);
    expect(call(s.api, 'GET', '/admin/audit', R).json.writeErrors).toBe(audit.writeErrors);
  });
});

describe('persistence and files', () => {
  it('persist: the accepted document is written to the config file (tmp + rename), a rejected one is not', () => {
    const dir = freshDir();
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify(testConfig()));
    const handler = new BidHandler(loadDecider(path), new Metrics({ defaultMetrics: false }));
    const manager = ConfigManager.fromFile(path, { target: handler, persist: true });
    const api = new AdminApi({ auth: new AdminAuth([{ role: 'write', token: WRITE }]), manager });
    expect(call(api, 'PATCH', '/admin/line-items/li-c', W, { bid: { cpm: 6 } }).status).toBe(200);
    const written = JSON.parse(readFileSync(path, 'utf8'));
    expect(written.lineItems[2].bid.cpm).toBe(6);
    expect(call(api, 'PATCH', '/admin/line-items/li-c', W, { bid: { cpm: -6 } }).status).toBe(422);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual(written);
    expect(readdirSync(dir)).toEqual(['config.json']); // no tmp file left behind
    // a restart keeps the change
    expect(loadDecider(path).config.lineItems[2].bidMicros).toBe(6_000_000);
  });

  it('a persist failure rejects the change (500) and leaves the running config', () => {
    const dir = freshDir();
    const path = join(dir, 'config-as-directory');
    mkdirSync(path); // renaming a file over a directory fails
    const s = setup({ baseDir: dir, configPath: path, persist: true });
    const before = s.handler.current;
    const r = call(s.api, 'PUT', '/admin/config', W, testConfig(2));
    expect(r.status).toBe(500);
    expect(r.json.error).toBe('persist_failed');
    expect(s.handler.current).toBe(before);
    expect(s.manager.currentVersion.id).toBe(1);
    expect(readdirSync(dir)).toEqual(['config-as-directory']);
  });

  it('keeps the running segment store across document changes; /admin/segments/reload re-reads it', () => {
    ensureDemoStore();
    const dir = freshDir();
    for (const f of ['config.json', 'segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(dir, f));
    const path = join(dir, 'config.json');
    const handler = new BidHandler(loadDecider(path), new Metrics({ defaultMetrics: false }));
    const manager = ConfigManager.fromFile(path, { target: handler });
    const store = handler.current.store;
    expect(store.header.userCount).toBeGreaterThan(0);
    const doc = manager.document() as Doc;
    doc.lineItems[0].bid.cpm = 9;
    manager.replace(doc, { role: 'write', name: 'alice' });
    expect(handler.current.config.lineItems[0].bidMicros).toBe(9_000_000);
    expect(handler.current.store).toBe(store); // not re-read for a CPM change
    manager.reloadStore({ role: 'write', name: 'alice' });
    expect(handler.current.store === store).toBe(false); // (not .not.toBe: its message deep-compares the typed arrays, for seconds)
    expect(handler.current.store.header.userCount).toBe(store.header.userCount);
    expect(handler.current.config.lineItems[0].bidMicros).toBe(9_000_000); // the document stays
  });

  it('adopts the decider its target already serves (the bidder start-up): no second build, no swap', () => {
    const dir = freshDir();
    const path = join(dir, 'config.json');
    const document = testConfig(3);
    const serving = deciderFromDocument(document, dir, path);
    const handler = new BidHandler(serving, new Metrics({ defaultMetrics: false }));
    let swaps = 0;
    handler.swapObservers.push({ beforeSwap: () => swaps++, afterSwap: () => {} });
    const manager = new ConfigManager({ target: handler, document, baseDir: dir, source: path, configPath: path, serving });
    expect(swaps).toBe(0);
    expect(handler.current === serving).toBe(true);
    expect(manager.currentVersion).toMatchObject({ id: 1, action: 'startup' });
    expect(manager.document()).toEqual(document);
    // Later changes swap as usual.
    const doc = manager.document() as Doc;
    doc.lineItems[0].bid.cpm = 5;
    manager.replace(doc, { role: 'write', name: 'alice' });
    expect(swaps).toBe(1);
    expect(handler.current.config.lineItems[0].bidMicros).toBe(5_000_000);
    // Without `serving`, the manager builds the document and swaps it in.
    new ConfigManager({ target: handler, document, baseDir: dir, source: path, configPath: path });
    expect(swaps).toBe(2);
    // A decider the target does not serve is refused.
    const other = deciderFromDocument(document, dir, path);
    expect(() => new ConfigManager({ target: handler, document, baseDir: dir, source: path, configPath: path, serving: other })).toThrow(/not the one its target serves/);
  });

  it('reloadFile (SIGHUP) makes the file the running document, as a new version', () => {
    const dir = freshDir();
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify(testConfig()));
    const handler = new BidHandler(loadDecider(path), new Metrics({ defaultMetrics: false }));
    const manager = ConfigManager.fromFile(path, { target: handler });
    writeFileSync(path, JSON.stringify(testConfig(4)));
    const r = manager.reloadFile({ role: 'system', name: 'SIGHUP' });
    expect(r.version).toMatchObject({ id: 2, action: 'reload_file', author: 'system:SIGHUP' });
    expect(prices(handler)).toEqual([4, 4, 4]);
    writeFileSync(path, '{ broken');
    expect(() => manager.reloadFile({ role: 'system', name: 'SIGHUP' })).toThrow();
    expect(prices(handler)).toEqual([4, 4, 4]);
    expect(manager.audit.tail(1)[0]).toMatchObject({ action: 'reload_file', result: 'rejected' });
  });
});

describe('error paths: a change refused by PUT names the same paths validate does', () => {
  it('for a segmentation file with an unknown parent: once, at its path in the file, in both', () => {
    const dir = freshDir();
    const seg = { segments: [{ id: 'a', name: 'A', kind: 'crm', rule: { col: 'tier', eq: 'x' } }, { id: 'b', name: 'B', kind: 'crm', parent: 'ghost', rule: { col: 'tier', eq: 'y' } }] };
    writeFileSync(join(dir, 'seg.json'), JSON.stringify(seg));
    const good = {
      version: 1,
      bidder: { currency: 'USD', rates: { USD: 1 }, eventBaseUrl: 'https://ev.segbid.test', defaultTmaxMs: 200, minTmaxMs: 10 },
      segmentation: { segments: [{ id: 'a', name: 'A', kind: 'crm', rule: { col: 'tier', eq: 'x' } }] },
      segmentStore: null,
      creatives: [{ id: 'c', format: 'banner', w: 300, h: 250, adomain: ['shop.example'], adm: '<img>' }],
      lineItems: [{ id: 'li', bid: { cpm: 1 }, creatives: ['c'] }],
    };
    const handler = new BidHandler(deciderFromDocument(good, dir, 'paths'), new Metrics({ defaultMetrics: false }));
    const manager = new ConfigManager({ target: handler, document: good, baseDir: dir, source: 'paths', serving: handler.current });
    const bad = { ...good, segmentation: 'seg.json' };
    const validated = manager.validate(bad);
    expect(validated.ok).toBe(false);
    let refused: { path: string; message: string }[] = [];
    try {
      manager.replace(bad, { role: 'write', name: 'alice' });
    } catch (e) {
      refused = (e as { details: { path: string; message: string }[] }).details;
    }
    expect(refused).toEqual(validated.errors);
    expect(refused).toHaveLength(1);
    expect(refused[0]).toEqual({ path: '/segmentation(seg.json)/segments/1/parent', message: 'unknown parent segment "ghost"' });
  });
});
