/**
 * The privacy gate: one verdict per request, before any user-key lookup.
 *
 * Contract
 * - `evaluate(req, out)` fills the reused PrivacyVerdict `out` and returns it. Signals read (2.6 location first,
 *   then the 2.5 `ext` location):
 *     COPPA        regs.coppa = 1                                   -> coppa
 *     GDPR         regs.gdpr | regs.ext.gdpr = 1 (absent: per gdprMissing), consent in user.consent |
 *                  user.ext.consent (TCF v2)                         -> gdpr_* (tcf.ts)
 *     US Privacy   regs.us_privacy | regs.ext.us_privacy            -> us_privacy_optout / us_privacy_invalid
 *     GPP          regs.gpp + regs.gpp_sid (| regs.ext.gpp, regs.ext.gpp_sid): the sections that gpp_sid lists
 *                  (all sections of the string when gpp_sid is absent) -> TCF section: gdpr_* codes; USP
 *                  section: gpp_optout; other sections / malformed string: gpp_unreadable (per gppUnreadable)
 *   Every present signal must allow personal data (the conservative reading while exchanges send both legacy
 *   fields and GPP); the reason is the first refusal in the order above.
 * - Cost: a few property reads; a consent / GPP string seen before is one LRU hit each. A new TC string is
 *   decoded on the spot (the only slow path: see test/privacy-tcf.test.ts for the measured cost).
 * - personalData=false means: no user-key lookups (no CRM / lookalike / 3rd-party segments), no frequency-cap
 *   check or record by user, no user-level learning; contextual line items still bid.
 */
import { LRUCache } from 'lru-cache';
import { GPP_TCF_EU_V2, GPP_USP_V1, parseGpp } from './gpp.js';
import type { PrivacySettings } from './schema.js';
import { TcfEvaluator } from './tcf.js';
import { parseUsPrivacy, USP_INVALID, USP_OPTOUT } from './us-privacy.js';
import { PRIVACY_REASON, PrivacyVerdict } from './verdict.js';

type Any = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const MAX_GPP_CHARS = 16 * 1024;

/** A GPP string, decoded once: per section id, its verdict code (ok, a refusal, or gpp_unreadable). */
interface GppDecoded {
  readonly ok: boolean;
  readonly ids: Int32Array;
  readonly codes: Int32Array;
}
const GPP_MALFORMED: GppDecoded = { ok: false, ids: new Int32Array(0), codes: new Int32Array(0) };

export class PrivacyGate {
  readonly settings: PrivacySettings;
  readonly tcf: TcfEvaluator;
  private readonly gppCache: LRUCache<string, GppDecoded>;

  constructor(settings: PrivacySettings) {
    this.settings = settings;
    this.tcf = new TcfEvaluator(settings);
    this.gppCache = new LRUCache<string, GppDecoded>({ max: settings.consentCacheSize });
  }

  evaluate(req: Any, out: PrivacyVerdict): PrivacyVerdict {
    const regs = req.regs;
    const regsExt = regs !== undefined && regs !== null && typeof regs.ext === 'object' && regs.ext !== null ? regs.ext : undefined;
    // Flags are integers in OpenRTB; some exchanges send "1": read both, a privacy flag must not be missed.
    if (regs !== undefined && regs !== null && (regs.coppa === 1 || regs.coppa === '1')) return out.set(PRIVACY_REASON.coppa);

    const gdpr = regs !== undefined && regs !== null && regs.gdpr !== undefined ? regs.gdpr : regsExt !== undefined ? regsExt.gdpr : undefined;
    if (gdpr === 1 || gdpr === '1' || ((gdpr === undefined || gdpr === null) && this.settings.gdprMissing === 'apply')) {
      const user = req.user;
      const consent =
        user === undefined || user === null
          ? undefined
          : user.consent !== undefined
            ? user.consent
            : typeof user.ext === 'object' && user.ext !== null
              ? user.ext.consent
              : undefined;
      if (typeof consent !== 'string' || consent.length === 0) return out.set(PRIVACY_REASON.gdpr_no_consent);
      const code = this.tcf.verdict(consent);
      if (code !== PRIVACY_REASON.ok) return out.set(code);
    }

    const usp = regs !== undefined && regs !== null && regs.us_privacy !== undefined ? regs.us_privacy : regsExt !== undefined ? regsExt.us_privacy : undefined;
    if (usp !== undefined) {
      const u = typeof usp === 'string' ? parseUsPrivacy(usp) : USP_INVALID;
      if (u === USP_OPTOUT) return out.set(PRIVACY_REASON.us_privacy_optout);
      if (u === USP_INVALID && this.settings.usPrivacyInvalid === 'deny') return out.set(PRIVACY_REASON.us_privacy_invalid);
    }

    const gpp = regs !== undefined && regs !== null && regs.gpp !== undefined ? regs.gpp : regsExt !== undefined ? regsExt.gpp : undefined;
    // An empty GPP string is "no GPP signal" (some exchanges always send the field).
    if (gpp !== undefined && gpp !== null && gpp !== '') {
      const sid = regs !== undefined && regs !== null && regs.gpp_sid !== undefined ? regs.gpp_sid : regsExt !== undefined ? regsExt.gpp_sid : undefined;
      const code = this.gppVerdict(gpp, Array.isArray(sid) ? (sid as unknown[]) : undefined);
      if (code !== PRIVACY_REASON.ok) return out.set(code);
    }
    return out.set(PRIVACY_REASON.ok);
  }

  /**
   * The verdict of a GPP string for the applicable section ids (undefined = every section in the string; an
   * array without a positive id, e.g. [] or [-1], = no section applies).
   */
  gppVerdict(gpp: unknown, sid: unknown[] | undefined): number {
    if (sid !== undefined) {
      let any = false;
      for (let j = 0; j < sid.length && !any; j++) any = typeof sid[j] === 'number' && (sid[j] as number) > 0;
      if (!any) return PRIVACY_REASON.ok;
    }
    const deny = this.settings.gppUnreadable === 'deny';
    const decoded = typeof gpp === 'string' && gpp.length > 0 ? this.decodeGpp(gpp) : GPP_MALFORMED;
    if (!decoded.ok) {
      // Unreadable: if TCF EU applies, no consent can be read (opt-in regime); otherwise the configured rule.
      if (sid !== undefined && sid.indexOf(GPP_TCF_EU_V2) !== -1) return PRIVACY_REASON.gdpr_bad_string;
      return deny ? PRIVACY_REASON.gpp_unreadable : PRIVACY_REASON.ok;
    }
    if (sid === undefined) {
      for (let i = 0; i < decoded.codes.length; i++) {
        const c = decoded.codes[i];
        if (c !== PRIVACY_REASON.ok && (c !== PRIVACY_REASON.gpp_unreadable || deny)) return c;
      }
      return PRIVACY_REASON.ok;
    }
    for (let j = 0; j < sid.length; j++) {
      const id = sid[j];
      if (typeof id !== 'number') continue;
      let i = decoded.ids.length - 1;
      while (i >= 0 && decoded.ids[i] !== id) i--; // a handful of sections: a plain loop beats indexOf
      if (i === -1) {
        // A jurisdiction without its section: TCF is opt-in, so no section = no consent; the US regimes are
        // opt-out, so no section = no opt-out signal.
        if (id === GPP_TCF_EU_V2) return PRIVACY_REASON.gdpr_no_consent;
        continue;
      }
      const c = decoded.codes[i];
      if (c !== PRIVACY_REASON.ok && (c !== PRIVACY_REASON.gpp_unreadable || deny)) return c;
    }
    return PRIVACY_REASON.ok;
  }

  private decodeGpp(gpp: string): GppDecoded {
    const hit = this.gppCache.get(gpp);
    if (hit !== undefined) return hit;
    if (gpp.length > MAX_GPP_CHARS) return GPP_MALFORMED;
    const parsed = parseGpp(gpp);
    let decoded = GPP_MALFORMED;
    if (parsed !== null) {
      const codes = parsed.ids.map((id, i) => {
        const section = parsed.sections[i];
        if (id === GPP_TCF_EU_V2) return this.tcf.verdict(section);
        if (id === GPP_USP_V1) {
          const u = parseUsPrivacy(section);
          return u === USP_OPTOUT ? PRIVACY_REASON.gpp_optout : u === USP_INVALID ? PRIVACY_REASON.gpp_unreadable : PRIVACY_REASON.ok;
        }
        // 3 is the header's own id and 4 the signal-integrity section: neither carries a choice of the user.
        if (id === 3 || id === 4) return PRIVACY_REASON.ok;
        return PRIVACY_REASON.gpp_unreadable;
      });
      decoded = { ok: true, ids: Int32Array.from(parsed.ids), codes: Int32Array.from(codes) };
    }
    this.gppCache.set(gpp, decoded);
    return decoded;
  }
}
