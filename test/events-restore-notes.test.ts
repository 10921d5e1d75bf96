/**
 * A log replay does not count the dedupe evictions again: the worker that accepted those notices counted them
 * when it did, and a cluster keeps an exited worker's counts (src/server/cluster.ts departedEvents), so its
 * replacement replaying the log must add none (they were counted twice).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compileConfig } from '../src/config/compile.js';
import { validateConfigDocument } from '../src/config/load.js';
import { smallConfig } from './helpers/small-config.js';
import { EventHandler } from '../src/events/event-handler.js';
import { EventLog } from '../src/events/event-log.js';
import { parseKeySpec } from '../src/events/keyring.js';
import { hash32 } from '../src/events/token.js';
import { tokenFields } from './helpers/token-fields.js';

const KEYS = parseKeySpec('7:' + 'ab'.repeat(32));
const CONFIG = compileConfig(validateConfigDocument(smallConfig(), tmpdir(), 'inline'));
const dir = mkdtempSync(join(tmpdir(), 'segbid-restore-notes-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('event log replay', () => {
  it('counts no dedupe eviction of the replayed notices', async () => {
    const make = () => new EventHandler({ config: CONFIG, keyring: KEYS, events: { dedupeMax: 5 } });
    const live = make();
    const log = EventLog.open({ dir, fsync: 'never' });
    live.setLog(log);
    const now = Date.now();
    for (let i = 0; i < 10; i++) {
      const t = live.sign(
        tokenFields(CONFIG, { requestHash: hash32('r' + i), timeSec: Math.floor(now / 1000), bidId: 'b' + i }),
        'exchange',
      );
      expect(live.handle({ method: 'GET', path: '/ev/win', query: new URLSearchParams({ t, p: '1' }).toString() }, now).status).toBe(204);
    }
    await log.close();
    expect(live.stats.toJSON().notes.dedupe_evicted).toBe(5);
    const replayed = make();
    expect(replayed.restore(dir, Date.now()).records).toBe(10);
    expect(replayed.stats.toJSON().notes.dedupe_evicted ?? 0).toBe(0);
    // The replayed windows still work: a retry of the last notice is a duplicate.
    expect(replayed.kpis.total.wins).toBe(10);
  });

  it('reads a sibling\'s segments for touches only when written to within twice the attribution window', async () => {
    const sibling = mkdtempSync(join(tmpdir(), 'segbid-sibling-'));
    try {
      const live = new EventHandler({ config: CONFIG, keyring: KEYS });
      const log = EventLog.open({ dir: sibling, fsync: 'never' });
      live.setLog(log);
      const now = Date.now();
      const t = live.sign(
        tokenFields(CONFIG, { timeSec: Math.floor(now / 1000), userHi: 1, userLo: 2, bidId: 'clicked-1' }),
        'client',
      );
      expect(live.handle({ method: 'GET', path: '/ev/click', query: new URLSearchParams({ t }).toString() }, now).status).toBe(302);
      await log.close();
      const fresh = new EventHandler({ config: CONFIG, keyring: KEYS });
      expect(fresh.restoreTouches(sibling, now).records).toBe(1);
      // The same segment seen 15 days later (the default click window is 7 days): not read.
      const later = new EventHandler({ config: CONFIG, keyring: KEYS });
      expect(later.restoreTouches(sibling, now + 15 * 86_400_000).segments).toBe(0);
    } finally {
      rmSync(sibling, { recursive: true, force: true });
    }
  });
});
