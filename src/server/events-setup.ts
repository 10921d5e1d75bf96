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
import { registerEventMetrics } from '../events/event-stats.js';
import type { Metrics } from '../metrics/metrics.js';

export interface EventsSetupOptions {
  eventLogDir?: string | null;
  eventLogFsync?: string;
  eventKeys?: string;
}

export function setupEvents(options: EventsSetupOptions, config: CompiledConfig, metrics: Metrics, logger: Logger): EventHandler {
  const keyring = loadKeyring(options.eventKeys, process.env, (message) => logger.warn(message));
  // KPIs and notice settings come from the config, defined up front.
  const events = new EventHandler({ config, keyring, events: config.events, kpis: new KpiStore(config.kpis ?? {}, config.dictionary.segments) });
  let log: EventLog | null = null;
  if (options.eventLogDir) {
    mkdirSync(options.eventLogDir, { recursive: true });
    const replay = events.restore(options.eventLogDir, Date.now());
    logger.info({ dir: options.eventLogDir, ...replay }, 'event log replayed');
    log = EventLog.open({ dir: options.eventLogDir, fsync: options.eventLogFsync, onError: (e) => logger.error({ err: e }, 'event log write failed') });
    events.setLog(log);
  }
  events.start();
  registerKpiMetrics(events.kpis, metrics.registry);
  registerEventMetrics(events.stats, metrics.registry, () => log);
  return events;
}
