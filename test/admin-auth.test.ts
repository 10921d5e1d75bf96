/**
 * Admin API authentication: bearer tokens with two roles, SHA-256 digests compared in constant time, closed
 * by default, tokens never logged. Through AdminAuth directly and through AdminApi.handle (status, headers).
 */
import crypto from 'node:crypto';
import { describe, expect, it, vi, afterEach } from 'vitest';
import { pino } from 'pino';
import { AdminAuth, parseTokenSpec, type AdminLogger } from '../src/admin/auth.js';
import { AdminApi } from '../src/admin/admin-api.js';
import { ConfigManager } from '../src/admin/config-manager.js';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { deciderFromDocument } from '../src/bidding/load-decider.js';
import { Metrics } from '../src/metrics/metrics.js';
import { SegbidError } from '../src/common/errors.js';

const READ = 'read-token-0123456789abcdef';
const WRITE = 'write-token-fedcba9876543210';

/* A logger that keeps every call, to check what is (not) logged. */
function recordingLogger(): AdminLogger & { lines: string[] } {
  const lines: string[] = [];
  const rec = (level: string) => (obj: object, msg: string) => lines.push(`${level} ${msg} ${JSON.stringify(obj)}`);
  return { lines, info: rec('info'), warn: rec('warn'), error: rec('error') };
}

function smallConfig(): unknown {
  return {
    version: 1,
    segmentation: { segments: [{ id: 'loyal', name: 'Loyal', kind: 'crm', rule: { col: 'tier', eq: 'x' } }] },
    segmentStore: null,
    creatives: [{ id: 'cr-1', format: 'banner', w: 300, h: 250, adomain: ['shop.example'], adm: '<img src="https://cdn.shop.example/a.png">' }],
    lineItems: [{ id: 'li-1', bid: { cpm: 1 }, creatives: ['cr-1'] }],
  };
}

function api(auth: AdminAuth): AdminApi {
  const doc = smallConfig();
  const handler = new BidHandler(deciderFromDocument(doc, '/nonexistent', 'test'), new Metrics({ defaultMetrics: false }));
  const manager = new ConfigManager({ target: handler, document: doc, baseDir: '/nonexistent', source: 'test' });
  return new AdminApi({ auth, manager });
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('token spec', () => {
  it('parses role:token and role:name:token, comma or newline separated, with comments', () => {
    const entries = parseTokenSpec(`read:${READ}, write:alice:${WRITE}\n# a comment\n`);
    expect(entries).toEqual([
      { role: 'read', token: READ },
      { role: 'write', name: 'alice', token: WRITE },
    ]);
  });

  it('rejects bad entries by position and never echoes the token', () => {
    const secret = 'short';
    const other = 'x'.repeat(20);
    let error: unknown;
    try {
      parseTokenSpec(`read:${secret},admin:${other},write:bad name:${other},nocolon`);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SegbidError);
    const err = error as SegbidError;
    expect(err.code).toBe('ADMIN_TOKENS_INVALID');
    expect(err.details.map((d) => d.path)).toEqual([
      'SEGBID_ADMIN_TOKENS[0]',
      'SEGBID_ADMIN_TOKENS[1]',
      'SEGBID_ADMIN_TOKENS[2]',
      'SEGBID_ADMIN_TOKENS[3]',
    ]);
    expect(err.message).not.toContain(other);
    expect(err.message).not.toContain(`:${secret}`);
  });

  it('refuses the same token under two roles', () => {
    expect(() => new AdminAuth([{ role: 'read', token: READ }, { role: 'write', token: READ }])).toThrow(/the same token appears twice/);
  });

  it('reads SEGBID_ADMIN_TOKENS from the environment', () => {
    const auth = AdminAuth.fromEnv({ SEGBID_ADMIN_TOKENS: `write:alice:${WRITE}` });
    const r = auth.check({ authorization: `Bearer ${WRITE}` }, 'write');
    expect(r).toEqual({ ok: true, principal: { role: 'write', name: 'alice' } });
  });
});

describe('AdminAuth.check', () => {
  const auth = new AdminAuth([
    { role: 'read', name: 'bob', token: READ },
    { role: 'write', name: 'alice', token: WRITE },
  ]);

  it('no token → 401 with a Bearer challenge', () => {
    const r = auth.check({}, 'read');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toMatch(/^Bearer realm="segbid-admin"$/);
  });

  it('a non-Bearer scheme → 401', () => {
    const basic = Buffer.from(`x:${WRITE}`).toString('base64');
    const r = auth.check({ authorization: `Basic ${basic}` }, 'read');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.status).toBe(401);
  });

  it('wrong token → 401 invalid_token', () => {
    const r = auth.check({ authorization: `Bearer ${WRITE}x` }, 'read');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toContain('error="invalid_token"');
  });

  it('read token on a write endpoint → 403; on a read endpoint → ok', () => {
    const w = auth.check({ authorization: `Bearer ${READ}` }, 'write');
    expect(w.ok).toBe(false);
    if (!w.ok) expect(w.status).toBe(403);
    expect(auth.check({ Authorization: `bearer ${READ}` }, 'read')).toEqual({ ok: true, principal: { role: 'read', name: 'bob' } });
  });

  it('write token may read and write', () => {
    expect(auth.check({ authorization: `Bearer ${WRITE}` }, 'read').ok).toBe(true);
    expect(auth.check({ authorization: `Bearer ${WRITE}` }, 'write').ok).toBe(true);
  });

  it('compares SHA-256 digests with crypto.timingSafeEqual, against every entry (no early exit)', () => {
    const spy = vi.spyOn(crypto, 'timingSafeEqual');
    // The matching token is the FIRST entry: an early exit would compare once.
    expect(auth.check({ authorization: `Bearer ${READ}` }, 'read').ok).toBe(true);
    expect(spy).toHaveBeenCalledTimes(2);
    for (const [a, b] of spy.mock.calls) {
      expect((a as Buffer).length).toBe(32);
      expect((b as Buffer).length).toBe(32);
    }
    // The presented digest is the SHA-256 of the token, never the token itself.
    const digest = crypto.createHash('sha256').update(READ).digest();
    expect((spy.mock.calls[0][0] as Buffer).equals(digest)).toBe(true);
    spy.mockClear();
    expect(auth.check({ authorization: `Bearer ${'z'.repeat(64)}` }, 'read').ok).toBe(false);
    expect(spy).toHaveBeenCalledTimes(2);
  });
});

describe('disabled when no token is configured', () => {
  it('every call is 401 and a warning is logged', () => {
    const logger = recordingLogger();
    const auth = AdminAuth.fromEnv({}, logger);
    expect(auth.enabled).toBe(false);
    expect(logger.lines.some((l) => l.startsWith('warn ') && l.includes('admin API disabled'))).toBe(true);
    const r = auth.check({ authorization: `Bearer ${WRITE}` }, 'read');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.status).toBe(401);
    const res = api(auth).handle({ method: 'GET', path: '/admin/config', headers: { authorization: `Bearer ${WRITE}` } });
    expect(res.status).toBe(401);
  });

  it('an empty SEGBID_ADMIN_TOKENS also disables', () => {
    expect(AdminAuth.fromEnv({ SEGBID_ADMIN_TOKENS: '  ' }).enabled).toBe(false);
  });
});

describe('tokens are never logged', () => {
  it('neither at load nor on failed or successful calls', () => {
    const logger = recordingLogger();
    const auth = new AdminAuth(parseTokenSpec(`read:bob:${READ},write:alice:${WRITE}`), logger);
    const a = api(auth);
    a.handle({ method: 'GET', path: '/admin/config', headers: { authorization: `Bearer ${READ}` } });
    a.handle({ method: 'PUT', path: '/admin/config', headers: { authorization: `Bearer ${READ}` }, body: '{}' });
    a.handle({ method: 'GET', path: '/admin/config', headers: { authorization: `Bearer ${WRITE}nope` } });
    a.handle({ method: 'PUT', path: '/admin/config', headers: { authorization: `Bearer ${WRITE}` }, body: '{"version":2}' });
    expect(logger.lines.length).toBeGreaterThan(0);
    for (const line of logger.lines) {
      expect(line).not.toContain(READ);
      expect(line).not.toContain(WRITE);
    }
  });

  it('a pino logger fits AdminLogger', () => {
    const logger: AdminLogger = pino({ level: 'silent' });
    expect(new AdminAuth([{ role: 'read', token: READ }], logger).enabled).toBe(true);
  });
});

describe('through the admin API', () => {
  const auth = new AdminAuth([
    { role: 'read', name: 'bob', token: READ },
    { role: 'write', name: 'alice', token: WRITE },
  ]);
  const a = api(auth);

  it('missing, wrong, read-only-on-write → 401, 401, 403 with {error, details}', () => {
    const missing = a.handle({ method: 'PUT', path: '/admin/config', headers: {}, body: '{}' });
    const wrong = a.handle({ method: 'PUT', path: '/admin/config', headers: { authorization: `Bearer ${READ}-wrong` }, body: '{}' });
    const readOnly = a.handle({ method: 'PUT', path: '/admin/config', headers: { authorization: `Bearer ${READ}` }, body: '{}' });
    expect([missing.status, wrong.status, readOnly.status]).toEqual([401, 401, 403]);
    expect(missing.headers['www-authenticate']).toMatch(/^Bearer/);
    for (const r of [missing, wrong, readOnly]) {
      const body = JSON.parse(r.body);
      expect(typeof body.error).toBe('string');
      expect(body.details.length).toBeGreaterThan(0);
      expect(body.details[0]).toHaveProperty('path');
      expect(body.details[0]).toHaveProperty('message');
    }
  });

  it('authenticates before routing: an unknown admin path without a token is 401, not 404', () => {
    expect(a.handle({ method: 'GET', path: '/admin/nope', headers: {} }).status).toBe(401);
    expect(a.handle({ method: 'GET', path: '/admin/nope', headers: { authorization: `Bearer ${READ}` } }).status).toBe(404);
  });

  it('a refused write attempt (403) is audited with the caller name', () => {
    a.handle({ method: 'PATCH', path: '/admin/line-items/li-1', headers: { authorization: `Bearer ${READ}` }, body: '{"active":false}' });
    const audit = JSON.parse(a.handle({ method: 'GET', path: '/admin/audit', headers: { authorization: `Bearer ${READ}` } }).body);
    expect(audit.entries[0]).toMatchObject({ author: 'read:bob', action: 'patch_line_item', target: 'lineItem:li-1', result: 'rejected', errorCount: 1 });
  });
});

describe('async read endpoints', () => {
  it('answer a value JSON cannot write with a 500, and a SegbidError with its status, never a rejection', async () => {
    const a = api(new AdminAuth([{ role: 'read', token: READ }]));
    a.addAsyncReadEndpoint(/^\/admin\/async-bigint$/, async () => ({ n: 1n }));
    a.addAsyncReadEndpoint(/^\/admin\/async-pending$/, async () => {
      throw new SegbidError('ADMIN_PENDING', 'not yet');
    });
    a.addAsyncReadEndpoint(/^\/admin\/async-ok$/, async () => ({ ok: true }));
    const get = (path: string) => a.handle({ method: 'GET', path, headers: { authorization: `Bearer ${READ}` } });
    const big = get('/admin/async-bigint');
    expect(big).toBeInstanceOf(Promise);
    expect((await big).status).toBe(500);
    expect((await get('/admin/async-pending')).status).toBe(503);
    const ok = await get('/admin/async-ok');
    expect(ok.status).toBe(200);
    expect(JSON.parse(ok.body)).toEqual({ ok: true });
  });
});
