/**
 * The bid tally: bids sent, counted per (line item, creative, segment, exchange, deal, day) between flushes.
 *
 * Contract: `note(fields, config)` is called by the response builder for every bid it signs a token for (one
 * map update, no I/O; test bids are skipped); `drain()` hands back the rows counted since the last drain and
 * starts over. The rows become one `bids` record (EventHandler.recordBids), logged and applied like any event,
 * so bids and win rates replay from the log too. A worker thread can keep its own tally and post the drained
 * rows to the thread that owns the EventHandler.
 */
import type { CompiledConfig } from '../config/compile.js';
import { dealList, type ExchangeTable } from './bid-context.js';
import { convertMicros } from './macros.js';
import { NO_DEAL, type TokenFields } from './token.js';
import { OTHER } from './kpis.js';
import { dayOfSec, type BidRow } from './types.js';

export class BidTally {
  private readonly exchanges: ExchangeTable;
  private rows = new Map<string, BidRow>();

  constructor(exchanges: ExchangeTable) {
    this.exchanges = exchanges;
  }

  /** Counts one bid; `config` is the config whose indices the fields use (the one the decision ran on). */
  note(f: TokenFields, config: CompiledConfig): void {
    if (f.test) return;
    const li = config.lineItems[f.lineItem];
    const cr = config.creatives[f.creative];
    if (li === undefined || cr === undefined) return;
    const segs = config.dictionary.segments;
    const sg = f.segmentBit >= 0 && f.segmentBit < segs.length ? segs[f.segmentBit].id : null;
    const x = this.exchanges.nameOf(f.exchange) ?? OTHER;
    const dl = f.deal !== NO_DEAL ? (dealList(li)[f.deal] ?? null) : null;
    const day = dayOfSec(f.timeSec);
    const key = li.id + '\u0001' + cr.id + '\u0001' + (sg ?? '') + '\u0001' + x + '\u0001' + (dl ?? '') + '\u0001' + day;
    let row = this.rows.get(key);
    if (row === undefined) {
      row = { li: li.id, cr: cr.id, sg, x, dl, day, n: 0, bp: 0 };
      this.rows.set(key, row);
    }
    row.n++;
    const rate = f.currency === '' ? 1 : config.rates.get(f.currency);
    row.bp += convertMicros(f.priceMicros, rate ?? 1);
  }

  /** The rows counted since the last drain (empty array when none); the tally starts over. */
  drain(): BidRow[] {
    if (this.rows.size === 0) return [];
    const out = [...this.rows.values()];
    this.rows = new Map();
    return out;
  }

  get size(): number {
    return this.rows.size;
  }
}
