/**
 * Event tokens: what the bidder knew when it bid, packed into a few dozen bytes, signed, and carried in the
 * event URLs (`nurl`, `burl`, `lurl`, impression pixel, click URL) as `t=<base64url>`.
 *
 * Contract:
 *   - `TokenSigner.sign(fields, scope)` -> base64url string. Hot path: packs into one reused buffer with a
 *     DataView, one HMAC-SHA256 (@noble/hashes, no native objects), 16 bytes of it kept. `signPair(fields, out)` mints the exchange
 *     and the client token of one bid with that one HMAC (see Scope). Throws only on programmer error (a bid
 *     id that is not 1-48 URL-safe ASCII characters).
 *   - `verifyToken(keyring, text, out)` -> null when authentic (fields decoded into `out`), else the reason:
 *     malformed | unknown_key | bad_mac. The MAC is compared with crypto.timingSafeEqual.
 *   - Age is checked apart (`checkAge`), because the max age depends on the event kind.
 *
 * Scope: a token is minted either for the exchange (win/bill/loss notices, server to server) or for the
 * client (impression pixel and click URL, visible in the ad markup). A user who reads the markup must not be
 * able to replay its token as a billing notice. Version 2 tokens: the HMAC is computed once over the bytes with
 * the client flag cleared; the exchange token carries its first 16 bytes, the client token its last 16 bytes
 * (and the client flag). The two halves of one HMAC output are independent, so knowing the client half says
 * nothing of the exchange half: the scope is as binding as a MAC per scope, for half the hashing (the bid path
 * signs every bid with markup twice). Version 1 tokens (one HMAC per scope over the bytes with the flag set,
 * first 16 bytes) still verify, so notices of bids made before an upgrade are not lost.
 *
 * Layout, version 1 (big-endian), then the MAC over every preceding byte:
 *
 *   off size field                           off size field
 *    0   1   version (2; 1 accepted)          26   2   deal index (0xffff: open auction)
 *    1   1   key id                           28   2   currency (3 letters A-Z, 5 bits each; 0 = bidder's)
 *    2   4   bid time, epoch seconds          30   1   exchange index (0 = other)
 *    6   4   request id hash                  31   2   bid price micros, high 16 bits
 *   10   4   imp id hash                      33   4   bid price micros, low 32 bits
 *   14   1   imp index (255 = 255 or more)    37   4   user key hash, high word
 *   15   1   flags (1 test, 2 client scope)   41   4   user key hash, low word
 *   16   2   config epoch                     45   1   bid id length n (1-48)
 *   18   2   line item index                  46   n   bid id (ASCII)
 *   20   2   arm                            46+n  16   MAC: HMAC-SHA256(key, bytes [0, 46+n)) with the client
 *                                                          flag cleared; first 16 bytes (exchange), last 16 (client)
 *   22   2   segment bit (int16, -1 none)
 *   24   2   creative index
 *
 * With a 12-character bid id a token is 74 bytes, 99 base64url characters.
 *
 * Indices (line item, creative, deal, segment bit) are positions in the compiled config; the config epoch
 * (configEpoch in bid-context.ts) tells which config they index, so a reload that reorders line items
 * never attributes an event to the wrong one.
 */
import { timingSafeEqual } from 'node:crypto';
import { hmac, type _HMAC } from '@noble/hashes/hmac.js';
import { sha256, type _SHA256 } from '@noble/hashes/sha2.js';
import type { Keyring } from './keyring.js';

export const TOKEN_VERSION = 2;
/** Tokens minted before the one-HMAC-per-bid layout: one HMAC per scope, first 16 bytes. Still verified. */
export const TOKEN_VERSION_1 = 1;
export const MAC_BYTES = 16;
export const MAX_BID_ID_LENGTH = 48;
const FIXED_BYTES = 46;
const MAX_TOKEN_BYTES = FIXED_BYTES + MAX_BID_ID_LENGTH + MAC_BYTES;
/** base64url of the longest token, with slack; longer input is rejected before decoding. */
const MAX_TOKEN_CHARS = Math.ceil((MAX_TOKEN_BYTES * 4) / 3) + 4;

export const FLAG_TEST = 1;
export const FLAG_CLIENT = 2;
export const NO_DEAL = 0xffff;
export const NO_SEGMENT = -1;

export type TokenScope = 'exchange' | 'client';

/** What the bidder signs. Money in integer micro-units of `currency` (the response currency). */
export interface TokenFields {
  /** hash32 of the bid request id (so `${AUCTION_ID}` can be checked against it). */
  requestHash: number;
  /** hash32 of the imp id (so `${AUCTION_IMP_ID}` can be checked). */
  impHash: number;
  impIndex: number;
  /** configEpoch() of the config the indices below refer to. */
  epoch: number;
  lineItem: number;
  /** Test-and-learn arm (allocator-defined; 0 when unused). */
  arm: number;
  /** Bit of the user's most specific matched segment, NO_SEGMENT (-1) when none. */
  segmentBit: number;
  creative: number;
  /** Position of the deal in the line item's deal list, NO_DEAL when open auction. */
  deal: number;
  priceMicros: number;
  /** ISO 4217 code of the response currency. */
  currency: string;
  /** Bid time, seconds since the epoch. */
  timeSec: number;
  test: boolean;
  /** 1-based index in the configured exchange list; 0 = other / unknown. */
  exchange: number;
  /** 64-bit hash of the user's primary key (src/segments/key-hash.ts), 0/0 when unknown. */
  userHi: number;
  userLo: number;
  /** The bid's id in the response (`bid.id`), 1-48 URL-safe ASCII characters. Dedupe key with the kind. */
  bidId: string;
}

export interface DecodedToken extends TokenFields {
  kid: number;
  scope: TokenScope;
}

export type VerifyFailure = 'malformed' | 'unknown_key' | 'bad_mac';
export type AgeFailure = 'expired' | 'future';

/** A zeroed DecodedToken, to be reused as the `out` of verifyToken. */
export function emptyToken(): DecodedToken {
  return {
    requestHash: 0,
    impHash: 0,
    impIndex: 0,
    epoch: 0,
    lineItem: 0,
    arm: 0,
    segmentBit: NO_SEGMENT,
    creative: 0,
    deal: NO_DEAL,
    priceMicros: 0,
    currency: '',
    timeSec: 0,
    test: false,
    exchange: 0,
    userHi: 0,
    userLo: 0,
    bidId: '',
    kid: 0,
    scope: 'exchange',
  };
}

/** FNV-1a over UTF-16 code units: cheap, allocation-free; only used to match ids, never for security. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Packs a 3-letter upper-case currency code into 15 bits; anything else packs as 0 (bidder currency). */
export function currencyCode(cur: string): number {
  if (cur.length !== 3) return 0;
  let code = 0;
  for (let i = 0; i < 3; i++) {
    const c = cur.charCodeAt(i) - 65;
    if (c < 0 || c > 25) return 0;
    code = (code << 5) | c;
  }
  // 'AAA' also packs to 0; it is not a currency, so 0 can mean "bidder currency".
  return code;
}

export function currencyOf(code: number): string {
  if (code === 0) return '';
  return String.fromCharCode(65 + ((code >>> 10) & 31), 65 + ((code >>> 5) & 31), 65 + (code & 31));
}

function isUrlSafe(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46 || c === 95 || c === 126;
}

/**
 * HMAC-SHA256 (RFC 2104) with @noble/hashes (pure JS, audited): the key's two padded blocks are hashed once per
 * key (`hmac.create`), and each MAC starts from a copy of that state written into one reused state object
 * (`_cloneInto`) and ends in a reused output buffer (`digestInto`). Same bytes as node:crypto's createHmac
 * (test/events-token.test.ts checks it). Why not node:crypto: there, each MAC costs two Hash objects (copies of
 * the precomputed states) and two digest Buffers, native objects the GC must finalise; measured in the bid path
 * (1,000 line items, ~1 bid a request) that was ~10 µs a bid, twice its cost in isolation. Here a MAC allocates
 * only a few small short-lived JS objects inside the library (state arrays, DataViews: ~10% of a bid request's
 * allocation, which is mostly JSON.parse and the response text), no native object and no Buffer.
 */
type HmacState = _HMAC<_SHA256>;
interface KeyStates {
  /** The key's state (both padded blocks absorbed); never finished, only copied. */
  base: HmacState;
  /** Overwritten from `base` by each MAC. */
  work: HmacState;
}
const keyStates = new WeakMap<Buffer, KeyStates>();

function statesOf(secret: Buffer): KeyStates {
  let s = keyStates.get(secret);
  if (s === undefined) {
    const base = hmac.create(sha256, secret) as HmacState;
    s = { base, work: base.clone() };
    keyStates.set(secret, s);
  }
  return s;
}

/** The 32-byte MAC of `data` into `out` (length >= 32). No Buffer is allocated. */
function computeMacInto(secret: Buffer, data: Uint8Array, out: Uint8Array): void {
  const s = statesOf(secret);
  s.base._cloneInto(s.work);
  s.work.update(data);
  s.work.digestInto(out);
}

/** The MAC as a new Buffer (the verification path; signing uses computeMacInto). */
function computeMac(secret: Buffer, data: Uint8Array): Buffer {
  const out = Buffer.alloc(32);
  computeMacInto(secret, data, out);
  return out;
}

export class TokenSigner {
  private readonly keyring: Keyring;
  /** The one packing buffer, reused by every sign() call (JS runs one call at a time). */
  private readonly buf = Buffer.alloc(MAX_TOKEN_BYTES);
  private readonly view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  /** The one MAC output buffer, reused likewise. */
  private readonly mac = Buffer.alloc(32);
  /** macInput[end] = the first `end` bytes of `buf` (a view made once per possible length: none per token). */
  private readonly macInput: Uint8Array[] = [];

  constructor(keyring: Keyring) {
    this.keyring = keyring;
    for (let end = 0; end <= FIXED_BYTES + MAX_BID_ID_LENGTH; end++) this.macInput.push(new Uint8Array(this.buf.buffer, this.buf.byteOffset, end));
  }

  sign(f: TokenFields, scope: TokenScope = 'exchange'): string {
    const end = this.pack(f);
    computeMacInto(this.keyring.current.secret, this.macInput[end], this.mac);
    return this.finish(end, this.mac, scope);
  }

  /** Both tokens of one bid, with one HMAC: `out.exchange` (nurl/burl/lurl) and `out.client` (pixel, click). */
  signPair(f: TokenFields, out: TokenPair): void {
    const end = this.pack(f);
    computeMacInto(this.keyring.current.secret, this.macInput[end], this.mac);
    out.exchange = this.finish(end, this.mac, 'exchange');
    out.client = this.finish(end, this.mac, 'client');
  }

  /** Writes everything but the MAC into the buffer, client flag cleared; returns the MAC'd length. */
  private pack(f: TokenFields): number {
    const id = f.bidId;
    const n = id.length;
    if (n === 0 || n > MAX_BID_ID_LENGTH) throw new RangeError(`bid id must be 1-${MAX_BID_ID_LENGTH} characters, got ${n}`);
    const v = this.view;
    const b = this.buf;
    v.setUint8(0, TOKEN_VERSION);
    v.setUint8(1, this.keyring.current.kid);
    v.setUint32(2, f.timeSec >>> 0);
    v.setUint32(6, f.requestHash >>> 0);
    v.setUint32(10, f.impHash >>> 0);
    v.setUint8(14, f.impIndex > 254 ? 255 : f.impIndex);
    v.setUint8(15, f.test ? FLAG_TEST : 0);
    v.setUint16(16, f.epoch & 0xffff);
    v.setUint16(18, f.lineItem);
    v.setUint16(20, f.arm);
    v.setInt16(22, f.segmentBit);
    v.setUint16(24, f.creative);
    v.setUint16(26, f.deal < 0 ? NO_DEAL : f.deal);
    v.setUint16(28, currencyCode(f.currency));
    v.setUint8(30, f.exchange);
    // Price: 48 bits of integer micros (up to ~281 million per CPM), no float on the way.
    const price = f.priceMicros > 0 ? Math.floor(f.priceMicros) : 0;
    v.setUint16(31, Math.floor(price / 0x100000000) & 0xffff);
    v.setUint32(33, price >>> 0);
    v.setUint32(37, f.userHi >>> 0);
    v.setUint32(41, f.userLo >>> 0);
    v.setUint8(45, n);
    for (let i = 0; i < n; i++) {
      const c = id.charCodeAt(i);
      if (!isUrlSafe(c)) throw new RangeError('bid id must be URL-safe ASCII [A-Za-z0-9._~-]');
      b[FIXED_BYTES + i] = c;
    }
    return FIXED_BYTES + n;
  }

  /** Appends the scope's MAC half (and, for the client, its flag) and encodes. Leaves the flag cleared. */
  private finish(end: number, mac: Buffer, scope: TokenScope): string {
    const b = this.buf;
    const client = scope === 'client';
    if (client) b[15] |= FLAG_CLIENT;
    // 16 bytes: a loop, not Buffer#copy (whose argument checks cost more than the copy).
    const from = client ? MAC_BYTES : 0;
    for (let i = 0; i < MAC_BYTES; i++) b[end + i] = mac[from + i];
    const text = b.toString('base64url', 0, end + MAC_BYTES);
    b[15] &= ~FLAG_CLIENT;
    return text;
  }
}

/** The two tokens of one bid (TokenSigner.signPair); reuse one object. */
export interface TokenPair {
  exchange: string;
  client: string;
}

const BASE64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Authenticates a token and decodes it into `out`. Null = authentic; otherwise why not. Checks, cheapest
 * first: charset and size, version, key id known, MAC (constant time). Nothing is trusted before the MAC.
 */
export function verifyToken(keyring: Keyring, text: string, out: DecodedToken): VerifyFailure | null {
  if (text.length < 8 || text.length > MAX_TOKEN_CHARS || !BASE64URL.test(text)) return 'malformed';
  const b = Buffer.from(text, 'base64url');
  const version = b[0];
  if (b.length < FIXED_BYTES + 1 + MAC_BYTES || (version !== TOKEN_VERSION && version !== TOKEN_VERSION_1)) return 'malformed';
  const n = b[45];
  const end = FIXED_BYTES + n;
  if (n === 0 || n > MAX_BID_ID_LENGTH || b.length !== end + MAC_BYTES) return 'malformed';
  const key = keyring.key(b[1]);
  if (key === undefined) return 'unknown_key';
  const flags = b[15];
  const client = (flags & FLAG_CLIENT) !== 0;
  let expected: Buffer;
  if (version === TOKEN_VERSION) {
    b[15] = flags & ~FLAG_CLIENT; // the MAC covers the bytes with the flag cleared; the half tells the scope
    expected = computeMac(key.secret, b.subarray(0, end));
    b[15] = flags;
    if (client) expected = expected.subarray(MAC_BYTES, 2 * MAC_BYTES);
  } else {
    expected = computeMac(key.secret, b.subarray(0, end));
  }
  if (!timingSafeEqual(expected.subarray(0, MAC_BYTES), b.subarray(end, end + MAC_BYTES))) return 'bad_mac';
  const v = new DataView(b.buffer, b.byteOffset, b.length);
  out.kid = b[1];
  out.timeSec = v.getUint32(2);
  out.requestHash = v.getUint32(6);
  out.impHash = v.getUint32(10);
  out.impIndex = b[14];
  out.test = (flags & FLAG_TEST) !== 0;
  out.scope = client ? 'client' : 'exchange';
  out.epoch = v.getUint16(16);
  out.lineItem = v.getUint16(18);
  out.arm = v.getUint16(20);
  out.segmentBit = v.getInt16(22);
  out.creative = v.getUint16(24);
  out.deal = v.getUint16(26);
  out.currency = currencyOf(v.getUint16(28));
  out.exchange = b[30];
  out.priceMicros = v.getUint16(31) * 0x100000000 + v.getUint32(33);
  out.userHi = v.getUint32(37);
  out.userLo = v.getUint32(41);
  out.bidId = b.toString('latin1', FIXED_BYTES, end);
  // A MAC-valid token was made by us, so the bid id is URL-safe; checked anyway so a leaked key cannot
  // inject separators into dedupe keys or log records.
  for (let i = 0; i < n; i++) if (!isUrlSafe(b[FIXED_BYTES + i])) return 'malformed';
  return null;
}

/** Age check for a verified token: too old for the kind, or stamped in the future beyond the clock skew. */
export function checkAge(token: DecodedToken, nowMs: number, maxAgeSec: number, skewSec: number): AgeFailure | null {
  const nowSec = Math.floor(nowMs / 1000);
  if (token.timeSec > nowSec + skewSec) return 'future';
  if (nowSec - token.timeSec > maxAgeSec) return 'expired';
  return null;
}

/** The 16 hex digits of a user key hash (the touch-index key); '' when unknown (0/0). */
export function userHex(hi: number, lo: number): string {
  if (hi === 0 && lo === 0) return '';
  return (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}
