/**
 * The bid and operations ports over real HTTP: transport rules (size caps, gzip in and out, methods, paths,
 * aborted clients, version header), reason-labelled metrics, health/readiness, reload with rollback, and the
 * refusal to run on the uWebSockets.js pure-JS fallback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { gzipSync, gunzipSync, deflateSync } from 'node:zlib';
import { readFileSync, writeFileSync, mkdtempSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { RunningBidder } from '../src/server/start.js';
import { DEMO_DIR, PACKAGE_ROOT } from '../src/common/paths.js';
import { metricValue, raw, startTestBidder } from './helpers/bidder.js';

const simple = readFileSync(resolve(PACKAGE_ROOT, '../shared/corpus/openrtb/valid/pbs-simple.json'));

let bidder: RunningBidder;
beforeAll(async () => {
  bidder = await startTestBidder();
});
afterAll(async () => {
  await bidder?.close();
});

describe('bid endpoint transport', () => {
  it('answers a valid request with a bid and echoes x-openrtb-version', async () => {
    const r = await raw(bidder.bidPort, { body: simple, headers: { 'x-openrtb-version': '2.5' } });
    expect(r.status).toBe(200);
    expect(r.headers['x-openrtb-version']).toBe('2.5');
    expect(r.headers['content-type']).toBe('application/json');
    expect(JSON.parse(r.text).id).toBe('some-request-id');
  });

  it('needs neither a content type nor a version header', async () => {
    const r = await raw(bidder.bidPort, { body: simple });
    expect(r.status).toBe(200);
    expect(r.headers['x-openrtb-version']).toBe('2.6');
  });

  it('answers 400 with a one-line JSON reason for malformed JSON, counted by reason', async () => {
    const before = await metricValue(bidder.adminPort, 'segbid_bid_requests_total', { outcome: 'bad_request', reason: 'invalid_json' });
    const r = await raw(bidder.bidPort, { body: '{"id": "x", "imp": [' });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text)).toEqual({ error: 'invalid_json', reason: 'body is not valid JSON' });
    expect(r.text.includes('\n')).toBe(false);
    const after = await metricValue(bidder.adminPort, 'segbid_bid_requests_total', { outcome: 'bad_request', reason: 'invalid_json' });
    expect(after).toBe(before + 1);
  });

  it.each([
    ['missing id', { imp: [{ id: '1', banner: { w: 300, h: 250 } }], site: { id: 's' } }, 'id must be a non-empty string'],
    ['missing imp', { id: 'r', site: { id: 's' } }, 'imp must be an array'],
    ['empty imp', { id: 'r', imp: [], site: { id: 's' } }, 'imp is empty'],
    ['imp without id', { id: 'r', imp: [{ banner: { w: 300, h: 250 } }], site: { id: 's' } }, 'imp[0].id must be a non-empty string'],
    ['wrong type', { id: 'r', imp: [{ id: '1', banner: { w: '300', h: 250 } }], site: { id: 's' } }, 'imp[0].banner.w must be a non-negative integer'],
  ])('answers 400 for %s', async (_name, body, reason) => {
    const r = await raw(bidder.bidPort, { body: JSON.stringify(body) });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text)).toEqual({ error: 'invalid_request', reason });
  });

  it('answers 204 without a body for a no-bid', async () => {
    const req = JSON.parse(simple.toString());
    req.imp[0].bidfloor = 100;
    const r = await raw(bidder.bidPort, { body: JSON.stringify(req) });
    expect(r.status).toBe(204);
    expect(r.body.length).toBe(0);
    expect(r.headers['content-length']).toBeUndefined();
  });

  it('refuses a declared oversize body with 413 before reading it', async () => {
    const r = await raw(bidder.bidPort, { body: Buffer.alloc(300 * 1024, 32) });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.text).error).toBe('too_large');
  });

  it('refuses a chunked body that grows past the cap with 413', async () => {
    const r = await raw(bidder.bidPort, { body: Buffer.alloc(300 * 1024, 32), headers: { 'transfer-encoding': 'chunked' } });
    expect(r.status).toBe(413);
  });

  it('decodes a body that arrives in several pieces, a UTF-8 character split between two of them', async () => {
    // The usual body comes in one chunk and is decoded straight from it; a body in pieces is buffered first.
    // Both must read the same request: the id, with its multi-byte characters, comes back in the response.
    const req = JSON.parse(simple.toString());
    req.id = 'réq-ü-中-1';
    const body = Buffer.from(JSON.stringify(req));
    const split = body.indexOf(Buffer.from('中')) + 1; // inside the 3-byte character
    const send = (head: string, pieces: Buffer[]) =>
      new Promise<string>((resolveText, reject) => {
        const socket = connect(bidder.bidPort, '127.0.0.1');
        const got: Buffer[] = [];
        socket.on('data', (c) => got.push(c));
        socket.on('error', reject);
        socket.on('end', () => resolveText(Buffer.concat(got).toString('utf8')));
        socket.on('connect', async () => {
          socket.write(head);
          for (const piece of pieces) {
            await new Promise((r) => setTimeout(r, 30)); // separate reads on the server side
            socket.write(piece);
          }
        });
      });
    const answerOf = (text: string) => {
      expect(text.startsWith('HTTP/1.1 200')).toBe(true);
      return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { id: string };
    };
    const sized = await send(`POST /openrtb2/bid HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${body.length}\r\n\r\n`, [
      body.subarray(0, split),
      body.subarray(split),
    ]);
    expect(answerOf(sized).id).toBe(req.id);
    const chunk = (b: Buffer) => Buffer.concat([Buffer.from(b.length.toString(16) + '\r\n'), b, Buffer.from('\r\n')]);
    const chunked = await send('POST /openrtb2/bid HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n', [
      chunk(body.subarray(0, split)),
      chunk(body.subarray(split)),
      Buffer.from('0\r\n\r\n'),
    ]);
    expect(answerOf(chunked).id).toBe(req.id);
    const sizedHead = (b: Buffer) => `POST /openrtb2/bid HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${b.length}\r\n\r\n`;
    expect(answerOf(await send(sizedHead(body), [body])).id).toBe(req.id); // one chunk: decoded from it
    // A byte order mark is not JSON: the same 400 whether the body came whole or in pieces.
    const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), body]);
    expect((await send(sizedHead(bom), [bom])).startsWith('HTTP/1.1 400')).toBe(true);
    expect((await send(sizedHead(bom), [bom.subarray(0, 10), bom.subarray(10)])).startsWith('HTTP/1.1 400')).toBe(true);
  });

  it('inflates gzip and deflate request bodies', async () => {
    expect((await raw(bidder.bidPort, { body: gzipSync(simple), headers: { 'content-encoding': 'gzip' } })).status).toBe(200);
    expect((await raw(bidder.bidPort, { body: deflateSync(simple), headers: { 'content-encoding': 'deflate' } })).status).toBe(200);
  });

  it('caps the inflated size: a gzip bomb gets 413, broken gzip 400, unknown encodings 415', async () => {
    const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024, 32));
    expect(bomb.length).toBeLessThan(256 * 1024);
    const r = await raw(bidder.bidPort, { body: bomb, headers: { 'content-encoding': 'gzip' } });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.text).error).toBe('inflated_too_large');
    const broken = await raw(bidder.bidPort, { body: Buffer.from('not gzip at all'), headers: { 'content-encoding': 'gzip' } });
    expect(broken.status).toBe(400);
    const br = await raw(bidder.bidPort, { body: simple, headers: { 'content-encoding': 'br' } });
    expect(br.status).toBe(415);
  });

  it('gzips the response when the client accepts gzip', async () => {
    const r = await raw(bidder.bidPort, { body: simple, headers: { 'accept-encoding': 'gzip, deflate' } });
    expect(r.status).toBe(200);
    expect(r.headers['content-encoding']).toBe('gzip');
    expect(JSON.parse(gunzipSync(r.body).toString()).id).toBe('some-request-id');
  });

  it('answers 405 for a wrong method and 404 for a wrong path', async () => {
    const get = await raw(bidder.bidPort, { method: 'GET' });
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
    expect((await raw(bidder.bidPort, { path: '/openrtb2/auction' })).status).toBe(404);
  });

  it('survives a client that aborts mid-body, and counts it', async () => {
    const before = await metricValue(bidder.adminPort, 'segbid_bid_requests_total', { outcome: 'rejected', reason: 'aborted' });
    await new Promise<void>((done) => {
      const socket = connect(bidder.bidPort, '127.0.0.1', () => {
        socket.write('POST /openrtb2/bid HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"id":"abc","imp":[');
        setTimeout(() => {
          socket.destroy();
          done();
        }, 50);
      });
    });
    await new Promise((r) => setTimeout(r, 50));
    const after = await metricValue(bidder.adminPort, 'segbid_bid_requests_total', { outcome: 'rejected', reason: 'aborted' });
    expect(after).toBe(before + 1);
    expect((await raw(bidder.bidPort, { body: simple })).status).toBe(200);
  });
});

describe('operations port', () => {
  it('serves metrics with outcomes, reasons, latency and price histograms', async () => {
    const text = await (await fetch(`http://127.0.0.1:${bidder.adminPort}/metrics`)).text();
    for (const name of ['segbid_bid_requests_total', 'segbid_decision_seconds_bucket', 'segbid_bid_price_cpm_bucket', 'segbid_in_flight_requests', 'segbid_user_lookups_total']) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/segbid_bid_requests_total\{outcome="nobid",reason="below_floor"\} [1-9]/);
  });

  it('reports health and readiness', async () => {
    const health = await fetch(`http://127.0.0.1:${bidder.adminPort}/healthz`);
    expect(health.status).toBe(200);
    expect((await health.json()).uwsNative).toBe(true);
    expect((await fetch(`http://127.0.0.1:${bidder.adminPort}/readyz`)).status).toBe(200);
  });

  it('does not serve the bid endpoint on the operations port, nor metrics on the bid port', async () => {
    expect((await raw(bidder.adminPort, { body: simple })).status).toBe(404);
    expect((await raw(bidder.bidPort, { method: 'GET', path: '/metrics' })).status).toBe(404);
  });
});

describe('config reload', () => {
  it('keeps the running config when a new one is invalid, and swaps a valid one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'segbid-reload-'));
    for (const f of ['config.json', 'segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(dir, f));
    const path = join(dir, 'config.json');
    const own = await startTestBidder(path);
    try {
      expect((await raw(own.bidPort, { body: simple })).status).toBe(200);
      const config = JSON.parse(readFileSync(path, 'utf8'));
      writeFileSync(path, JSON.stringify({ ...config, lineItems: [{ id: 'broken', bid: { cpm: -1 }, creatives: ['nope'] }] }));
      expect(own.reload()).toBe(false);
      expect(own.lifecycle.lastError).toMatch(/lineItems\/0\/bid\/cpm/);
      expect((await raw(own.bidPort, { body: simple })).status).toBe(200);
      writeFileSync(path, JSON.stringify({ ...config, lineItems: config.lineItems.map((li: { active?: boolean }) => ({ ...li, active: false })) }));
      expect(own.reload()).toBe(true);
      expect((await raw(own.bidPort, { body: simple })).status).toBe(204);
    } finally {
      await own.close();
    }
  });
});

describe('uWebSockets.js native check', () => {
  const cli = resolve(PACKAGE_ROOT, 'dist/src/cli/main.js');
  it('refuses to run on the pure-JS fallback unless allowed', () => {
    const r = spawnSync(process.execPath, [cli, 'serve', '--port', '0', '--admin-port', '0', '--host', '127.0.0.1'], {
      env: { ...process.env, UWS_USE_FALLBACK: '1' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('UWS_FALLBACK');
  });
});
