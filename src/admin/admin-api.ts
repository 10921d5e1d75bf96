/**
 * The admin API of the trader console, transport-independent: a complete request in ({method, path, headers,
 * body}), a response out ({status, headers, body}). The operations port (src/server/ops-server.ts) reads the
 * body (refusing more than ADMIN_MAX_BODY_BYTES while reading) and calls `handle`; nothing here knows the
 * HTTP server.
 *
 *   GET   /admin/config                    read   the running document (ETag "v<version>")
 *   PUT   /admin/config                    write  replace it whole
 *   POST  /admin/config/validate           read   validate a document, no effect
 *   POST  /admin/config/dry-run            read   validate + diff against the running document, no effect
 *   GET   /admin/config/versions           read   the version history, newest first
 *   POST  /admin/config/rollback/:version  write  make a past version the running one (as a new version)
 *   PATCH /admin/line-items/:id            write  JSON merge patch of whitelisted fields (active, bid.cpm, ...)
 *   PATCH /admin/campaigns/:id             write  JSON merge patch of whitelisted campaign fields
 *   POST  /admin/segments/reload           write  re-read the segment store
 *   GET   /admin/audit?limit=N             read   the newest audit entries, newest first
 *
 * Contract:
 *   - Order of checks: not under /admin → 404; authentication → 401 (before routing, so that the route map is
 *     not visible without a token); unknown path → 404; wrong method → 405 with Allow; role → 403 (audited
 *     for write endpoints); body over the cap → 413; malformed JSON → 400; then the operation.
 *   - Write endpoints accept `If-Match: "v<version>"` (from the ETag): the change is refused with 412 when
 *     the running version moved meanwhile (two traders editing at once).
 *   - Every error body is `{error, message, details: [{path, message}]}`, `details` never empty. An invalid
 *     config is 422 with every error by JSON-pointer path in the document; the running config is untouched.
 *   - Never throws: an unexpected failure is a 500 and is logged.
 */
import { SegbidError, type ErrorDetail } from '../common/errors.js';
import { SILENT_LOGGER, headerValue, type AdminAuth, type AdminLogger, type AdminPrincipal, type AdminRole } from './auth.js';
import { authorLabel, type AuditAction, type AuditLog } from './audit-log.js';
import type { ChangeOptions, ChangeResult, ConfigManager } from './config-manager.js';

/** Largest request body accepted (a config document with thousands of line items fits easily). */
export const ADMIN_MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface AdminRequest {
  method: string;
  /** The request target: path and optional query string, e.g. `/admin/audit?limit=20`. */
  path: string;
  /** Header names in any case (uWebSockets.js gives them lower-cased). */
  headers: Readonly<Record<string, string | undefined>>;
  /** The complete body (empty or absent when none). */
  body?: string | Uint8Array | null;
}

export interface AdminResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface AdminApiOptions {
  auth: AdminAuth;
  manager: ConfigManager;
  /** Default: the manager's audit log. */
  audit?: AuditLog;
  maxBodyBytes?: number;
  logger?: AdminLogger;
}

interface Call {
  principal: AdminPrincipal;
  params: string[];
  query: URLSearchParams;
  body: unknown;
  options: ChangeOptions;
}

interface Endpoint {
  role: AdminRole;
  body: boolean;
  /** For write endpoints: what a refused (403) attempt is audited as. */
  audit?: (params: string[]) => { action: AuditAction; target: string };
  /** A Promise only from an async read endpoint (addAsyncReadEndpoint). */
  run: (call: Call) => AdminResponse | Promise<AdminResponse>;
}

interface Route {
  pattern: RegExp;
  methods: Record<string, Endpoint>;
}

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

function json(status: number, value: unknown, extra: Record<string, string> = {}): AdminResponse {
  return { status, headers: { ...JSON_HEADERS, ...extra }, body: JSON.stringify(value) };
}

function errorResponse(status: number, error: string, message: string, details: readonly ErrorDetail[], extra: Record<string, string> = {}): AdminResponse {
  const all = details.length ? details : [{ path: '', message }];
  return json(status, { error, message, details: all }, extra);
}

/** HTTP status and error label of a SegbidError thrown by the manager. */
function statusOf(code: string): { status: number; error: string } {
  switch (code) {
    case 'ADMIN_BAD_REQUEST':
      return { status: 400, error: 'bad_request' };
    case 'ADMIN_PATCH_FORBIDDEN_FIELD':
      return { status: 400, error: 'patch_field_not_allowed' };
    case 'ADMIN_NOT_FOUND':
      return { status: 404, error: 'not_found' };
    case 'ADMIN_PENDING':
      return { status: 503, error: 'pending' };
    case 'ADMIN_VERSION_CONFLICT':
      return { status: 412, error: 'version_conflict' };
    case 'CONFIG_INVALID':
    case 'CONFIG_UNREADABLE':
    case 'STORE_UNREADABLE':
    case 'STORE_CORRUPT':
    case 'STORE_VERSION':
    case 'STORE_MISMATCH':
      return { status: 422, error: 'config_rejected' };
    case 'CONFIG_PERSIST':
      return { status: 500, error: 'persist_failed' };
    default:
      return { status: 500, error: 'internal' };
  }
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  412: 'Precondition Failed',
  413: 'Payload Too Large',
  422: 'Unprocessable Content',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  503: 'Service Unavailable',
};

/** The HTTP status line of a status, e.g. `413 Payload Too Large` (uWebSockets.js writeStatus wants it whole). */
export function statusLine(status: number): string {
  const text = STATUS_TEXT[status];
  return text === undefined ? String(status) : `${status} ${text}`;
}

function etag(version: number): string {
  return `"v${version}"`;
}

/** `"v12"`, `W/"v12"`, `v12` or `12` → 12; `*` or absent → undefined; anything else → NaN. */
function parseIfMatch(value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '*') return undefined;
  const m = /^\s*(?:W\/)?"?v?(\d{1,15})"?\s*$/.exec(value);
  return m === null ? NaN : Number(m[1]);
}

function changeBody(result: ChangeResult): AdminResponse {
  return json(
    200,
    { changed: result.changed, version: result.version, summary: result.version.summary, diff: result.diff },
    { etag: etag(result.version.id) },
  );
}

export class AdminApi {
  private readonly auth: AdminAuth;
  private readonly manager: ConfigManager;
  private readonly audit: AuditLog;
  private readonly maxBodyBytes: number;
  private readonly logger: AdminLogger;
  private readonly routes: Route[];

  constructor(options: AdminApiOptions) {
    this.auth = options.auth;
    this.manager = options.manager;
    this.audit = options.audit ?? options.manager.audit;
    this.maxBodyBytes = options.maxBodyBytes ?? ADMIN_MAX_BODY_BYTES;
    this.logger = options.logger ?? SILENT_LOGGER;
    this.routes = this.buildRoutes();
  }

  /** Whether a path belongs to this API (the transport routes `/admin` and `/admin/*` here). */
  static owns(path: string): boolean {
    const p = path.split('?', 1)[0];
    return p === '/admin' || p.startsWith('/admin/');
  }

  /**
   * Adds a read-only JSON endpoint under /admin (KPIs, discrepancies, allocations: data the dashboard reads),
   * served with the same authentication as the rest of the API.
   */
  addReadEndpoint(pattern: RegExp, run: (query: URLSearchParams, params: string[]) => unknown): void {
    this.routes.push({ pattern, methods: { GET: { role: 'read', body: false, run: (call) => json(200, run(call.query, call.params)) } } });
  }

  /** The 413 answer, for a transport that stops reading a body over the cap (before `handle` is called). */
  tooLarge(): AdminResponse {
    return errorResponse(413, 'payload_too_large', `the body is larger than ${this.maxBodyBytes} bytes`, [{ path: '', message: `at most ${this.maxBodyBytes} bytes` }]);
  }

  /** The cap a transport applies while reading the body. */
  get bodyLimit(): number {
    return this.maxBodyBytes;
  }

  /**
   * A read endpoint whose answer is gathered asynchronously (a cluster's main thread asking its workers). Its
   * errors map as a synchronous endpoint's (a SegbidError's code to its status, anything else a 500).
   */
  addAsyncReadEndpoint(pattern: RegExp, run: (query: URLSearchParams, params: string[]) => Promise<unknown>): void {
    const path = String(pattern);
    this.routes.push({
      pattern,
      methods: {
        GET: {
          role: 'read',
          body: false,
          run: (call) =>
            run(call.query, call.params)
              .then(
                (value) => json(200, value),
                (e: unknown) => {
                  if (!(e instanceof SegbidError)) throw e;
                  const { status, error } = statusOf(e.code);
                  return errorResponse(status, error, e.message.split('\n')[0], e.details);
                },
              )
              // Anything else (a throw of the endpoint, a value JSON cannot write): a 500, never a rejection.
              .catch((e: unknown) => {
                this.logger.error({ err: e, path }, 'admin API internal error');
                return errorResponse(500, 'internal', 'internal error', []);
              }),
        },
      },
    });
  }

  /** The answer; a Promise only for an async read endpoint (it never rejects). */
  handle(req: AdminRequest): AdminResponse | Promise<AdminResponse> {
    try {
      return this.dispatch(req);
    } catch (e) {
      this.logger.error({ err: e, method: req.method, path: req.path.split('?', 1)[0] }, 'admin API internal error');
      return errorResponse(500, 'internal', 'internal error', []);
    }
  }

  private dispatch(req: AdminRequest): AdminResponse | Promise<AdminResponse> {
    const q = req.path.indexOf('?');
    let path = q < 0 ? req.path : req.path.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : req.path.slice(q + 1));
    if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    if (!AdminApi.owns(path)) return errorResponse(404, 'not_found', `no such endpoint: ${path}`, [{ path, message: 'not an admin endpoint' }]);

    const who = this.auth.check(req.headers, 'read');
    if (!who.ok) return errorResponse(who.status, who.error, who.message, [{ path: '/headers/authorization', message: who.message }], who.headers);

    let route: Route | undefined;
    let match: RegExpExecArray | null = null;
    for (const r of this.routes) {
      match = r.pattern.exec(path);
      if (match !== null) {
        route = r;
        break;
      }
    }
    if (route === undefined || match === null) return errorResponse(404, 'not_found', `no such endpoint: ${path}`, [{ path, message: 'unknown admin endpoint' }]);
    const method = req.method.toUpperCase();
    const endpoint = route.methods[method];
    if (endpoint === undefined) {
      const allow = Object.keys(route.methods).join(', ');
      return errorResponse(405, 'method_not_allowed', `${method} is not allowed on ${path}`, [{ path, message: `allowed: ${allow}` }], { allow });
    }
    let params: string[];
    try {
      params = match.slice(1).map((p) => decodeURIComponent(p));
    } catch {
      return errorResponse(400, 'bad_request', 'malformed percent-encoding in the path', [{ path, message: 'malformed percent-encoding' }]);
    }

    if (endpoint.role === 'write') {
      const can = this.auth.check(req.headers, 'write');
      if (!can.ok) {
        if (can.status === 403 && endpoint.audit) {
          const { action, target } = endpoint.audit(params);
          this.audit.record({
            time: new Date().toISOString(),
            author: authorLabel(who.principal),
            action,
            target,
            result: 'rejected',
            summary: 'forbidden: a read token cannot change the config',
            versionId: this.manager.currentVersion.id,
            errorCount: 1,
          });
        }
        return errorResponse(can.status, can.error, can.message, [{ path: '/headers/authorization', message: can.message }], can.headers);
      }
    }

    const ifMatch = parseIfMatch(headerValue(req.headers, 'if-match'));
    if (Number.isNaN(ifMatch)) {
      return errorResponse(400, 'bad_request', 'If-Match must be a version ETag such as "v12"', [{ path: '/headers/if-match', message: 'expected "v<version>"' }]);
    }

    let body: unknown = undefined;
    if (endpoint.body) {
      const raw = req.body ?? '';
      const size = typeof raw === 'string' ? Buffer.byteLength(raw) : raw.byteLength;
      if (size > this.maxBodyBytes) return this.tooLarge();
      const text = typeof raw === 'string' ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('utf8');
      if (text.trim() === '') return errorResponse(400, 'invalid_json', 'a JSON body is required', [{ path: '', message: 'empty body' }]);
      try {
        body = JSON.parse(text);
      } catch (e) {
        return errorResponse(400, 'invalid_json', 'the body is not valid JSON', [{ path: '', message: (e as Error).message.slice(0, 200) }]);
      }
    }

    try {
      return endpoint.run({ principal: who.principal, params, query, body, options: ifMatch === undefined ? {} : { expectedVersion: ifMatch } });
    } catch (e) {
      if (!(e instanceof SegbidError)) throw e;
      const { status, error } = statusOf(e.code);
      if (status === 500) this.logger.error({ err: e, path }, 'admin change failed');
      return errorResponse(status, error, e.message.split('\n')[0], e.details);
    }
  }

  private buildRoutes(): Route[] {
    const m = this.manager;
    const author = (c: Call) => ({ role: c.principal.role, name: c.principal.name });
    return [
      {
        pattern: /^\/admin\/config$/,
        methods: {
          GET: {
            role: 'read',
            body: false,
            run: () => {
              const v = m.currentVersion;
              return { status: 200, headers: { ...JSON_HEADERS, etag: etag(v.id), 'x-segbid-config-version': String(v.id) }, body: m.documentJson() };
            },
          },
          PUT: {
            role: 'write',
            body: true,
            audit: () => ({ action: 'replace', target: 'config' }),
            run: (c) => changeBody(m.replace(c.body, author(c), c.options)),
          },
        },
      },
      {
        pattern: /^\/admin\/config\/validate$/,
        methods: { POST: { role: 'read', body: true, run: (c) => json(200, m.validate(c.body)) } },
      },
      {
        pattern: /^\/admin\/config\/dry-run$/,
        methods: { POST: { role: 'read', body: true, run: (c) => json(200, { ...m.dryRun(c.body), baseVersion: m.currentVersion.id }) } },
      },
      {
        pattern: /^\/admin\/config\/versions$/,
        methods: { GET: { role: 'read', body: false, run: () => json(200, { current: m.currentVersion.id, versions: m.versions() }) } },
      },
      {
        pattern: /^\/admin\/config\/rollback\/([^/]+)$/,
        methods: {
          POST: {
            role: 'write',
            body: false,
            audit: (p) => ({ action: 'rollback', target: `version:${p[0]}` }),
            run: (c) => {
              if (!/^\d{1,15}$/.test(c.params[0])) {
                return errorResponse(400, 'bad_request', 'the version must be a number', [{ path: '/version', message: 'expected a version number' }]);
              }
              return changeBody(m.rollback(Number(c.params[0]), author(c), c.options));
            },
          },
        },
      },
      {
        pattern: /^\/admin\/line-items\/([^/]+)$/,
        methods: {
          PATCH: {
            role: 'write',
            body: true,
            audit: (p) => ({ action: 'patch_line_item', target: `lineItem:${p[0]}` }),
            run: (c) => changeBody(m.patchLineItem(c.params[0], c.body, author(c), c.options)),
          },
        },
      },
      {
        pattern: /^\/admin\/campaigns\/([^/]+)$/,
        methods: {
          PATCH: {
            role: 'write',
            body: true,
            audit: (p) => ({ action: 'patch_campaign', target: `campaign:${p[0]}` }),
            run: (c) => changeBody(m.patchCampaign(c.params[0], c.body, author(c), c.options)),
          },
        },
      },
      {
        pattern: /^\/admin\/segments\/reload$/,
        methods: {
          POST: {
            role: 'write',
            body: false,
            audit: () => ({ action: 'reload_store', target: 'segmentStore' }),
            run: (c) => {
              const r = m.reloadStore(author(c));
              return json(200, r, { etag: etag(r.version.id) });
            },
          },
        },
      },
      {
        pattern: /^\/admin\/audit$/,
        methods: {
          GET: {
            role: 'read',
            body: false,
            run: (c) => {
              const raw = c.query.get('limit');
              const limit = raw === null ? 100 : Number(raw);
              if (!Number.isInteger(limit) || limit < 1 || limit > 10000) {
                return errorResponse(400, 'bad_request', 'limit must be an integer from 1 to 10000', [{ path: '/query/limit', message: 'expected 1..10000' }]);
              }
              return json(200, { entries: this.audit.tail(limit).reverse(), writeErrors: this.audit.writeErrors });
            },
          },
        },
      },
    ];
  }
}
