/**
 * The volume report of a compile run, as text for a trader: one line per segment (users, share of the CRM
 * base, users reachable through a bidder key, lookalike reach), the totals, the keys found in several records
 * (when any), then WARNING lines for compiled segments with fewer reachable users than --min-activation (too
 * small to buy or to measure), then the run's notes.
 */
import type { CompileReport, SegmentVolume } from './segment-compiler.js';

function n(x: number): string {
  return Math.round(x).toLocaleString('en-US');
}

function pct(x: number): string {
  return `${(x * 100).toFixed(x < 0.001 && x > 0 ? 3 : 1)}%`;
}

function pad(s: string, width: number, right = false): string {
  return right ? s.padStart(width) : s.padEnd(width);
}

function noteOf(s: SegmentVolume): string {
  const t = s.lookalike;
  if (t) {
    const reach = t.scoredBase === 0 ? 0 : t.passing / t.scoredBase;
    return (
      `reach ${pct(reach)} of ${n(t.scoredBase)} scored (cap ${pct(t.reach)}), seed ${n(t.seedSize)}, ` +
      `${t.weights.length} features, threshold ${(t.ruleThreshold / 1000).toFixed(3)}` +
      (t.threshold !== t.ruleThreshold ? ` -> ${(t.threshold / 1000).toFixed(3)} (reach cap)` : '')
    );
  }
  if (s.kind === 'contextual') return 'bid time only (request context)';
  if (s.kind === 'third_party') return 'CRM users with it; also matched per request from user.data';
  if (s.bidTime) return 'CRM members; more matched per request';
  return '';
}

/** Segments that deserve a warning: compiled membership (not contextual / third-party) below the floor. */
export function activationWarnings(report: CompileReport, minActivation: number): string[] {
  const out: string[] = [];
  for (const s of report.segments) {
    if (s.kind === 'contextual' || s.kind === 'third_party') continue;
    if (s.activable < minActivation) {
      out.push(`WARNING: segment ${s.id} (${s.kind}): ${n(s.activable)} activable users < --min-activation ${n(minActivation)}`);
    }
  }
  return out;
}

export function formatReport(report: CompileReport, minActivation: number): string {
  const lines: string[] = [];
  const idWidth = Math.max(7, ...report.segments.map((s) => s.id.length));
  lines.push(
    `${pad('segment', idWidth)}  ${pad('kind', 11)} ${pad('bit', 4, true)} ${pad('users', 11, true)} ${pad('share', 7, true)} ${pad('activable', 11, true)}  note`,
  );
  for (const s of report.segments) {
    const contextual = s.kind === 'contextual';
    lines.push(
      `${pad(s.id, idWidth)}  ${pad(s.kind, 11)} ${pad(String(s.bit), 4, true)} ${pad(contextual ? '-' : n(s.users), 11, true)} ` +
        `${pad(contextual ? '-' : pct(s.share), 7, true)} ${pad(contextual ? '-' : n(s.activable), 11, true)}  ${noteOf(s)}`.trimEnd(),
    );
  }
  const keys = Object.entries(report.keys).map(([k, v]) => `${k} ${n(v)}`).join(', ') || 'none';
  lines.push('');
  lines.push(
    `CRM users ${n(report.users)}, with a bidder key ${n(report.usersWithKeys)} (${pct(report.users ? report.usersWithKeys / report.users : 0)}), ` +
      `with 3rd-party data ${n(report.usersWithThirdParty)}; keys: ${keys}; distinct rows ${n(report.distinctRows)}` +
      (report.storeBytes > 0 ? `; store ${n(report.storeBytes)} bytes` : ''),
  );
  if (report.duplicateKeys > 0) {
    const d = report.duplicateKeys;
    const r = report.supersededRecords;
    lines.push(
      `duplicate keys: ${n(d)} key${d === 1 ? '' : 's'} in more than one record (the last record kept); ` +
        `${n(r)} record${r === 1 ? '' : 's'} superseded by later ones, not counted`,
    );
  }
  for (const [reason, count] of Object.entries(report.skippedKeys)) lines.push(`skipped keys: ${n(count)} ${reason}`);
  for (const note of report.notes) lines.push(`note: ${note}`);
  lines.push(...activationWarnings(report, minActivation));
  return lines.join('\n') + '\n';
}
