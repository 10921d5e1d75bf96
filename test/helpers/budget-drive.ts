/**
 * Shared by the budget-sharing tests (budget-redis, budget-workers): a budgeted demo config whose pacing lets the
 * budget go fast, real `segbid serve` processes, and an exchange that wins and bills every bid at its price.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { raw } from './bidder.js';
import { demoUserId } from '../../src/fixtures/demo.js';
import { DEMO_DIR } from '../../src/common/paths.js';
import { ensureDemoStore } from '../../src/fixtures/ensure-demo.js';
export { freePort, startRedis, stopRedis } from './redis-server.js';

export const MAIN = join(process.cwd(), 'dist/src/cli/main.js');
export const KEYS = '1:' + 'cd'.repeat(32);

/**
 * The demo with every line item an arm of one campaign: `flight` units (daily = flight, so the flight is what
 * binds), settled on the win notice, leased in slices of `slice`. The campaign's local clock is set to 23:20 so
 * that the even pacing curve has (almost) the whole day's budget due now: the controller opens the arms fully
 * and the test can exhaust the budget in seconds.
 */
export function budgetedDemo(flight: number, slice: number, extra: Record<string, unknown> = {}): string {
  ensureDemoStore();
  const dir = mkdtempSync(join(tmpdir(), 'segbid-budget-share-'));
  for (const f of ['segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(dir, f));
  const doc = JSON.parse(readFileSync(join(DEMO_DIR, 'config.json'), 'utf8'));
  const now = Date.now();
  const utcMinutes = Math.floor((now % 86_400_000) / 60_000);
  let offset = 23 * 60 + 20 - utcMinutes;
  if (offset > 840) offset -= 1440;
  if (offset < -720) offset += 1440;
  doc.campaigns = [
    {
      id: 'shared',
      name: 'Shared budget',
      budget: { daily: flight, flight, flightStart: new Date(now - 2 * 86_400_000).toISOString(), flightEnd: new Date(now + 7 * 86_400_000).toISOString() },
      kpi: 'roas',
      lineItems: doc.lineItems.map((li: { id: string }) => li.id),
      pacing: { curve: 'even', catchUpSeconds: 10, utcOffsetMinutes: offset },
      settle: 'win',
      leaseSlice: slice,
      ...extra,
    },
  ];
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(doc));
  return path;
}

export interface Serving {
  child: ChildProcess;
  bidPort: number;
  adminPort: number;
  alive: boolean;
  output: string;
}

/** `segbid serve` as a real process; resolves once it printed its ports. */
export function serve(configPath: string, extra: string[], env: Record<string, string> = {}): Promise<Serving> {
  const child = spawn(
    process.execPath,
    [MAIN, 'serve', '--config', configPath, '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--event-log', 'none', '--state-dir', 'none', ...extra],
    { env: { ...process.env, SEGBID_EVENT_KEYS: KEYS, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return new Promise((resolve, reject) => {
    const s: Serving = { child, bidPort: 0, adminPort: 0, alive: true, output: '' };
    const timer = setTimeout(() => reject(new Error(`segbid did not start:\n${s.output}`)), 20_000);
    const onData = (d: Buffer) => {
      s.output += d.toString();
      const bid = /bid port:\s+http:\/\/[^:]+:(\d+)/.exec(s.output);
      const ops = /operations port:\s+http:\/\/[^:]+:(\d+)/.exec(s.output);
      if (bid && ops && s.bidPort === 0) {
        s.bidPort = Number(bid[1]);
        s.adminPort = Number(ops[1]);
        clearTimeout(timer);
        resolve(s);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (s.output += d.toString()));
    child.on('exit', (code) => {
      s.alive = false;
      if (s.bidPort === 0) {
        clearTimeout(timer);
        reject(new Error(`segbid exited ${code}:\n${s.output}`));
      }
    });
  });
}

export async function stop(s: Serving, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!s.alive) return;
  const exited = new Promise((r) => s.child.once('exit', r));
  s.child.kill(signal);
  await exited;
}

/** What the exchange saw: every answer by status, what it was billed (micros), the slowest answer. */
export interface Tally {
  requests: number;
  byStatus: Record<number, number>;
  bids: number;
  spentMicros: number;
  maxMs: number;
  /** Connection errors of processes that were alive when asked (must stay 0). */
  errors: number;
  /** Win notices not answered 204. */
  noticeRefused: number;
}

export function newTally(): Tally {
  return { requests: 0, byStatus: {}, bids: 0, spentMicros: 0, maxMs: 0, errors: 0, noticeRefused: 0 };
}

function fill(url: string, values: Record<string, string>): string {
  let out = url;
  for (const [k, v] of Object.entries(values)) out = out.split('${' + k + '}').join(v);
  const u = new URL(out);
  return u.pathname + u.search;
}

let auction = 0;

/**
 * One auction on `s`: a bid request for a known demo user; a bid is won at its price and its win notice sent
 * to the same process (the exchange pays the bid: the most each bid can cost). Returns the micros spent.
 */
export async function auctionOn(s: Serving, tally: Tally, options: { noticeTo?: Serving } = {}): Promise<number> {
  const id = `a${++auction}`;
  const request = {
    id,
    tmax: 200,
    site: { domain: 'news.example', page: 'https://news.example/a' },
    cur: ['USD'],
    imp: [{ id: '1', banner: { format: [{ w: 300, h: 250 }] } }],
    user: { buyeruid: demoUserId(7 + (auction % 400)) },
    device: { devicetype: 2, geo: { country: 'FRA' } },
  };
  const t0 = performance.now();
  let r;
  try {
    r = await raw(s.bidPort, { body: JSON.stringify(request), headers: { 'content-type': 'application/json' } });
  } catch {
    if (s.alive) tally.errors++;
    return 0;
  }
  const ms = performance.now() - t0;
  tally.requests++;
  tally.byStatus[r.status] = (tally.byStatus[r.status] ?? 0) + 1;
  if (ms > tally.maxMs) tally.maxMs = ms;
  if (r.status !== 200) return 0;
  const bid = JSON.parse(r.text).seatbid?.[0]?.bid?.[0] as { price: number; nurl: string } | undefined;
  if (bid === undefined) return 0;
  tally.bids++;
  const price = bid.price;
  const win = fill(bid.nurl, { AUCTION_ID: id, AUCTION_IMP_ID: '1', AUCTION_PRICE: String(price), AUCTION_CURRENCY: 'USD' });
  // Billed by the exchange whether or not the notice arrives: the money is spent once the bid won.
  const micros = Math.round(price * 1000);
  tally.spentMicros += micros;
  // The exchange's notice goes to `noticeTo` when given: behind a load balancer, any instance may get it.
  const to = options.noticeTo ?? s;
  try {
    const r = await raw(to.bidPort, { method: 'GET', path: win });
    if (r.status !== 204) tally.noticeRefused++;
  } catch {
    if (to.alive) tally.errors++;
  }
  return micros;
}

export async function metricsText(adminPort: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
}

