/**
 * Conversion attribution with `serve --workers 2` (a real process, the embedded demo, an event log): the kernel
 * hands clicks and conversion postbacks to either worker, and every postback must still find its click
 * (src/server/touch-sharing.ts). Then worker 0 is made to crash (SEGBID_FAULT_WORKER_CRASH): the restarted worker
 * knows the clicks the other worker took from that worker's event log, so postbacks reaching it are attributed
 * too. Each of the 12 clicks and 48 postbacks goes on a fresh connection: without the sharing, a postback finds
 * its click only when it lands on the worker that took the click, so about half would be "none".
 * Needs dist/ (npm test builds it).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { raw } from './helpers/bidder.js';
import { readyz, sleep, spawnSegbid, waitFor, type SegbidProcess } from './helpers/segbid-process.js';
import { demoUserId } from '../src/fixtures/demo.js';

const SECRET = 'conv-secret-cluster-attribution-0123';
const READ = 'read-token-cluster-attribution-01';
const dir = mkdtempSync(join(tmpdir(), 'segbid-cluster-attr-'));
const trigger = join(dir, 'crash-now');
let proc: SegbidProcess | null = null;

afterAll(() => {
  proc?.kill();
  rmSync(dir, { recursive: true, force: true });
});

interface Clicked {
  bidId: string;
  user: string;
}

async function conversion(body: Record<string, unknown>): Promise<{ status: number; attribution: string; bidId: string | null }> {
  const r = await raw(proc!.bidPort, { path: '/ev/conv', body: JSON.stringify(body), headers: { 'x-segbid-secret': SECRET, 'content-type': 'application/json' } });
  const json = JSON.parse(r.text);
  return { status: r.status, attribution: json.attribution, bidId: json.bidId };
}

describe('conversion attribution across workers', () => {
  it('finds every click whichever worker took it, also after a worker restarted', async () => {
    proc = await spawnSegbid({
      args: ['--workers', '2', '--event-log', join(dir, 'events')],
      env: { SEGBID_CONV_SECRET: SECRET, SEGBID_FAULT_WORKER_CRASH: `0:${trigger}`, SEGBID_ADMIN_TOKENS: `read:${READ}`, LOG_LEVEL: 'warn' },
      cwd: dir,
    });
    await waitFor('both workers ready', async () => ((await readyz(proc!.adminPort)).status === 200 ? true : undefined), 60_000);

    // Bids with markup for 12 known users (the pacer opens the demo campaigns within a second or two).
    const clicked: Clicked[] = [];
    for (let i = 0; clicked.length < 12 && i < 2000; i++) {
      const user = demoUserId(7 + i);
      const request = {
        id: `attr-${i}`,
        site: { domain: 'news.example', page: 'https://news.example/a' },
        cur: ['USD'],
        imp: [{ id: '1', banner: { format: [{ w: 300, h: 250 }] } }],
        user: { buyeruid: user },
        device: { devicetype: 2, geo: { country: 'FRA' } },
      };
      const r = await raw(proc.bidPort, { body: JSON.stringify(request) });
      if (r.status !== 200) {
        await sleep(10);
        continue;
      }
      const bid = JSON.parse(r.text).seatbid[0].bid[0] as { id: string; adm: string };
      const click = /href=\\?"(http[^"\\]*\/ev\/click\?t=[^"\\]*)/.exec(bid.adm);
      if (click === null) continue;
      const u = new URL(click[1]);
      const c = await raw(proc.bidPort, { method: 'GET', path: u.pathname + u.search });
      expect(c.status).toBe(302);
      clicked.push({ bidId: bid.id, user });
    }
    expect(clicked.length).toBe(12);
    await sleep(400); // the workers pass their touches every 100 ms

    let order = 0;
    const attributeAll = async () => {
      for (const c of clicked) {
        const byClick = await conversion({ clickId: c.bidId, value: 10, orderId: `o-${++order}` });
        expect(byClick.status).toBe(200);
        expect(byClick.attribution, `conversion of click ${c.bidId}`).toBe('click');
        expect(byClick.bidId).toBe(c.bidId);
        const byUser = await conversion({ user: { kind: 'buyeruid', id: c.user }, value: 10, orderId: `o-${++order}` });
        expect(byUser.attribution, `conversion of user ${c.user}`).toBe('click');
        expect(byUser.bidId).toBe(c.bidId);
      }
    };
    await attributeAll();
    // The cluster's event counts (each worker sends its own every 2 s): every click once.
    const clicksAccepted = async () => {
      const r = await fetch(`http://127.0.0.1:${proc!.adminPort}/admin/events`, { headers: { authorization: `Bearer ${READ}` } });
      return ((await r.json()) as { results: Record<string, Record<string, number>> }).results.click?.accepted ?? 0;
    };
    await waitFor('the workers\' event counts', async () => ((await clicksAccepted()) === 12 ? true : undefined), 10_000, 100);

    // Worker 0 crashes and is restarted: it has only the event logs to learn the clicks from.
    writeFileSync(trigger, '');
    await waitFor(
      'worker 0 restarted',
      async () => {
        const r = await readyz(proc!.adminPort);
        return r.status === 200 && r.body.workers!.restarts === 1 ? true : undefined;
      },
      60_000,
      100,
    );
    await attributeAll();
    // The crashed worker's event counts still count (its replacement counts from zero).
    await sleep(2500);
    expect(await clicksAccepted()).toBe(12);
  }, 120_000);
});
