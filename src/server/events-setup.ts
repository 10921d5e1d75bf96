/**
 * Builds the event pipeline of one bid server (single thread or one worker): the keyring, the event handler,
 * the durable log (replayed first so KPIs, dedupe windows and attribution touches survive a restart), and
 * the Prometheus export. One log directory belongs to one writer.
 */
import { mkdirSync } from 'node:fs';
import type { Logger } from 'pino';
import type { CompiledConfig } from '../config/compile.js';
import { EventHandler } from '../events/event-handler.js';
import { EventLog } from '../events/event-log.js';
import { loadKeyring } from '../events/keyring.js';
import { KpiStore, registerKpiMetrics } from '../events/kpis.js';
import { SharedDedupe } from '../events/shared-dedupe.js';
import { registerEventMetrics } from '../events/event-stats.js';
import type { Metrics } from '../metrics/metrics.js';

export interface EventsSetupOptions {
  eventLogDir?: string | null;
  eventLogFsync?: string;
  eventKeys?: string;
  /** A cluster's notice dedupe (src/events/shared-dedupe.ts), the same buffer in every worker; absent: none. */
  sharedDedupe?: SharedArrayBuffer | null;
}

const logs = new WeakMap<EventHandler, EventLog>();

/** The durable log setupEvents opened for `events` (null: none), e.g. to flush it synchronously before a crash. */
export function eventLogOf(events: EventHandler): EventLog | null {
  return logs.get(events) ?? null;
}

export function setupEvents(options: EventsSetupOptions, config: CompiledConfig, metrics: Metrics, logger: Logger): EventHandler {
  const keyring = loadKeyring(options.eventKeys, process.env, (message) => logger.warn(message));
  // KPIs and notice settings come from the config, defined up front.
  const events = new EventHandler({
    config,
    keyring,
    events: config.events,
    kpis: new KpiStore(config.kpis ?? {}, config.dictionary.segments),
    sharedDedupe: options.sharedDedupe ? new SharedDedupe(options.sharedDedupe) : null,
  });
  let log: EventLog | null = null;
  if (options.eventLogDir) {
    mkdirSync(options.eventLogDir, { recursive: true });
    const replay = events.restore(options.eventLogDir, Date.now());
    logger.info({ dir: options.eventLogDir, ...replay }, 'event log replayed');
    log = EventLog.open({ dir: options.eventLogDir, fsync: options.eventLogFsync, onError: (e) => logger.error({ err: e }, 'event log write failed') });
    events.setLog(log);
    logs.set(events, log);
    // A log that cannot write makes the bidder unready (the load balancer stops sending it bid requests, so
    // it stops signing events it cannot record); it still answers what reaches it, and the records kept in
    // memory are written to a fresh segment when the disk comes back (README "Reliability").
    const failing = log;
    metrics.addHealthCheck({
      name: 'eventLog',
      ok: () => failing.status.ok,
      detail: () => {
        const s = failing.status;
        return { ok: s.ok, lastError: s.lastError, writeErrors: s.writeErrors, failedRecords: s.failedRecords, droppedRecords: s.droppedRecords, pendingBytes: s.pendingBytes };
      },
    });
  }
  events.start();
  registerKpiMetrics(events.kpis, metrics.registry);
  registerEventMetrics(events.stats, metrics.registry, () => log);
  return events;
}
