/**
 * Bearer-token authentication of the admin API, with two roles: `read` (look at the config, validate, dry-run,
 * versions, audit) and `write` (everything read does, plus change the running config). Write implies read.
 *
 * Contract:
 *   - Tokens come from the start options or the environment: `SEGBID_ADMIN_TOKENS="read:<token>,write:alice:<token>"`
 *     (entries `role:token` or `role:name:token`, comma or newline separated), or the same text in the file named
 *     by `SEGBID_ADMIN_TOKENS_FILE` (lines starting with `#` are comments). Tokens may not contain `:` `,` or
 *     whitespace and must be at least MIN_TOKEN_LENGTH characters. A malformed spec throws ADMIN_TOKENS_INVALID
 *     at start-up (fail loud rather than run with fewer tokens than the operator thinks).
 *   - Only SHA-256 digests of the tokens are kept in memory. A presented token is hashed and compared with EVERY
 *     configured digest with crypto.timingSafeEqual (equal-length digests, no early exit), so neither the
 *     content nor which entry matched leaks through timing.
 *   - No `Authorization: Bearer` header → 401 with `WWW-Authenticate: Bearer`; unknown token → 401; a read token
 *     on a write endpoint → 403. No tokens configured → the admin API is disabled: every call is 401 and a
 *     warning is logged once. Never open by default.
 *   - Tokens are never logged, never put in an error message, never returned.
 */
import crypto from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SegbidError, type ErrorDetail } from '../common/errors.js';

export type AdminRole = 'read' | 'write';

/** Who made a call: the role of the token and the name given to it in the token config (default: the role). */
export interface AdminPrincipal {
  role: AdminRole;
  name: string;
}

export interface AdminTokenEntry {
  role: AdminRole;
  name?: string;
  token: string;
}

/** Just what the admin modules log; a pino Logger fits. */
export interface AdminLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export const SILENT_LOGGER: AdminLogger = { info() {}, warn() {}, error() {} };

/** Shorter tokens can be guessed; 16 characters of a random base64 string are ~96 bits. */
export const MIN_TOKEN_LENGTH = 16;
const NAME_PATTERN = /^[A-Za-z0-9._@-]{1,64}$/;
/** Anything longer is not one of ours; refusing it early bounds the hashing work of a hostile header. */
const MAX_PRESENTED_LENGTH = 4096;

export type AuthOutcome =
  | { ok: true; principal: AdminPrincipal }
  | { ok: false; status: 401 | 403; error: 'unauthorized' | 'forbidden'; message: string; headers: Record<string, string> };

interface StoredToken {
  role: AdminRole;
  name: string;
  digest: Buffer;
}

function sha256(text: string): Buffer {
  return crypto.createHash('sha256').update(text, 'utf8').digest();
}

/**
 * Parses a token spec (the SEGBID_ADMIN_TOKENS format). Error details name the entry by position, never by
 * content, since the content is a secret.
 */
export function parseTokenSpec(spec: string, sourceName = 'SEGBID_ADMIN_TOKENS'): AdminTokenEntry[] {
  const entries: AdminTokenEntry[] = [];
  const errors: ErrorDetail[] = [];
  const items = spec
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0 && !s.startsWith('#'));
  items.forEach((item, i) => {
    const parts = item.split(':');
    const path = `${sourceName}[${i}]`;
    if (parts.length !== 2 && parts.length !== 3) {
      errors.push({ path, message: 'expected role:token or role:name:token' });
      return;
    }
    const role = parts[0];
    if (role !== 'read' && role !== 'write') {
      errors.push({ path, message: 'role must be read or write' });
      return;
    }
    const name = parts.length === 3 ? parts[1] : undefined;
    const token = parts[parts.length - 1];
    if (name !== undefined && !NAME_PATTERN.test(name)) {
      errors.push({ path, message: 'name must be 1-64 characters of A-Z a-z 0-9 . _ @ -' });
      return;
    }
    if (token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
      errors.push({ path, message: `token must be at least ${MIN_TOKEN_LENGTH} characters without whitespace` });
      return;
    }
    entries.push(name === undefined ? { role, token } : { role, name, token });
  });
  if (errors.length) throw new SegbidError('ADMIN_TOKENS_INVALID', 'invalid admin token configuration', errors);
  return entries;
}

function challenge(error?: 'invalid_token' | 'insufficient_scope'): Record<string, string> {
  // RFC 6750 §3: the challenge names the realm and, when a token was presented, what was wrong with it.
  return { 'www-authenticate': error ? `Bearer realm="segbid-admin", error="${error}"` : 'Bearer realm="segbid-admin"' };
}

export class AdminAuth {
  private readonly tokens: readonly StoredToken[];

  constructor(entries: readonly AdminTokenEntry[], logger: AdminLogger = SILENT_LOGGER) {
    const stored: StoredToken[] = [];
    const errors: ErrorDetail[] = [];
    entries.forEach((e, i) => {
      if (e.token.length < MIN_TOKEN_LENGTH) errors.push({ path: `tokens[${i}]`, message: `token shorter than ${MIN_TOKEN_LENGTH} characters` });
      const digest = sha256(e.token);
      // The same token under two roles would make the role depend on the entry order.
      if (stored.some((s) => s.digest.equals(digest))) errors.push({ path: `tokens[${i}]`, message: 'the same token appears twice' });
      stored.push({ role: e.role, name: e.name ?? e.role, digest });
    });
    if (errors.length) throw new SegbidError('ADMIN_TOKENS_INVALID', 'invalid admin token configuration', errors);
    this.tokens = stored;
    if (stored.length === 0) {
      logger.warn({}, 'admin API disabled: no admin tokens configured (SEGBID_ADMIN_TOKENS); every /admin call answers 401');
    } else {
      const count = (role: AdminRole) => stored.filter((t) => t.role === role).length;
      logger.info({ readTokens: count('read'), writeTokens: count('write'), names: stored.map((t) => t.name) }, 'admin API tokens loaded');
    }
  }

  /**
   * From the environment: SEGBID_ADMIN_TOKENS, else the file named by SEGBID_ADMIN_TOKENS_FILE, else none
   * (disabled). An explicit `spec` (start options) wins over both.
   */
  static fromEnv(env: NodeJS.ProcessEnv = process.env, logger: AdminLogger = SILENT_LOGGER, spec?: string): AdminAuth {
    if (spec !== undefined) return new AdminAuth(parseTokenSpec(spec, 'adminTokens'), logger);
    const inline = env.SEGBID_ADMIN_TOKENS;
    if (inline !== undefined && inline.trim() !== '') return new AdminAuth(parseTokenSpec(inline), logger);
    const file = env.SEGBID_ADMIN_TOKENS_FILE;
    if (file !== undefined && file !== '') {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw new SegbidError('ADMIN_TOKENS_INVALID', `cannot read SEGBID_ADMIN_TOKENS_FILE ${file}: ${(e as Error).message}`);
      }
      return new AdminAuth(parseTokenSpec(text, 'SEGBID_ADMIN_TOKENS_FILE'), logger);
    }
    return new AdminAuth([], logger);
  }

  get enabled(): boolean {
    return this.tokens.length > 0;
  }

  /** Authenticates the request and checks that its role allows `need`. `headers` keys are matched case-insensitively. */
  check(headers: Readonly<Record<string, string | undefined>>, need: AdminRole): AuthOutcome {
    if (!this.enabled) {
      return { ok: false, status: 401, error: 'unauthorized', message: 'the admin API is disabled (no admin tokens configured)', headers: challenge() };
    }
    const header = headerValue(headers, 'authorization');
    const match = header === undefined ? null : /^Bearer +([^\s]+) *$/i.exec(header);
    if (match === null) {
      return { ok: false, status: 401, error: 'unauthorized', message: 'missing bearer token (Authorization: Bearer <token>)', headers: challenge() };
    }
    const principal = this.identify(match[1]);
    if (principal === null) {
      return { ok: false, status: 401, error: 'unauthorized', message: 'invalid token', headers: challenge('invalid_token') };
    }
    if (need === 'write' && principal.role !== 'write') {
      return { ok: false, status: 403, error: 'forbidden', message: 'this endpoint needs a write token', headers: challenge('insufficient_scope') };
    }
    return { ok: true, principal };
  }

  /** The principal of a presented token, or null. Compares against every entry: no early exit. */
  private identify(presented: string): AdminPrincipal | null {
    if (presented.length > MAX_PRESENTED_LENGTH) return null;
    const digest = sha256(presented);
    let found: StoredToken | null = null;
    for (const t of this.tokens) {
      // Both digests are 32 bytes, as timingSafeEqual requires; hashing first also hides the token length.
      if (crypto.timingSafeEqual(digest, t.digest) && found === null) found = t;
    }
    return found === null ? null : { role: found.role, name: found.name };
  }
}

export function headerValue(headers: Readonly<Record<string, string | undefined>>, name: string): string | undefined {
  const direct = headers[name];
  if (direct !== undefined) return direct;
  for (const key of Object.keys(headers)) if (key.toLowerCase() === name) return headers[key];
  return undefined;
}
