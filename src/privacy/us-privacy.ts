/**
 * CCPA / US Privacy strings (`regs.us_privacy`, `regs.ext.us_privacy`, GPP section 6): four characters,
 * version "1", then notice given, opt-out of sale, LSPA covered, each Y, N or "-" (not applicable).
 * Opt-out of sale (third character "Y") means no personal data. Allocation-free (charCodeAt only).
 */
export const USP_OK = 0;
export const USP_OPTOUT = 1;
export const USP_INVALID = 2;

const Y = 89;
const N = 78;
const DASH = 45;

function flag(c: number): boolean {
  return c === Y || c === N || c === DASH;
}

export function parseUsPrivacy(s: string): number {
  if (s.length !== 4 || s.charCodeAt(0) !== 49 /* "1" */) return USP_INVALID;
  const a = s.charCodeAt(1);
  const b = s.charCodeAt(2);
  const c = s.charCodeAt(3);
  if (!flag(a) || !flag(b) || !flag(c)) return USP_INVALID;
  return b === Y ? USP_OPTOUT : USP_OK;
}
