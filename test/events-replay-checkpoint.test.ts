/**
 * The replay checkpoint (src/events/replay-checkpoint.ts): a clean close saves the handler's KPIs, dedupe windows
 * and touches; the next start loads them and replays only the segments written since. Checked against the live
 * handler's figures: the same KPIs (KpiStore.snapshot), a retried notice and a repeated postback still duplicates,
 * a conversion still attributed to its click; after a crash (no checkpoint at that close) the segments written
 * since the last one are replayed on top of it; a covered segment changed in size makes the start replay
 * everything; a covered segment archived away stays counted.
 */
import { appendFileSync, mkdtempSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
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
import { CHECKPOINT_FILE } from '../src/events/replay-checkpoint.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';

const SECRET = 'conversion-shared-secret-0123456789';
const KEYS = parseKeySpec('7:' + 'ab'.repeat(32));
const CONFIG = compileConfig(validateConfigDocument(smallConfig(), tmpdir(), 'inline'));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function handler(dir: string): { h: EventHandler; log: EventLog; replay: ReturnType<EventHandler['restore']> } {
  const h = new EventHandler({ config: CONFIG, keyring: KEYS, events: { conversionSecret: SECRET } });
  const replay = h.restore(dir, Date.now());
  const log = EventLog.open({ dir, fsync: 'never' });
  h.setLog(log);
  return { h, log, replay };
}

let bid = 0;
/** One auction's notices (win, bill, impression, click) for a user; returns the bid id and the win query. */
function traffic(h: EventHandler, user: string): { bidId: string; win: string } {
  const bidId = `cp-${++bid}`;
  hashKey(KEY_KIND.buyeruid, user);
  const fields = tokenFields(CONFIG, { requestHash: hash32('r' + bid), priceMicros: 2_000_000, userHi: keyHash.hi, userLo: keyHash.lo, bidId });

  const now = Date.now();
  const server = h.sign(fields, 'exchange');
  const client = h.sign(fields, 'client');
  const win = new URLSearchParams({ t: server, p: '1.5' }).toString();
  expect(h.handle({ method: 'GET', path: '/ev/win', query: win }, now).status).toBe(204);
  expect(h.handle({ method: 'GET', path: '/ev/bill', query: win }, now).status).toBe(204);
  expect(h.handle({ method: 'GET', path: '/ev/imp', query: new URLSearchParams({ t: client }).toString() }, now).status).toBe(200);
  expect(h.handle({ method: 'GET', path: '/ev/click', query: new URLSearchParams({ t: client }).toString() }, now).status).toBe(302);
  return { bidId, win };
}

function conversion(h: EventHandler, body: Record<string, unknown>): { result: string; attribution?: string; bidId?: string | null } {
  const r = h.handle({ method: 'POST', path: '/ev/conv', query: '', body: JSON.stringify(body), headers: { 'x-segbid-secret': SECRET } }, Date.now());
  return JSON.parse(String(r.body));
}

describe('event log replay checkpoint', () => {
  it('restarts from the checkpoint with the same KPIs, dedupe windows and touches, replaying no segment', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'segbid-checkpoint-'));
    dirs.push(dir);
    const first = handler(dir);
    expect(first.replay.checkpoint).toBe(false);
    const sent = [traffic(first.h, 'user-1'), traffic(first.h, 'user-2'), traffic(first.h, 'user-3')];
    expect(conversion(first.h, { user: { kind: 'buyeruid', id: 'user-1' }, value: 10, orderId: 'order-1' }).attribution).toBe('click');
    await first.h.close();
    expect(readdirSync(dir)).toContain(CHECKPOINT_FILE);
    const live = first.h.kpis.snapshot();

    const second = handler(dir);
    expect(second.replay.checkpoint).toBe(true);
    expect(second.replay.records).toBe(0);
    expect(second.h.kpis.snapshot()).toEqual(live);
    // The windows came back: a retried win is a duplicate, a repeated postback too, a new one finds its click.
    expect(second.h.handle({ method: 'GET', path: '/ev/win', query: sent[1].win }, Date.now()).status).toBe(204);
    expect(second.h.stats.get('win', 'duplicate')).toBe(1);
    expect(conversion(second.h, { user: { kind: 'buyeruid', id: 'user-1' }, value: 10, orderId: 'order-1' }).result).toBe('duplicate');
    expect(conversion(second.h, { user: { kind: 'buyeruid', id: 'user-2' }, value: 20, orderId: 'order-2' })).toMatchObject({ attribution: 'click', bidId: sent[1].bidId });

    // More traffic, then a crash: the log is closed without a new checkpoint.
    traffic(second.h, 'user-4');
    second.h.flushBids(Date.now());
    await second.log.close();
    const afterCrash = second.h.kpis.snapshot();
    const third = handler(dir);
    expect(third.replay.checkpoint).toBe(true);
    expect(third.replay.records).toBeGreaterThan(0); // the segment written since the checkpoint
    expect(third.h.kpis.snapshot()).toEqual(afterCrash);
    await third.h.close();
  });

  it('replays everything when a covered segment changed, and keeps counting an archived one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'segbid-checkpoint-'));
    dirs.push(dir);
    const first = handler(dir);
    traffic(first.h, 'user-1');
    await first.h.close();
    const live = first.h.kpis.snapshot();
    const segments = readdirSync(dir).filter((f) => f.endsWith('.seg'));
    expect(segments.length).toBe(1);

    // Archived: the segment is gone, its records still count.
    const archive = join(dir, segments[0]);
    const bytes = (await import('node:fs')).readFileSync(archive);
    unlinkSync(archive);
    const second = handler(dir);
    expect(second.replay.checkpoint).toBe(true);
    expect(second.h.kpis.snapshot()).toEqual(live);
    await second.log.close(); // no new checkpoint: the next start sees the first one

    // The segment back with other bytes (not the file the checkpoint covered): everything is replayed.
    (await import('node:fs')).writeFileSync(archive, bytes);
    appendFileSync(archive, Buffer.from([1, 2, 3]));
    const third = handler(dir);
    expect(third.replay.checkpoint).toBe(false);
    expect(third.replay.records).toBeGreaterThan(0);
    expect(third.h.kpis.snapshot()).toEqual(live);
  });
});
