/**
 * The privacy verdict of one request: may the bidder use personal data (user keys -> CRM / lookalike segments,
 * frequency caps, user-level learning), and if not, why. Reason codes are small integers (metrics labels below),
 * so the verdict is a reused object and the hot path allocates nothing.
 */
export const PRIVACY_REASON = {
  ok: 0,
  coppa: 1,
  gdpr_no_consent: 2,
  gdpr_bad_string: 3,
  gdpr_vendor_missing: 4,
  gdpr_purpose_missing: 5,
  us_privacy_optout: 6,
  us_privacy_invalid: 7,
  gpp_optout: 8,
  gpp_unreadable: 9,
} as const;
export type PrivacyReason = (typeof PRIVACY_REASON)[keyof typeof PRIVACY_REASON];
export const PRIVACY_REASON_LABELS: readonly string[] = Object.keys(PRIVACY_REASON);

/** Reused per request (one per Decider); read it before the next evaluate. */
export class PrivacyVerdict {
  personalData = true;
  reason: number = PRIVACY_REASON.ok;

  set(reason: number): this {
    this.reason = reason;
    this.personalData = reason === PRIVACY_REASON.ok;
    return this;
  }
}
