/**
 * Hostile clients against the RUNNING bidder (one in-process bidder, real uWebSockets.js ports), each a named
 * test: deep nesting, huge arrays, invalid UTF-8, wrong content types, slowloris, a body that ends early,
 * pipelining, HTTP/1.0, a very long URL and header, an unknown method. After each: the server is healthy
 * (/healthz 200) and still bids. Transport cases already in test/server.test.ts (413 caps, gzip, 405/404, an
 * aborted client) are not repeated.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { RunningBidder } from '../src/server/start.js';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { metricValue, raw, startTestBidder } from './helpers/bidder.js';

const simple = readFileSync(resolve(PACKAGE_ROOT, '../shared/corpus/openrtb/valid/pbs-simple.json'));
const simpleJson = () => JSON.parse(simple.toString('utf8')) as { id: string; imp: Record<string, unknown>[]; [k: string]: unknown };

let bidder: RunningBidder;
beforeAll(async () => {
  bidder = await startTestBidder();
});
afterAll(async () => {
  await bidder?.close();
});
afterEach(async () => {
  // whatever a test did, the bidder must still be alive and bidding
  expect((await raw(bidder.adminPort, { method: 'GET', path: '/healthz' })).status).toBe(200);
  expect((await raw(bidder.bidPort, { body: simple })).status).toBe(200);
});

/* ---------- a raw socket client ---------- */

interface Parsed {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Parses complete HTTP/1.x responses (Content-Length framed or bodiless) from the front of `buf`. */
function parseResponses(buf: Buffer, headRequests = 0): { responses: Parsed[]; rest: Buffer } {
  const responses: Parsed[] = [];
  let rest = buf;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const lines = rest.subarray(0, end).toString('latin1').split('\r\n');
    // strict framing: anything but a status line here means the previous response was framed wrongly
    const status = /^HTTP\/1\.[01] \d{3}/.test(lines[0]) ? Number(lines[0].slice(9, 12)) : -1;
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
    }
    const bodiless = status === 204 || status === 304 || responses.length < headRequests;
    const len = bodiless ? 0 : Number(headers['content-length'] ?? 0);
    if (rest.length < end + 4 + len) break;
    responses.push({ status, headers, body: rest.subarray(end + 4, end + 4 + len) });
    rest = rest.subarray(end + 4 + len);
  }
  return { responses, rest };
}

/**
 * Opens a connection, writes `payload`, collects until `want` responses were parsed, the server closed the
 * connection, or `waitMs` passed. `closed` says whether the server ended the connection in that time.
 */
function exchange(payload: Buffer | string, opts: { want?: number; waitMs?: number; endAfterWrite?: boolean; headRequests?: number } = {}): Promise<{ responses: Parsed[]; closed: boolean; ms: number; bytes: Buffer }> {
  const want = opts.want ?? 1;
  const waitMs = opts.waitMs ?? 2000;
  const started = performance.now();
  return new Promise((done) => {
    const chunks: Buffer[] = [];
    let finished = false;
    const socket = connect(bidder.bidPort, '127.0.0.1');
    const finish = (closed: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      const bytes = Buffer.concat(chunks);
      socket.destroy();
      done({ responses: parseResponses(bytes, opts.headRequests).responses, closed, ms: performance.now() - started, bytes });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      if (want > 0 && parseResponses(Buffer.concat(chunks), opts.headRequests).responses.length >= want && !opts.endAfterWrite) finish(false);
    });
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', () => finish(true));
    socket.write(payload);
    if (opts.endAfterWrite) socket.end();
  });
}

function post(body: Buffer | string, headers: Record<string, string> = {}, version = '1.1'): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  const head = Object.entries({ host: '127.0.0.1', 'content-length': String(b.length), ...headers })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return Buffer.concat([Buffer.from(`POST /openrtb2/bid HTTP/${version}\r\n${head}\r\n`), b]);
}

/* ---------- the cases ---------- */

describe('hostile clients', () => {
  it('deep nesting: 100k nested arrays -> 400/413 quickly, at the top and inside imp.ext', async () => {
    const depth = 100_000;
    const nest = '['.repeat(depth) + ']'.repeat(depth);
    const top = await raw(bidder.bidPort, { body: nest });
    expect([400, 413]).toContain(top.status);
    const inner = `{"id":"deep","site":{"id":"s"},"imp":[{"id":"1","banner":{"w":300,"h":250},"ext":${nest}}]}`;
    const t0 = performance.now();
    const r = await raw(bidder.bidPort, { body: inner });
    const ms = performance.now() - t0;
    // a request that is valid apart from its deep ext may be bid on (ext is not read); it must not crash or hang
    expect([200, 204, 400, 413]).toContain(r.status);
    expect(ms).toBeLessThan(1000);
    // objects nest 5 bytes per level: past the 256 KiB cap, refused as too large
    const objects = '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    expect((await raw(bidder.bidPort, { body: objects })).status).toBe(413);
  });

  it('huge arrays: 5,000 imps are decided within a bound, duplicates within them are a 400', async () => {
    const req = simpleJson();
    const base = { banner: { w: 300, h: 250 } };
    req.imp = Array.from({ length: 5000 }, (_, i) => ({ id: String(i), ...base }));
    const body = JSON.stringify(req);
    expect(body.length).toBeLessThan(256 * 1024);
    const t0 = performance.now();
    const r = await raw(bidder.bidPort, { body });
    const ms = performance.now() - t0;
    expect([200, 204, 400]).toContain(r.status);
    if (r.status === 200) {
      const res = JSON.parse(r.text) as { id: string; seatbid: { bid: { impid: string }[] }[] };
      expect(res.id).toBe(req.id);
      const impids = new Set(res.seatbid.flatMap((s) => s.bid.map((b) => b.impid)));
      for (const id of impids) expect(Number(id)).toBeLessThan(5000);
    }
    // the decision (and the whole exchange) stays under a second, not seconds (measured 0.3-0.7 s here, with a
    // 7 MB response: see the it.fails below)
    console.log(`5,000 imps: ${r.status}, ${ms.toFixed(0)} ms, ${r.body.length} response bytes`);
    expect(ms).toBeLessThan(1500); // headroom for 2 shared cores; the measured figure is logged above
    expect(r.status).toBe(400); // over MAX_IMPS (src/openrtb/validate.ts)
    expect(JSON.parse(r.text).reason).toMatch(/imp has 5000 entries, at most 100/);
    const dup = simpleJson();
    dup.imp = Array.from({ length: 100 }, (_, i) => ({ id: String(i === 99 ? 7 : i), ...base }));
    const d = await raw(bidder.bidPort, { body: JSON.stringify(dup) });
    expect(d.status).toBe(400);
    expect(JSON.parse(d.text).reason).toMatch(/imp\[99\]\.id "7" is not unique/);
  });

  /*
   * PRODUCT PROBLEM (no cap on the number of imps): a 210 KB request with 5,000 banner imps is decided in one
   * synchronous call that holds the event loop for ~0.2-0.7 s (about 45 us per imp) and, when it bids, answers
   * 7 MB (x33 amplification). Every other request on the worker waits that long, far past a 100-200 ms tmax: one
   * such request per second from a hostile or buggy exchange stalls the bidder. Real requests carry a handful of
   * imps; a cap (e.g. 100 imps -> 400, or -> no-bid) in src/openrtb/validate.ts would bound it, but the number is
   * a product decision, so it is not changed here. it.fails until a cap exists.
   */
  it('a 5,000-imp request does not hold the event loop for more than 100 ms', async () => {
    const req = simpleJson();
    req.id = 'huge-loop';
    req.imp = Array.from({ length: 5000 }, (_, i) => ({ id: `h${i}`, banner: { w: 300, h: 250 } }));
    const body = JSON.stringify(req);
    bidder.handler.handle(body); // warm
    req.id = 'huge-loop-2';
    const again = JSON.stringify(req);
    const t0 = performance.now();
    bidder.handler.handle(again);
    expect(performance.now() - t0).toBeLessThan(100);
  });

  it('invalid UTF-8 inside JSON strings -> 400 or a clean 200/204', async () => {
    const bad = (s: number[]) => Buffer.from(s);
    const req = simpleJson();
    const text = JSON.stringify({ ...req, id: '@ID@', user: { buyeruid: '@UID@' }, site: { ...(req.site as object), domain: '@DOM@' } });
    // the three placeholders, wherever JSON.stringify put them, are replaced by the invalid bytes
    const parts = text.split(/@(?:ID|UID|DOM)@/);
    expect(parts.length).toBe(4);
    const cases = [
      [0xff, 0xfe], // never valid
      [0xc3], // truncated 2-byte sequence
      [0xed, 0xa0, 0x80], // UTF-16 surrogate encoded in UTF-8
      [0xc0, 0xaf], // overlong '/'
      [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
    ];
    for (const seq of cases) {
      const body = Buffer.concat(parts.flatMap((p, i) => (i === 0 ? [Buffer.from(p)] : [bad(seq), Buffer.from('x'), Buffer.from(p)])));
      const r = await raw(bidder.bidPort, { body });
      expect([200, 204, 400], `bytes ${seq.map((x) => x.toString(16)).join(' ')} -> ${r.status} ${r.text.slice(0, 100)}`).toContain(r.status);
      if (r.status === 200) {
        const res = JSON.parse(r.text) as { id: string };
        // the id is echoed as the server read it (invalid bytes become U+FFFD), and the answer is valid UTF-8 JSON
        expect(res.id).toBe(JSON.parse(body.toString('utf8')).id);
        expect(Buffer.from(r.text, 'utf8').equals(r.body)).toBe(true);
      }
    }
  });

  it('wrong content types: XML and multipart labels with a JSON body are answered as JSON; an XML body is a 400', async () => {
    for (const ct of ['application/xml', 'multipart/form-data; boundary=xyz', 'text/html; charset=iso-8859-1', 'image/png']) {
      const r = await raw(bidder.bidPort, { body: simple, headers: { 'content-type': ct } });
      expect(r.status, ct).toBe(200);
      expect(r.headers['content-type']).toBe('application/json');
      expect(JSON.parse(r.text).id).toBe('some-request-id');
    }
    const xml = '<?xml version="1.0"?><BidRequest id="x"><imp id="1"/></BidRequest>';
    const r = await raw(bidder.bidPort, { body: xml, headers: { 'content-type': 'application/xml' } });
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error).toBe('invalid_json');
    // a real multipart body is not JSON either
    const multipart = `--xyz\r\nContent-Disposition: form-data; name="req"\r\n\r\n${simple.toString()}\r\n--xyz--\r\n`;
    const m = await raw(bidder.bidPort, { body: multipart, headers: { 'content-type': 'multipart/form-data; boundary=xyz' } });
    expect(m.status).toBe(400);
  });

  it('slow clients (slowloris): 50 sockets dripping headers do not delay normal requests', async () => {
    const slow: Socket[] = [];
    const timers: NodeJS.Timeout[] = [];
    const drip = 'POST /openrtb2/bid HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow-' + 'a'.repeat(200);
    try {
      for (let i = 0; i < 50; i++) {
        const s = connect(bidder.bidPort, '127.0.0.1');
        s.on('error', () => {});
        slow.push(s);
        let pos = 0;
        timers.push(
          setInterval(() => {
            if (!s.destroyed && pos < drip.length) s.write(drip[pos++]);
          }, 200),
        );
      }
      await new Promise((r) => setTimeout(r, 400));
      const times: number[] = [];
      const deadline = performance.now() + 3000;
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const r = await raw(bidder.bidPort, { body: simple });
        times.push(performance.now() - t0);
        expect(r.status).toBe(200);
        await new Promise((r2) => setTimeout(r2, 100));
      }
      expect(times.length).toBeGreaterThan(10);
      expect(Math.max(...times), `times ${times.map((t) => t.toFixed(1)).join(', ')}`).toBeLessThan(200);
      // the slow sockets are still open: they were neither answered nor served ahead of anyone
      expect(slow.filter((s) => !s.destroyed).length).toBe(50);
    } finally {
      for (const t of timers) clearInterval(t);
      for (const s of slow) s.destroy();
    }
  });

  it('a body that ends early (Content-Length larger than sent, then the client half-closes) -> no crash, nothing left in flight', async () => {
    const before = await metricValue(bidder.adminPort, 'segbid_bid_requests_total', { outcome: 'rejected', reason: 'aborted' });
    const body = simple.subarray(0, 100);
    const payload = Buffer.concat([Buffer.from(`POST /openrtb2/bid HTTP/1.1\r\nHost: x\r\nContent-Length: ${simple.length}\r\n\r\n`), body]);
    // FIN (socket.end), not RST: the server sees a clean end of stream in the middle of the body
    const r = await exchange(payload, { want: 0, waitMs: 1000, endAfterWrite: true });
    // either the server closes without an answer, or answers 400; never a bid on half a body
    for (const res of r.responses) expect(res.status).toBe(400);
    await new Promise((done) => setTimeout(done, 50));
    const after = await metricValue(bidder.adminPort, 'segbid_bid_requests_total', { outcome: 'rejected', reason: 'aborted' });
    expect(after).toBeGreaterThanOrEqual(before + (r.responses.length === 0 ? 1 : 0));
    expect(await metricValue(bidder.adminPort, 'segbid_in_flight_requests', {})).toBe(0);
  });

  it('pipelined requests on one connection get two answers, in order', async () => {
    const one = simpleJson();
    one.id = 'pipe-1';
    const two = simpleJson();
    two.id = 'pipe-2';
    const bad = '{"id":"pipe-bad","imp":[]}';
    const r = await exchange(Buffer.concat([post(JSON.stringify(one)), post(bad), post(JSON.stringify(two))]), { want: 3 });
    expect(r.responses.map((x) => x.status)).toEqual([200, 400, 200]);
    expect(JSON.parse(r.responses[0].body.toString()).id).toBe('pipe-1');
    expect(JSON.parse(r.responses[1].body.toString()).reason).toBe('imp is empty');
    expect(JSON.parse(r.responses[2].body.toString()).id).toBe('pipe-2');
    expect(r.closed).toBe(false);
  });

  // Found by test/reliability-fuzz.test.ts (HEAD /ev/): HEAD answers carried a body, so the next response on the
  // keep-alive connection was misread. Fixed in src/server/bid-server.ts; this pins it.
  it('HEAD answers carry no body, so the next answer on the same connection is read correctly', async () => {
    const heads = ['/ev/imp?t=x', '/ev/win', '/nowhere', '/openrtb2/bid'].map((p) => `HEAD ${p} HTTP/1.1\r\nHost: x\r\n\r\n`).join('');
    const r = await exchange(Buffer.concat([Buffer.from(heads), post(simple)]), { want: 5, headRequests: 4 });
    expect(r.responses.length).toBe(5);
    for (const res of r.responses.slice(0, 4)) expect(res.status).toBeGreaterThanOrEqual(400);
    expect(r.responses[4].status).toBe(200);
    expect(JSON.parse(r.responses[4].body.toString()).id).toBe('some-request-id');
  });

  /*
   * PRODUCT PROBLEM (uWebSockets.js, not fixable in src/): an HTTP/1.0 request - POST or GET, with or without
   * Host - gets NO answer at all. The connection stays open and silent until the client gives up or the uWS
   * idle timeout closes it (measured: ~9-10 s, no status line ever written); an HTTP/1.0 client (old load
   * balancers, health checkers, `ab` without -k) hangs for that long. Half-closing the request does not help
   * (the connection is closed at once, still without an answer). Nothing in src/ sees the request: uWS drops it
   * in its parser before any route runs.
   * Kept as it.fails so it turns red (and is flipped back) the day the transport answers HTTP/1.0.
   */
  it.fails('HTTP/1.0 without keep-alive: answered, then the connection is closed', async () => {
    const r = await exchange(post(simple, {}, '1.0'), { want: 1, waitMs: 1500 });
    expect(r.responses.length).toBe(1);
    expect(r.responses[0].status).toBe(200);
    expect(JSON.parse(r.responses[0].body.toString()).id).toBe('some-request-id');
    // a 1.0 client without keep-alive reads until the connection ends: the server must close it
    const closed = await exchange(post(simple, {}, '1.0'), { want: 0, waitMs: 1500 });
    expect(closed.closed).toBe(true);
    expect(closed.ms).toBeLessThan(1000);
  });

  it('HTTP/1.0: whatever the transport does with it, the server is not harmed and a 1.1 request on a new connection is served', async () => {
    const r = await exchange(post(simple, {}, '1.0'), { want: 1, waitMs: 500 });
    for (const res of r.responses) expect(res.status).toBe(200);
  });

  it('a very long URL path (64 KiB) is refused (431/414/400 or closed), the server stays healthy', async () => {
    const r = await exchange(`GET /openrtb2/${'a'.repeat(64 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`, { want: 1, waitMs: 2000 });
    expect(r.closed || r.responses.length > 0).toBe(true);
    for (const res of r.responses) expect([400, 404, 414, 431]).toContain(res.status);
    const ev = await exchange(`GET /ev/win?t=${'A'.repeat(64 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`, { want: 1, waitMs: 2000 });
    expect(ev.closed || ev.responses.length > 0).toBe(true);
    for (const res of ev.responses) expect(res.status).toBeGreaterThanOrEqual(400);
    for (const res of ev.responses) expect(res.status).toBeLessThan(500);
  });

  it('a very long header value (64 KiB) and 256 KiB of headers: answered normally or refused, never a crash', async () => {
    // uWS (this build) accepts a 64 KiB header block and serves the request; the limit lies between 64 and
    // 256 KiB, past which it closes the connection without a status. See the it.fails case below.
    const r = await exchange(post(simple, { 'x-long': 'v'.repeat(64 * 1024) }), { want: 1, waitMs: 2000 });
    expect(r.closed || r.responses.length > 0).toBe(true);
    for (const res of r.responses) expect([200, 400, 431]).toContain(res.status);
    const huge = await exchange(post(simple, { 'x-long': 'v'.repeat(256 * 1024) }), { want: 1, waitMs: 2000 });
    expect(huge.closed || huge.responses.length > 0).toBe(true);
    for (const res of huge.responses) expect([400, 431]).toContain(res.status);
    // many medium headers adding up to 60 KiB
    const many: Record<string, string> = {};
    for (let i = 0; i < 512; i++) many[`x-h${i}`] = 'v'.repeat(120);
    const m = await exchange(post(simple, many), { want: 1, waitMs: 2000 });
    expect(m.closed || m.responses.length > 0).toBe(true);
    for (const res of m.responses) expect([200, 400, 431]).toContain(res.status);
  });

  /*
   * PRODUCT PROBLEM (configuration of the transport): a 64 KiB header value is accepted and the request served.
   * A bid request has no business carrying more than a few KiB of headers (Node's own limit is 16 KiB, nginx's
   * 8 KiB); every open connection may make uWS buffer up to the (larger) limit. uWS reads its limit from the
   * environment (UWS_HTTP_MAX_HEADERS_SIZE) when the native module loads, so the fix belongs in the start-up
   * (src/server/uws.ts or the CLI), not in bid-server.ts. it.fails until then.
   */
  // Checked: this uWS build (20.30 unofficial) ignores UWS_HTTP_MAX_HEADERS_SIZE (a 5 KB header passes with the
  // variable at 1024), so there is no knob to turn until the transport is upgraded.
  it.fails('refuses a 64 KiB header value (431, 400 or a closed connection)', async () => {
    const r = await exchange(post(simple, { 'x-long': 'v'.repeat(64 * 1024) }), { want: 1, waitMs: 2000 });
    expect(r.closed || r.responses.length > 0).toBe(true);
    for (const res of r.responses) expect([400, 431]).toContain(res.status);
  });

  it('an unknown method is a 4xx (or a closed connection), never a 5xx', async () => {
    for (const line of ['BREW /openrtb2/bid HTTP/1.1', 'BREW /nowhere HTTP/1.1', 'PROPFIND /ev/win?t=x HTTP/1.1', 'G@T /openrtb2/bid HTTP/1.1']) {
      const r = await exchange(`${line}\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}`, { want: 1, waitMs: 2000 });
      expect(r.closed || r.responses.length > 0, line).toBe(true);
      for (const res of r.responses) {
        expect(res.status, line).toBeGreaterThanOrEqual(400);
        expect(res.status, line).toBeLessThan(500);
      }
    }
  });
});
