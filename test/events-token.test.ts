import { createHmac } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { Keyring, loadKeyring, parseKeySpec } from '../src/events/keyring.js';
import {
  NO_DEAL,
  TokenSigner,
  checkAge,
  currencyCode,
  currencyOf,
  emptyToken,
  hash32,
  verifyToken,
  type TokenFields,
} from '../src/events/token.js';
import { parseMicros, readMacro } from '../src/events/macros.js';
import { SegbidError } from '../src/common/errors.js';

const K1 = '01:' + '11'.repeat(32);
const K2 = '02:' + '22'.repeat(32);

function fields(over: Partial<TokenFields> = {}): TokenFields {
  return {
    requestHash: hash32('req-1'),
    impHash: hash32('imp-1'),
    impIndex: 0,
    epoch: 4242,
    lineItem: 3,
    arm: 7,
    segmentBit: 5,
    creative: 2,
    deal: NO_DEAL,
    priceMicros: 2_500_000,
    currency: 'EUR',
    timeSec: 1_767_225_600,
    test: false,
    exchange: 1,
    userHi: 0xdeadbeef,
    userLo: 0x01234567,
    bidId: 'abc123-0',
    ...over,
  };
}

/** Flips one bit of the decoded token and re-encodes it. */
function tamper(token: string, byte: number, bit = 1): string {
  const b = Buffer.from(token, 'base64url');
  b[byte] ^= bit;
  return b.toString('base64url');
}

describe('event tokens', () => {
  it('round-trips every field', () => {
    const ring = parseKeySpec(K1);
    const t = new TokenSigner(ring).sign(fields(), 'client');
    const out = emptyToken();
    expect(verifyToken(ring, t, out)).toBeNull();
    expect(out).toMatchObject({ ...fields(), kid: 1, scope: 'client' });
  });

  it('round-trips random fields (property)', () => {
    const ring = parseKeySpec(K1);
    const signer = new TokenSigner(ring);
    const out = emptyToken();
    fc.assert(
      fc.property(
        fc.record({
          requestHash: fc.nat({ max: 0xffffffff }),
          impHash: fc.nat({ max: 0xffffffff }),
          impIndex: fc.nat({ max: 254 }),
          epoch: fc.nat({ max: 0xffff }),
          lineItem: fc.nat({ max: 0xffff }),
          arm: fc.nat({ max: 0xffff }),
          segmentBit: fc.integer({ min: -1, max: 32767 }),
          creative: fc.nat({ max: 0xffff }),
          deal: fc.nat({ max: 0xffff }),
          priceMicros: fc.nat({ max: 2 ** 48 - 1 }),
          currency: fc.constantFrom('USD', 'EUR', 'JPY', 'GBP'),
          timeSec: fc.nat({ max: 0xffffffff }),
          test: fc.boolean(),
          exchange: fc.nat({ max: 255 }),
          userHi: fc.nat({ max: 0xffffffff }),
          userLo: fc.nat({ max: 0xffffffff }),
          bidId: fc.stringMatching(/^[A-Za-z0-9._~-]{1,48}$/),
        }),
        fc.constantFrom<'exchange' | 'client'>('exchange', 'client'),
        (f, scope) => {
          const t = signer.sign(f, scope);
          expect(verifyToken(ring, t, out)).toBeNull();
          expect(out).toMatchObject({ ...f, scope, kid: 1 });
        },
      ),
      { numRuns: 300 },
    );
  });

  it('the exchange token MAC is HMAC-SHA256 truncated to 16 bytes over everything before it', () => {
    const secret = Buffer.from('11'.repeat(32), 'hex');
    const t = Buffer.from(new TokenSigner(parseKeySpec(K1)).sign(fields()), 'base64url');
    const body = t.subarray(0, t.length - 16);
    expect(t.subarray(t.length - 16)).toEqual(createHmac('sha256', secret).update(body).digest().subarray(0, 16));
  });

  it('one HMAC per bid: the exchange token carries its first half, the client token its second half', () => {
    const secret = Buffer.from('11'.repeat(32), 'hex');
    const ring = parseKeySpec(K1);
    const signer = new TokenSigner(ring);
    const pair = { exchange: '', client: '' };
    signer.signPair(fields(), pair);
    expect(pair.exchange).toBe(signer.sign(fields(), 'exchange'));
    expect(pair.client).toBe(signer.sign(fields(), 'client'));
    const ex = Buffer.from(pair.exchange, 'base64url');
    const cl = Buffer.from(pair.client, 'base64url');
    const body = Buffer.from(cl.subarray(0, cl.length - 16));
    body[15] &= ~2; // the MAC covers the bytes with the client flag cleared
    expect(body).toEqual(ex.subarray(0, ex.length - 16));
    const mac = createHmac('sha256', secret).update(body).digest();
    expect(ex.subarray(ex.length - 16)).toEqual(mac.subarray(0, 16));
    expect(cl.subarray(cl.length - 16)).toEqual(mac.subarray(16, 32));
    // Whoever reads the markup holds the client token: clearing its flag does not make an exchange token.
    const out = emptyToken();
    expect(verifyToken(ring, pair.client, out)).toBeNull();
    expect(out.scope).toBe('client');
    expect(verifyToken(ring, tamper(pair.client, 15, 2), emptyToken())).toBe('bad_mac');
    expect(verifyToken(ring, tamper(pair.exchange, 15, 2), emptyToken())).toBe('bad_mac');
  });

  it('still verifies version 1 tokens (one HMAC per scope), minted before an upgrade', () => {
    const secret = Buffer.from('11'.repeat(32), 'hex');
    const ring = parseKeySpec(K1);
    for (const scope of ['exchange', 'client'] as const) {
      const v2 = Buffer.from(new TokenSigner(ring).sign(fields(), scope), 'base64url');
      const body = Buffer.from(v2.subarray(0, v2.length - 16));
      body[0] = 1;
      const v1 = Buffer.concat([body, createHmac('sha256', secret).update(body).digest().subarray(0, 16)]).toString('base64url');
      const out = emptyToken();
      expect(verifyToken(ring, v1, out), scope).toBeNull();
      expect(out).toMatchObject({ ...fields(), scope });
    }
  });

  it('rejects a tampered byte anywhere (every byte, every token byte position)', () => {
    const ring = parseKeySpec(K1);
    const t = new TokenSigner(ring).sign(fields());
    const n = Buffer.from(t, 'base64url').length;
    for (let i = 0; i < n; i++) {
      const r = verifyToken(ring, tamper(t, i), emptyToken());
      // Byte 0 is the version, 1 the key id, 45 the bid id length: those fail as malformed/unknown_key.
      expect(r, `byte ${i}`).not.toBeNull();
      if (i !== 0 && i !== 1 && i !== 45) expect(r, `byte ${i}`).toBe('bad_mac');
    }
  });

  it('rejects a forged token (right layout, wrong key)', () => {
    const forger = new TokenSigner(new Keyring([{ kid: 1, secret: Buffer.alloc(32, 9) }]));
    expect(verifyToken(parseKeySpec(K1), forger.sign(fields()), emptyToken())).toBe('bad_mac');
  });

  it('rejects an unknown key id, garbage and truncation', () => {
    const ring = parseKeySpec(K1);
    const other = new TokenSigner(parseKeySpec(K2)).sign(fields());
    expect(verifyToken(ring, other, emptyToken())).toBe('unknown_key');
    expect(verifyToken(ring, 'not a token!', emptyToken())).toBe('malformed');
    expect(verifyToken(ring, '', emptyToken())).toBe('malformed');
    const t = new TokenSigner(ring).sign(fields());
    expect(verifyToken(ring, t.slice(0, -3), emptyToken())).toBe('malformed');
    expect(verifyToken(ring, t + 'AAAA', emptyToken())).toBe('malformed');
    expect(verifyToken(ring, 'A'.repeat(5000), emptyToken())).toBe('malformed');
  });

  it('key rotation: the new key signs, the old key still verifies, a dropped key does not', () => {
    const before = parseKeySpec(K1);
    const oldToken = new TokenSigner(before).sign(fields());
    const rotated = parseKeySpec(`${K2},${K1}`);
    const newToken = new TokenSigner(rotated).sign(fields());
    const out = emptyToken();
    expect(verifyToken(rotated, newToken, out)).toBeNull();
    expect(out.kid).toBe(2);
    expect(verifyToken(rotated, oldToken, out)).toBeNull();
    expect(out.kid).toBe(1);
    expect(verifyToken(before, newToken, out)).toBe('unknown_key');
    expect(verifyToken(parseKeySpec(K2), oldToken, out)).toBe('unknown_key');
  });

  it('checks age per kind and clock skew', () => {
    const out = emptyToken();
    out.timeSec = 1000;
    expect(checkAge(out, 1000_000 + 3600_000, 3600, 300)).toBeNull();
    expect(checkAge(out, 1000_000 + 3601_000, 3600, 300)).toBe('expired');
    expect(checkAge(out, 1000_000 - 300_000, 3600, 300)).toBeNull();
    expect(checkAge(out, 1000_000 - 301_000, 3600, 300)).toBe('future');
  });

  it('refuses bid ids it cannot carry', () => {
    const s = new TokenSigner(parseKeySpec(K1));
    expect(() => s.sign(fields({ bidId: '' }))).toThrow(RangeError);
    expect(() => s.sign(fields({ bidId: 'x'.repeat(49) }))).toThrow(RangeError);
    expect(() => s.sign(fields({ bidId: 'a&b' }))).toThrow(RangeError);
  });

  it('packs currencies in 15 bits', () => {
    for (const c of ['USD', 'EUR', 'JPY', 'ZZZ']) expect(currencyOf(currencyCode(c))).toBe(c);
    expect(currencyCode('usd')).toBe(0);
    expect(currencyCode('EURO')).toBe(0);
  });
});

describe('keyring', () => {
  it('parses the env spec, first key signs', () => {
    const ring = parseKeySpec(` ${K2} , ${K1} `);
    expect(ring.current.kid).toBe(2);
    expect(ring.kids).toEqual([2, 1]);
  });

  it('reports every bad entry without echoing secrets', () => {
    try {
      parseKeySpec('1:abcd,300:' + '11'.repeat(16) + ',x:00,2:zz,1:' + '11'.repeat(16));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(SegbidError);
      const err = e as SegbidError;
      expect(err.code).toBe('EVENT_KEYS_INVALID');
      expect(err.details.map((d) => d.path)).toEqual(['/0', '/1', '/2', '/3']);
      expect(err.message).not.toContain('abcd');
    }
    expect(() => parseKeySpec('')).toThrow(SegbidError);
  });

  it('warns and makes a random dev key when no keys are configured', () => {
    const warn = vi.fn();
    const ring = loadKeyring(undefined, {}, warn);
    expect(ring.ephemeral).toBe(true);
    expect(warn).toHaveBeenCalledOnce();
    const fromEnv = loadKeyring(undefined, { SEGBID_EVENT_KEYS: K1 }, warn);
    expect(fromEnv.ephemeral).toBe(false);
    expect(fromEnv.current.kid).toBe(1);
    expect(warn).toHaveBeenCalledOnce();
  });
});

describe('macros', () => {
  it('classifies unsubstituted, empty, AUDIT, absent and :B64 values', () => {
    expect(readMacro(null).state).toBe('absent');
    expect(readMacro('').state).toBe('empty');
    expect(readMacro('${AUCTION_PRICE}').state).toBe('unsubstituted');
    expect(readMacro('%24%7BAUCTION_PRICE%7D').state).toBe('unsubstituted');
    expect(readMacro('AUDIT').state).toBe('audit');
    expect(readMacro('1.25')).toEqual({ state: 'value', text: '1.25' });
    const b64 = Buffer.from('1.25').toString('base64');
    expect(readMacro(`${b64}:B64`)).toEqual({ state: 'value', text: '1.25' });
    expect(readMacro(`${Buffer.from('AUDIT').toString('base64url')}:B64`).state).toBe('audit');
    expect(readMacro('!!!:B64').state).toBe('invalid');
  });

  it('parses prices to micros by shifting digits, never by float multiplication', () => {
    expect(parseMicros('1.25')).toBe(1_250_000);
    expect(parseMicros('0.1')).toBe(100_000);
    expect(parseMicros('2.675')).toBe(2_675_000); // 2.675 * 1e6 = 2674999.9999999995 as a float
    expect(parseMicros('1.0000005')).toBe(1_000_001);
    expect(parseMicros('1.00000049')).toBe(1_000_000);
    expect(parseMicros('0.0000005')).toBe(1);
    expect(parseMicros('1e-6')).toBe(1);
    expect(parseMicros('1.5E2')).toBe(150_000_000);
    expect(parseMicros('.5')).toBe(500_000);
    expect(parseMicros('7.')).toBe(7_000_000);
    expect(parseMicros('000012.000')).toBe(12_000_000);
    for (const bad of ['', '.', '-1', '1,5', 'abc', '1e', '0x10', 'NaN', '99999999999999']) expect(parseMicros(bad), bad).toBeNull();
  });

  it('summing parsed prices is exact (no float accumulation)', () => {
    let sum = 0;
    for (let i = 0; i < 1000; i++) sum += parseMicros('0.1')!;
    expect(sum).toBe(100_000_000);
  });
});
