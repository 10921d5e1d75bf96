/**
 * Starts a bidder: load the config and store, open the bid port and the operations port, handle reload
 * (SIGHUP or reload()) and graceful shutdown (SIGTERM/SIGINT or close()).
 *
 * Reload compiles the new config and store aside; on any error the old pair keeps serving and the error is
 * logged, counted and shown on /readyz as lastError.
 */
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { assertNativeUws, closeListenSocket, listen, isNativeUws } from './uws.js';
import { createBidApp } from './bid-server.js';
import { createOpsApp } from './ops-server.js';
import { Lifecycle, drainInFlight, internalErrorLog } from './lifecycle.js';
import { BidHandler } from '../bidding/bid-handler.js';
import { deciderFromDocument } from '../bidding/load-decider.js';
import { readDocument } from '../config/load.js';
import { Metrics } from '../metrics/metrics.js';
import { discrepancies, discrepancyQueryFromParams, kpiQueryFromParams } from '../events/kpis.js';
import { setupEvents, type EventsSetupOptions } from './events-setup.js';
import { startLearningTimers } from '../bidding/learning.js';
import { startSharedStateSingle } from '../bidding/shared-state.js';
import { AdminApi } from '../admin/admin-api.js';
import { AdminAuth } from '../admin/auth.js';
import { AuditLog } from '../admin/audit-log.js';
import { ConfigManager } from '../admin/config-manager.js';
import { connectRemoteSegments } from '../segments/remote-segments.js';
import { createRedisBank } from '../budget/redis-bank.js';
import { processTagFor } from '../budget/notice-relay.js';
import { ownerTag } from '../openrtb/response.js';
import { startNoticeRouting } from './notice-routing.js';
import { bankHealthCheck, registerBankMetrics } from '../budget/bank-metrics.js';
import { BudgetStateStore, registerStateMetrics } from '../budget/state-store.js';
import { HistoryRecorder, historyQueryFromParams } from '../admin/history.js';
import { hugePagesMB } from '../common/node-flags.js';

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
  /**
   * Directory of the budget and learning state (ledger journal + periodic snapshot, src/budget/state-store.ts),
   * restored at start; null/absent = memory only. One directory per process (workers use worker-N inside).
   */
  stateDir?: string | null;
  /** Snapshot period of the state directory, ms (default 15 s). */
  stateSnapshotMs?: number;
  /** Sampling period of the console's history (GET /admin/history), default 5000 ms. */
  historyEveryMs?: number;
  /**
   * The part of each campaign's traffic this process sees, for pacing (default 1): `segbid serve --instances M`
   * sets 1/M (M bidders behind one load balancer), divided again by the worker threads of a cluster.
   */
  paceShare?: number;
  /**
   * Redis shared by every bidder instance (`--redis URL`): campaign budgets are leased from it in slices
   * (src/budget/redis-bank.ts) and Redis holds the budget totals. Absent: this process owns whole budgets.
   */
  redisUrl?: string | null;
  /**
   * Redis segment store (`--segments-redis URL`, filled by `segbid compile --to-redis`): users the local store
   * does not know are looked up there before the decision (src/segments/remote-segments.ts). Absent: none.
   */
  segmentsRedisUrl?: string | null;
  /** Upper bound of one Redis segment lookup, ms (default 10); each request gets min(this, tmax / 4). */
  segmentsRedisBudgetMs?: number;
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
  // Read once: the handler serves this document's decider from the start, and the config manager holds the same
  // document (it adopts the decider instead of building the file a second time and swapping it in).
  const configPath = resolve(options.configPath);
  const document = readDocument(configPath);
  const decider = deciderFromDocument(document, dirname(configPath), configPath);
  const remote = options.segmentsRedisUrl
    ? await connectRemoteSegments(options.segmentsRedisUrl, decider.config.dictionary, { budgetMs: options.segmentsRedisBudgetMs, logger, metrics })
    : null;
  metrics.configReloads.inc({ result: 'ok' });
  const events = setupEvents(options, decider.config, metrics, logger);
  const state = options.stateDir ? BudgetStateStore.open({ dir: options.stateDir, logger, snapshotIntervalMs: options.stateSnapshotMs }) : null;
  const bank = options.redisUrl
    ? createRedisBank(options.redisUrl, { onError: (e) => logger.warn({ err: e.message }, 'budget bank (redis) unreachable: spending only the budget held') })
    : undefined;
  const handler = new BidHandler(decider, metrics, events, state ?? undefined, bank);
  handler.setPaceShare(options.paceShare ?? 1);
  handler.remote = remote;
  if (bank !== undefined) {
    registerBankMetrics(metrics.registry, () => bank);
    metrics.addHealthCheck(bankHealthCheck(bank));
  }
  // Bid ids name this process (kept across restarts with the state): with Redis, a notice that reaches another
  // instance comes back here to settle its reservation (src/budget/notice-relay.ts).
  const notices = startNoticeRouting({ handler, metrics, own: ownerTag(processTagFor(options.stateDir), 0), redisUrl: options.redisUrl ?? null, toWorker: null });
  if (state !== null) {
    state.start(() => handler.current.plan);
    registerStateMetrics(state, metrics.registry);
  }
  const stopLearning = startLearningTimers(() => handler.current);
  // After the state restore: what it restored seeds the learning hub (src/bidding/shared-learning.ts).
  const shared = startSharedStateSingle(handler, metrics.registry, options.redisUrl);
  const audit = new AuditLog({ path: options.auditLogPath ?? process.env.SEGBID_AUDIT_LOG ?? null, logger });
  const manager = new ConfigManager({
    target: handler,
    document,
    baseDir: dirname(configPath),
    source: configPath,
    configPath,
    serving: decider,
    persist: options.persistConfig ?? false,
    audit,
    logger,
    // Every change (admin API, SIGHUP): counted, and the last rejection shown on /readyz until one is accepted.
    onOutcome: (accepted, error) => {
      metrics.configReloads.inc({ result: accepted ? 'ok' : 'rejected' });
      lifecycle.lastError = accepted ? null : (error?.message ?? null);
    },
  });
  const admin = new AdminApi({ auth: AdminAuth.fromEnv(process.env, logger, options.adminTokens), manager, logger });
  admin.addReadEndpoint(/^\/admin\/kpis$/, (query) => events.kpiReport(kpiQueryFromParams(query)));
  admin.addReadEndpoint(/^\/admin\/discrepancies$/, (query) => {
    const q = discrepancyQueryFromParams(query); // 400 on a bad threshold, from or to
    return { rows: discrepancies(events.kpis, q.threshold, q.from, q.to) };
  });
  admin.addReadEndpoint(/^\/admin\/events$/, () => events.stats);
  // Budgets: spend, reservations, pacing and every allocation with its reason (explore, exploit, guard rail).
  admin.addReadEndpoint(/^\/admin\/budget$/, () => handler.budget?.report(Date.now()) ?? { campaigns: [] });
  // The loaded tree (the config may only name a segmentation file): the console and the brief draw it.
  admin.addReadEndpoint(/^\/admin\/segmentation$/, () => ({
    segments: handler.current.config.dictionary.segments.map(({ id, name, parent, kind }) => ({ id, name, parent, kind })),
  }));
  // Curves of the console (spend vs pacing target, arm shares, win rate and shading): sampled off the hot path.
  const history = new HistoryRecorder(
    {
      budget: (nowMs) => handler.budget?.sample(nowMs) ?? null,
      shading: () => handler.current.plan.shading,
      lineItemCounters: () => events.kpis.dimension('line_item'),
      currency: () => handler.current.config.settings.currency,
    },
    { everyMs: options.historyEveryMs, onError: (e) => logger.error({ err: e }, 'history sample failed') },
  );
  const stopHistory = history.start();
  admin.addReadEndpoint(/^\/admin\/history$/, (query) => history.report(historyQueryFromParams(query, history.capacity)));
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
  const bidApp = createBidApp({ handler, metrics, lifecycle, onInternalError: internalErrorLog((f, m) => logger.error(f, m)) });
  const opsApp = createOpsApp({ metrics, lifecycle, status, admin });
  const bid = await listen(bidApp, host, options.port ?? 8080);
  const ops = await listen(opsApp, host, options.adminPort ?? 8081);
  lifecycle.ready = true;
  metrics.ready.set(1);
  logger.info({ bidPort: bid.port, adminPort: ops.port, ...status(), hugePagesMB: hugePagesMB() }, 'segbid listening');

  const reload = (): boolean => {
    lifecycle.reloading = true;
    try {
      manager.reloadFile({ role: 'system', name: 'reload' }); // counted and shown by onOutcome
      logger.info(status(), 'config reloaded');
      return true;
    } catch (e) {
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
    // Bodies still arriving on accepted connections are answered (bounded), then the state is flushed.
    await drainInFlight(() => metrics.inFlight, 2000);
    stopLearning();
    shared.close();
    await notices.close(); // notices for other instances go out; the last ones for this one settle here
    await handler.bank.close(); // gives back the budget held unspent (Redis), before the final snapshot
    state?.close(); // final journal flush and snapshot: a clean stop loses no ledger change
    stopHistory();
    await remote?.redis.close();
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
