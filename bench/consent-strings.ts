/**
 * Real TCF v2 consent strings for the bench request mix, encoded by @iabtcf/core against a minimal Global Vendor
 * List built here (nothing is fetched; the same GVL shape as test/cases-strategy/helpers.ts).
 *
 * Contract: benchConsentStrings(vendorId, count) -> { granted, denied }: `count` distinct strings that grant the
 * vendor every purpose segbid asks for by default (some through legitimate interest, some long, with 300 other
 * vendors), and a few that do not (vendor missing, everything refused). Deterministic (fixed dates, cmp ids
 * 1..count), so two runs send the same bytes; distinct strings so the per-string consent cache sees a realistic
 * spread rather than one hot entry. Encoding is slow (ms): called once per bench, never per request.
 */
import { GVL, TCModel, TCString } from '@iabtcf/core';

function gvl(vendorId: number): GVL {
  const named = (ids: number[]) => Object.fromEntries(ids.map((i) => [i, { id: i, name: `item ${i}`, description: '', descriptionLegal: '' }]));
  const vendor = (id: number, flexible: number[]) => ({
    id,
    name: `vendor ${id}`,
    purposes: [1, 3, 4],
    legIntPurposes: [2, 7],
    flexiblePurposes: flexible,
    specialPurposes: [],
    features: [],
    specialFeatures: [],
    policyUrl: 'https://vendor.example/privacy',
  });
  return new GVL({
    gvlSpecificationVersion: 2,
    vendorListVersion: 42,
    tcfPolicyVersion: 4,
    lastUpdated: '2025-01-01T00:00:00Z',
    purposes: named([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
    specialPurposes: named([1, 2]),
    features: named([1, 2, 3]),
    specialFeatures: named([1, 2]),
    // @iabtcf/core drops a vendor's bits when the GVL declares no purpose on that basis: every vendor declares some.
    vendors: { ...Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [i + 1, vendor(i + 1, [])])), [vendorId]: vendor(vendorId, [2, 7]) },
    stacks: {},
  } as never);
}

interface Spec {
  purposes: number[];
  purposesLi?: number[];
  vendors: number[];
  vendorsLi?: number[];
  manyVendors?: number;
  cmpId: number;
}

function encode(list: GVL, spec: Spec): string {
  const m = new TCModel(list);
  m.cmpId = spec.cmpId;
  m.cmpVersion = 1;
  m.created = new Date('2025-03-01T10:00:00Z');
  m.lastUpdated = new Date('2025-03-01T10:00:00Z');
  if (spec.purposes.length > 0) m.purposeConsents.set(spec.purposes);
  if (spec.purposesLi?.length) m.purposeLegitimateInterests.set(spec.purposesLi);
  if (spec.vendors.length > 0) m.vendorConsents.set(spec.vendors);
  if (spec.vendorsLi?.length) m.vendorLegitimateInterests.set(spec.vendorsLi);
  for (let v = 0; v < (spec.manyVendors ?? 0); v++) m.vendorConsents.set(1 + v * 2);
  return TCString.encode(m);
}

export interface BenchConsentStrings {
  /** Strings under which the vendor may use personal data. */
  granted: string[];
  /** Strings under which it may not (vendor missing, all refused). */
  denied: string[];
}

export function benchConsentStrings(vendorId: number, count = 24): BenchConsentStrings {
  const list = gvl(vendorId);
  const granted: string[] = [];
  for (let i = 0; i < count; i++) {
    const cmpId = 2 + i;
    if (i % 3 === 0) granted.push(encode(list, { purposes: [1, 2, 3, 4, 7], vendors: [vendorId], cmpId }));
    else if (i % 3 === 1) granted.push(encode(list, { purposes: [1, 3, 4], purposesLi: [2, 7], vendors: [vendorId], vendorsLi: [vendorId], cmpId }));
    else granted.push(encode(list, { purposes: [1, 2, 3, 4, 7], vendors: [vendorId], manyVendors: 300, cmpId }));
  }
  const denied = [
    encode(list, { purposes: [1, 2, 3, 4, 7], vendors: [10], cmpId: 300 }),
    encode(list, { purposes: [], vendors: [], cmpId: 301 }),
    encode(list, { purposes: [1, 2, 4, 7], vendors: [vendorId], cmpId: 302 }),
  ];
  return { granted, denied };
}
