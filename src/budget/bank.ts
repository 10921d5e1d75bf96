/**
 * Budget banks: how processes that serve the same campaigns share one budget (N processes spend like one).
 *
 * The local ledger (ledger.ts) holds a *grant* per campaign: what the bank granted this process so far. It
 * reserves and books only within it, so the hot path never waits for the bank. Off the hot path (a 100 ms timer)
 * the LeaseBank client watches what it still holds (grant - spent - reserved) and, under a low-water mark, asks
 * for the next slice ahead of need; every `heartbeatMs` it reports its settled spend (and keeps its lease alive)
 * even when it needs nothing; on close it gives back what it holds unspent (granted - spent - reserved: open
 * reservations stay counted, their notices may still come).
 *
 *   LocalBank    one process owns the whole budget (grant = Infinity): today's behaviour, nothing leased.
 *   LeaseBank    the client, over a BankTransport: the main thread (bank-threads.ts, `--workers N`) or Redis
 *                (redis-bank.ts, `--redis URL`, many machines).
 *   BankBook     the authority's bookkeeping in memory (the main thread's; redis-bank.ts runs the same rules in
 *                Lua): per campaign the granted and spent totals, per day the granted total, per client its lease.
 *
 * The rules (BankBook and the Lua scripts alike):
 *   - A lease grants min(want, flight - granted, dayCap - dayGranted), never more: the sum of all grants never
 *     exceeds the flight budget (nor a day's grants the daily cap). Without a daily cap the day's cap is the
 *     flight budget not yet granted spread over the days left, fixed when the day is first seen.
 *   - A grant is never taken back from a live client; a client that dies keeps its grant counted as spent (Redis:
 *     its lease key just expires). The main thread, which sees a worker die, reclaims its unspent part once its
 *     reservations have timed out (their notices were booked by the other workers meanwhile).
 *   - Epochs: the authority's totals carry a random epoch. A client remembers the epoch and the totals it saw
 *     last (every heartbeat refreshes them). When the totals were lost (Redis restarted without persistence,
 *     keys flushed) the next call finds another epoch (or none) and raises the totals to the most any client
 *     saw. Totals re-created that way grant nothing for RESEED_HOLD_MS (two heartbeats), so every live client
 *     re-asserts what it saw before anything new is granted: what can be forgotten is only what was granted
 *     after the last heartbeat of the surviving clients to processes that did not come back.
 *   - A call that fails (authority down, slow, timeout) changes nothing locally: the process spends what it
 *     holds, no more, and retries on the next tick. A call that timed out here may still have run at the
 *     authority (Redis runs every command written to its socket, late): each reply carries the lease's whole
 *     grant, and the client adopts what it did not know of, so a stall of Redis strands nothing. Only the grants
 *     of a lease that expired meanwhile (no reply for its TTL) stay counted and lost to the process: conservative.
 * Overspend bound: while the authority keeps its totals, none beyond the ledger's own late-win bound; after a
 * loss of the totals, what was granted after the last heartbeat of the surviving clients, in practice at most
 * one slice per process (README, "Running in production").
 *
 * Handles: processes sharing campaigns mint disjoint reservation handles (Ledger genBase, genBaseFor), and a
 * notice that reaches another process than the one that bid is sent back to it (the bid id names its minter:
 * src/budget/notice-relay.ts) to settle the reservation where it was made; only one that cannot be sent is booked
 * where it landed as unknown (bookUnreserved, capped at the line item's bid and at that process's grant).
 */
import { randomBytes } from 'node:crypto';
import { DAY_MS, type CompiledBudgetPlan } from './types.js';
import type { Ledger } from './ledger.js';

/* ------------------------------------------------------------------ protocol */

export interface LeaseRequest {
  campaign: string;
  /** The campaign's terms, so that the authority can start its totals (the latest config wins). */
  flightMicros: number;
  /** -1 = no daily cap. */
  dailyMicros: number;
  /** The campaign's local day number (Ledger.dayOf). */
  day: number;
  /** Days left in the flight from the start of `day` (for the spread day cap without a daily cap). */
  daysLeft: number;
  /** Micros wanted now; 0 = report and heartbeat only. */
  want: number;
  /** Cumulative settled spend of this client for the campaign. */
  spent: number;
  /** The spend the authority acknowledged last (used when the authority forgot this client's lease). */
  ackedSpent: number;
  /** The epoch the client saw last ('' = never), and the totals it saw then. */
  epoch: string;
  seen: number;
  /** Day total seen for the same `day` (0 when the client saw another day last). */
  seenDay: number;
  /** Lease time-to-live, ms: past it without a heartbeat the authority forgets the lease (its grant stays). */
  ttlMs: number;
}

export interface LeaseReply {
  granted: number;
  /**
   * The client's lease after this call: everything granted to it so far (this call's `granted` included), and
   * whether this call created it (first call, or the lease had expired or was lost with the totals). A client
   * adopts what the lease says it holds: a call that timed out on the client may still have run at the authority
   * (Redis runs what was written to its socket), and its grant shows up here on the next reply instead of being
   * stranded.
   */
  leaseGranted: number;
  leaseFresh: boolean;
  /** Campaign totals after this call: granted to everyone (base included), spent reported, day granted. */
  total: number;
  dayTotal: number;
  spent: number;
  epoch: string;
}

export interface ReturnRequest {
  campaign: string;
  day: number;
  amount: number;
  spent: number;
  epoch: string;
}

export interface BankTransport {
  readonly kind: 'threads' | 'redis';
  /** The authority answered the last call (or, for Redis, the connection is up). */
  readonly connected: boolean;
  /** Worth calling now (false while Redis is known to be disconnected: the call would fail at once). */
  readonly callable: boolean;
  lease(client: string, req: LeaseRequest): Promise<LeaseReply>;
  /** Gives back unspent grant; resolves with what the authority took back. */
  giveBack(client: string, req: ReturnRequest): Promise<number>;
  close(): Promise<void>;
}

/* ------------------------------------------------------------------ the bank interface */

export interface BankCampaignStatus {
  id: string;
  /** Granted to this process so far (cumulative, minus what it gave back). */
  grantedMicros: number;
  /** Grant not yet spent nor reserved. */
  heldMicros: number;
  spentMicros: number;
  /** Campaign totals as the authority last reported them (-1 = never heard). */
  totalGrantedMicros: number;
  totalSpentMicros: number;
  exhausted: boolean;
}

export interface BankStatus {
  kind: 'local' | 'threads' | 'redis';
  client: string;
  connected: boolean;
  calls: number;
  failures: number;
  lastError: string | null;
  /** Ms since the authority last answered (-1 = never). */
  sinceLastReplyMs: number;
  campaigns: BankCampaignStatus[];
}

export interface BudgetBank {
  readonly kind: 'local' | 'threads' | 'redis';
  /** First generation of the reservation handles this process mints (Ledger genBase). */
  readonly genBase: number;
  /**
   * A budget policy became current (start, reload): sets every campaign's grant in `ledger` synchronously. The
   * ledger keeps its identity across reloads (campaigns matched by id); a new campaign starts with no grant.
   */
  attach(ledger: Ledger, plan: CompiledBudgetPlan): void;
  status(): BankStatus;
  /** Gives back what is held unspent and stops; the ledger keeps only what is spent or reserved. */
  close(): Promise<void>;
}

/** Generation base of a process: 2^11 disjoint ranges of 2^20 generations each (a slot reused a million times). */
export function genBaseFor(slot: number): number {
  return ((slot >>> 0) % 2048) * 2 ** 20;
}

/** Grants paused after totals were re-created from what the clients saw (see the contract). */
export const RESEED_HOLD_MS = 2000;

export function randomEpoch(): string {
  return randomBytes(8).toString('hex');
}

/** One process, the whole budget: the ledger's grant stays Infinity. */
export class LocalBank implements BudgetBank {
  readonly kind = 'local' as const;
  readonly genBase = 0;
  attach(): void {}
  status(): BankStatus {
    return { kind: 'local', client: 'local', connected: true, calls: 0, failures: 0, lastError: null, sinceLastReplyMs: -1, campaigns: [] };
  }
  async close(): Promise<void> {}
}

/* ------------------------------------------------------------------ the client */

export interface LeaseBankOptions {
  /** This process's id at the authority (unique per process incarnation). */
  client: string;
  genBase?: number;
  /** Timer period, ms (default 100). */
  tickMs?: number;
  /** Report and lease renewal period, ms (default 1000). */
  heartbeatMs?: number;
  /** Lease time-to-live at the authority, ms (default 30000). */
  leaseTtlMs?: number;
  /** Seconds of spend at the current rate to hold ahead (default 5): the low-water mark grows with the rate. */
  aheadSeconds?: number;
  /** Clock (tests). */
  now?: () => number;
  /** false: no timer, the caller calls tick() (tests). */
  timer?: boolean;
  /** Called when a call fails (logs). */
  onError?: (e: Error) => void;
}

interface ClientCampaign {
  id: string;
  /** ledger grant = origin + granted */
  origin: number;
  /** flightSpent at attach: spend before the bank (a restored ledger) is not reported again. */
  spentOrigin: number;
  granted: number;
  /** The lease's whole grant at the authority as the last reply said (LeaseReply.leaseGranted). */
  leaseGranted: number;
  acked: number;
  epoch: string;
  seen: number;
  seenDay: number;
  seenDayIndex: number;
  totalSpent: number;
  inFlight: boolean;
  lastCallMs: number;
  exhausted: boolean;
  /** EWMA of the spend rate, micros/s. */
  rate: number;
  lastSpent: number;
  lastRateMs: number;
  slice: number;
}

export class LeaseBank implements BudgetBank {
  readonly kind: 'threads' | 'redis';
  readonly genBase: number;
  readonly client: string;
  private readonly transport: BankTransport;
  private readonly heartbeatMs: number;
  private readonly leaseTtlMs: number;
  private readonly aheadSeconds: number;
  private readonly now: () => number;
  private readonly onError: (e: Error) => void;
  private readonly byId = new Map<string, ClientCampaign>();
  /** Campaign state by the current plan's campaign index. */
  private current: ClientCampaign[] = [];
  private ledger: Ledger | null = null;
  private plan: CompiledBudgetPlan | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  calls = 0;
  failures = 0;
  lastError: string | null = null;
  private lastReplyMs = -1;
  /** After a failed call, no call before this (backing off up to the heartbeat while the authority is away). */
  private retryAtMs = 0;
  private failStreak = 0;

  constructor(transport: BankTransport, options: LeaseBankOptions) {
    this.transport = transport;
    this.kind = transport.kind;
    this.client = options.client;
    this.genBase = options.genBase ?? 0;
    this.heartbeatMs = options.heartbeatMs ?? 1000;
    this.leaseTtlMs = options.leaseTtlMs ?? 30_000;
    this.aheadSeconds = options.aheadSeconds ?? 5;
    this.now = options.now ?? Date.now;
    this.onError = options.onError ?? (() => {});
    if (options.timer !== false) {
      this.timer = setInterval(() => this.tick(), options.tickMs ?? 100);
      this.timer.unref();
    }
  }

  attach(ledger: Ledger, plan: CompiledBudgetPlan): void {
    this.ledger = ledger;
    this.plan = plan;
    this.current = plan.campaigns.map((camp) => {
      const c = camp.index;
      let s = this.byId.get(camp.id);
      if (s === undefined) {
        const committed = ledger.flightSpentOf(c) + ledger.reservedOf(c);
        s = {
          id: camp.id,
          origin: committed,
          spentOrigin: ledger.flightSpentOf(c),
          granted: 0,
          leaseGranted: 0,
          acked: 0,
          epoch: '',
          seen: 0,
          seenDay: 0,
          seenDayIndex: NaN,
          totalSpent: -1,
          inFlight: false,
          lastCallMs: -Infinity,
          exhausted: false,
          rate: 0,
          lastSpent: 0,
          lastRateMs: NaN,
          slice: 1,
        };
        this.byId.set(camp.id, s);
      }
      s.slice = Math.max(1, camp.leaseSliceMicros ?? Math.ceil(camp.flightMicros / 100));
      ledger.setGrant(c, this.closed ? 0 : s.origin + s.granted);
      return s;
    });
    this.tick();
  }

  /** Off the hot path: refills what runs low, reports spend every heartbeat. */
  tick(): void {
    const ledger = this.ledger;
    const plan = this.plan;
    if (ledger === null || plan === null || this.closed) return;
    const now = this.now();
    if (now < this.retryAtMs || !this.transport.callable) return;
    for (let c = 0; c < this.current.length; c++) {
      const s = this.current[c];
      if (s.inFlight) continue;
      const spent = ledger.flightSpentOf(c) - s.spentOrigin;
      if (Number.isNaN(s.lastRateMs)) {
        s.lastRateMs = now;
        s.lastSpent = spent;
      } else if (now - s.lastRateMs >= 1000) {
        const r = ((spent - s.lastSpent) * 1000) / (now - s.lastRateMs);
        s.rate = s.rate === 0 ? r : 0.7 * s.rate + 0.3 * r;
        s.lastRateMs = now;
        s.lastSpent = spent;
      }
      const held = ledger.grantOf(c) - ledger.flightSpentOf(c) - ledger.reservedOf(c);
      const terms = ledger.termsOf(c);
      const inFlight = now >= terms.flightStartMs && now < terms.flightEndMs;
      // Ask earlier when spending fast, but one slice at a time: the overspend bound is counted in slices.
      const lowWater = Math.min(s.slice, Math.max(s.slice / 2, s.rate * this.aheadSeconds));
      const due = now - s.lastCallMs >= this.heartbeatMs;
      // What this process could still use: the campaign's own budget left, less what it already holds.
      const usable = ledger.flightBudgetOf(c) - ledger.flightSpentOf(c) - ledger.reservedOf(c) - held;
      const needs = inFlight && held < lowWater && usable > 0;
      if (!(needs && (!s.exhausted || due)) && !due) continue;
      let want = 0;
      if (needs) want = Math.min(usable, s.slice);
      this.call(c, s, Math.floor(want), spent, now);
    }
  }

  private call(c: number, s: ClientCampaign, want: number, spent: number, now: number): void {
    const ledger = this.ledger!;
    const terms = ledger.termsOf(c);
    const day = ledger.dayOf(c, now);
    const dayStart = day * DAY_MS - terms.utcOffsetMs;
    const req: LeaseRequest = {
      campaign: s.id,
      flightMicros: terms.flightMicros,
      dailyMicros: terms.dailyMicros,
      day,
      daysLeft: Math.max(1, Math.ceil((terms.flightEndMs - dayStart) / DAY_MS)),
      want,
      spent,
      ackedSpent: s.acked,
      epoch: s.epoch,
      seen: s.seen,
      seenDay: s.seenDayIndex === day ? s.seenDay : 0,
      ttlMs: this.leaseTtlMs,
    };
    s.inFlight = true;
    s.lastCallMs = now;
    this.calls++;
    this.transport.lease(this.client, req).then(
      (reply) => {
        s.inFlight = false;
        this.lastReplyMs = this.now();
        this.failStreak = 0;
        s.acked = spent;
        s.epoch = reply.epoch;
        s.seen = reply.total;
        s.seenDay = reply.dayTotal;
        s.seenDayIndex = day;
        s.totalSpent = reply.spent;
        s.exhausted = reply.granted < want;
        // This call's grant, plus those of earlier calls that failed here but ran at the authority (a timeout):
        // the lease's total moved by more than this call granted. A fresh lease starts from what this call did
        // (an expired lease's grants stay counted at the authority: lost to this process, conservative).
        const before = reply.leaseFresh ? 0 : s.leaseGranted;
        const got = Math.max(reply.granted, reply.leaseGranted - before);
        s.leaseGranted = reply.leaseGranted;
        if (got > 0) {
          s.granted += got;
          this.applyGrant(s);
        }
      },
      (e: Error) => {
        s.inFlight = false;
        this.failures++;
        this.lastError = e.message;
        this.retryAtMs = this.now() + Math.min(this.heartbeatMs, 100 * 2 ** Math.min(10, this.failStreak++));
        if (this.failStreak === 1) this.onError(e); // once per outage, not once per retry
      },
    );
  }

  /** Writes s's grant into the ledger, by the campaign's current index (a reload may have moved it). */
  private applyGrant(s: ClientCampaign): void {
    const c = this.current.indexOf(s);
    if (c >= 0 && this.ledger !== null && !this.closed) this.ledger.setGrant(c, s.origin + s.granted);
  }

  status(): BankStatus {
    const ledger = this.ledger;
    return {
      kind: this.kind,
      client: this.client,
      connected: this.transport.connected,
      calls: this.calls,
      failures: this.failures,
      lastError: this.lastError,
      sinceLastReplyMs: this.lastReplyMs < 0 ? -1 : this.now() - this.lastReplyMs,
      campaigns: this.current.map((s, c) => ({
        id: s.id,
        grantedMicros: s.granted,
        heldMicros: ledger === null ? 0 : Math.max(0, ledger.grantOf(c) - ledger.flightSpentOf(c) - ledger.reservedOf(c)),
        spentMicros: ledger === null ? 0 : ledger.flightSpentOf(c) - s.spentOrigin,
        totalGrantedMicros: s.epoch === '' ? -1 : s.seen,
        totalSpentMicros: s.totalSpent,
        exhausted: s.exhausted,
      })),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer !== null) clearInterval(this.timer);
    // A lease answered after the give-back would stay counted at the authority: let in-flight calls land first.
    for (let waited = 0; waited < 1000 && this.current.some((s) => s.inFlight); waited += 10) await new Promise((r) => setTimeout(r, 10));
    const ledger = this.ledger;
    if (ledger !== null) {
      const now = this.now();
      await Promise.all(
        this.current.map(async (s, c) => {
          const committed = ledger.flightSpentOf(c) + ledger.reservedOf(c);
          // From the bank's count, not the ledger's: a grant that landed after close() is given back too.
          const unspent = s.origin + s.granted - committed;
          ledger.setGrant(c, committed); // nothing more is reserved from here on
          if (!(unspent > 0) || s.epoch === '') return;
          try {
            const back = await this.transport.giveBack(this.client, {
              campaign: s.id,
              day: ledger.dayOf(c, now),
              amount: unspent,
              spent: ledger.flightSpentOf(c) - s.spentOrigin,
              epoch: s.epoch,
            });
            s.granted -= back;
          } catch (e) {
            this.failures++;
            this.lastError = (e as Error).message; // kept counted at the authority: conservative
          }
        }),
      );
    }
    await this.transport.close();
  }
}

/* ------------------------------------------------------------------ the authority, in memory */

interface BookDay {
  base: number;
  granted: number;
  spent: number;
  cap: number;
}
interface BookLease {
  granted: number;
  spent: number;
  expiresMs: number;
}
interface BookCampaign {
  epoch: string;
  base: number;
  granted: number;
  spent: number;
  flight: number;
  daily: number;
  /** No grant before this instant (totals re-created from what a client saw). */
  holdUntil: number;
  days: Map<number, BookDay>;
  leases: Map<string, BookLease>;
}

/** The plain image of a BankBook (msgpackr snapshot of the main-thread bank). */
export interface BookImage {
  campaigns: [string, { epoch: string; base: number; granted: number; spent: number; flight: number; daily: number; holdUntil: number; days: [number, BookDay][]; leases: [string, BookLease][] }][];
}

/**
 * The bank's bookkeeping (the rules are in the contract at the top). Synchronous: each call is atomic, as the
 * Lua scripts are in Redis. Totals are integers.
 */
export class BankBook {
  private readonly campaigns = new Map<string, BookCampaign>();

  lease(client: string, req: LeaseRequest, nowMs: number): LeaseReply {
    let camp = this.campaigns.get(req.campaign);
    if (camp === undefined) {
      // A client that knew an epoch finds none: the totals were lost. Re-seed from what it saw, then hold.
      const holdUntil = req.epoch !== '' ? nowMs + RESEED_HOLD_MS : 0;
      camp = { epoch: randomEpoch(), base: req.seen, granted: 0, spent: 0, flight: req.flightMicros, daily: req.dailyMicros, holdUntil, days: new Map(), leases: new Map() };
      this.campaigns.set(req.campaign, camp);
    } else if (req.epoch !== '' && req.epoch !== camp.epoch && req.seen > camp.base) {
      camp.base = req.seen;
    }
    const foreign = req.epoch !== camp.epoch;
    camp.flight = req.flightMicros;
    camp.daily = req.dailyMicros;
    const total0 = camp.base + camp.granted;
    let day = camp.days.get(req.day);
    if (day === undefined) {
      const cap = req.dailyMicros >= 0 ? req.dailyMicros : Math.ceil(Math.max(0, req.flightMicros - total0) / Math.max(1, req.daysLeft));
      day = { base: foreign ? req.seenDay : 0, granted: 0, spent: 0, cap };
      camp.days.set(req.day, day);
      for (const d of camp.days.keys()) if (d < req.day - 3) camp.days.delete(d);
    } else if (foreign && req.seenDay > day.base) {
      day.base = req.seenDay;
    }
    if (req.dailyMicros >= 0) day.cap = req.dailyMicros;
    let lease = camp.leases.get(client);
    const leaseFresh = lease === undefined || lease.expiresMs <= nowMs;
    if (lease === undefined || leaseFresh) {
      lease = { granted: 0, spent: req.ackedSpent, expiresMs: 0 };
      camp.leases.set(client, lease);
    }
    const delta = req.spent > lease.spent ? req.spent - lease.spent : 0;
    lease.spent += delta;
    camp.spent += delta;
    day.spent += delta;
    const total = camp.base + camp.granted;
    const dayTotal = day.base + day.granted;
    let g = nowMs < camp.holdUntil ? 0 : req.want;
    if (g > camp.flight - total) g = camp.flight - total;
    if (g > day.cap - dayTotal) g = day.cap - dayTotal;
    g = g > 0 ? Math.floor(g) : 0;
    camp.granted += g;
    day.granted += g;
    lease.granted += g;
    lease.expiresMs = nowMs + req.ttlMs;
    return { granted: g, total: total + g, dayTotal: dayTotal + g, spent: camp.spent, epoch: camp.epoch, leaseGranted: lease.granted, leaseFresh };
  }

  giveBack(client: string, req: ReturnRequest): number {
    const camp = this.campaigns.get(req.campaign);
    if (camp === undefined || camp.epoch !== req.epoch) return 0;
    const lease = camp.leases.get(client);
    if (lease === undefined) return 0;
    const delta = req.spent > lease.spent ? req.spent - lease.spent : 0;
    lease.spent += delta;
    camp.spent += delta;
    const amt = Math.max(0, Math.min(Math.floor(req.amount), lease.granted, camp.granted));
    lease.granted -= amt;
    camp.granted -= amt;
    const day = camp.days.get(req.day);
    if (day !== undefined) {
      day.spent += delta;
      day.granted -= Math.min(amt, day.granted);
    }
    camp.leases.delete(client);
    return amt;
  }

  /**
   * A client known to be dead (a worker thread that exited), once its reservations have timed out: its grant not
   * reported as spent goes back to the campaigns. Returns the micros reclaimed.
   */
  reclaim(client: string, day: (campaign: string) => number): number {
    let total = 0;
    for (const [id, camp] of this.campaigns) {
      const lease = camp.leases.get(client);
      if (lease === undefined) continue;
      const amt = Math.max(0, Math.min(lease.granted - lease.spent, camp.granted));
      camp.granted -= amt;
      const d = camp.days.get(day(id));
      if (d !== undefined) d.granted -= Math.min(amt, d.granted);
      camp.leases.delete(client);
      total += amt;
    }
    return total;
  }

  /** Forgets every total (tests: what a Redis restart without persistence does). */
  clear(): void {
    this.campaigns.clear();
  }

  totals(campaign: string): { granted: number; spent: number; epoch: string; leases: number } | null {
    const camp = this.campaigns.get(campaign);
    return camp === undefined ? null : { granted: camp.base + camp.granted, spent: camp.spent, epoch: camp.epoch, leases: camp.leases.size };
  }

  campaignIds(): string[] {
    return [...this.campaigns.keys()];
  }

  image(): BookImage {
    return {
      campaigns: [...this.campaigns].map(([id, c]) => [id, { epoch: c.epoch, base: c.base, granted: c.granted, spent: c.spent, flight: c.flight, daily: c.daily, holdUntil: c.holdUntil, days: [...c.days], leases: [...c.leases] }]),
    };
  }

  static fromImage(image: BookImage): BankBook {
    const book = new BankBook();
    for (const [id, c] of image.campaigns) {
      book.campaigns.set(id, { epoch: c.epoch, base: c.base, granted: c.granted, spent: c.spent, flight: c.flight, daily: c.daily, holdUntil: c.holdUntil ?? 0, days: new Map(c.days), leases: new Map(c.leases) });
    }
    return book;
  }
}

/** A transport straight into a BankBook (the main thread's own use, tests). */
export class BookTransport implements BankTransport {
  readonly kind = 'threads' as const;
  connected = true;
  readonly callable = true;
  /** Tests: fail every call while true. */
  down = false;
  constructor(
    readonly book: BankBook,
    private readonly now: () => number = Date.now,
  ) {}
  async lease(client: string, req: LeaseRequest): Promise<LeaseReply> {
    if (this.down) throw new Error('bank down');
    return this.book.lease(client, req, this.now());
  }
  async giveBack(client: string, req: ReturnRequest): Promise<number> {
    if (this.down) throw new Error('bank down');
    return this.book.giveBack(client, req);
  }
  async close(): Promise<void> {}
}
