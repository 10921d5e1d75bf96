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
  | 'LISTEN_FAILED';

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
