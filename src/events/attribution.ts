/**
 * The touch index: the last few impressions and clicks of each user, for conversion attribution.
 *
 * Contract: `noteTouch(record)` remembers an impression or click under the user key hash carried in its token
 * (and a click also under its bid id, the click id handed to the landing page). `attribute(...)` picks, for a
 * conversion at time T, the latest click in [T - clickWindow, T], else the latest impression in
 * [T - viewWindow, T], else nothing. Both indexes are bounded LRU caches (lru-cache): a user not seen for a
 * long time falls out, which only ever loses an attribution, never invents one. In memory only; the event
 * handler rebuilds it from the event log on start (see EventHandler.restore).
 */
import { LRUCache } from 'lru-cache';
import type { Attribution, NoticeRecord } from './types.js';

/** What a conversion is attributed to. */
export interface Touch {
  /** Touch time (receive time of the impression/click), ms. */
  t: number;
  b: string;
  li: string;
  cr: string;
  sg: string | null;
  arm: number;
  x: string;
  dl: string | null;
  /** Bid time, seconds. */
  at: number;
  ts: 0 | 1;
  u: string;
}

interface UserTouches {
  clicks: Touch[];
  imps: Touch[];
}

/** TouchIndex.image(): users and click ids, least recently used first. */
export interface TouchImage {
  users: [string, UserTouches][];
  clicks: [string, Touch][];
}

export interface TouchIndexOptions {
  clickWindowSec: number;
  viewWindowSec: number;
  /** Users kept (LRU). Default 250,000. */
  maxUsers?: number;
  /** Click ids kept (LRU). Default 250,000. */
  maxClicks?: number;
  /** Touches of each kind kept per user: a late postback can still find the touch before a newer one. Default 4. */
  perUser?: number;
}

export interface AttributionResult {
  attr: Attribution;
  touch: Touch | null;
}

function touchOf(r: NoticeRecord): Touch {
  return { t: r.t, b: r.b, li: r.li, cr: r.cr, sg: r.sg, arm: r.arm, x: r.x, dl: r.dl, at: r.at, ts: r.ts, u: r.u };
}

/** Latest touch with t in [from, to], or null. Touches are kept in time order. */
function latestIn(touches: readonly Touch[], from: number, to: number): Touch | null {
  for (let i = touches.length - 1; i >= 0; i--) {
    const t = touches[i];
    if (t.t <= to && t.t >= from) return t;
  }
  return null;
}

export class TouchIndex {
  private readonly users: LRUCache<string, UserTouches>;
  private readonly clicks: LRUCache<string, Touch>;
  private readonly perUser: number;
  private readonly clickWindowMs: number;
  private readonly viewWindowMs: number;

  constructor(options: TouchIndexOptions) {
    this.users = new LRUCache({ max: options.maxUsers ?? 250_000 });
    this.clicks = new LRUCache({ max: options.maxClicks ?? 250_000 });
    this.perUser = options.perUser ?? 4;
    this.clickWindowMs = options.clickWindowSec * 1000;
    this.viewWindowMs = options.viewWindowSec * 1000;
  }

  /** Remembers an impression or click (other kinds are ignored); returns the touch noted, else null. */
  noteTouch(r: NoticeRecord): Touch | null {
    if (r.k !== 'imp' && r.k !== 'click') return null;
    const touch = touchOf(r);
    this.add(r.k, touch);
    return touch;
  }

  /**
   * Remembers a touch noted elsewhere (another worker of the cluster). Each user's touches stay in time order
   * whatever order they arrive in, so "the latest in the window" is still the latest.
   */
  add(kind: 'imp' | 'click', touch: Touch): void {
    if (kind === 'click') this.clicks.set(touch.b, touch);
    if (touch.u === '') return;
    let u = this.users.get(touch.u);
    if (u === undefined) {
      u = { clicks: [], imps: [] };
      this.users.set(touch.u, u);
    }
    const list = kind === 'click' ? u.clicks : u.imps;
    let at = list.length;
    while (at > 0 && list[at - 1].t > touch.t) at--;
    // The same touch twice (read from a sibling's log and sent again): once, or it would push a real one out.
    for (let i = at - 1; i >= 0 && list[i].t === touch.t; i--) if (list[i].b === touch.b) return;
    list.splice(at, 0, touch);
    if (list.length > this.perUser) list.shift();
  }

  /**
   * Attribution of a conversion at `convMs`: by click id first (the most precise link), then the user's last
   * click in the click window, then the user's last impression in the view window.
   */
  attribute(clickId: string, user: string, convMs: number): AttributionResult {
    if (clickId !== '') {
      const c = this.clicks.get(clickId);
      if (c !== undefined && c.t <= convMs && c.t >= convMs - this.clickWindowMs) return { attr: 'click', touch: c };
    }
    if (user !== '') {
      const u = this.users.get(user);
      if (u !== undefined) {
        const click = latestIn(u.clicks, convMs - this.clickWindowMs, convMs);
        if (click !== null) return { attr: 'click', touch: click };
        const imp = latestIn(u.imps, convMs - this.viewWindowMs, convMs);
        if (imp !== null) return { attr: 'view', touch: imp };
      }
    }
    return { attr: 'none', touch: null };
  }

  /** The index as plain data, least recently used first (a replay checkpoint). */
  image(): TouchImage {
    const users: [string, UserTouches][] = [];
    for (const [k, v] of this.users.rentries() as Iterable<[string, UserTouches]>) users.push([k, { clicks: [...v.clicks], imps: [...v.imps] }]);
    const clicks: [string, Touch][] = [];
    for (const [k, t] of this.clicks.rentries() as Iterable<[string, Touch]>) clicks.push([k, t]);
    return { users, clicks };
  }

  /** Loads an image() into this (empty) index, keeping its recency order. */
  load(image: TouchImage): void {
    for (const [k, v] of image.users) this.users.set(k, { clicks: [...v.clicks], imps: [...v.imps] });
    for (const [k, t] of image.clicks) this.clicks.set(k, t);
  }

  /** The oldest a touch can be and still be attributed a conversion of now (the longer window), ms. */
  get horizonMs(): number {
    return Math.max(this.clickWindowMs, this.viewWindowMs);
  }

  get size(): { users: number; clicks: number } {
    return { users: this.users.size, clicks: this.clicks.size };
  }
}
