/**
 * TCF v2 consent strings -> verdict codes, cached.
 *
 * Contract
 * - `verdict(consent)` returns a PRIVACY_REASON code: ok, gdpr_bad_string, gdpr_no_consent, gdpr_vendor_missing
 *   or gdpr_purpose_missing. A cache hit is one LRU lookup (no allocation). A miss decodes the string and caches
 *   the code; undecodable strings are cached too, so repeated garbage costs one decode. Strings longer than
 *   MAX_CONSENT_CHARS are refused without decoding (gdpr_bad_string) and not cached.
 * - Decoder (settings.tcfDecoder): `iabtcf` = TCString.decode of @iabtcf/core (the reference; tens to hundreds
 *   of microseconds per new string), `fast` = TcfCoreReader (tcf-reader.ts: reads only what the rule needs, a
 *   few microseconds, differential-tested against @iabtcf/core). TC strings carry their creation time, so
 *   most users have a string of their own: the miss path is frequent, which is what `fast` is for.
 * - The rule (TCF 2.2), one implementation for both decoders: for every required purpose p, with restriction =
 *   the publisher restriction for (our vendor, p), if any:
 *     consent basis  = purposeConsents has p AND vendorConsents has us          (not if restriction is REQUIRE_LI)
 *     LI basis       = p accepted for LI by config AND purposeLegitimateInterests has p
 *                      AND vendorLegitimateInterests has us                     (not if restriction is REQUIRE_CONSENT)
 *     restriction NOT_ALLOWED -> the purpose is missing.
 *   A string with no purpose and no vendor signal at all (the user refused everything) is gdpr_no_consent; a
 *   string where our vendor has neither consent nor LI (or not on the basis a purpose needs) is
 *   gdpr_vendor_missing; otherwise a purpose without any basis is gdpr_purpose_missing.
 */
import { LRUCache } from 'lru-cache';
import { TCString, type TCModel } from '@iabtcf/core';
import { PRIVACY_REASON } from './verdict.js';
import type { PrivacySettings } from './schema.js';
import { TcfCoreReader } from './tcf-reader.js';

export const MAX_CONSENT_CHARS = 16 * 1024;

const RESTRICTION_NOT_ALLOWED = 0;
const RESTRICTION_REQUIRE_CONSENT = 1;
const RESTRICTION_REQUIRE_LI = 2;

/** What the rule reads of a decoded string, for one vendor (ours). */
export interface ConsentFacts {
  readonly version: number;
  anySignal(): boolean;
  purposeConsent(p: number): boolean;
  purposeLi(p: number): boolean;
  hasVendorConsent(): boolean;
  hasVendorLi(): boolean;
  /** Publisher restriction type for our vendor and purpose p, -1 = none. */
  restriction(p: number): number;
}

/** ConsentFacts over a TCModel decoded by @iabtcf/core. */
class ModelFacts implements ConsentFacts {
  constructor(
    private readonly m: TCModel,
    private readonly vendor: number,
  ) {}
  get version(): number {
    return Number(this.m.version);
  }
  anySignal(): boolean {
    const m = this.m;
    return m.purposeConsents.size > 0 || m.purposeLegitimateInterests.size > 0 || m.vendorConsents.size > 0 || m.vendorLegitimateInterests.size > 0;
  }
  purposeConsent(p: number): boolean {
    return this.m.purposeConsents.has(p);
  }
  purposeLi(p: number): boolean {
    return this.m.purposeLegitimateInterests.has(p);
  }
  hasVendorConsent(): boolean {
    return this.m.vendorConsents.has(this.vendor);
  }
  hasVendorLi(): boolean {
    return this.m.vendorLegitimateInterests.has(this.vendor);
  }
  restriction(p: number): number {
    return this.m.publisherRestrictions.getRestrictionType(this.vendor, p) ?? -1;
  }
}

export class TcfEvaluator {
  readonly settings: PrivacySettings;
  private readonly cache: LRUCache<string, number>;
  private readonly reader = new TcfCoreReader();
  /** Counters for the metrics endpoint. */
  decodes = 0;
  hits = 0;

  constructor(settings: PrivacySettings) {
    this.settings = settings;
    this.cache = new LRUCache<string, number>({ max: settings.consentCacheSize });
  }

  get cached(): number {
    return this.cache.size;
  }

  /** The verdict code of one TC string (cached). */
  verdict(consent: string): number {
    const hit = this.cache.get(consent);
    if (hit !== undefined) {
      this.hits++;
      return hit;
    }
    if (consent.length > MAX_CONSENT_CHARS) return PRIVACY_REASON.gdpr_bad_string;
    this.decodes++;
    const code = this.settings.tcfDecoder === 'fast' ? this.decodeFast(consent) : this.decodeReference(consent);
    this.cache.set(consent, code);
    return code;
  }

  /** Decodes with @iabtcf/core, uncached (also used by tests as the reference). */
  decodeReference(consent: string): number {
    const vendor = this.settings.vendorId;
    let model: TCModel;
    try {
      model = TCString.decode(consent);
    } catch {
      return PRIVACY_REASON.gdpr_bad_string;
    }
    return evaluateConsent(new ModelFacts(model, vendor ?? 0), this.settings);
  }

  /** Decodes with the targeted reader, uncached. */
  decodeFast(consent: string): number {
    const r = this.reader;
    if (!r.load(consent, this.settings.vendorId ?? 0)) return PRIVACY_REASON.gdpr_bad_string;
    return evaluateConsent(r, this.settings);
  }
}

/** The TCF rule above. */
export function evaluateConsent(f: ConsentFacts, s: PrivacySettings): number {
  if (f.version !== 2) return PRIVACY_REASON.gdpr_bad_string;
  if (!f.anySignal()) return PRIVACY_REASON.gdpr_no_consent;
  if (s.vendorId === null) return PRIVACY_REASON.gdpr_vendor_missing; // no vendor id configured: we cannot be consented
  const vendorConsent = f.hasVendorConsent();
  const vendorLi = f.hasVendorLi();
  if (!vendorConsent && !vendorLi) return PRIVACY_REASON.gdpr_vendor_missing;
  let vendorShort = false; // the user allowed a purpose, but not for us on that basis
  for (let i = 0; i < s.purposes.length; i++) {
    const p = s.purposes[i];
    const restriction = f.restriction(p);
    if (restriction === RESTRICTION_NOT_ALLOWED) return PRIVACY_REASON.gdpr_purpose_missing;
    const consentOk = restriction !== RESTRICTION_REQUIRE_LI && f.purposeConsent(p);
    const liOk = restriction !== RESTRICTION_REQUIRE_CONSENT && s.legitimateInterest.includes(p) && f.purposeLi(p);
    if ((consentOk && vendorConsent) || (liOk && vendorLi)) continue;
    if (consentOk || liOk) vendorShort = true;
    else return PRIVACY_REASON.gdpr_purpose_missing;
  }
  return vendorShort ? PRIVACY_REASON.gdpr_vendor_missing : PRIVACY_REASON.ok;
}

/** The rule on a TCModel decoded by @iabtcf/core (tests, tools). */
export function evaluateModel(model: TCModel, s: PrivacySettings): number {
  return evaluateConsent(new ModelFacts(model, s.vendorId ?? 0), s);
}
