/**
 * Test helpers for the strategy and privacy suites: segment trees from inline segmentations, and REAL TCF v2
 * consent strings encoded by @iabtcf/core against a minimal Global Vendor List built here (nothing is fetched).
 */
import { GVL, PurposeRestriction, TCModel, TCString } from '@iabtcf/core';
import { buildDictionary, type SegmentDictionary } from '../../src/segments/segmentation.js';
import { buildSegmentTree, type SegmentTree } from '../../src/bidding/strategies/segment-tree.js';
import { encodeGppHeader } from '../../src/privacy/gpp.js';
import type { SegmentationDef } from '../../src/config/types.js';
import type { ErrorDetail } from '../../src/common/errors.js';

export function segmentation(def: SegmentationDef): { dictionary: SegmentDictionary; tree: SegmentTree; errors: ErrorDetail[] } {
  const errors: ErrorDetail[] = [];
  const dictionary = buildDictionary(def, '/segmentation', errors);
  const tree = buildSegmentTree(dictionary, errors);
  return { dictionary, tree, errors };
}

/** The demo-like tree most cases use. */
export const TREE: SegmentationDef = {
  width: 64,
  segments: [
    { id: 'customers', name: 'Customers', parent: null, kind: 'group' },
    { id: 'loyal', name: 'Loyal', parent: 'customers', kind: 'crm' },
    { id: 'loyal-high-value', name: 'Loyal high value', parent: 'loyal', kind: 'crm' },
    { id: 'at-risk', name: 'At risk', parent: 'customers', kind: 'crm' },
    { id: 'prospects', name: 'Prospects', parent: null, kind: 'group' },
    { id: 'lookalike-loyal', name: 'Lookalikes', parent: 'prospects', kind: 'lookalike' },
    { id: 'lal-top10', name: 'Lookalike top 10 %', parent: 'lookalike-loyal', kind: 'lookalike' },
    { id: 'lal-top30', name: 'Lookalike top 30 %', parent: 'lookalike-loyal', kind: 'lookalike' },
    { id: 'news-context', name: 'News readers', parent: 'prospects', kind: 'contextual' },
    { id: 'recent-30d', name: 'Bought in the last 30 days', parent: 'customers', kind: 'crm' },
  ],
};

export function bitsOf(dictionary: SegmentDictionary, ids: readonly string[]): Uint32Array {
  const bits = new Uint32Array(dictionary.words);
  for (const id of ids) {
    const b = dictionary.bitOf.get(id);
    if (b === undefined) throw new Error(`unknown segment ${id} in test`);
    bits[b >>> 5] |= 1 << (b & 31);
  }
  return bits;
}

/* ---------------------------------------------------------------- TCF */

export const OUR_VENDOR = 755;
export const OTHER_VENDOR = 10;

const purposeIds = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
const named = (ids: number[]) => Object.fromEntries(ids.map((i) => [i, { id: i, name: `item ${i}`, description: '', descriptionLegal: '' }]));

/**
 * A minimal vendor list: our vendor (consent 1, 3, 4; legitimate interest 2, 7, flexible) and one other vendor.
 * @iabtcf/core's encoder is semantic: it drops a vendor's consent / LI bit when the GVL declares no purpose on
 * that basis, so the declarations matter.
 */
export function minimalGvl(): GVL {
  return new GVL({
    gvlSpecificationVersion: 2,
    vendorListVersion: 42,
    tcfPolicyVersion: 4,
    lastUpdated: '2025-01-01T00:00:00Z',
    purposes: named(purposeIds),
    specialPurposes: named([1, 2]),
    features: named([1, 2, 3]),
    specialFeatures: named([1, 2]),
    vendors: {
      // Filler vendors 1..1000, so that realistic (long) consent strings can be encoded.
      ...Object.fromEntries(
        Array.from({ length: 1000 }, (_, i) => [
          i + 1,
          { id: i + 1, name: `vendor ${i + 1}`, purposes: [1, 3, 4], legIntPurposes: [2, 7], flexiblePurposes: [], specialPurposes: [], features: [], specialFeatures: [], policyUrl: 'https://vendor.example/privacy' },
        ]),
      ),
      [OUR_VENDOR]: {
        id: OUR_VENDOR,
        name: 'segbid',
        purposes: [1, 3, 4],
        legIntPurposes: [2, 7],
        flexiblePurposes: [2, 7],
        specialPurposes: [],
        features: [],
        specialFeatures: [],
        policyUrl: 'https://segbid.example/privacy',
      },
      [OTHER_VENDOR]: {
        id: OTHER_VENDOR,
        name: 'other',
        purposes: [1],
        legIntPurposes: [2, 7],
        flexiblePurposes: [],
        specialPurposes: [],
        features: [],
        specialFeatures: [],
        policyUrl: 'https://other.example/privacy',
      },
    },
    stacks: {},
  } as never);
}

export interface TcSpec {
  purposes?: number[];
  purposesLi?: number[];
  vendors?: number[];
  vendorsLi?: number[];
  /** [vendor, purpose, restriction type 0|1|2] */
  restrictions?: [number, number, number][];
  /** Consent for this many extra (filler) vendors, odd ids from 1: realistic string lengths. */
  manyVendors?: number;
  cmpId?: number;
}

let gvlSingleton: GVL | null = null;

/** A real TCF v2 string, encoded by @iabtcf/core. */
export function tcString(spec: TcSpec): string {
  gvlSingleton ??= minimalGvl();
  const m = new TCModel(gvlSingleton);
  m.cmpId = spec.cmpId ?? 7;
  m.cmpVersion = 1;
  m.created = new Date('2025-03-01T10:00:00Z');
  m.lastUpdated = new Date('2025-03-01T10:00:00Z');
  if (spec.purposes?.length) m.purposeConsents.set(spec.purposes);
  if (spec.purposesLi?.length) m.purposeLegitimateInterests.set(spec.purposesLi);
  if (spec.vendors?.length) m.vendorConsents.set(spec.vendors);
  if (spec.vendorsLi?.length) m.vendorLegitimateInterests.set(spec.vendorsLi);
  for (let v = 0; v < (spec.manyVendors ?? 0); v++) m.vendorConsents.set(1 + v * 2);
  for (const [vendor, purpose, type] of spec.restrictions ?? []) m.publisherRestrictions.add(vendor, new PurposeRestriction(purpose, type));
  return TCString.encode(m);
}

/** Named consent strings used by the JSON privacy cases ("$NAME" in a case). */
export function consentFixtures(): Record<string, string> {
  const all = tcString({ purposes: [1, 2, 3, 4, 7], vendors: [OUR_VENDOR] });
  const fixtures: Record<string, string> = {
    TCF_ALL: all,
    TCF_NO_VENDOR: tcString({ purposes: [1, 2, 3, 4, 7], vendors: [OTHER_VENDOR] }),
    TCF_NO_P3: tcString({ purposes: [1, 2, 4, 7], vendors: [OUR_VENDOR] }),
    TCF_LI_2_7: tcString({ purposes: [1, 3, 4], purposesLi: [2, 7], vendors: [OUR_VENDOR], vendorsLi: [OUR_VENDOR] }),
    TCF_LI_ONLY_VENDOR: tcString({ purposes: [1, 2, 3, 4, 7], vendorsLi: [OUR_VENDOR] }),
    TCF_REJECT_ALL: tcString({}),
    TCF_RESTRICT_P4: tcString({ purposes: [1, 2, 3, 4, 7], vendors: [OUR_VENDOR], restrictions: [[OUR_VENDOR, 4, 0]] }),
    GARBAGE: 'this-is-not-a-tc-string',
  };
  fixtures.GPP_TCF_ALL = `${encodeGppHeader([2])}~${all}`;
  fixtures.GPP_TCF_NO_VENDOR = `${encodeGppHeader([2])}~${fixtures.TCF_NO_VENDOR}`;
  fixtures.GPP_TCF_ALL_USP_OPTOUT = `${encodeGppHeader([2, 6])}~${all}~1YYN`;
  fixtures.GPP_USP_OK = `${encodeGppHeader([6])}~1YNN`;
  fixtures.GPP_USNAT = `${encodeGppHeader([7])}~BVVqAAEABCA.QA`;
  fixtures.GPP_TCF_AND_USNAT = `${encodeGppHeader([2, 7])}~${all}~BVVqAAEABCA.QA`;
  fixtures.GPP_BROKEN = 'DBABMA~one~two';
  return fixtures;
}

/** Replaces "$NAME" strings anywhere in a JSON value by the fixture of that name. */
export function substitute<T>(value: T, fixtures: Record<string, string>): T {
  if (typeof value === 'string' && value.startsWith('$')) {
    const f = fixtures[value.slice(1)];
    if (f === undefined) throw new Error(`unknown fixture ${value}`);
    return f as T;
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, fixtures)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, fixtures)])) as T;
  }
  return value;
}
