/**
 * Bid ids across a restart (real processes, dist/): a bidder that keeps its state keeps its owner tag (the
 * first 8 characters: notices for its reservations come back to it), but never mints an id of its previous run
 * again. It did once the tag was kept: the sequence restarts at 0, and the restored dedupe window took the new
 * bids' notices for duplicates or replays. Here the same notice flow after a restart is counted.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { raw } from './helpers/bidder.js';
import { spawnSegbid, type SegbidProcess } from './helpers/segbid-process.js';

const BID = JSON.stringify({
  id: 'req-ids',
  tmax: 200,
  site: { domain: 'news.example' },
  cur: ['USD'],
  imp: [{ id: '1', banner: { format: [{ w: 300, h: 250 }] } }],
  user: { buyeruid: 'demo-00007' },
  device: { devicetype: 2, geo: { country: 'FRA' } },
});

async function bidAndWin(p: SegbidProcess): Promise<{ bidId: string; notice: number }> {
  const r = await raw(p.bidPort, { body: BID });
  expect(r.status).toBe(200);
  const bid = JSON.parse(r.text).seatbid[0].bid[0] as { id: string; price: number; nurl: string };
  const u = new URL(bid.nurl.replace('${AUCTION_PRICE}', String(bid.price)).replace('${AUCTION_ID}', 'req-ids').replace('${AUCTION_IMP_ID}', '1').replace('${AUCTION_CURRENCY}', 'USD'));
  return { bidId: bid.id, notice: (await raw(p.bidPort, { method: 'GET', path: u.pathname + u.search })).status };
}

async function winsAccepted(p: SegbidProcess): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${p.adminPort}/metrics`)).text();
  const m = /segbid_event_notices_total\{kind="win",result="accepted"\} (\d+)/.exec(text);
  return m === null ? 0 : Number(m[1]);
}

async function stop(p: SegbidProcess): Promise<void> {
  p.child.kill('SIGTERM');
  await p.exited;
}

describe('bid ids across a restart', () => {
  it('keep the owner tag, never repeat, and the new bids\' notices count', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'segbid-ids-'));
    const args = ['--workers', '1', '--state-dir', join(dir, 'state'), '--event-log', join(dir, 'events')];
    const first = await spawnSegbid({ args });
    const a = await bidAndWin(first);
    expect(a.notice).toBe(204);
    await stop(first);
    const second = await spawnSegbid({ args });
    try {
      const b = await bidAndWin(second);
      expect(b.bidId.slice(0, 8)).toBe(a.bidId.slice(0, 8)); // the same owner (its state came back)
      expect(b.bidId).not.toBe(a.bidId);
      expect(b.notice).toBe(204);
      expect(await winsAccepted(second)).toBe(1); // counted, not taken for a duplicate of the first run's
    } finally {
      await stop(second);
    }
  }, 60_000);
});
