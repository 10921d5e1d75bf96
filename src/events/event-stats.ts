/**
 * Counts of the event endpoints by kind and result, and their Prometheus export.
 *
 * Contract: results come from the fixed tables below (never from request content), so label sets are bounded.
 * `EventStats` is plain integers (the handler bumps it, tests read it); `registerEventMetrics` exports it, with
 * the event log status, at scrape time.
 */
import client from 'prom-client';
import type { EventLog } from './event-log.js';

export const EVENT_KIND_LABELS = ['win', 'bill', 'loss', 'imp', 'click', 'conv', 'unknown'] as const;
export type EventKindLabel = (typeof EVENT_KIND_LABELS)[number];

/** Outcomes of a notice or postback. The first four are acceptances, the rest 4xx rejections. */
export const EVENT_RESULTS = [
  'accepted',
  'test',
  'duplicate',
  'audit',
  'log_failed',
  'malformed',
  'bad_mac',
  'unknown_key',
  'wrong_scope',
  'expired',
  'future',
  'stale_config',
  'auction_mismatch',
  'replay',
  'bad_landing',
  'unauthorized',
  'bad_body',
  'unknown_currency',
  'method_not_allowed',
  'not_found',
] as const;
export type EventResult = (typeof EVENT_RESULTS)[number];

/** Side observations, counted apart from the result. */
export const EVENT_NOTES = [
  /** Price macro missing, empty, unsubstituted or unreadable: our bid price was used. */
  'price_fallback',
  /** Reported clearing price above our bid: clamped to the bid (a clearing price cannot exceed it). */
  'price_clamped',
  /** A dedupe entry evicted by size before its TTL: a later duplicate of it would count again. */
  'dedupe_evicted',
  'listener_error',
  /** A click whose token expired: redirected (the user must not land on an error) but not counted. */
  'expired_click_redirected',
] as const;
export type EventNote = (typeof EVENT_NOTES)[number];

export class EventStats {
  /** [kind][result] */
  private readonly counts: number[][] = EVENT_KIND_LABELS.map(() => EVENT_RESULTS.map(() => 0));
  private readonly notes: number[] = EVENT_NOTES.map(() => 0);
  private static readonly kindIndex = new Map<string, number>(EVENT_KIND_LABELS.map((k, i) => [k, i]));
  private static readonly resultIndex = new Map<string, number>(EVENT_RESULTS.map((r, i) => [r, i]));
  private static readonly noteIndex = new Map<string, number>(EVENT_NOTES.map((n, i) => [n, i]));

  count(kind: EventKindLabel, result: EventResult): void {
    this.counts[EventStats.kindIndex.get(kind)!][EventStats.resultIndex.get(result)!]++;
  }

  note(note: EventNote): void {
    this.notes[EventStats.noteIndex.get(note)!]++;
  }

  get(kind: EventKindLabel, result: EventResult): number {
    return this.counts[EventStats.kindIndex.get(kind)!][EventStats.resultIndex.get(result)!];
  }

  noted(note: EventNote): number {
    return this.notes[EventStats.noteIndex.get(note)!];
  }

  /** Non-zero counts as { kind: { result: n } } plus notes. */
  toJSON(): { results: Record<string, Record<string, number>>; notes: Record<string, number> } {
    const results: Record<string, Record<string, number>> = {};
    EVENT_KIND_LABELS.forEach((k, i) => {
      EVENT_RESULTS.forEach((r, j) => {
        const n = this.counts[i][j];
        if (n > 0) (results[k] ??= {})[r] = n;
      });
    });
    const notes: Record<string, number> = {};
    EVENT_NOTES.forEach((n, i) => {
      if (this.notes[i] > 0) notes[n] = this.notes[i];
    });
    return { results, notes };
  }
}

/** Registers the event counters (and the log status when a log is given) on `registry`, read at scrape time. */
export function registerEventMetrics(stats: EventStats, registry: client.Registry, log?: () => EventLog | null): void {
  const registers = [registry];
  new client.Counter({
    name: 'segbid_event_notices_total',
    help: 'Event notices and conversion postbacks by kind and result (accepted, test, duplicate, audit, log_failed, or the 4xx reason)',
    labelNames: ['kind', 'result'],
    registers,
    collect() {
      this.reset();
      for (const k of EVENT_KIND_LABELS) {
        for (const r of EVENT_RESULTS) {
          const n = stats.get(k, r);
          if (n > 0) this.inc({ kind: k, result: r }, n);
        }
      }
    },
  });
  new client.Counter({
    name: 'segbid_event_notes_total',
    help: 'Event pipeline observations: price_fallback, price_clamped, dedupe_evicted, listener_error, expired_click_redirected',
    labelNames: ['note'],
    registers,
    collect() {
      this.reset();
      for (const n of EVENT_NOTES) {
        const v = stats.noted(n);
        if (v > 0) this.inc({ note: n }, v);
      }
    },
  });
  if (log === undefined) return;
  new client.Gauge({
    name: 'segbid_event_log_ok',
    help: '1 while the event log writes succeed, 0 while it is failing (events then count as log_failed)',
    registers,
    collect() {
      const l = log();
      this.set(l === null ? 0 : l.status.ok ? 1 : 0);
    },
  });
  new client.Counter({
    name: 'segbid_event_log_write_errors_total',
    help: 'Event log write or fsync errors',
    registers,
    collect() {
      const l = log();
      this.reset();
      if (l !== null && l.status.writeErrors > 0) this.inc(l.status.writeErrors);
    },
  });
  new client.Counter({
    name: 'segbid_event_log_dropped_records_total',
    help: 'Event records lost because the log was failing and its retry buffer was full',
    registers,
    collect() {
      const l = log();
      this.reset();
      if (l !== null && l.status.droppedRecords > 0) this.inc(l.status.droppedRecords);
    },
  });
}

/** The sum of several EventStats.toJSON() (a cluster's workers), in the same shape. */
export function mergeEventStats(list: readonly ReturnType<EventStats['toJSON']>[]): ReturnType<EventStats['toJSON']> {
  const results: Record<string, Record<string, number>> = {};
  const notes: Record<string, number> = {};
  for (const s of list) {
    for (const [kind, byResult] of Object.entries(s.results)) {
      const into = (results[kind] ??= {});
      for (const [result, n] of Object.entries(byResult)) into[result] = (into[result] ?? 0) + n;
    }
    for (const [note, n] of Object.entries(s.notes)) notes[note] = (notes[note] ?? 0) + n;
  }
  return { results, notes };
}
