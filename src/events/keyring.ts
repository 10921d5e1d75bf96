/**
 * The event-token keyring: which HMAC keys sign and verify event tokens.
 *
 * Contract: one key signs (the current key), every listed key verifies, so keys rotate without losing the
 * notices of bids made under the previous key: add the new key first in the list (it signs from then on), keep
 * the old one after it until the longest token max age has passed, then drop it. A key is identified by a key
 * id byte (0-255) written in clear into each token.
 *
 * Spec format (config or env `SEGBID_EVENT_KEYS`): `kid:hexsecret,kid:hexsecret,...`; the FIRST entry signs.
 * Secrets are at least 16 bytes (32 hex digits). Without a spec, a random development key is made (kid 0) and
 * a warning is emitted: tokens then die with the process, which is only acceptable on a workstation.
 */
import { randomBytes } from 'node:crypto';
import { SegbidError, type ErrorDetail } from '../common/errors.js';

export const MIN_SECRET_BYTES = 16;

export interface EventKey {
  readonly kid: number;
  readonly secret: Buffer;
}

export class Keyring {
  /** The key that signs new tokens. */
  readonly current: EventKey;
  /** kid -> key, for verification (sparse array: a kid is a byte). */
  private readonly byKid: (EventKey | undefined)[] = new Array(256);
  readonly kids: readonly number[];
  /** True when made from a random development key (no configured keys). */
  readonly ephemeral: boolean;

  constructor(keys: readonly EventKey[], ephemeral = false) {
    if (keys.length === 0) throw new SegbidError('EVENT_KEYS_INVALID', 'an event keyring needs at least one key');
    for (const k of keys) this.byKid[k.kid] = k;
    this.current = keys[0];
    this.kids = keys.map((k) => k.kid);
    this.ephemeral = ephemeral;
  }

  /** The key for a kid, or undefined when the kid is not (or no longer) in the ring. */
  key(kid: number): EventKey | undefined {
    return this.byKid[kid];
  }
}

/** Parses `kid:hexsecret,...` (first signs). Throws EVENT_KEYS_INVALID with every problem by position. */
export function parseKeySpec(spec: string, source = 'SEGBID_EVENT_KEYS'): Keyring {
  const errors: ErrorDetail[] = [];
  const keys: EventKey[] = [];
  const seen = new Set<number>();
  const parts = spec
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  parts.forEach((part, i) => {
    const colon = part.indexOf(':');
    const kidText = colon > 0 ? part.slice(0, colon) : '';
    const hex = colon > 0 ? part.slice(colon + 1) : '';
    const kid = Number(kidText);
    // Never echo the secret in an error message: only its position and the key id.
    if (!/^\d{1,3}$/.test(kidText) || kid > 255) {
      errors.push({ path: `/${i}`, message: 'key id must be an integer 0-255 before ":"' });
      return;
    }
    if (seen.has(kid)) {
      errors.push({ path: `/${i}`, message: `duplicate key id ${kid}` });
      return;
    }
    if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length % 2 !== 0) {
      errors.push({ path: `/${i}`, message: `key ${kid}: secret must be an even number of hex digits` });
      return;
    }
    if (hex.length / 2 < MIN_SECRET_BYTES) {
      errors.push({ path: `/${i}`, message: `key ${kid}: secret must be at least ${MIN_SECRET_BYTES} bytes (${MIN_SECRET_BYTES * 2} hex digits)` });
      return;
    }
    seen.add(kid);
    keys.push({ kid, secret: Buffer.from(hex, 'hex') });
  });
  if (parts.length === 0) errors.push({ path: '/', message: 'no key given' });
  if (errors.length) throw new SegbidError('EVENT_KEYS_INVALID', `${source}: invalid event keys`, errors);
  return new Keyring(keys);
}

/** A random single-key ring (kid 0). Development only. */
export function devKeyring(): Keyring {
  return new Keyring([{ kid: 0, secret: randomBytes(32) }], true);
}

/**
 * The keyring from an explicit spec, else from env SEGBID_EVENT_KEYS, else a random development key (and
 * `warn` is called once, so the operator sees that tokens will not survive a restart).
 */
export function loadKeyring(spec: string | undefined, env: NodeJS.ProcessEnv = process.env, warn: (message: string) => void = defaultWarn): Keyring {
  const text = spec ?? env.SEGBID_EVENT_KEYS;
  if (text !== undefined && text.trim() !== '') return parseKeySpec(text, spec !== undefined ? 'events.keys' : 'SEGBID_EVENT_KEYS');
  warn('SEGBID_EVENT_KEYS is not set: event tokens are signed with a random development key; notices of bids made before a restart, or by another instance, will be rejected');
  return devKeyring();
}

function defaultWarn(message: string): void {
  process.emitWarning(message, { code: 'SEGBID_EVENT_DEV_KEY' });
}
