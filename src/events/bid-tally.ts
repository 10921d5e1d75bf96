/**
 * The bid tally: bids sent, counted per (line item, creative, segment, exchange, deal, day) between flushes.
 *
 * Contract: `note(fields, config)` is called by the response builder for every bid it signs a token for (no I/O;
 * test bids are skipped); `drain()` hands back the rows counted since the last drain and starts over. The rows
 * become one `bids` record (EventHandler.recordBids), logged and applied like any event, so bids and win rates
 * replay from the log too. A worker thread can keep its own tally and post the drained rows to the thread that
 * owns the EventHandler.
 *
 * Why numeric keys: note() runs once per bid on the bid path. A row is found by two numbers built from the token
 * fields (indices of the decision's config), not by a string of the ids: no concatenation and no string hashing
 * per bid; the ids are resolved once, when a row is created. Indices only mean something within one config, so
 * rows are kept per config object (a swap starts new rows; both drain).
 *   outer key  (day number * 2^16 + line item) * 2^16 + creative     (< 2^47: exact in a double)
 *   inner key  ((segment bit + 1) * 2^8 + exchange) * 2^16 + deal     (< 2^40)
 * The token format bounds the fields (line item, creative, deal: u16; exchange: u8; segment bit: i16); values out
 * of the config's range are normalised (no segment, no deal, other exchange) before keying: one identity, one row.
 */
import type { CompiledConfig } from '../config/compile.js';
import { dealList, type ExchangeTable } from './bid-context.js';
import { convertMicros } from './macros.js';
import { NO_DEAL, type TokenFields } from './token.js';
import { OTHER } from './kpis.js';
import { dayOfSec, type BidRow } from './types.js';

type RowsByKey = Map<number, Map<number, BidRow>>;

export class BidTally {
  private readonly exchanges: ExchangeTable;
  private byConfig = new Map<CompiledConfig, RowsByKey>();
  private lastConfig: CompiledConfig | null = null;
  private lastRows: RowsByKey | null = null;
  private count = 0;

  constructor(exchanges: ExchangeTable) {
    this.exchanges = exchanges;
  }

  /** Counts one bid; `config` is the config whose indices the fields use (the one the decision ran on). */
  note(f: TokenFields, config: CompiledConfig): void {
    if (f.test) return;
    const li = config.lineItems[f.lineItem];
    const cr = config.creatives[f.creative];
    if (li === undefined || cr === undefined) return;
    let rows = this.lastRows;
    if (config !== this.lastConfig || rows === null) rows = this.rowsOf(config);
    const daySec = f.timeSec - (((f.timeSec % 86400) + 86400) % 86400);
    const outerKey = ((daySec / 86400) * 65536 + f.lineItem) * 65536 + f.creative;
    let inner = rows.get(outerKey);
    if (inner === undefined) {
      inner = new Map();
      rows.set(outerKey, inner);
    }
    const segs = config.dictionary.segments;
    const segmentBit = f.segmentBit >= 0 && f.segmentBit < segs.length ? f.segmentBit : -1;
    const deals = f.deal !== NO_DEAL ? dealList(li) : null;
    const deal = deals !== null && f.deal >= 0 && f.deal < deals.length ? f.deal : NO_DEAL;
    const exchange = this.exchanges.nameOf(f.exchange) !== null ? f.exchange : 0; // unknown indices are all "other"
    const innerKey = ((segmentBit + 1) * 256 + exchange) * 65536 + deal;
    let row = inner.get(innerKey);
    if (row === undefined) {
      row = {
        li: li.id,
        cr: cr.id,
        sg: segmentBit >= 0 ? segs[segmentBit].id : null,
        x: exchange !== 0 ? this.exchanges.nameOf(exchange)! : OTHER,
        dl: deal !== NO_DEAL ? deals![deal] : null,
        day: dayOfSec(f.timeSec),
        n: 0,
        bp: 0,
      };
      inner.set(innerKey, row);
      this.count++;
    }
    row.n++;
    const rate = f.currency === '' ? 1 : config.rates.get(f.currency);
    row.bp += convertMicros(f.priceMicros, rate ?? 1);
  }

  /** The rows counted since the last drain (empty array when none); the tally starts over. */
  drain(): BidRow[] {
    if (this.count === 0) return [];
    const out: BidRow[] = [];
    for (const rows of this.byConfig.values()) for (const inner of rows.values()) for (const row of inner.values()) out.push(row);
    this.byConfig = new Map();
    this.lastConfig = null;
    this.lastRows = null;
    this.count = 0;
    return out;
  }

  get size(): number {
    return this.count;
  }

  private rowsOf(config: CompiledConfig): RowsByKey {
    let rows = this.byConfig.get(config);
    if (rows === undefined) {
      rows = new Map();
      this.byConfig.set(config, rows);
    }
    this.lastConfig = config;
    this.lastRows = rows;
    return rows;
  }
}
