import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeGppHeader, parseGpp, parseGppHeader } from '../src/privacy/gpp.js';
import { parseUsPrivacy, USP_INVALID, USP_OK, USP_OPTOUT } from '../src/privacy/us-privacy.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
function fromBits(bits: string): string {
  while (bits.length % 6 !== 0) bits += '0';
  let out = '';
  for (let i = 0; i < bits.length; i += 6) out += ALPHABET[parseInt(bits.slice(i, i + 6), 2)];
  return out;
}

describe('GPP header', () => {
  it('reads the headers of the GPP specification examples', () => {
    expect(parseGppHeader('DBABMA')).toEqual([2]); // TCF EU v2 only
    expect(parseGppHeader('DBACNYA')).toEqual([2, 6]); // TCF EU v2 + US Privacy
    expect(parseGppHeader('DBABLA')).toEqual([7]); // US national, as CMPs send it
  });

  it('reads ranges: [7..12] as one range entry', () => {
    // type 3, version 1, 1 entry, range, start 7 (Fibonacci 0101+1), end = start + 5 (0001+1)
    const header = fromBits('000011' + '000001' + '000000000001' + '1' + '01011' + '00011');
    expect(parseGppHeader(header)).toEqual([7, 8, 9, 10, 11, 12]);
  });

  it('round-trips any ascending set of section ids (property)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 12 }), (ids) => {
        const sorted = [...ids].sort((a, b) => a - b);
        return JSON.stringify(parseGppHeader(encodeGppHeader(sorted))) === JSON.stringify(sorted);
      }),
    );
  });

  it('rejects what is not a GPP v1 header', () => {
    expect(parseGppHeader('')).toBeNull();
    expect(parseGppHeader('CBABMA')).toBeNull(); // type 2
    expect(parseGppHeader('DCABMA')).toBeNull(); // version 2
    expect(parseGppHeader('DBA')).toBeNull(); // truncated
    expect(parseGppHeader('DB*BMA')).toBeNull(); // not base64url
  });

  it('splits sections and checks their count against the header', () => {
    expect(parseGpp('DBACNYA~CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA~1YNN')).toEqual({
      ids: [2, 6],
      sections: ['CPXxRfAPXxRfAAfKABENB-CgAAAAAAAAAAYgAAAAAAAA', '1YNN'],
    });
    expect(parseGpp('DBACNYA~only-one')).toBeNull();
    expect(parseGpp('DBABMA')).toBeNull();
  });
});

describe('US Privacy strings', () => {
  it('opt-out of sale is the third character', () => {
    expect(parseUsPrivacy('1YYN')).toBe(USP_OPTOUT);
    expect(parseUsPrivacy('1NYY')).toBe(USP_OPTOUT);
    expect(parseUsPrivacy('1YNN')).toBe(USP_OK);
    expect(parseUsPrivacy('1---')).toBe(USP_OK);
    for (const bad of ['', '1YY', '1YYNN', '2YYN', '1yyn', '1Y?N']) expect(parseUsPrivacy(bad)).toBe(USP_INVALID);
  });
});
