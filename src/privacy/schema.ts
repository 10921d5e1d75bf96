/**
 * Privacy settings: the config fragment (ajv JSON Schema, merged by the integrator into `bidder.privacy`), its
 * TypeScript type, the defaults, and the resolver that checks what a schema cannot (TCF legal-basis rules).
 *
 * MERGE (into src/config/schema.ts configSchema): properties.bidder.properties += bidderPrivacyProperties
 */
import type { ErrorDetail } from '../common/errors.js';

export interface PrivacySettingsDef {
  /** Our vendor id in the IAB Global Vendor List. Without it no GDPR request can carry personal data. */
  vendorId?: number;
  /** TCF purposes needed before using personal data (default 1 store/access, 2 basic ads, 3-4 personalised ads, 7 measurement). */
  purposes?: number[];
  /** Purposes for which legitimate interest is accepted instead of consent (default 2 and 7; never 1, 3-6 under TCF 2.2). */
  legitimateInterest?: number[];
  /** Requests without regs.gdpr: `ignore` = GDPR does not apply (default; OpenRTB: absent = unknown), `apply` = it does. */
  gdprMissing?: 'ignore' | 'apply';
  /** Malformed us_privacy strings: `deny` personal data (default, conservative) or `allow`. */
  usPrivacyInvalid?: 'deny' | 'allow';
  /** Applicable GPP sections this bidder cannot decode (US state/national 7+, Canada 5): `deny` (default) or `allow`. */
  gppUnreadable?: 'deny' | 'allow';
  /** Decoded consent verdicts kept (LRU), per distinct consent / GPP string. */
  consentCacheSize?: number;
  /** TC string decoder: `iabtcf` (@iabtcf/core, the reference, default) or `fast` (targeted reader, ~30x faster). */
  tcfDecoder?: 'iabtcf' | 'fast';
}

export interface PrivacySettings {
  vendorId: number | null;
  purposes: readonly number[];
  legitimateInterest: readonly number[];
  gdprMissing: 'ignore' | 'apply';
  usPrivacyInvalid: 'deny' | 'allow';
  gppUnreadable: 'deny' | 'allow';
  consentCacheSize: number;
  tcfDecoder: 'iabtcf' | 'fast';
}

export const DEFAULT_PRIVACY: PrivacySettings = {
  vendorId: null,
  purposes: [1, 2, 3, 4, 7],
  legitimateInterest: [2, 7],
  gdprMissing: 'ignore',
  usPrivacyInvalid: 'deny',
  gppUnreadable: 'deny',
  consentCacheSize: 10_000,
  tcfDecoder: 'iabtcf',
};

/** TCF 2.2 policy: purposes that can only rest on consent. */
export const CONSENT_ONLY_PURPOSES: readonly number[] = [1, 3, 4, 5, 6];

export function resolvePrivacySettings(def: PrivacySettingsDef | undefined, errors: ErrorDetail[], path = '/bidder/privacy'): PrivacySettings {
  const li = def?.legitimateInterest ?? DEFAULT_PRIVACY.legitimateInterest;
  li.forEach((p, i) => {
    if (CONSENT_ONLY_PURPOSES.includes(p)) errors.push({ path: `${path}/legitimateInterest/${i}`, message: `purpose ${p} cannot rest on legitimate interest (TCF 2.2: consent only for 1, 3-6)` });
  });
  return {
    vendorId: def?.vendorId ?? DEFAULT_PRIVACY.vendorId,
    purposes: def?.purposes ?? DEFAULT_PRIVACY.purposes,
    legitimateInterest: li,
    gdprMissing: def?.gdprMissing ?? DEFAULT_PRIVACY.gdprMissing,
    usPrivacyInvalid: def?.usPrivacyInvalid ?? DEFAULT_PRIVACY.usPrivacyInvalid,
    gppUnreadable: def?.gppUnreadable ?? DEFAULT_PRIVACY.gppUnreadable,
    consentCacheSize: def?.consentCacheSize ?? DEFAULT_PRIVACY.consentCacheSize,
    tcfDecoder: def?.tcfDecoder ?? DEFAULT_PRIVACY.tcfDecoder,
  };
}

const purpose = { type: 'integer', minimum: 1, maximum: 24 } as const;

export const privacySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    vendorId: { type: 'integer', minimum: 1, maximum: 65535 },
    purposes: { type: 'array', uniqueItems: true, items: purpose },
    legitimateInterest: { type: 'array', uniqueItems: true, items: purpose },
    gdprMissing: { enum: ['ignore', 'apply'] },
    usPrivacyInvalid: { enum: ['deny', 'allow'] },
    gppUnreadable: { enum: ['deny', 'allow'] },
    consentCacheSize: { type: 'integer', minimum: 16, maximum: 10_000_000 },
    tcfDecoder: { enum: ['iabtcf', 'fast'] },
  },
} as const;

export const bidderPrivacyProperties = { privacy: privacySchema } as const;
