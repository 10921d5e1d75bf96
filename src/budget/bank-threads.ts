/**
 * The budget bank of `segbid serve --workers N`: the main thread is the authority (a BankBook, bank.ts), each
 * worker thread a LeaseBank client that asks it by message. Messages are plain objects (structured clone), tagged
 * `bank`, so the cluster's own message switch routes them here.
 *
 * Contract:
 *   - A worker's call resolves with the main thread's answer or rejects after `timeoutMs` (a main thread stuck
 *     in a long task): the worker keeps spending what it holds.
 *   - Worker death: the cluster calls clientGone(client, afterMs); after the campaigns' reservation TTL the dead
 *     worker's grant not reported as spent is reclaimed (its open reservations' notices, which reached the other
 *     workers meanwhile, were booked from their own grants). What the dead worker settled since its last report
 *     (at most one heartbeat of spend) is counted twice: that is the overspend bound of a worker crash.
 *   - Persistence (stateDir): the book is written as a small msgpackr file (atomic rename) at most once a second
 *     when it changed, and on close; a restart starts from it, so restarting the bidder does not hand out the
 *     budget again. The leases of the previous run stay counted as spent (their workers are gone).
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pack, unpack } from 'msgpackr';
import { writeSnapshotFile } from './ledger.js';
import { BankBook, type BankTransport, type BookImage, type LeaseReply, type LeaseRequest, type ReturnRequest } from './bank.js';

export type BankRequestMessage =
  | { type: 'bank'; id: number; op: 'lease'; client: string; req: LeaseRequest }
  | { type: 'bank'; id: number; op: 'return'; client: string; req: ReturnRequest };

export type BankReplyMessage = { type: 'bank'; id: number; lease?: LeaseReply; returned?: number; error?: string };

export interface ThreadBankHostOptions {
  /** Directory of the persisted book (null: memory only). */
  stateDir?: string | null;
  now?: () => number;
}

const FILE = 'budget-bank.msgpack';

/** The main thread's side. */
export class ThreadBankHost {
  readonly book: BankBook;
  private readonly path: string | null;
  private readonly now: () => number;
  private dirty = false;
  private readonly timer: NodeJS.Timeout | null = null;
  private readonly reclaimTimers = new Set<NodeJS.Timeout>();
  /** Micros reclaimed from dead workers (metrics). */
  reclaimed = 0;

  constructor(options: ThreadBankHostOptions = {}) {
    this.now = options.now ?? Date.now;
    this.path = options.stateDir ? join(options.stateDir, FILE) : null;
    let book: BankBook | null = null;
    if (this.path !== null && existsSync(this.path)) {
      try {
        book = BankBook.fromImage(unpack(readFileSync(this.path)) as BookImage);
      } catch {
        book = null; // an unreadable file: start empty rather than refuse to serve; the old file is overwritten
      }
    }
    this.book = book ?? new BankBook();
    if (this.path !== null) {
      mkdirSync(options.stateDir!, { recursive: true });
      this.timer = setInterval(() => this.persist(), 1000);
      this.timer.unref();
    }
  }

  /** Answers one worker message; `reply` posts back to that worker. */
  handle(m: BankRequestMessage, reply: (r: BankReplyMessage) => void): void {
    try {
      if (m.op === 'lease') reply({ type: 'bank', id: m.id, lease: this.book.lease(m.client, m.req, this.now()) });
      else reply({ type: 'bank', id: m.id, returned: this.book.giveBack(m.client, m.req) });
      this.dirty = true;
    } catch (e) {
      reply({ type: 'bank', id: m.id, error: (e as Error).message });
    }
  }

  /** A worker died: reclaim its unspent grant once its reservations have timed out. */
  clientGone(client: string, afterMs: number, dayOf: (campaign: string) => number): void {
    const t = setTimeout(() => {
      this.reclaimTimers.delete(t);
      this.reclaimed += this.book.reclaim(client, dayOf);
      this.dirty = true;
    }, afterMs);
    t.unref();
    this.reclaimTimers.add(t);
  }

  persist(): void {
    if (this.path === null || !this.dirty) return;
    this.dirty = false;
    try {
      writeSnapshotFile(this.path, pack(this.book.image()));
    } catch {
      this.dirty = true; // retried next second
    }
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    for (const t of this.reclaimTimers) clearTimeout(t);
    this.persist();
  }
}

/** The worker's side: a BankTransport over the worker's parent port. */
export class ThreadBankTransport implements BankTransport {
  readonly kind = 'threads' as const;
  connected = true;
  /** Always worth a try: a late main thread answers the next call. */
  readonly callable = true;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (m: BankReplyMessage) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  constructor(
    private readonly post: (m: BankRequestMessage) => void,
    private readonly timeoutMs = 1000,
  ) {}

  /** Feed every `bank` message from the main thread here. */
  onMessage(m: BankReplyMessage): void {
    const p = this.pending.get(m.id);
    if (p === undefined) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    this.connected = true;
    if (m.error !== undefined) p.reject(new Error(m.error));
    else p.resolve(m);
  }

  private send(m: BankRequestMessage): Promise<BankReplyMessage> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(m.id);
        this.connected = false;
        reject(new Error('budget bank: the main thread did not answer in time'));
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(m.id, { resolve, reject, timer });
      this.post(m);
    });
  }

  async lease(client: string, req: LeaseRequest): Promise<LeaseReply> {
    const r = await this.send({ type: 'bank', id: this.nextId++, op: 'lease', client, req });
    return r.lease!;
  }

  async giveBack(client: string, req: ReturnRequest): Promise<number> {
    const r = await this.send({ type: 'bank', id: this.nextId++, op: 'return', client, req });
    return r.returned ?? 0;
  }

  async close(): Promise<void> {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }
}

/* ------------------------------------------------------------------ notices that reached another worker */

/**
 * A budget notice (win, billing, loss) whose reservation another worker made: the kernel spreads connections, so
 * a notice often reaches another worker than the one that bid. Its handle names the owner (each worker mints
 * handles in its own generation range, genBaseFor(index * 8 + generation % 8)); the main thread forwards it
 * there, so the reservation is settled where it lives instead of booked twice (as unknown here, and held there
 * until its TTL). An owner that is gone (restarted) gets it anyway and books it as unknown, within its grant.
 */
export interface ForwardedNotice {
  kind: 'win' | 'bill' | 'loss';
  lineItem: number;
  /** CPM micros, as the event pipeline gives it. */
  price: number;
  bidId: string;
  nowMs: number;
}

export type NoticeRouteMessage = { type: 'bank-notice'; to: number; notice: ForwardedNotice };
export type NoticeDeliverMessage = { type: 'bank-notice'; notice: ForwardedNotice };

/** The worker index whose generation range a reservation handle lies in (see genBaseFor). */
export function ownerOfHandle(handle: number): number {
  const generation = Math.floor(handle / 2 ** 22);
  return Math.floor(Math.floor(generation / 2 ** 20) / 8);
}
