/**
 * Learning statistics shared between bidder threads (src/bidding/shared-learning.ts): two BidHandlers over the
 * demo config (as two workers would hold), each learning from the notices it receives, synced through one hub
 * with the messages structured-cloned as postMessage does, replies delayed so that syncs cross new feedback.
 * Counts must merge exactly (never lost, never twice) and both threads must end on the same statistics.
 */
import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BidHandler } from '../src/bidding/bid-handler.js';
import { loadDecider } from '../src/bidding/load-decider.js';
import { Metrics } from '../src/metrics/metrics.js';
import { ARM_FIRST_PRICE } from '../src/bidding/learning.js';
import { attachLearningClient, startSharedStateSingle } from '../src/bidding/shared-state.js';
import { Registry } from 'prom-client';
import { LearningHub, fieldNameOf, learningLayout, syncInProcess, type LearningBatch, type LearningClient } from '../src/bidding/shared-learning.js';
import { mulberry32 } from '../src/common/prng.js';
import { DEMO_DIR } from '../src/common/paths.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';
import type { OutcomeContext } from '../src/events/types.js';

const T0 = 1_760_000_000_000;

/** The demo with its line items as the arms of one budgeted campaign (so the allocator has arms too). */
function budgetedDemo(): string {
  ensureDemoStore();
  const dir = mkdtempSync(join(tmpdir(), 'segbid-shared-learning-'));
  for (const f of ['segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(dir, f));
  const doc = JSON.parse(readFileSync(join(DEMO_DIR, 'config.json'), 'utf8'));
  const now = Date.now();
  doc.bidder.shading = { exchanges: ['exchange-a'] };
  doc.campaigns = [
    {
      id: 'shared',
      name: 'Shared',
      budget: { daily: 100, flight: 100, flightStart: new Date(now - 3600_000).toISOString(), flightEnd: new Date(now + 7 * 86400_000).toISOString() },
      kpi: 'roas',
      lineItems: doc.lineItems.map((li: { id: string }) => li.id),
      pacing: { curve: 'even' },
      settle: 'billing',
    },
  ];
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(doc));
  return path;
}

const CONFIG = budgetedDemo();

/** `sparse`: the worker threads' exchange (only what changed travels), else whole arrays. */
function worker(sparse = false): { handler: BidHandler; client: LearningClient } {
  const handler = new BidHandler(loadDecider(CONFIG), new Metrics());
  const client = attachLearningClient(handler);
  client.sparse = sparse;
  return { handler, client };
}

function ctx(li: number, creative: number, nowMs: number, firstPrice: boolean): OutcomeContext {
  return { lineItemId: `li-${li}`, bidId: `b${nowMs}`, arm: firstPrice ? ARM_FIRST_PRICE | 50 : 0, segmentBit: -1, creative, bidMicros: 2_000_000, exchange: 'exchange-a', dealId: null, nowMs, user: '' };
}

/** What every thread should end with: counts of each kind of feedback given to any thread. */
interface Expected {
  bills: number[];
  clicks: number[];
  conversions: number[];
  creativeImps: number[];
  shadingOutcomes: number[];
  allocCost: number[];
}

function feed(w: { handler: BidHandler }, rnd: () => number, exp: Expected, nowMs: number): void {
  const plan = w.handler.current.plan;
  const n = plan.strategies.size;
  const li = Math.floor(rnd() * n);
  const creative = Math.floor(rnd() * plan.selector.creativeIds.length);
  const pick = rnd();
  const L = w.handler.learning;
  if (pick < 0.4) {
    L.onBill(li, 1_500_000, ctx(li, creative, nowMs, false));
    exp.bills[li]++;
    exp.creativeImps[creative]++;
  } else if (pick < 0.55) {
    L.onClick(li, ctx(li, creative, nowMs, false));
    exp.clicks[li]++;
  } else if (pick < 0.65) {
    L.onConversion(li, 25_000_000);
    exp.conversions[li]++;
  } else if (pick < 0.85) {
    L.onWin(li, 1_200_000, ctx(li, creative, nowMs, true));
    exp.shadingOutcomes[li]++;
  } else {
    const cost = 1000 + Math.floor(rnd() * 5000);
    w.handler.budget!.allocator.recordImpression(li, cost);
    exp.allocCost[li] += cost;
  }
}

/** One worker's sync as over postMessage: the batches and the answer are cloned; the answer may be held back. */
function send(client: LearningClient, hub: LearningHub): () => void {
  const since = client.since;
  const batches = structuredClone(client.collect()) as LearningBatch[];
  const unknown = hub.merge(batches);
  const layout = batches[batches.length - 1].layout;
  // As startClusterHub answers a sparse worker (totals changed since what it applied), or whole totals.
  const reply = structuredClone(client.sparse ? hub.totalsSince(layout, since) : { totals: hub.totalsFor(layout)!, at: undefined, version: -1 });
  return () => {
    client.forget(unknown);
    if (reply !== null && reply.totals !== null) client.apply(layout, reply.totals, reply.at, reply.version);
  };
}

describe.each([false, true])('shared learning statistics (sparse exchange: %s)', (sparse) => {
  it('deltas merge exactly: every count once, in the hub and in every thread', () => {
    const hub = new LearningHub();
    const ws = [worker(sparse), worker(sparse)];
    const plan = ws[0].handler.current.plan;
    const n = plan.strategies.size;
    const exp: Expected = {
      bills: new Array(n).fill(0),
      clicks: new Array(n).fill(0),
      conversions: new Array(n).fill(0),
      creativeImps: new Array(plan.selector.creativeIds.length).fill(0),
      shadingOutcomes: new Array(n).fill(0),
      allocCost: new Array(n).fill(0),
    };
    const rnd = mulberry32(42);
    const held: (() => void)[] = [];
    for (let step = 0; step < 3000; step++) {
      const w = ws[step % 7 < 4 ? 0 : 1];
      feed(w, rnd, exp, T0 + step);
      if (rnd() < 0.02) {
        // A sync of one worker; its answer arrives now or after more feedback (crossing in flight).
        held.push(send(ws[rnd() < 0.5 ? 0 : 1].client, hub));
        if (rnd() < 0.5) held.splice(0).forEach((deliver) => deliver());
      }
    }
    held.splice(0).forEach((deliver) => deliver());
    for (let round = 0; round < 2; round++) for (const w of ws) send(w.client, hub)();

    const ids = plan.strategies.ids;
    for (let li = 0; li < n; li++) {
      expect(hub.total(`s|${ids[li]}|imp`)).toBe(exp.bills[li]);
      expect(hub.total(`s|${ids[li]}|clk`)).toBe(exp.clicks[li]);
      expect(hub.total(`s|${ids[li]}|conv`)).toBe(exp.conversions[li]);
      expect(hub.total(`a|${ids[li]}|cost`)).toBe(exp.allocCost[li]);
    }
    expect(exp.bills.reduce((a, b) => a + b, 0)).toBeGreaterThan(1000);
    for (const w of ws) {
      const p = w.handler.current.plan;
      const a = w.handler.budget!.allocator;
      for (let li = 0; li < n; li++) {
        expect(p.strategies.impressions[li]).toBe(exp.bills[li]);
        expect(p.strategies.clicks[li]).toBe(exp.clicks[li]);
        expect(p.strategies.conversions[li]).toBe(exp.conversions[li]);
        expect(p.strategies.orderValueMicros[li]).toBe(exp.conversions[li] * 25_000_000);
        expect(a.costMicros[li]).toBe(exp.allocCost[li]);
        // Shading: one trial per win notice on a first-price bid, summed over the line item's bins.
        let trials = 0;
        const per = p.shading.exchangeCount * p.shading.bandCount * p.shading.bins;
        let wins = 0;
        for (let k = li * per; k < (li + 1) * per; k++) {
          trials += p.shading.trials[k];
          wins += p.shading.wins[k];
        }
        expect(trials).toBeCloseTo(exp.shadingOutcomes[li], 6);
        expect(wins).toBeCloseTo(exp.shadingOutcomes[li], 6); // every outcome fed is a win notice
      }
      for (let c = 0; c < exp.creativeImps.length; c++) expect(p.selector.impressions[c]).toBe(exp.creativeImps[c]);
    }
    // Both threads decide on the same numbers: their shading factors agree after a refresh.
    for (const w of ws) w.handler.current.plan.shading.refresh(T0);
    expect(Array.from(ws[0].handler.current.plan.shading.factor)).toEqual(Array.from(ws[1].handler.current.plan.shading.factor));
    // Idle syncs change nothing (no count is sent twice).
    for (let round = 0; round < 3; round++) for (const w of ws) send(w.client, hub)();
    expect(hub.total(`s|${ids[0]}|imp`)).toBe(exp.bills[0]);
    expect(ws[1].handler.current.plan.strategies.impressions[0]).toBe(exp.bills[0]);
  });

  it('totals arriving after new outcomes keep them: curve = hub totals + what left since', () => {
    const hub = new LearningHub();
    const a = worker(sparse);
    send(a.client, hub)();
    const sh = () => a.handler.current.plan.shading;
    const sum = (arr: Float32Array) => arr.reduce((x, y) => x + y, 0);
    a.handler.learning.onWin(4, 1_000_000, ctx(4, 0, T0, true));
    const deliver = send(a.client, hub); // the first outcome leaves
    a.handler.learning.onWin(4, 1_000_000, ctx(4, 0, T0 + 1, true)); // a second one arrives meanwhile
    deliver();
    expect(sum(sh().trials)).toBeCloseTo(2, 6);
    expect(sum(sh().wins)).toBeCloseTo(2, 6);
    send(a.client, hub)();
    expect(sum(sh().trials)).toBeCloseTo(2, 6);
  });

  it('two workers converge: what one learns reaches the other within one sync', () => {
    const hub = new LearningHub();
    const [a, b] = [worker(sparse), worker(sparse)];
    for (const w of [a, b]) send(w.client, hub)();
    for (let i = 0; i < 50; i++) a.handler.learning.onBill(2, 1_000_000, ctx(2, 0, T0 + i, false));
    for (let i = 0; i < 7; i++) b.handler.learning.onClick(2, ctx(2, 0, T0 + i, false));
    expect(b.handler.current.plan.strategies.impressions[2]).toBe(0);
    send(a.client, hub)();
    send(b.client, hub)();
    expect(b.handler.current.plan.strategies.impressions[2]).toBe(50);
    expect(b.handler.current.plan.strategies.clicks[2]).toBe(7);
    send(a.client, hub)();
    expect(a.handler.current.plan.strategies.clicks[2]).toBe(7);
    // The base bids follow: both refresh to the same value.
    a.handler.current.plan.strategies.refresh();
    b.handler.current.plan.strategies.refresh();
    expect(Array.from(a.handler.current.plan.strategies.baseBidMicros)).toEqual(Array.from(b.handler.current.plan.strategies.baseBidMicros));
  });

  it('a restored state seeds the hub once, however many workers restored it', () => {
    const hub = new LearningHub();
    const restored = () => {
      const handler = new BidHandler(loadDecider(CONFIG), new Metrics());
      handler.current.plan.strategies.recordImpression(1, 500); // what the state directory gave back
      const client = attachLearningClient(handler);
      client.sparse = sparse;
      return { handler, client };
    };
    const [a, b] = [restored(), restored()];
    send(a.client, hub)();
    send(b.client, hub)();
    const id = a.handler.current.plan.strategies.ids[1];
    expect(hub.total(`s|${id}|imp`)).toBe(500);
    a.handler.learning.onBill(1, 1_000_000, ctx(1, 0, T0, false));
    send(a.client, hub)();
    send(b.client, hub)();
    expect(hub.total(`s|${id}|imp`)).toBe(501);
    expect(b.handler.current.plan.strategies.impressions[1]).toBe(501);
  });

  it('nothing learned around a config swap is lost or counted twice', () => {
    const hub = new LearningHub();
    const a = worker(sparse);
    send(a.client, hub)();
    for (let i = 0; i < 10; i++) a.handler.learning.onBill(3, 1_000_000, ctx(3, 0, T0 + i, false));
    a.handler.swap(loadDecider(CONFIG)); // a reload: new plan, counters adopted by id
    for (let i = 0; i < 4; i++) a.handler.learning.onBill(3, 1_000_000, ctx(3, 0, T0 + i, false));
    send(a.client, hub)();
    send(a.client, hub)();
    const id = a.handler.current.plan.strategies.ids[3];
    expect(hub.total(`s|${id}|imp`)).toBe(14);
    expect(a.handler.current.plan.strategies.impressions[3]).toBe(14);
  });
});

describe('learning layout entries (a curve\'s bins named once)', () => {
  it('every field keeps its per-field name: the same names, in the same order, as one name per field', () => {
    const w = worker();
    const src = { plan: w.handler.current.plan, allocator: w.handler.budget?.allocator ?? null };
    const L = learningLayout(src);
    const sh = src.plan.shading;
    // The per-field names, built independently (the layout's field order: strategies, creatives, trials, wins, arms).
    const expected: string[] = [];
    for (const id of src.plan.strategies.ids) for (const f of ['imp', 'clk', 'conv', 'ov']) expected.push(`s|${id}|${f}`);
    for (const id of src.plan.selector.creativeIds) for (const f of ['imp', 'clk']) expected.push(`c|${id}|${f}`);
    for (const kind of ['t', 'w']) {
      for (const li of sh.lineItemIds) {
        for (const ex of [...sh.settings.exchanges, 'other']) {
          for (const floor of [0, ...sh.settings.floorBandsCpm]) for (let k = 0; k < sh.bins; k++) expected.push(`h|${li}|${ex}|${floor}|${k}/${sh.bins}|${kind}`);
        }
      }
    }
    for (const id of src.allocator!.plan.lineItemIds) for (const f of ['imp', 'clk', 'conv', 'val', 'cost', 'bids']) expected.push(`a|${id}|${f}`);
    const got: string[] = [];
    L.names.forEach((name, e) => {
      for (let k = 0; k < L.widths[e]; k++) got.push(fieldNameOf(name, L.widths[e], k));
    });
    expect(L.size).toBe(expected.length);
    expect(got).toEqual(expected);
    expect(L.names.length).toBeLessThan(expected.length / 2);
  });

  it('a config with the same learning shape reuses the layout; any change to its inputs builds a new one', () => {
    const a = worker();
    const b = worker(); // another load of the same config: other objects, the same ids
    const srcA = { plan: a.handler.current.plan, allocator: a.handler.budget?.allocator ?? null };
    const srcB = { plan: b.handler.current.plan, allocator: b.handler.budget?.allocator ?? null };
    // (Identity compared as booleans: a failing-or-negated toBe deep-compares these large objects for its message.)
    expect(srcB.plan === srcA.plan).toBe(false);
    const L = learningLayout(srcA);
    expect(learningLayout(srcB) === L).toBe(true);
    // Without the allocator's arms the names differ: a new layout, equal to one built from scratch.
    const noArms = learningLayout({ plan: srcA.plan, allocator: null });
    expect(noArms === L).toBe(false);
    expect(noArms.id).not.toBe(L.id);
    expect(noArms.size).toBe(L.offA);
    // A line item more (a swapped config that adds one): a new layout with that line item's fields.
    const doc = JSON.parse(readFileSync(CONFIG, 'utf8'));
    const extra = structuredClone(doc.lineItems[0]);
    extra.id = 'li-extra';
    doc.lineItems.push(extra);
    const dir = mkdtempSync(join(tmpdir(), 'segbid-layout-'));
    for (const f of ['segmentation.json', 'segments.store']) copyFileSync(join(dirname(CONFIG), f), join(dir, f));
    writeFileSync(join(dir, 'config.json'), JSON.stringify(doc));
    const bigger = new BidHandler(loadDecider(join(dir, 'config.json')), new Metrics());
    const L2 = learningLayout({ plan: bigger.current.plan, allocator: bigger.budget?.allocator ?? null });
    expect(L2 === L).toBe(false);
    expect(L2.names.some((n) => n.includes('li-extra'))).toBe(true);
    expect(learningLayout(srcA) === L2).toBe(false); // and back: the inputs decide, not the last call
    expect(learningLayout(srcA).id).toBe(L.id);
    rmSync(dir, { recursive: true, force: true });
  });

  it('the hub names, pushes and takes external evidence per field (Redis), before or after a layout registers', () => {
    const w = worker();
    const src = { plan: w.handler.current.plan, allocator: w.handler.budget?.allocator ?? null };
    const L = learningLayout(src);
    const K = src.plan.shading.bins;
    const block = L.names.findIndex((_, e) => L.widths[e] === K);
    const start = L.widths.subarray(0, block).reduce((a, b) => a + b, 0);
    const cell = (k: number) => fieldNameOf(L.names[block], K, k);
    // Another machine's evidence arrives before this thread's layout: the whole block is created, then shared.
    const hub = new LearningHub();
    hub.trackUnpushed();
    hub.addExternal(cell(3), 5);
    const delta = new Float64Array(L.size);
    delta[start + 3] = 2;
    delta[start + K - 1] = 7;
    delta[0] = 4; // the first strategy counter
    expect(hub.merge([{ layout: L.id, names: L.names, widths: L.widths, halfLifeSec: L.halfLifeSec, delta }])).toEqual([]);
    const totals = hub.totalsFor(L.id)!;
    expect(totals[start + 3]).toBe(7);
    expect(totals[start + K - 1]).toBe(7);
    expect(totals[0]).toBe(4);
    expect(hub.total(cell(3))).toBe(7);
    expect(hub.total(L.names[0])).toBe(4);
    expect(hub.total(L.names[block])).toBe(0); // a block's own name is not a field
    // Only this hub's own additions are pushed, by per-field name.
    const pushed = hub.takeUnpushed();
    expect(Object.fromEntries(pushed)).toEqual({ [L.names[0]]: 4, [cell(3)]: 2, [cell(K - 1)]: 7 });
    hub.returnUnpushed(pushed);
    expect(hub.takeUnpushed()).toEqual(pushed);
    // Decay applies to the curve's fields only.
    hub.decay(T0);
    hub.decay(T0 + 3600_000 * src.plan.shading.settings.halfLifeSec / 3600);
    expect(hub.total(cell(3))).toBeCloseTo(3.5, 6);
    expect(hub.total(L.names[0])).toBe(4);
  });
});

describe('single-threaded bidder start (startSharedStateSingle)', () => {
  it('registers the layout at start, before any traffic, not in the first timer sync', () => {
    const handler = new BidHandler(loadDecider(CONFIG), new Metrics());
    const shared = startSharedStateSingle(handler, new Registry());
    try {
      const { client, hub } = shared.parts;
      // Registered: the hub mirrors the client's layout and names its fields, with no sync run by the timer yet.
      expect(hub.mirrors(client.layoutId)).toBe(true);
      expect(hub.total(`s|${handler.current.plan.strategies.ids[0]}|imp`)).toBe(0);
    } finally {
      shared.close();
    }
  });
});

// The single-threaded bidder syncs sparse deltas (src/bidding/shared-state.ts); dense ones must do the same.
describe.each([true, false])('single-threaded sync (syncInProcess, sparse deltas: %s)', (sparse) => {
  it('a hub fed by one client alone is not applied back; evidence from elsewhere is', () => {
    const w = worker(sparse);
    const hub = new LearningHub();
    const plan = () => w.handler.current.plan;
    const ids = plan().strategies.ids;
    syncInProcess(w.client, hub, T0);
    w.handler.learning.onBill(0, 1_500_000, ctx(0, 0, T0, false));
    w.handler.learning.onBill(0, 1_500_000, ctx(0, 0, T0, false));
    syncInProcess(w.client, hub, T0 + 1000);
    expect(hub.mirrors(w.client.layoutId)).toBe(true);
    expect(hub.total(`s|${ids[0]}|imp`)).toBe(2);
    expect(plan().strategies.impressions[0]).toBe(2);
    // A config swap: the new plan adopts the counts, the hub keeps mirroring the new layout, nothing doubles.
    w.handler.swap(loadDecider(CONFIG));
    w.handler.learning.onBill(0, 1_500_000, ctx(0, 0, T0, false));
    syncInProcess(w.client, hub, T0 + 1500);
    expect(hub.mirrors(w.client.layoutId)).toBe(true);
    expect(hub.total(`s|${ids[0]}|imp`)).toBe(3);
    expect(plan().strategies.impressions[0]).toBe(3);
    // Another machine's impressions (Redis): the hub no longer mirrors, the next sync hands the totals back.
    hub.addExternal(`s|${ids[0]}|imp`, 5);
    expect(hub.mirrors(w.client.layoutId)).toBe(false);
    w.handler.learning.onBill(0, 1_500_000, ctx(0, 0, T0, false));
    syncInProcess(w.client, hub, T0 + 2000);
    expect(hub.total(`s|${ids[0]}|imp`)).toBe(9);
    expect(plan().strategies.impressions[0]).toBe(9);
  });
});
