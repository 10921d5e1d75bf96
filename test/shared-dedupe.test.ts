/**
 * The notice dedupe shared by a cluster's workers (src/events/shared-dedupe.ts): a claim within its window is a
 * duplicate, an expired one is a new claim, keys do not collide in practice, and worker threads racing on the
 * same keys over one buffer see exactly one winner per key.
 */
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SharedDedupe, dedupeKey } from '../src/events/shared-dedupe.js';
import { PACKAGE_ROOT } from '../src/common/paths.js';

describe('SharedDedupe', () => {
  it('holds a claim for its window, then lets it go', () => {
    const d = SharedDedupe.create(1000);
    const k = dedupeKey('abc123.4f', 'win');
    expect(d.claim(k, 100, 160)).toBe(true);
    expect(d.claim(k, 120, 180)).toBe(false);
    expect(d.claim(k, 160, 220)).toBe(false); // still live at its last second
    expect(d.claim(k, 161, 221)).toBe(true); // expired: a new claim
    expect(d.claim(dedupeKey('abc123.4f', 'bill'), 161, 221)).toBe(true); // another kind, another key
  });

  it('finds a live claim past an expired slot of its probe window', () => {
    const d = SharedDedupe.create(1024);
    // Three keys with one home slot (the low bits of the key): a, b and c fill three slots in a row.
    const home = (k: bigint) => Number(k & 1023n);
    const keys: bigint[] = [];
    for (let i = 0; keys.length < 3; i++) {
      const k = dedupeKey(`same-home-${i}`, 'win');
      if (keys.length === 0 || home(k) === home(keys[0])) keys.push(k);
    }
    const [a, b, c] = keys;
    expect(d.claim(a, 0, 5)).toBe(true); // expires at 5
    expect(d.claim(b, 0, 100)).toBe(true);
    expect(d.claim(c, 0, 100)).toBe(true);
    // At 10, a's slot is free again, but b's claim further on is still live: b is a duplicate.
    expect(d.claim(b, 10, 110)).toBe(false);
    expect(d.claim(c, 10, 110)).toBe(false);
    expect(d.claim(a, 10, 110)).toBe(true); // a's own claim expired: a new one
  });

  it('gives distinct keys to 200,000 bid ids and kinds, and reuses expired slots', () => {
    const seen = new Set<bigint>();
    for (let i = 0; i < 100_000; i++) for (const kind of ['win', 'bill']) seen.add(dedupeKey(`k3x9q2${i.toString(36)}.${(i * 7).toString(36)}`, kind));
    expect(seen.size).toBe(200_000);
    const d = SharedDedupe.create(1024);
    for (let i = 0; i < 5000; i++) expect(d.claim(dedupeKey(`b${i}`, 'win'), i, i)).toBe(true); // each expires at once
    expect(d.full).toBe(0);
  });

  it('lets exactly one of several threads claim each key', async () => {
    const d = SharedDedupe.create(8192);
    // The compiled module (npm test builds dist/ first), so the threads run the real claim.
    const moduleUrl = pathToFileURL(resolve(PACKAGE_ROOT, 'dist/src/events/shared-dedupe.js')).href;
    const source = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(workerData.moduleUrl).then(({ SharedDedupe }) => {
        const d = new SharedDedupe(workerData.buffer);
        let won = 0;
        for (const key of workerData.keys) if (d.claim(key, 0, 10)) won++;
        parentPort.postMessage(won);
      });
    `;
    const keys = Array.from({ length: 3000 }, (_, i) => dedupeKey(`race-${i}`, 'win'));
    const runs = await Promise.all(
      [0, 1, 2, 3].map(
        () =>
          new Promise<number>((resolve, reject) => {
            const w = new Worker(source, { eval: true, workerData: { buffer: d.buffer, keys, moduleUrl } });
            w.once('message', resolve);
            w.once('error', reject);
          }),
      ),
    );
    expect(runs.reduce((a, b) => a + b, 0)).toBe(keys.length);
    for (const k of keys) expect(d.claim(k, 0, 10)).toBe(false); // every key is held
  });
});
