/**
 * Starts a bidder: load the config and store, open the bid port and the operations port, handle reload
 * (SIGHUP or reload()) and graceful shutdown (SIGTERM/SIGINT or close()).
 *
 * Reload compiles the new config and store aside; on any error the old pair keeps serving and the error is
 * logged, counted and shown on /readyz as lastError.
 */
import type { Logger } from 'pino';
import { assertNativeUws, closeListenSocket, listen, isNativeUws } from './uws.js';
import { createBidApp } from './bid-server.js';
import { createOpsApp } from './ops-server.js';
import { Lifecycle } from './lifecycle.js';
import { BidHandler } from '../bidding/bid-handler.js';
import { loadDecider } from '../bidding/load-decider.js';
import { Metrics } from '../metrics/metrics.js';
import { discrepancies, kpiQueryFromParams } from '../events/kpis.js';
import { setupEvents, type EventsSetupOptions } from './events-setup.js';
import { startLearningTimers } from '../bidding/learning.js';
import { AdminApi } from '../admin/admin-api.js';
import { AdminAuth } from '../admin/auth.js';
import { AuditLog } from '../admin/audit-log.js';
import { ConfigManager } from '../admin/config-manager.js';

export interface StartOptions extends EventsSetupOptions {
  configPath: string;
  host?: string;
  port?: number;
  adminPort?: number;
  allowUwsFallback?: boolean;
  logger: Logger;
  /** Install SIGHUP/SIGTERM/SIGINT handlers (the CLI does; tests don't). */
  signals?: boolean;
  defaultMetrics?: boolean;
  /** Admin tokens (SEGBID_ADMIN_TOKENS format); default: the environment. */
  adminTokens?: string;
  /** Write accepted admin changes back to the config file. */
  persistConfig?: boolean;
  /** NDJSON audit log of admin changes; default SEGBID_AUDIT_LOG, else memory only. */
  auditLogPath?: string | null;
}

export interface RunningBidder {
  bidPort: number;
  adminPort: number;
  handler: BidHandler;
  metrics: Metrics;
  lifecycle: Lifecycle;
  reload(): boolean;
  close(): Promise<void>;
}

export async function startBidder(options: StartOptions): Promise<RunningBidder> {
  const { logger } = options;
  assertNativeUws(options.allowUwsFallback ?? false);
  const host = options.host ?? '0.0.0.0';
  const metrics = new Metrics({ defaultMetrics: options.defaultMetrics });
  const lifecycle = new Lifecycle();
  const decider = loadDecider(options.configPath);
  metrics.configReloads.inc({ result: 'ok' });
  const events = setupEvents(options, decider.config, metrics, logger);
  const handler = new BidHandler(decider, metrics, events);
  const stopLearning = startLearningTimers(() => handler.current);
  const audit = new AuditLog({ path: options.auditLogPath ?? process.env.SEGBID_AUDIT_LOG ?? null, logger });
  const manager = ConfigManager.fromFile(options.configPath, { target: handler, persist: options.persistConfig ?? false, audit, logger });
  const admin = new AdminApi({ auth: AdminAuth.fromEnv(process.env, logger, options.adminTokens), manager, logger });
  admin.addReadEndpoint(/^\/admin\/kpis$/, (query) => events.kpiReport(kpiQueryFromParams(query)));
  admin.addReadEndpoint(/^\/admin\/discrepancies$/, (query) => ({
    rows: discrepancies(events.kpis, query.has('threshold') ? Number(query.get('threshold')) : undefined, query.get('from') ?? undefined, query.get('to') ?? undefined),
  }));
  admin.addReadEndpoint(/^\/admin\/events$/, () => events.stats);
  // Budgets: spend, reservations, pacing and every allocation with its reason (explore, exploit, guard rail).
  admin.addReadEndpoint(/^\/admin\/budget$/, () => handler.budget?.report(Date.now()) ?? { campaigns: [] });
  // The loaded tree (the config may only name a segmentation file): the console and the brief draw it.
  admin.addReadEndpoint(/^\/admin\/segmentation$/, () => ({
    segments: handler.current.config.dictionary.segments.map(({ id, name, parent, kind }) => ({ id, name, parent, kind })),
  }));
  const status = () => {
    const d = handler.current;
    return {
      config: d.config.source,
      lineItems: d.config.lineItems.length,
      segments: d.config.dictionary.segments.length,
      storeUsers: d.store.header.userCount,
      uwsNative: isNativeUws(),
    };
  };
  const bidApp = createBidApp({ handler, metrics, lifecycle });
  const opsApp = createOpsApp({ metrics, lifecycle, status, admin });
  const bid = await listen(bidApp, host, options.port ?? 8080);
  const ops = await listen(opsApp, host, options.adminPort ?? 8081);
  lifecycle.ready = true;
  metrics.ready.set(1);
  logger.info({ bidPort: bid.port, adminPort: ops.port, ...status() }, 'segbid listening');

  const reload = (): boolean => {
    lifecycle.reloading = true;
    try {
      manager.reloadFile({ role: 'system', name: 'reload' });
      metrics.configReloads.inc({ result: 'ok' });
      lifecycle.lastError = null;
      logger.info(status(), 'config reloaded');
      return true;
    } catch (e) {
      metrics.configReloads.inc({ result: 'rejected' });
      lifecycle.lastError = (e as Error).message;
      logger.error({ err: e }, 'config reload rejected, previous config keeps serving');
      return false;
    } finally {
      lifecycle.reloading = false;
    }
  };

  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    lifecycle.draining = true;
    metrics.ready.set(0);
    // Decisions are synchronous: once the listen sockets close, nothing accepted is still being decided;
    // keep-alive connections get `Connection: close` on their next answer.
    closeListenSocket(bid.socket);
    closeListenSocket(ops.socket);
    await new Promise((r) => setTimeout(r, 50));
    stopLearning();
    await events.close(); // flushes the bid tally and fsyncs the event log: nothing accepted is lost
    logger.info('segbid stopped');
  };

  if (options.signals) {
    process.on('SIGHUP', () => reload());
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  }

  return { bidPort: bid.port, adminPort: ops.port, handler, metrics, lifecycle, reload, close };
}
