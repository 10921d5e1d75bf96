/**
 * The bid port on uWebSockets.js: POST /openrtb2/bid, plus the event notice paths written into responses.
 *
 * Transport rules applied here (and only here): onAborted attached before reading; body chunks copied (uWS
 * neuters them after the callback); the body size capped while reading (early 413 on a declared
 * Content-Length, 413 as soon as a chunked body passes the cap); gzip/deflate inflated with a cap on the
 * inflated size; every write inside res.cork; the response gzipped when the client accepts it.
 * The per-request work after the body is complete is synchronous (src/bidding/bid-handler.ts).
 */
import { gunzipSync, inflateSync, gzipSync, constants as zlibConstants } from 'node:zlib';
import { uWS } from './uws.js';
import { BAD_REQUEST } from '../openrtb/reasons.js';
import type { BidHandler, BidResult } from '../bidding/bid-handler.js';
import { DEBUG_TOKEN_HEADER, debugRequest, type DebugRequest } from '../bidding/explain.js';
import type { Metrics, TransportReason } from '../metrics/metrics.js';
import type { Lifecycle } from './lifecycle.js';

export const BID_PATH = '/openrtb2/bid';
const EVENT_STATUS: Record<number, string> = {
  200: '200 OK',
  204: '204 No Content',
  302: '302 Found',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  410: '410 Gone',
  413: '413 Payload Too Large',
  503: '503 Service Unavailable',
};

/* The response being written: set right before res.cork(writePending), which runs synchronously. */
let pendingRes: uWS.HttpResponse | null = null;
let pendingStatus = '';
let pendingBody: string | Buffer = '';
let pendingVersion = '';
let pendingGzip = false;
let pendingClose = false;

function writePending(): void {
  const res = pendingRes!;
  res.writeStatus(pendingStatus);
  res.writeHeader('x-openrtb-version', pendingVersion);
  if (pendingStatus === '204 No Content') {
    // endWithoutBody() with no argument is the only form that writes no Content-Length (RFC 9110 forbids it on
    // a 204); closing needs end(), which adds "Content-Length: 0", harmless while draining.
    if (pendingClose) res.end(undefined, true);
    else res.endWithoutBody();
    return;
  }
  res.writeHeader('content-type', 'application/json');
  if (pendingGzip) {
    res.writeHeader('content-encoding', 'gzip');
    res.writeHeader('vary', 'accept-encoding');
  }
  res.end(pendingBody, pendingClose);
}

function respond(res: uWS.HttpResponse, status: string, body: string | Buffer, version: string, gzip: boolean, close: boolean): void {
  pendingRes = res;
  pendingStatus = status;
  pendingBody = body;
  pendingVersion = version;
  pendingGzip = gzip;
  pendingClose = close;
  res.cork(writePending);
  pendingRes = null;
  pendingBody = '';
}

/**
 * Whether an Accept-Encoding header lets the response be gzipped (RFC 9110 12.5.3): `gzip`, `x-gzip` or `*` with
 * a non-zero weight, `gzip;q=0` refusing it even next to `*`. The usual header ("gzip", "gzip, deflate, br") has
 * no weights: one substring search.
 */
export function acceptsGzip(header: string): boolean {
  if (header.indexOf(';') === -1) return header.indexOf('gzip') !== -1 || header.indexOf('*') !== -1;
  let star = false;
  for (const part of header.toLowerCase().split(',')) {
    const semi = part.indexOf(';');
    const name = (semi === -1 ? part : part.slice(0, semi)).trim();
    const q = semi === -1 ? 1 : weightOf(part.slice(semi + 1));
    if (name === 'gzip' || name === 'x-gzip') return q > 0;
    if (name === '*') star = q > 0;
  }
  return star;
}

function weightOf(params: string): number {
  for (const p of params.split(';')) {
    const eq = p.indexOf('=');
    if (eq !== -1 && p.slice(0, eq).trim() === 'q') {
      const q = Number(p.slice(eq + 1).trim());
      return Number.isFinite(q) ? q : 1;
    }
  }
  return 1;
}

function statusLine(status: number): string {
  return status === 200 ? '200 OK' : status === 204 ? '204 No Content' : status === 400 ? '400 Bad Request' : `${status}`;
}

/**
 * Writes a bid result, gzipped when the client accepts it and the body is worth it (at least `gzipMinBytes`;
 * never a 204).
 */
function answerBid(res: uWS.HttpResponse, result: BidResult, version: string, acceptGzip: boolean, gzipMinBytes: number, close: boolean): void {
  const gzip = acceptGzip && result.status !== 204 && result.body.length >= gzipMinBytes;
  respond(res, statusLine(result.status), gzip ? gzipSync(result.body, { level: zlibConstants.Z_BEST_SPEED }) : result.body, version, gzip, close);
}

export interface BidServerOptions {
  handler: BidHandler;
  metrics: Metrics;
  lifecycle: Lifecycle;
  /** Told of a request whose handling threw (answered 204 and counted); the server logs it, rate-limited. */
  onInternalError?: (e: Error) => void;
}

/**
 * Per-request reading state: one small object per request. The body's bytes are only buffered when it comes in
 * several chunks or encoded; the usual body (one chunk, no encoding) is decoded straight from uWS's chunk into
 * the string the handler parses, so no intermediate Buffer is allocated or copied (see onData).
 */
class BodyReader {
  aborted = false;
  done = false;
  length = 0;
  /** Content-Length when declared (and within the cap), else -1: sizes the buffer of a multi-chunk body. */
  readonly declared: number;
  private fixed: Buffer | null = null;
  private chunks: Buffer[] | null = null;
  constructor(declared: number) {
    this.declared = declared;
  }
  /** Copies a chunk (uWS neuters it when the callback returns). */
  append(chunk: ArrayBuffer): void {
    const bytes = new Uint8Array(chunk);
    if (this.declared >= 0) {
      if (this.fixed === null) this.fixed = Buffer.allocUnsafe(this.declared);
      this.fixed.set(bytes, this.length);
    } else (this.chunks ??= []).push(Buffer.copyBytesFrom(bytes));
    this.length += bytes.length;
  }
  body(): Buffer {
    if (this.fixed !== null) return this.length === this.fixed.length ? this.fixed : this.fixed.subarray(0, this.length);
    return Buffer.concat(this.chunks!, this.length); // body() follows at least one append()
  }
}

/**
 * Decodes a whole identity body from the chunk itself as Buffer#toString does the buffered ones: invalid UTF-8
 * becomes U+FFFD, and a leading byte order mark is kept (`ignoreBOM`), so it fails JSON.parse on both paths alike.
 */
const utf8 = new TextDecoder('utf-8', { ignoreBOM: true });

export function createBidApp(options: BidServerOptions): uWS.TemplatedApp {
  const { handler, metrics, lifecycle } = options;
  const onInternalError = options.onInternalError ?? (() => {});
  const app = uWS.App();

  const reject = (res: uWS.HttpResponse, reason: TransportReason, status: string, message: string, version: string, close: boolean) => {
    metrics.transportCounters[reason].inc();
    respond(res, status, JSON.stringify({ error: reason, reason: message }), version, false, close);
  };

  /** A request whose handling threw: a bug, not bad input (the decision answers bad input with reason codes). */
  const internalError = (res: uWS.HttpResponse, e: unknown, version: string) => {
    metrics.internalErrors.inc();
    onInternalError(e instanceof Error ? e : new Error(String(e)));
    respond(res, '204 No Content', '', version, false, lifecycle.draining);
  };

  /**
   * Decides a complete body and writes the answer (the Redis segment store may make it wait: onAborted is set).
   * Whatever throws is answered with a no-bid and counted (internalError): the exchange gets an answer and the
   * process keeps serving, where one request that hit a bug would otherwise take the bidder down.
   */
  const answerText = (res: uWS.HttpResponse, reader: BodyReader, body: string, version: string, acceptGzip: boolean, debug: DebugRequest | null) => {
    const settings = handler.current.config.settings;
    let result: BidResult;
    try {
      if (debug === null && handler.remote !== null) {
        // Redis segment store (src/segments/remote-segments.ts): only a request whose user the local store does
        // not know waits; the late answer goes through respond (res.cork).
        const later = handler.handleAsync(body);
        if (later instanceof Promise) {
          void later.then(
            (r) => {
              if (!reader.aborted) answerBid(res, r, version, acceptGzip, settings.gzipMinBytes, lifecycle.draining);
            },
            (e: unknown) => {
              if (!reader.aborted) internalError(res, e, version);
            },
          );
          return;
        }
        result = later;
      } else result = debug === null ? handler.handle(body) : handler.handleDebug(body, debug);
    } catch (e) {
      internalError(res, e, version);
      return;
    }
    answerBid(res, result, version, acceptGzip, settings.gzipMinBytes, lifecycle.draining);
  };

  app.post(BID_PATH, (res, req) => {
    // Headers must be read before the handler returns (uWS reuses the request object).
    const declared = req.getHeader('content-length');
    const declaredEncoding = req.getHeader('content-encoding').toLowerCase();
    // RFC 9110: x-gzip is gzip.
    const encoding = declaredEncoding === 'x-gzip' ? 'gzip' : declaredEncoding;
    const identity = encoding === '' || encoding === 'identity';
    const acceptGzip = acceptsGzip(req.getHeader('accept-encoding'));
    const version = req.getHeader('x-openrtb-version') || '2.6';
    // Content-Type is not checked: exchanges send JSON as text/plain, form types or nothing; the body is
    // parsed as JSON whatever it says, and a body that is not JSON gets a 400.
    const settings = handler.current.config.settings;
    // `?debug=1` (src/bidding/explain.ts) only when the config enables it; read now, uWS reuses `req`.
    const debugSettings = handler.current.config.debug;
    const debug = debugSettings.enabled ? debugRequest(req.getQuery(), req.getHeader(DEBUG_TOKEN_HEADER), debugSettings) : null;
    const maxBody = settings.maxBodyBytes;
    const declaredBytes = declared === '' ? -1 : Number(declared); // NaN when not a number: no buffer sized by it
    const reader = new BodyReader(declaredBytes <= maxBody ? declaredBytes : -1);
    metrics.inFlight++;
    res.onAborted(() => {
      reader.aborted = true;
      if (!reader.done) {
        reader.done = true;
        metrics.transportCounters.aborted.inc();
        metrics.inFlight--;
      }
    });
    if (declared !== '' && !(declaredBytes <= maxBody)) {
      reader.done = true;
      metrics.inFlight--;
      reject(res, 'too_large', '413 Payload Too Large', `body over ${maxBody} bytes`, version, true);
      return;
    }
    if (encoding !== '' && encoding !== 'gzip' && encoding !== 'deflate' && encoding !== 'identity') {
      reader.done = true;
      metrics.inFlight--;
      reject(res, 'unsupported_encoding', '415 Unsupported Media Type', `content-encoding ${encoding.slice(0, 32)} is not supported`, version, false);
      return;
    }
    res.onData((chunk, isLast) => {
      if (reader.done) return;
      const size = chunk.byteLength;
      if (reader.length + size > maxBody || (reader.declared >= 0 && reader.length + size > reader.declared)) {
        reader.done = true;
        metrics.inFlight--;
        reject(res, 'too_large', '413 Payload Too Large', `body over ${maxBody} bytes`, version, true);
        return;
      }
      if (isLast && reader.length === 0 && identity) {
        // The whole body in one chunk: decode it now, while the chunk is valid; the string is the copy.
        reader.done = true;
        metrics.inFlight--;
        answerText(res, reader, utf8.decode(chunk), version, acceptGzip, debug);
        return;
      }
      reader.append(chunk); // copied now: uWS neuters the chunk when this callback returns
      if (!isLast) return;
      reader.done = true;
      metrics.inFlight--;
      let raw = reader.body();
      if (!identity) {
        try {
          const opts = { maxOutputLength: settings.maxInflatedBytes };
          raw = encoding === 'gzip' ? gunzipSync(raw, opts) : inflateSync(raw, opts);
        } catch (e) {
          if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
            reject(res, 'inflated_too_large', '413 Payload Too Large', `inflated body over ${settings.maxInflatedBytes} bytes`, version, true);
          } else {
            metrics.badRequestCounters[BAD_REQUEST.bad_gzip].inc();
            respond(res, '400 Bad Request', '{"error":"bad_gzip","reason":"body is not valid ' + encoding + '"}', version, false, false);
          }
          return;
        }
      }
      answerText(res, reader, raw.toString('utf8'), version, acceptGzip, debug);
    });
  });

  // Event notices (win, bill, loss, imp, click, conv): transport only; src/events decides and answers.
  const events = handler.events;
  // `head`: reliability fix (test/reliability-fuzz.test.ts) - a HEAD answer carried the body, which RFC 9110
  // forbids and which desynchronised keep-alive clients (the body was read as the start of the next response).
  const answerEvent = (res: uWS.HttpResponse, r: { status: number; headers: Record<string, string>; body: string | Buffer }, head = false) => {
    res.cork(() => {
      res.writeStatus(EVENT_STATUS[r.status] ?? String(r.status));
      for (const name in r.headers) res.writeHeader(name, r.headers[name]);
      if (r.status === 204 || head) res.endWithoutBody();
      else res.end(r.body);
    });
  };
  app.any('/ev/*', (res, req) => {
    const method = req.getCaseSensitiveMethod().toUpperCase();
    const path = req.getUrl();
    const query = req.getQuery() ?? '';
    const headers: Record<string, string> = {};
    req.forEach((k, v) => {
      headers[k] = v;
    });
    if (method !== 'POST') {
      answerEvent(res, events.handle({ method, path, query, headers }, Date.now()), method === 'HEAD');
      return;
    }
    let done = false;
    res.onAborted(() => {
      done = true;
    });
    const limit = events.settings.maxConversionBodyBytes;
    const chunks: Buffer[] = [];
    let length = 0;
    res.onData((chunk, isLast) => {
      if (done) return;
      length += chunk.byteLength;
      if (length > limit) {
        done = true;
        metrics.transportCounters.too_large.inc();
        res.cork(() => res.writeStatus('413 Payload Too Large').end('{"error":"too_large"}', true));
        return;
      }
      chunks.push(Buffer.copyBytesFrom(new Uint8Array(chunk)));
      if (!isLast) return;
      done = true;
      answerEvent(res, events.handle({ method, path, query, headers, body: Buffer.concat(chunks, length) }, Date.now()));
    });
  });

  // HEAD gets the same status and headers without the body (reliability fix, see answerEvent).
  app.any(BID_PATH, (res, req) => {
    const head = req.getMethod() === 'head';
    res.cork(() => {
      res.writeStatus('405 Method Not Allowed').writeHeader('allow', 'POST');
      if (head) res.endWithoutBody();
      else res.end('{"error":"method_not_allowed"}');
    });
  });
  app.any('/*', (res, req) => {
    const head = req.getMethod() === 'head';
    res.cork(() => {
      res.writeStatus('404 Not Found');
      if (head) res.endWithoutBody();
      else res.end('{"error":"not_found"}');
    });
  });
  return app;
}
