/**
 * Query parameters of the admin report endpoints (`/admin/kpis`, `/admin/discrepancies`) on a real bidder's
 * operations port: a bad parameter is the caller's mistake, a 400 `bad_request` whose message and details
 * name the parameter; never a 500 "internal", never a 200 with nothing in it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SegbidError } from '../src/common/errors.js';
import { discrepancyQueryFromParams, isDay, kpiQueryFromParams } from '../src/events/kpis.js';
import type { RunningBidder } from '../src/server/start.js';
import { raw } from './helpers/bidder.js';
import { startTestBidder } from './helpers/bidder.js';
import { smallConfig } from './helpers/small-config.js';

const READ = 'read-token-query-0123456789';


/** [endpoint and query, the parameter the answer must name] */
const BAD: [string, string][] = [
  ['/admin/kpis?dimension=zzz', 'dimension'],
  ['/admin/kpis?dimension=', 'dimension'],
  ['/admin/kpis?from=xx', 'from'],
  ['/admin/kpis?to=2026-13-01', 'to'],
  ['/admin/kpis?from=2026-02-30', 'from'],
  ['/admin/kpis?discrepancies=maybe', 'discrepancies'],
  ['/admin/kpis?flagged=yes', 'flagged'],
  ['/admin/discrepancies?threshold=abc&from=xx', 'threshold'],
  ['/admin/discrepancies?threshold=abc', 'threshold'],
  ['/admin/discrepancies?threshold=-0.1', 'threshold'],
  ['/admin/discrepancies?from=xx', 'from'],
  ['/admin/discrepancies?to=2026-1-1', 'to'],
  ['/admin/discrepancies?from=2026-01-01&to=yesterday', 'to'],
];

const GOOD = [
  '/admin/kpis',
  '/admin/kpis?dimension=segment&discrepancies=0',
  '/admin/kpis?dimension=line_item&from=2026-01-01&to=2026-12-31&flagged=1',
  '/admin/discrepancies',
  '/admin/discrepancies?threshold=0.05&from=2026-01-01&to=2026-01-31',
  '/admin/discrepancies?threshold=0',
];

describe('admin report queries on the operations port', () => {
  let bidder: RunningBidder;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'segbid-admin-query-'));
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify(smallConfig(), null, 2));
    bidder = await startTestBidder(path, { adminTokens: `read:bob:${READ}` });
  });

  afterAll(async () => {
    await bidder?.close();
  });

  const get = (path: string) => raw(bidder.adminPort, { method: 'GET', path, headers: { authorization: `Bearer ${READ}` } });

  it.each(BAD)('%s → 400 naming %s', async (path, param) => {
    const r = await get(path);
    expect(r.status, r.text).toBe(400);
    const body = JSON.parse(r.text) as { error: string; message: string; details: { path: string; message: string }[] };
    expect(body.error).toBe('bad_request');
    expect(body.message.startsWith(`${param}: `), body.message).toBe(true);
    expect(body.message).not.toContain('\n');
    expect(body.details).toEqual([{ path: `/query/${param}`, message: expect.any(String) }]);
  });

  it.each(GOOD)('%s → 200', async (path) => {
    const r = await get(path);
    expect(r.status, r.text).toBe(200);
  });
});

describe('report query parsers', () => {
  it('kpiQueryFromParams and discrepancyQueryFromParams throw ADMIN_BAD_REQUEST naming the parameter', () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e instanceof SegbidError ? `${e.code} ${e.details[0]?.path}` : String(e);
      }
      return 'no error';
    };
    expect(code(() => kpiQueryFromParams(new URLSearchParams('dimension=user')))).toBe('ADMIN_BAD_REQUEST /query/dimension');
    expect(code(() => kpiQueryFromParams(new URLSearchParams('to=xx')))).toBe('ADMIN_BAD_REQUEST /query/to');
    expect(code(() => discrepancyQueryFromParams(new URLSearchParams('threshold=')))).toBe('ADMIN_BAD_REQUEST /query/threshold');
    expect(code(() => discrepancyQueryFromParams(new URLSearchParams('threshold=NaN')))).toBe('ADMIN_BAD_REQUEST /query/threshold');
    expect(code(() => discrepancyQueryFromParams(new URLSearchParams('from=2026-02-29')))).toBe('ADMIN_BAD_REQUEST /query/from');
    expect(discrepancyQueryFromParams(new URLSearchParams('threshold=0.1&from=2028-02-29&to=2028-03-01'))).toEqual({ threshold: 0.1, from: '2028-02-29', to: '2028-03-01' });
    expect(kpiQueryFromParams(new URLSearchParams('discrepancies=false&flagged=true'))).toEqual({ discrepancies: false, flaggedOnly: true });
  });

  it('isDay accepts calendar days only', () => {
    expect(['2026-01-01', '2028-02-29', '1999-12-31'].map(isDay)).toEqual([true, true, true]);
    expect(['2026-02-29', '2026-13-01', '2026-00-10', '2026-1-1', 'xx', '', '2026-01-01T00:00:00Z'].map(isDay)).toEqual([false, false, false, false, false, false, false]);
  });
});
