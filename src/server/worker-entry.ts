/**
 * A bid worker thread of `segbid serve --workers N`: maps the shared segment store, builds its own decider
 * and metrics, listens on the shared bid port, and answers the main thread's metrics / reload / shutdown
 * messages. It never opens the operations port.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { createBidApp } from './bid-server.js';
import { closeListenSocket, listen, type uWS } from './uws.js';
import { Lifecycle, drainInFlight, internalErrorLog } from './lifecycle.js';
import { startNoticeRouting } from './notice-routing.js';
import { ownerTag } from '../openrtb/response.js';
import { BidHandler } from '../bidding/bid-handler.js';
import { deciderFromDocument } from '../bidding/load-decider.js';
import { dirname } from 'node:path';
import { Metrics } from '../metrics/metrics.js';
import { pino } from 'pino';
import { eventLogOf, setupEvents } from './events-setup.js';
import type { EventHandler } from '../events/event-handler.js';
import { startLearningTimers } from '../bidding/learning.js';
import { BudgetStateStore, registerStateMetrics } from '../budget/state-store.js';
import { decodeStore, type SegmentStore } from '../segments/segment-store.js';
import type { MainMessage, WorkerData, WorkerMessage } from './cluster.js';
import { installSharedCapTable } from '../bidding/shared-caps.js';
import { startWorkerLearning } from '../bidding/shared-state.js';
import { LeaseBank, type BudgetBank } from '../budget/bank.js';
import { ThreadBankTransport, ownerOfHandle } from '../budget/bank-threads.js';
import { createRedisBank } from '../budget/redis-bank.js';
import { bankHealthCheck, registerBankMetrics } from '../budget/bank-metrics.js';
import { connectRemoteSegments } from '../segments/remote-segments.js';
import { SegbidError } from '../common/errors.js';
import { shadingImage } from '../admin/history.js';
import { shareTouches } from './touch-sharing.js';

/** How often a worker sends its KPIs to the main thread when they changed (the admin API's lag in a cluster). */
const KPI_PUSH_MS = 2000;
/** A budget report asked for during a reallocation round waits for its end: checked this often, this long at most. */
const REPORT_RETRY_MS = 20;
const REPORT_WAIT_MAX_MS = 2000;

const data = workerData as WorkerData;
const port = parentPort!;
const send = (m: WorkerMessage) => port.postMessage(m);

/** Bound of a graceful shutdown's wait for bodies still arriving (well under the main thread's 10 s terminate). */
const DRAIN_MS = 2000;

/* What a dying worker must still close and flush (set once listening). */
let appRef: uWS.TemplatedApp | null = null;
let eventsRef: EventHandler | null = null;

/**
 * Closes the listen socket and every connection of the bid app. Required before the thread exits: a request
 * that uWebSockets.js dispatches into a thread whose JavaScript is already terminated "returns without
 * responding", which aborts the whole process (std::terminate), every other worker with it. `close()` exists
 * on this uWebSockets.js build's apps though its typings omit it.
 */
function closeApp(): void {
  const app = appRef as unknown as { close?: () => void } | null;
  appRef = null;
  if (app !== null && typeof app.close === 'function') app.close();
}

/**
 * An uncaught error ends this worker, not the process: stop taking connections (the kernel then routes them
 * to the other workers), write and fsync the events accepted so far (nothing accepted is lost), and exit 1.
 * The main thread counts the crash, reports the missing worker on /readyz and restarts it.
 */
process.on('uncaughtException', (e) => {
  process.stderr.write(`segbid worker ${data.index}: uncaught error, exiting: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  try {
    closeApp();
    if (eventsRef !== null) {
      eventsRef.flushBids(Date.now());
      eventLogOf(eventsRef)?.sync();
    }
  } finally {
    process.exit(1);
  }
});

function sharedStore(buffer: SharedArrayBuffer | null): SegmentStore | undefined {
  return buffer === null ? undefined : decodeStore(Buffer.from(buffer), 'shared segment store');
}

try {
  const metrics = new Metrics({ defaultMetrics: false });
  const lifecycle = new Lifecycle();
  installSharedCapTable(data.capTable); // before any config is compiled: its cap store lies over the shared table
  // The running document, which admin changes may have moved away from the file.
  const decider = deciderFromDocument(data.document, dirname(data.configPath), data.configPath, sharedStore(data.storeBuffer));
  const logger = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'segbid', worker: data.index } });
  const events = setupEvents(data, decider.config, metrics, logger);
  // Clicks and impressions reach any worker, and so do conversion postbacks: every worker knows every touch.
  const touches = shareTouches(events, data.eventLogDir, logger);
  const state = data.stateDir ? BudgetStateStore.open({ dir: data.stateDir, logger, snapshotIntervalMs: data.stateSnapshotMs }) : null;
  // Budgets shared with the other workers (the main thread's bank) or with every machine (Redis).
  let bank: BudgetBank;
  if (data.bank.via === 'redis' && data.redisUrl) {
    const onError = (e: Error) => logger.warn({ err: e.message }, 'budget bank (redis) unreachable: spending only the budget held');
    bank = createRedisBank(data.redisUrl, { client: data.bank.client, genBase: data.bank.genBase, onError });
  } else {
    const transport = new ThreadBankTransport((m) => send(m));
    port.on('message', (m: MainMessage) => {
      if (m.type === 'bank') transport.onMessage(m);
    });
    bank = new LeaseBank(transport, { client: data.bank.client, genBase: data.bank.genBase });
  }
  registerBankMetrics(metrics.registry, () => bank);
  metrics.addHealthCheck(bankHealthCheck(bank));
  const handler = new BidHandler(decider, metrics, events, state ?? undefined, bank);
  handler.setPaceShare(data.paceShare);
  // Users the shared file store does not know are looked up in Redis before the decision (remote-segments.ts).
  handler.remote = data.segmentsRedisUrl
    ? await connectRemoteSegments(data.segmentsRedisUrl, decider.config.dictionary, { budgetMs: data.segmentsRedisBudgetMs, logger, metrics })
    : null;
  // A budget notice for another worker's reservation is settled there, through the main thread (bank-threads.ts).
  // Bid ids name this worker of this process. A budget notice for another worker's reservation is settled there,
  // through the main thread (bank-threads.ts); with Redis, one for another process goes there (notice-relay.ts).
  const notices = startNoticeRouting({
    handler,
    metrics,
    own: ownerTag(data.processTag, data.index),
    redisUrl: data.bank.via === 'redis' ? data.redisUrl : null,
    toWorker: (notice, handle) => {
      const to = ownerOfHandle(handle);
      if (to === data.index) return false;
      send({ type: 'bank-notice', to, notice });
      return true;
    },
  });
  port.on('message', (m: MainMessage) => {
    if (m.type === 'bank-notice') handler.applyNotice(m.notice);
  });
  if (state !== null) {
    state.start(() => handler.current.plan);
    registerStateMetrics(state, metrics.registry);
  }
  startLearningTimers(() => handler.current);
  // After the state restore (it seeds the hub): learning deltas to the main thread, totals back; Redis caps.
  const shared = startWorkerLearning(handler, metrics.registry, send, data.redisUrl);
  const app = createBidApp({ handler, metrics, lifecycle, onInternalError: internalErrorLog((f, m) => logger.error(f, m)) });
  const { socket, port: bound } = await listen(app, data.host, data.port, false); // shared with the other workers
  appRef = app;
  eventsRef = events;
  // This worker's KPIs and event counts for the main thread's admin API (the cluster's are their sum): sent every
  // 2 s when notices changed them (an image of a large store is a few hundred KB: not every second for nothing).
  let kpisSent = -1;
  let statsSent = '';
  setInterval(() => {
    const stats = events.stats.toJSON();
    const statsText = JSON.stringify(stats);
    if (events.kpis.applied === kpisSent && statsText === statsSent) return;
    kpisSent = events.kpis.applied;
    statsSent = statsText;
    send({ type: 'kpis', image: events.kpis.image(), events: stats });
  }, KPI_PUSH_MS).unref();
  // Budgets and shading for the main thread's /admin/history: a light sample every 2 s. The full report of
  // /admin/budget only when the main thread asks (a read), once this worker's reallocation round is over: the
  // allocator's part would finish the round in one go (tens of ms of this thread on a large config).
  setInterval(() => {
    const policy = handler.budget;
    send({ type: 'budget', sample: policy?.sample(Date.now()) ?? null, shading: shadingImage(handler.current.plan.shading) });
  }, KPI_PUSH_MS).unref();
  let reportWanted = false;
  let reportAllocation = false;
  let reportSeq = 0;
  let reportWaitedMs = 0;
  const sendReport = () => {
    const policy = handler.budget;
    if (policy !== null && policy.allocator.reallocating && reportWaitedMs < REPORT_WAIT_MAX_MS) {
      reportWaitedMs += REPORT_RETRY_MS;
      setTimeout(sendReport, REPORT_RETRY_MS).unref();
      return;
    }
    reportWanted = false;
    const allocation = reportAllocation;
    reportAllocation = false;
    send({ type: 'budget-report', report: policy?.report(Date.now(), allocation) ?? null, seq: reportSeq });
  };
  port.on('message', (m: MainMessage) => {
    if (m.type !== 'budget-wanted') return;
    // Asks that arrive while one is pending share its answer (which then answers the latest of them).
    reportAllocation ||= m.allocation;
    reportSeq = m.seq;
    if (reportWanted) return;
    reportWanted = true;
    reportWaitedMs = 0;
    sendReport();
  });
  lifecycle.ready = true;
  send({ type: 'listening', port: bound });
  // Component health (the event log) for the main thread's /readyz: sent when it changes.
  let lastHealth = '';
  setInterval(() => {
    const checks = metrics.health();
    const text = JSON.stringify(checks);
    if (text === lastHealth) return;
    lastHealth = text;
    send({ type: 'health', checks });
  }, 250).unref();
  // Fault injection for test/reliability-faults.test.ts (README "Reliability"), off unless set:
  // SEGBID_FAULT_WORKER_CRASH="<index>:<file>" makes worker <index> throw an uncaught error from a timer once
  // <file> exists (its first start only, not after the restart), so a test chooses the moment of the crash.
  const fault = /^(\d+):(.+)$/.exec(process.env.SEGBID_FAULT_WORKER_CRASH ?? '');
  if (fault !== null && Number(fault[1]) === data.index && data.generation === 0) {
    const trigger = fault[2];
    setInterval(() => {
      if (existsSync(trigger)) throw new Error('injected worker crash (SEGBID_FAULT_WORKER_CRASH)');
    }, 50).unref();
  }
  port.on('message', (m: MainMessage) => {
    if (m.type === 'metrics') {
      void metrics.registry.getMetricsAsJSON().then((list) => send({ type: 'metrics', id: m.id, metrics: list }));
    } else if (m.type === 'learned') {
      shared.onLearned(m);
    } else if (m.type === 'reload') {
      try {
        installSharedCapTable(m.capTable);
        handler.swap(deciderFromDocument(m.document, dirname(data.configPath), data.configPath, sharedStore(m.storeBuffer)));
        send({ type: 'reloaded', ok: true });
      } catch (e) {
        send({ type: 'reloaded', ok: false, error: (e as Error).message });
      }
    } else if (m.type === 'shutdown') {
      lifecycle.draining = true;
      closeListenSocket(socket);
      shared.close();
      // Requests whose body is still arriving are answered (bounded), then the event log is flushed and
      // fsynced before the thread exits.
      void drainInFlight(() => metrics.inFlight, DRAIN_MS)
        .then(() => notices.close()) // notices for other processes go out; the last ones for this worker settle
        .then(() => touches.close())
        .then(() => handler.bank.close()) // gives back the budget held unspent
        .then(() => handler.remote?.redis.close())
        .then(() => {
          state?.close(); // final ledger journal flush and state snapshot
          return events.close();
        })
        .finally(() => {
          closeApp(); // idle keep-alive connections too: nothing may reach this thread once it exits
          process.exit(0);
        });
    }
  });
} catch (e) {
  send({ type: 'failed', message: (e as Error).message, code: e instanceof SegbidError ? e.code : undefined });
}
