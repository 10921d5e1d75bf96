/**
 * The state snapshot's body (src/budget/state-store.ts): version 2 is a msgpackr skeleton followed by the
 * image's byte arrays end to end. What must hold: an image comes back equal, byte arrays included; the learned
 * curves in an image are copies (the file is written after the bid thread has moved on); a version 1 file (one
 * msgpackr body), written before the upgrade, still reads; every inconsistent body is rejected as corrupt.
 */
import { crc32 } from 'node:zlib';
import { pack } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { STATE_VERSION, STATE_VERSION_1, decodeState, encodeState, encodeStateParts, exportLearning, type StateImage } from '../src/budget/state-store.js';
import { Ledger } from '../src/budget/ledger.js';
import { loadDecider } from '../src/bidding/load-decider.js';
import { useLargeConfig } from './helpers/large-config-dir.js';

const large = useLargeConfig('segbid-state-format', 1000);

function image(trials: Float32Array): StateImage {
  const ledger = new Ledger([{ id: 'c1', dailyMicros: 5_000_000, flightMicros: 50_000_000, flightStartMs: 0, flightEndMs: 2_000_000_000_000, reservationTtlMs: 60_000, utcOffsetMs: 0 }], 64);
  const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return {
    savedAtMs: 1_790_000_000_000,
    fingerprint: '0123456789abcdef',
    campaigns: ['c1'],
    lineItems: ['li-a', 'li-b'],
    ledger: ledger.snapshot(),
    allocator: { 'li-a': [10, 2, 1, 500, 400, 30], 'li-b': [0, 0, 0, 0, 0, 0] },
    pacer: null,
    learning: {
      strategies: { 'li-a': [10, 2, 1, 500] },
      creatives: { 'cr-1': [10, 2] },
      shading: {
        shape: '2x3x4',
        lineItems: {
          'li-a': { trials: bytes(trials.subarray(0, 4)), wins: bytes(trials.subarray(4, 8)), factor: bytes(trials.subarray(8, 10)) },
          'li-b': { trials: new Uint8Array(0), wins: bytes(trials.subarray(10, 12)), factor: bytes(trials.subarray(12, 16)) },
        },
      },
    },
  };
}

/** A framed body as the writer frames it: magic, version, crc32(body), length. */
function framed(version: number, body: Buffer): Buffer {
  const head = Buffer.alloc(16);
  head.write('SGBS', 0, 'latin1');
  head.writeUInt32LE(version, 4);
  head.writeUInt32LE(crc32(body) >>> 0, 8);
  head.writeUInt32LE(body.length, 12);
  return Buffer.concat([head, body]);
}

/** Deep equality where byte arrays compare by content (a decoded one is a view of the file buffer). */
function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return { bytes: Array.from(v) };
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

const live = () => Float32Array.from({ length: 16 }, (_, i) => i * 1.5 + 0.25);

describe('state snapshot body', () => {
  it('round-trips an image, byte arrays included, as version 2', () => {
    const original = image(live());
    const file = encodeState(original);
    expect(file.readUInt32LE(4)).toBe(STATE_VERSION);
    expect(STATE_VERSION).toBe(2);
    expect(plain(decodeState(file))).toEqual(plain(original));
    // The ledger image inside restores to the same ledger.
    const back = decodeState(file).ledger!;
    expect(Ledger.restore(Buffer.from(back.buffer, back.byteOffset, back.byteLength)).snapshot().equals(Buffer.from(original.ledger!))).toBe(true);
  });

  it('takes copies of the live curves: a checkpoint written later holds the curves of its instant', () => {
    const plan = loadDecider(large.configPath).plan;
    const sh = plan.shading;
    const per = sh.exchangeCount * sh.bandCount;
    // Evidence on line items 0 and 2 only (1 has none and is left out).
    for (const li of [0, 2]) for (let k = 0; k < 6; k++) sh.recordOutcome(li * per, 1_000_000 + k * 50_000, 2_000_000, k % 2 === 0);
    sh.refresh(Date.now());
    const learning = exportLearning(plan);
    expect(learning.shading.ids).toEqual([sh.lineItemIds[0], sh.lineItemIds[2]]);
    const file = encodeState({ ...image(live()), learning });
    const before = plain(decodeState(file).learning);
    const parts = encodeStateParts({ ...image(live()), learning });
    sh.trials.fill(3); // the bid thread runs on while the parts wait for the disk
    sh.wins.fill(2);
    expect(plain(decodeState(Buffer.concat(parts)).learning)).toEqual(before);
    const curve = new Float32Array(Uint8Array.from(learning.shading.trials!.subarray(0, per * sh.bins * 4)).buffer);
    expect(curve.some((t) => t > 0) && curve.every((t) => t !== 3)).toBe(true);
  });

  it('still reads a version 1 file (one msgpackr body)', () => {
    const original = image(live());
    const v1 = framed(STATE_VERSION_1, pack(original));
    expect(plain(decodeState(v1))).toEqual(plain(original));
  });

  it('rejects inconsistent version 2 bodies as corrupt', () => {
    const skeletonOf = (sk: unknown, bins: Buffer) => {
      const s = pack(sk);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(s.length, 0);
      return Buffer.concat([len, s, bins]);
    };
    const good = { fingerprint: 'f', campaigns: [], lineItems: [], ledger: null, learning: null, savedAtMs: 1, allocator: null, pacer: null };
    const three = Buffer.from([1, 2, 3]);
    // The control: a well-formed hand-made body decodes, the bytes at their path.
    const control = decodeState(framed(2, skeletonOf([{ ...good, x: { y: null } }, [3], [['x', 'y']]], three)));
    expect(Array.from((control as unknown as { x: { y: Uint8Array } }).x.y)).toEqual([1, 2, 3]);
    // An id that looks like anything is data, not a place holder: only the paths say where bytes go.
    const odd = decodeState(framed(2, skeletonOf([{ ...good, allocator: { '\u0000bin': [0, 0, 0, 0, 0, 0] } }, [], []], Buffer.alloc(0))));
    expect(odd.allocator).toEqual({ '\u0000bin': [0, 0, 0, 0, 0, 0] });
    const bad: Buffer[] = [
      skeletonOf([{ ...good, x: { y: null } }, [3], [['x', 'z']]], three), // a path to nothing
      skeletonOf([{ ...good, x: { y: 5 } }, [3], [['x', 'y']]], three), // a path to data, not a place holder
      skeletonOf([{ ...good, x: [null] }, [3], [['x', 1]]], three), // an index past the array
      skeletonOf([{ ...good, x: { y: null } }, [3], []], three), // bytes without a path
      skeletonOf([{ ...good, x: { y: null } }, [3], [[]]], three), // the root
      skeletonOf([good, [4], [['fingerprint']]], three), // a length past the end
      skeletonOf([good, [2], [['ledger']]], three), // bytes left over
      skeletonOf([good, [-1], [['ledger']]], three),
      skeletonOf([good, [3]], three), // not [image, lengths, paths]
      Buffer.from([0xff, 0xff, 0xff, 0x7f, 1, 2]), // skeleton length past the end
    ];
    for (const body of bad) expect(() => decodeState(framed(2, body))).toThrow(expect.objectContaining({ code: 'LEDGER_SNAPSHOT_CORRUPT' }));
    // And the frame's own checks: a flipped byte, a cut file, an unknown version.
    const file = encodeState(image(live()));
    const flipped = Buffer.from(file);
    flipped[flipped.length - 3] ^= 0x40;
    for (const f of [flipped, file.subarray(0, file.length - 5), framed(3, file.subarray(16))]) {
      expect(() => decodeState(f)).toThrow(expect.objectContaining({ code: 'LEDGER_SNAPSHOT_CORRUPT' }));
    }
  });
});
