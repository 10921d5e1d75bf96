/**
 * Typed errors for everything that is NOT the hot path. The bid path never throws for bad input: it returns
 * no-bid / bad-request reason codes instead (see src/openrtb/reasons.ts).
 */
export type SegbidErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_UNREADABLE'
  | 'STORE_UNREADABLE'
  | 'STORE_CORRUPT'
  | 'STORE_VERSION'
  | 'STORE_MISMATCH'
  | 'UWS_FALLBACK'
  | 'LISTEN_FAILED'
  | 'FEEDBACK_INVALID'
  | 'EVENT_KEYS_INVALID'
  | 'EVENT_CONFIG_INVALID'
  | 'EVENT_LOG_UNREADABLE'
  | 'EVENT_LOG_WRITE'
  | 'RECONCILE_INPUT'
  | 'LEDGER_INVARIANT'
  | 'LEDGER_SNAPSHOT_CORRUPT'
  | 'LEDGER_JOURNAL'
  // admin API (src/admin): HTTP-ish failures carry their status through the code, see admin-api.ts
  | 'ADMIN_TOKENS_INVALID'
  | 'ADMIN_BAD_REQUEST'
  | 'ADMIN_NOT_FOUND'
  | 'ADMIN_PENDING'
  | 'ADMIN_PATCH_FORBIDDEN_FIELD'
  | 'ADMIN_VERSION_CONFLICT'
  | 'CONFIG_PERSIST'
  | 'CONFIG_SERVING'
  | 'AUDIT_LOG_WRITE';

export interface ErrorDetail {
  /** JSON-pointer-like path of the offending value, e.g. `/lineItems/3/bid/cpm`. */
  path: string;
  message: string;
}

export class SegbidError extends Error {
  readonly code: SegbidErrorCode;
  readonly details: readonly ErrorDetail[];

  constructor(code: SegbidErrorCode, message: string, details: readonly ErrorDetail[] = []) {
    super(details.length ? `${message}\n${details.map((d) => `  ${d.path || '/'}: ${d.message}`).join('\n')}` : message);
    this.name = 'SegbidError';
    this.code = code;
    this.details = details;
  }
}
