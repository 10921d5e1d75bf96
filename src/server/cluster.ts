/**
 * `segbid serve --workers N`: one uWebSockets.js bid app per worker thread, all listening on the same port
 * (SO_REUSEPORT: the kernel spreads connections), and one operations port on the main thread.
 *
 * Shared, not copied: the segment store file is read once into a SharedArrayBuffer and every worker maps its
 * typed arrays over it. Metrics: each worker keeps its own prom-client registry; /metrics on the main thread
 * asks every worker and aggregates (counters summed, gauges summed, histograms merged). A worker that dies is
 * restarted (after 100 ms, backing off to 5 s while it keeps dying young) and counted
 * (segbid_worker_restarts_total); until then the others keep answering and /readyz is 503 naming the missing
 * worker. Workers report their component health (the event log) and /readyz is 503 while any fails.
 */
import { Worker } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import client from 'prom-client';
import { assertNativeUws, closeListenSocket, listen, isNativeUws, portIsFree } from './uws.js';
import { createOpsApp } from './ops-server.js';
import { Lifecycle } from './lifecycle.js';
import { deciderFromDocument } from '../bidding/load-decider.js';
import { readDocument } from '../config/load.js';
import { ConfigManager } from '../admin/config-manager.js';
import { AdminApi } from '../admin/admin-api.js';
import { AdminAuth } from '../admin/auth.js';
import { AuditLog } from '../admin/audit-log.js';
import { dirname, join } from 'node:path';
import { Metrics, type HealthState } from '../metrics/metrics.js';
import { SegbidError, type SegbidErrorCode } from '../common/errors.js';
import { randomBytes } from 'node:crypto';
import type { EventsSetupOptions } from './events-setup.js';
import type { StartOptions } from './start.js';
import { CapTableOwner, type SharedCapTable } from '../bidding/shared-caps.js';
import { startClusterHub, type LearnMessage, type LearnedMessage } from '../bidding/shared-state.js';
import type { Decider } from '../bidding/decide.js';
import { ThreadBankHost, type BankReplyMessage, type BankRequestMessage, type NoticeDeliverMessage, type NoticeRouteMessage } from '../budget/bank-threads.js';
import { genBaseFor } from '../budget/bank.js';
import { processTagFor } from '../budget/notice-relay.js';
import { MergedKpis, discrepancies, discrepancyQueryFromParams, kpiConfig, kpiQueryFromParams, kpiReport, type KpiImage } from '../events/kpis.js';
import { mergeEventStats, type EventStats } from '../events/event-stats.js';
import { SharedDedupe } from '../events/shared-dedupe.js';
import { DEFAULT_EVENTS_CONFIG } from '../events/event-handler.js';
import { registerBookMetrics } from '../budget/bank-metrics.js';
import { DAY_MS } from '../budget/types.js';
import { hostname } from 'node:os';
import { hugePagesMB } from '../common/node-flags.js';
import { mergeBudgetReports, mergeBudgetSamples, type BudgetReport, type BudgetSample } from '../budget/budget-report.js';
import type { AllocationReport } from '../budget/allocator.js';
import { HistoryRecorder, historyQueryFromParams, shadingViewOf, type ShadingImage } from '../admin/history.js';

/** What the main thread holds of a worker's budgets (its last 'budget' message), until the worker exits. */
interface BudgetImage {
  sample: BudgetSample | null;
  shading: ShadingImage;
}

/** A worker's answer to a budget read (null: no campaign), and the number of the latest read it answers. */
interface BudgetAnswer {
  report: BudgetReport | null;
  seq: number;
}

/**
 * How long a stopping worker gets before it is terminated: its drain (<= 2 s), the budget given back, then the
 * event log closed and its replay checkpoint written (about 2 s for the largest, 60 MB at the default caps).
 */
const WORKER_STOP_MS = 10_000;

/** Longest wait of a budget read for the workers' answers (a worker waits for its reallocation round, <= 2 s). */
const BUDGET_WAIT_MS = 3000;

/** The options of one bidder that a cluster takes too (its main thread serves the admin API: see startCluster). */
export interface ClusterOptions
  extends Pick<
    StartOptions,
    | 'configPath'
    | 'host'
    | 'port'
    | 'adminPort'
    | 'allowUwsFallback'
    | 'logger'
    | 'signals'
    | 'stateDir'
    | 'stateSnapshotMs'
    | 'redisUrl'
    | 'paceShare'
    | 'segmentsRedisUrl'
    | 'segmentsRedisBudgetMs'
    | 'adminTokens'
    | 'persistConfig'
    | 'auditLogPath'
    | 'historyEveryMs'
    | keyof EventsSetupOptions
  > {
  workers: number;
}

export interface WorkerData {
  configPath: string;
  /** The running config document (it may differ from the file: admin changes not persisted). */
  document: unknown;
  host: string;
  port: number;
  storeBuffer: SharedArrayBuffer | null;
  allowUwsFallback: boolean;
  index: number;
  /** 0 for the first start of this worker index, then +1 per restart. */
  generation: number;
  /** Each worker logs events into its own subdirectory (one writer per log). */
  eventLogDir: string | null;
  eventLogFsync?: string;
  /** The same keys in every worker: a notice may reach any worker. */
  eventKeys: string;
  /** Budget and learning state of this worker (its own subdirectory `worker-N`, one writer per directory). */
  stateDir?: string | null;
  stateSnapshotMs?: number;
  /** This worker's part of the traffic, for pacing: the process's part / workers. */
  paceShare: number;
  /** The frequency-cap table every worker writes and reads (src/bidding/shared-caps.ts); null: no caps. */
  capTable: SharedCapTable | null;
  /** Redis of the shared caps (write-through, prefetch); the main thread syncs the learning with it. */
  redisUrl: string | null;
  /** The Redis segment store (`--segments-redis`): each worker has its own connection and cache. */
  segmentsRedisUrl: string | null;
  segmentsRedisBudgetMs?: number;
  /**
   * This worker's budget bank client: leasing from the main thread, or from Redis (`--redis`). Its handles lie in
   * the worker's own generation range, so that notices reaching another worker are forwarded to it.
   */
  bank: { client: string; genBase: number; via: 'main' | 'redis' };
  /** The process's tag, which starts every bid id its workers mint (src/openrtb/response.ts ownerTag). */
  processTag: string;
  /** The notice dedupe every worker shares (src/events/shared-dedupe.ts). */
  sharedDedupe: SharedArrayBuffer;
}

export type WorkerMessage =
  | { type: 'listening'; port: number }
  /** The worker could not start: its error's code (a SegbidError's, e.g. EVENT_KEYS_INVALID) and message. */
  | { type: 'failed'; message: string; code?: string }
  | { type: 'metrics'; id: number; metrics: client.MetricObjectWithValues<client.MetricValue<string>>[] }
  | { type: 'reloaded'; ok: boolean; error?: string }
  | { type: 'health'; checks: HealthState[] }
  /** A worker's KPIs and event counts (sent every 2 s when they changed): the admin API reports their sum. */
  | { type: 'kpis'; image: KpiImage; events: ReturnType<EventStats['toJSON']> }
  /** A worker's budgets and shading for the history (every 2 s; src/budget/budget-report.ts). */
  | { type: 'budget'; sample: BudgetSample | null; shading: ShadingImage }
  /** A worker's answer to 'budget-wanted' number `seq` (or a later one; null: no campaign). */
  | { type: 'budget-report'; report: BudgetReport | null; seq: number }
  | LearnMessage
  | BankRequestMessage
  | NoticeRouteMessage
  | { type: 'stopped' };

export type MainMessage =
  | { type: 'metrics'; id: number }
  /** The running config document (the admin API's, or the file's on SIGHUP), built by each worker as it is. */
  | { type: 'reload'; storeBuffer: SharedArrayBuffer | null; capTable: SharedCapTable | null; document: unknown }
  | LearnedMessage
  | BankReplyMessage
  | NoticeDeliverMessage
  /** Someone reads /admin/budget: send the full budget report once (with the allocator's part when `allocation`). */
  | { type: 'budget-wanted'; allocation: boolean; seq: number }
  | { type: 'shutdown' };

function freeTcpPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const free = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(free));
    });
  });
}

/** Reads a store file into shared memory, so N workers map one copy. */
export function readStoreShared(path: string | null): SharedArrayBuffer | null {
  if (path === null) return null;
  const file = readFileSync(path);
  const shared = new SharedArrayBuffer(file.length);
  new Uint8Array(shared).set(file);
  return shared;
}

export interface RunningCluster {
  bidPort: number;
  adminPort: number;
  lifecycle: Lifecycle;
  workers(): number;
  reload(): Promise<boolean>;
  close(): Promise<void>;
}

const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 5000;
/** A worker that lived this long before dying is restarted after RESTART_MIN_MS again. */
const RESTART_RESET_MS = 10_000;

const WORKER_ENTRY = fileURLToPath(new URL('./worker-entry.js', import.meta.url));

export async function startCluster(options: ClusterOptions): Promise<RunningCluster> {
  const { logger } = options;
  assertNativeUws(options.allowUwsFallback ?? false);
  const host = options.host ?? '0.0.0.0';
  // Validate in the main thread first: a broken config fails the start, not N workers. The main thread keeps
  // this decider as the admin API's view of the running config (the workers serve their own copies).
  const document = readDocument(options.configPath);
  const probe = deciderFromDocument(document, dirname(options.configPath), options.configPath);
  let serving = probe;
  let storeBuffer = readStoreShared(probe.config.storePath);
  let storeOfBuffer = probe.store;
  let runningDocument: unknown = document;
  /** Each worker's last KPIs and event counts (by worker index; a restarted worker replays its log, then sends). */
  const kpiImages: (KpiImage | null)[] = new Array(options.workers).fill(null);
  const eventStats: (ReturnType<EventStats['toJSON']> | null)[] = new Array(options.workers).fill(null);
  /** The last event counts of workers that exited (a restarted worker counts from zero again). */
  let departedEvents: ReturnType<EventStats['toJSON']> = { results: {}, notes: {} };
  /** Each live worker's last budget sample and shading, and its last answer to a budget read. */
  const budgetImages: (BudgetImage | null)[] = new Array(options.workers).fill(null);
  const budgetAnswers: (BudgetAnswer | null)[] = new Array(options.workers).fill(null);
  /**
   * The last allocation a worker sent, and for which read: a later read's answer (without it) may have replaced
   * that worker's answer before the read that asked for it collected it.
   */
  let lastAllocation: { seq: number; allocation: AllocationReport } | null = null;
  const lifecycle = new Lifecycle();
  const mainMetrics = new Metrics({ defaultMetrics: true });
  // One caps table for all workers, and the hub of their learning statistics (with Redis: of every machine's).
  const capOwner = new CapTableOwner();
  const capTableOf = (d: Decider): SharedCapTable | null => (d.plan.anyCaps ? capOwner.forPlan(d.plan.capPlan, d.config.settings.capStore) : null);
  let capTable = capTableOf(probe);
  const hub = startClusterHub(mainMetrics.registry, options.redisUrl);
  // Budgets shared by the workers (src/budget/bank-threads.ts): the main thread grants slices, unless Redis does.
  const bankHost = options.redisUrl ? null : new ThreadBankHost({ stateDir: options.stateDir ?? null });
  if (bankHost !== null) registerBookMetrics(mainMetrics.registry, bankHost.book, () => bankHost.reclaimed);
  const bankRun = randomBytes(4).toString('hex');
  const processTag = processTagFor(options.stateDir);
  // An exchange's retry of a notice may reach another worker than the first copy: one dedupe for all of them,
  // twice the per-worker window's entries (its load factor stays under one half).
  const sharedDedupe = SharedDedupe.create(2 * (probe.config.events?.dedupeMax ?? DEFAULT_EVENTS_CONFIG.dedupeMax)).buffer;
  let budgetPlan = probe.config.budgetPlan;
  const workers: (Worker | null)[] = new Array(options.workers).fill(null);
  /** Last health report of each live worker (null: none yet, or the worker is gone). */
  const health: (HealthState[] | null)[] = new Array(options.workers).fill(null);
  const generations: number[] = new Array(options.workers).fill(0);
  const restartDelay: number[] = new Array(options.workers).fill(RESTART_MIN_MS);
  let restarts = 0;
  const restartCounter = new client.Counter({
    name: 'segbid_worker_restarts_total',
    help: 'Bid worker threads that died (uncaught error, out of memory, failed start) and were restarted',
    registers: [mainMetrics.registry],
  });
  let port = options.port ?? 8080;
  let stopping = false;
  let metricsRequest = 0;
  // Every worker must verify every other worker's tokens: without configured keys, one random key for all.
  const eventKeys = options.eventKeys ?? process.env.SEGBID_EVENT_KEYS ?? `0:${randomBytes(32).toString('hex')}`;
  if (options.eventKeys === undefined && process.env.SEGBID_EVENT_KEYS === undefined) {
    logger.warn('no SEGBID_EVENT_KEYS: event URLs are signed with a random key that will not survive a restart');
  }
  const pending = new Map<number, { left: number; parts: client.MetricObjectWithValues<client.MetricValue<string>>[][]; done: () => void }>();

  const spawn = (index: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const data: WorkerData = {
        configPath: options.configPath,
        document: runningDocument,
        host,
        port,
        storeBuffer,
        allowUwsFallback: options.allowUwsFallback ?? false,
        index,
        generation: generations[index],
        eventLogDir: options.eventLogDir ? join(options.eventLogDir, `worker-${index}`) : null,
        eventLogFsync: options.eventLogFsync,
        eventKeys,
        stateDir: options.stateDir ? join(options.stateDir, `worker-${index}`) : null,
        stateSnapshotMs: options.stateSnapshotMs,
        paceShare: (options.paceShare ?? 1) / options.workers,
        capTable,
        redisUrl: options.redisUrl ?? null,
        segmentsRedisUrl: options.segmentsRedisUrl ?? null,
        segmentsRedisBudgetMs: options.segmentsRedisBudgetMs,
        bank: {
          client: `${hostname()}:${process.pid}:w${index}.${generations[index]}.${bankRun}`,
          genBase: genBaseFor(index * 8 + (generations[index] % 8)),
          via: bankHost === null ? 'redis' : 'main',
        },
        processTag,
        sharedDedupe,
      };
      const worker = new Worker(WORKER_ENTRY, { workerData: data });
      const born = Date.now();
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'listening') {
          port = m.port;
          workers[index] = worker;
          resolve();
        } else if (m.type === 'failed') {
          // The worker's own code (a bad event key is not a listen failure); LISTEN_FAILED when it had none.
          reject(new SegbidError((m.code ?? 'LISTEN_FAILED') as SegbidErrorCode, `worker ${index}: ${m.message}`));
        } else if (m.type === 'bank') {
          bankHost?.handle(m, (r) => worker.postMessage(r satisfies MainMessage));
        } else if (m.type === 'bank-notice') {
          // To the worker whose reservation it is; if that one is down, back to the sender (booked there).
          (workers[m.to] ?? worker).postMessage({ type: 'bank-notice', notice: m.notice } satisfies MainMessage);
        } else if (m.type === 'learn') {
          worker.postMessage(hub.onLearn(m) satisfies MainMessage);
        } else if (m.type === 'health') {
          if (workers[index] === worker) health[index] = m.checks;
        } else if (m.type === 'kpis') {
          kpiImages[index] = m.image;
          eventStats[index] = m.events;
        } else if (m.type === 'budget') {
          if (workers[index] === worker) budgetImages[index] = { sample: m.sample, shading: m.shading };
        } else if (m.type === 'budget-report') {
          if (workers[index] === worker) budgetAnswers[index] = { report: m.report, seq: m.seq };
          if (m.report !== null && m.report.allocation !== null) lastAllocation = { seq: m.seq, allocation: m.report.allocation };
        } else if (m.type === 'metrics') {
          const p = pending.get(m.id);
          if (p) {
            p.parts.push(m.metrics);
            if (--p.left === 0) p.done();
          }
        }
      });
      worker.on('error', (e) => logger.error({ err: e, worker: index }, 'worker error'));
      worker.on('exit', (code) => {
        if (workers[index] === worker) {
          workers[index] = null;
          health[index] = null;
          // Its figures stop counting (a stale image could be of another day); the bank book keeps its spend.
          budgetImages[index] = null;
          budgetAnswers[index] = null;
          // Its event counts are not in its log's replay (the KPIs are): kept, so the cluster's never go back.
          const last = eventStats[index];
          if (last !== null) departedEvents = mergeEventStats([departedEvents, last]);
          eventStats[index] = null;
        }
        if (stopping) return;
        if (bankHost !== null) {
          // Its unspent grant comes back once its reservations have timed out (their notices reach other workers).
          const plan = budgetPlan;
          const ttl = plan === null ? 0 : Math.max(0, ...plan.campaigns.map((c) => c.reservationTtlMs));
          const dayOf = (id: string) => {
            const c = plan?.campaigns.find((x) => x.id === id);
            return Math.floor((Date.now() + (c?.utcOffsetMs ?? 0)) / DAY_MS);
          };
          bankHost.clientGone(data.bank.client, ttl, dayOf);
        }
        // A worker that keeps dying young (a crash at start) is restarted less and less often, up to every 5 s.
        const delay = Date.now() - born < RESTART_RESET_MS ? restartDelay[index] : RESTART_MIN_MS;
        restartDelay[index] = Math.min(RESTART_MAX_MS, delay * 2);
        restarts++;
        restartCounter.inc();
        generations[index]++;
        logger.error({ worker: index, code, restartInMs: delay }, 'worker exited; restarting');
        setTimeout(() => {
          if (stopping) return;
          spawn(index).catch((e) => logger.error({ err: e }, 'worker restart failed'));
        }, delay);
      });
    });

  // uWebSockets.js binds port 0 without SO_REUSEPORT, so the other workers could not join the port the first
  // one got: a free port is chosen here instead (a tiny race with other processes, acceptable for port 0).
  if (port === 0) port = await freeTcpPort(host);
  // The workers share the port (SO_REUSEPORT), so none of them would notice another process already on it. The
  // operations port too, before any worker runs: a failure with worker threads running aborts the process.
  for (const p of [port, options.adminPort ?? 8081]) {
    if (p !== 0 && !(await portIsFree(host, p))) throw new SegbidError('LISTEN_FAILED', `cannot listen on ${host}:${p} (is another process on it?)`);
  }
  for (let i = 0; i < options.workers; i++) await spawn(i);
  const alive = () => workers.filter((w) => w !== null).length;
  new client.Gauge({
    name: 'segbid_workers_alive',
    help: 'Bid worker threads running (the configured number when all are up)',
    registers: [mainMetrics.registry],
    collect() {
      this.set(alive());
    },
  });
  const workersHealthy = () => health.every((h) => h === null || h.every((c) => c.ok));
  const readyDetail = () => {
    const checks: Record<string, Record<string, unknown>> = {};
    health.forEach((h, i) => {
      for (const c of h ?? []) checks[`worker-${i}/${c.name}`] = c.detail;
    });
    return { workers: { alive: alive(), wanted: options.workers, restarts }, checks };
  };

  const aggregateRegistry = async (): Promise<client.Registry> => {
    const live = workers.filter((w): w is Worker => w !== null);
    const id = ++metricsRequest;
    const parts: client.MetricObjectWithValues<client.MetricValue<string>>[][] = [];
    await new Promise<void>((done) => {
      const timer = setTimeout(done, 1000); // a stuck worker must not stall /metrics
      pending.set(id, { left: live.length, parts, done: () => (clearTimeout(timer), done()) });
      if (live.length === 0) done();
      for (const w of live) w.postMessage({ type: 'metrics', id } satisfies MainMessage);
    });
    pending.delete(id);
    parts.push(await mainMetrics.registry.getMetricsAsJSON());
    return client.AggregatorRegistry.aggregate(parts);
  };

  /**
   * Sends the running document to every live worker, which builds and swaps it (the main thread validated it);
   * resolves with whether every worker took it. A new segment store goes out as a new shared buffer.
   */
  const pushToWorkers = async (next: Decider, doc: unknown): Promise<boolean> => {
    if (next.store !== storeOfBuffer) {
      storeBuffer = readStoreShared(next.config.storePath);
      storeOfBuffer = next.store;
    }
    capTable = capTableOf(next); // the same table while the caps layout is unchanged
    budgetPlan = next.config.budgetPlan;
    runningDocument = doc; // a worker started from now on (a restart) starts on it
    const live = workers.filter((w): w is Worker => w !== null);
    const results = await Promise.all(
      live.map(
        (w) =>
          new Promise<boolean>((resolve) => {
            const onMessage = (m: WorkerMessage) => {
              if (m.type !== 'reloaded') return;
              w.off('message', onMessage);
              if (!m.ok) logger.error({ err: m.error }, 'a worker rejected the config the main thread accepted');
              resolve(m.ok);
            };
            w.on('message', onMessage);
            w.postMessage({ type: 'reload', storeBuffer, capTable, document: doc } satisfies MainMessage);
          }),
      ),
    );
    const ok = results.every(Boolean);
    lifecycle.lastError = ok ? null : 'a worker rejected the reload';
    return ok;
  };
  /** The last push to the workers (SIGHUP waits for it; the admin API answers once the main thread swapped). */
  let pushed: Promise<boolean> = Promise.resolve(true);

  // The admin API (config, line items, versions, rollback, audit), served by the main thread: a change is
  // validated and built here, then every worker builds the same document (pushToWorkers).
  const audit = new AuditLog({ path: options.auditLogPath ?? process.env.SEGBID_AUDIT_LOG ?? null, logger });
  const manager = new ConfigManager({
    target: {
      get current() {
        return serving;
      },
      swap(next: Decider) {
        serving = next;
      },
    },
    document,
    baseDir: dirname(options.configPath),
    source: options.configPath,
    configPath: options.configPath,
    serving: probe,
    persist: options.persistConfig ?? false,
    audit,
    logger,
    onSwap: (event) => {
      pushed = pushToWorkers(event.decider, event.document);
    },
    // Every change (admin API, SIGHUP): counted, and the last rejection shown on /readyz until one is accepted.
    onOutcome: (accepted, error) => {
      mainMetrics.configReloads.inc({ result: accepted ? 'ok' : 'rejected' });
      lifecycle.lastError = accepted ? null : (error?.message ?? null);
    },
  });
  const admin = new AdminApi({ auth: AdminAuth.fromEnv(process.env, logger, options.adminTokens), manager, logger });
  admin.addReadEndpoint(/^\/admin\/segmentation$/, () => ({
    segments: serving.config.dictionary.segments.map(({ id, name, parent, kind }) => ({ id, name, parent, kind })),
  }));
  // KPIs and event counts: the sum of what the workers last sent (at most KPI_PUSH_MS old, worker-entry.ts).
  const mergedKpis = () => new MergedKpis(kpiConfig(serving.config.kpis ?? {}), kpiImages.filter((i): i is KpiImage => i !== null));
  admin.addReadEndpoint(/^\/admin\/kpis$/, (query) => kpiReport(mergedKpis(), kpiQueryFromParams(query)));
  admin.addReadEndpoint(/^\/admin\/discrepancies$/, (query) => {
    const q = discrepancyQueryFromParams(query);
    return { rows: discrepancies(mergedKpis(), q.threshold, q.from, q.to) };
  });
  admin.addReadEndpoint(/^\/admin\/events$/, () => mergeEventStats([departedEvents, ...eventStats.filter((e) => e !== null)]));
  // Budgets: the workers' reports summed (budget-report.ts), with the main thread's bank book, the authority on
  // what was granted and reported spent. Each read asks every live worker for a report (the first one also for
  // the allocator's part) and waits for their answers; a worker that does not answer within BUDGET_WAIT_MS is
  // left out (`workers.reporting` < `workers.of`), none answering is a 503 `pending`.
  let budgetSeq = 0;
  admin.addAsyncReadEndpoint(/^\/admin\/budget$/, async () => {
    const seq = ++budgetSeq;
    const asked: number[] = [];
    workers.forEach((w, i) => {
      if (w === null) return;
      w.postMessage({ type: 'budget-wanted', allocation: asked.length === 0, seq } satisfies MainMessage);
      asked.push(i);
    });
    const answered = () => asked.filter((i) => (budgetAnswers[i]?.seq ?? 0) >= seq);
    const deadline = Date.now() + BUDGET_WAIT_MS;
    while (answered().length < asked.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const answers = answered().map((i) => budgetAnswers[i]!);
    if (answers.length === 0) throw new SegbidError('ADMIN_PENDING', 'no worker answered with its budget report: retry in a second');
    const reports = answers.map((a) => a.report).filter((r): r is BudgetReport => r !== null);
    if (reports.length === 0) return { campaigns: [] }; // no campaign
    if (reports.every((r) => r.allocation === null) && lastAllocation !== null && lastAllocation.seq >= seq) {
      reports[0] = { ...reports[0], allocation: lastAllocation.allocation };
    }
    const book = bankHost?.book ?? null;
    return {
      ...mergeBudgetReports(reports),
      workers: { reporting: reports.length, of: options.workers },
      bank:
        book === null
          ? null
          : {
              campaigns: book.campaignIds().map((id) => {
                const t = book.totals(id)!;
                return { id, grantedMicros: t.granted, spentMicros: t.spent, leases: t.leases };
              }),
              reclaimedMicros: bankHost!.reclaimed,
            },
    };
  });
  // The console's curves, sampled here from the workers' last pushes (at most KPI_PUSH_MS old).
  const history = new HistoryRecorder(
    {
      budget: () => {
        const samples = budgetImages.filter((b): b is BudgetImage => b !== null && b.sample !== null).map((b) => b.sample!);
        return samples.length === 0 ? null : mergeBudgetSamples(samples);
      },
      shading: () => {
        const first = budgetImages.find((b): b is BudgetImage => b !== null);
        return first === undefined ? serving.plan.shading : shadingViewOf(first.shading);
      },
      lineItemCounters: () => mergedKpis().dimension('line_item'),
      currency: () => serving.config.settings.currency,
    },
    { everyMs: options.historyEveryMs, onError: (e) => logger.error({ err: e }, 'history sample failed') },
  );
  const stopHistory = history.start();
  admin.addReadEndpoint(/^\/admin\/history$/, (query) => history.report(historyQueryFromParams(query, history.capacity)));

  const opsApp = createOpsApp({
    metrics: mainMetrics,
    lifecycle,
    status: () => ({ config: options.configPath, workers: alive(), workersWanted: options.workers, uwsNative: isNativeUws(), configVersion: manager.currentVersion.id }),
    registry: aggregateRegistry,
    ready: () => alive() === options.workers && workersHealthy(),
    readyDetail,
    admin,
  });
  const ops = await listen(opsApp, host, options.adminPort ?? 8081);
  lifecycle.ready = true;
  mainMetrics.ready.set(1);
  logger.info({ bidPort: port, adminPort: ops.port, workers: options.workers, hugePagesMB: hugePagesMB() }, 'segbid listening');

  /** SIGHUP: the config file (and its segment store) again, through the manager (versioned, audited). */
  const reload = async (): Promise<boolean> => {
    lifecycle.reloading = true;
    try {
      manager.reloadFile({ role: 'system', name: 'reload' }); // counted and shown by onOutcome
      return await pushed;
    } catch (e) {
      lifecycle.lastError = (e as Error).message;
      logger.error({ err: e }, 'config reload rejected, previous config keeps serving');
      return false;
    } finally {
      lifecycle.reloading = false;
    }
  };

  const close = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    lifecycle.draining = true;
    mainMetrics.ready.set(0);
    await Promise.all(
      workers.map(
        (w) =>
          w &&
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => void w.terminate().then(() => resolve()), WORKER_STOP_MS);
            w.once('exit', () => (clearTimeout(timer), resolve()));
            w.postMessage({ type: 'shutdown' } satisfies MainMessage);
          }),
      ),
    );
    // What the hub learned goes to Redis before the process leaves (the workers' last second is not waited for).
    await hub.parts.redisLearning?.syncOnce();
    hub.close();
    stopHistory();
    bankHost?.close(); // after the workers gave back what they held: the persisted book is final
    closeListenSocket(ops.socket);
  };

  if (options.signals) {
    process.on('SIGHUP', () => void reload());
    const stop = () => void close().then(() => process.exit(0));
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  }
  return { bidPort: port, adminPort: ops.port, lifecycle, workers: alive, reload, close };
}
