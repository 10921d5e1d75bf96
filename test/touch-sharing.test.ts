/**
 * src/server/touch-sharing.ts in one thread (BroadcastChannel delivers between instances of one thread as between
 * threads): a touch accepted by one event handler reaches a handler that shares touches already, and one that
 * joins later is sent again what was shared in the last seconds (a touch sent just before a worker (re)starts,
 * but written to the sender's log only after the newcomer read it, would otherwise be lost).
 * The cluster case over real worker threads is test/cluster-attribution.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { tmpdir } from 'node:os';
import { pino } from 'pino';
import { compileConfig } from '../src/config/compile.js';
import { validateConfigDocument } from '../src/config/load.js';
import { smallConfig } from './helpers/small-config.js';
import { EventHandler } from '../src/events/event-handler.js';
import { parseKeySpec } from '../src/events/keyring.js';
import { tokenFields } from './helpers/token-fields.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';
import { shareTouches, type TouchSharing } from '../src/server/touch-sharing.js';

const SECRET = 'conversion-shared-secret-0123456789';
const KEYS = parseKeySpec('7:' + 'ab'.repeat(32));
const CONFIG = compileConfig(validateConfigDocument(smallConfig(), tmpdir(), 'inline'));
const logger = pino({ level: 'silent' });
const open: TouchSharing[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

const handler = () => new EventHandler({ config: CONFIG, keyring: KEYS, events: { conversionSecret: SECRET } });
const share = (h: EventHandler) => {
  const s = shareTouches(h, null, logger);
  open.push(s);
  return s;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function click(h: EventHandler, bidId: string, user: string): number {
  hashKey(KEY_KIND.buyeruid, user);
  const t = h.sign(tokenFields(CONFIG, { userHi: keyHash.hi, userLo: keyHash.lo, bidId }), 'client');
  return h.handle({ method: 'GET', path: '/ev/click', query: new URLSearchParams({ t }).toString() }, Date.now()).status;
}

function conversion(h: EventHandler, body: Record<string, unknown>): { attribution: string; bidId: string | null } {
  const r = h.handle({ method: 'POST', path: '/ev/conv', query: '', body: JSON.stringify(body), headers: { 'x-segbid-secret': SECRET } }, Date.now());
  return JSON.parse(String(r.body));
}

describe('touch sharing between workers', () => {
  it('passes a click to the handlers that share touches, and again to one that joins within seconds', async () => {
    const a = handler();
    const b = handler();
    share(a);
    share(b);
    expect(click(a, 'bid-shared-1', 'user-1')).toBe(302);
    await sleep(250); // one flush (100 ms) and the delivery
    expect(conversion(b, { clickId: 'bid-shared-1', orderId: 'o1' })).toMatchObject({ attribution: 'click', bidId: 'bid-shared-1' });
    expect(conversion(b, { user: { kind: 'buyeruid', id: 'user-1' }, orderId: 'o2' })).toMatchObject({ attribution: 'click', bidId: 'bid-shared-1' });

    // A worker that starts now did not see the broadcast: its siblings send it again when it says hello.
    const late = handler();
    expect(conversion(late, { clickId: 'bid-shared-1', orderId: 'o3' }).attribution).toBe('none');
    share(late);
    await sleep(250);
    expect(conversion(late, { clickId: 'bid-shared-1', orderId: 'o4' })).toMatchObject({ attribution: 'click', bidId: 'bid-shared-1' });

    // Without sharing, a handler knows its own touches only.
    const alone = handler();
    await sleep(250);
    expect(conversion(alone, { clickId: 'bid-shared-1', orderId: 'o5' }).attribution).toBe('none');
  });
});
