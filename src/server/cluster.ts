/**
 * `segbid serve --workers N`: one uWebSockets.js bid app per worker thread, all listening on the same port
 * (SO_REUSEPORT: the kernel spreads connections), and one operations port on the main thread.
 *
 * Shared, not copied: the segment store file is read once into a SharedArrayBuffer and every worker maps its
 * typed arrays over it. Metrics: each worker keeps its own prom-client registry; /metrics on the main thread
 * asks every worker and aggregates (counters summed, gauges summed, histograms merged). A worker that dies is
 * restarted; until then the others keep answering and /readyz reports the missing worker.
 */
import { Worker } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import client from 'prom-client';
import type { Logger } from 'pino';
import { assertNativeUws, closeListenSocket, listen, isNativeUws } from './uws.js';
import { createOpsApp } from './ops-server.js';
import { Lifecycle } from './lifecycle.js';
import { loadDecider } from '../bidding/load-decider.js';
import { Metrics } from '../metrics/metrics.js';
import { SegbidError } from '../common/errors.js';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { EventsSetupOptions } from './events-setup.js';
import type { StartOptions } from './start.js';

/** The options of one bidder that a cluster takes too (the cluster does not serve the admin API yet). */
export interface ClusterOptions extends Pick<StartOptions, 'configPath' | 'host' | 'port' | 'adminPort' | 'allowUwsFallback' | 'logger' | 'signals' | keyof EventsSetupOptions> {
  workers: number;
}

export interface WorkerData {
  configPath: string;
  host: string;
  port: number;
  storeBuffer: SharedArrayBuffer | null;
  allowUwsFallback: boolean;
  index: number;
  /** Each worker logs events into its own subdirectory (one writer per log). */
  eventLogDir: string | null;
  eventLogFsync?: string;
  /** The same keys in every worker: a notice may reach any worker. */
  eventKeys: string;
}

export type WorkerMessage =
  | { type: 'listening'; port: number }
  | { type: 'failed'; message: string }
  | { type: 'metrics'; id: number; metrics: client.MetricObjectWithValues<client.MetricValue<string>>[] }
  | { type: 'reloaded'; ok: boolean; error?: string }
  | { type: 'stopped' };

export type MainMessage =
  | { type: 'metrics'; id: number }
  | { type: 'reload'; storeBuffer: SharedArrayBuffer | null }
  | { type: 'shutdown' };

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

const WORKER_ENTRY = fileURLToPath(new URL('./worker-entry.js', import.meta.url));

export async function startCluster(options: ClusterOptions): Promise<RunningCluster> {
  const { logger } = options;
  assertNativeUws(options.allowUwsFallback ?? false);
  const host = options.host ?? '0.0.0.0';
  // Validate in the main thread first: a broken config fails the start, not N workers.
  const probe = loadDecider(options.configPath);
  let storeBuffer = readStoreShared(probe.config.storePath);
  const lifecycle = new Lifecycle();
  const mainMetrics = new Metrics({ defaultMetrics: true });
  const workers: (Worker | null)[] = new Array(options.workers).fill(null);
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
        host,
        port,
        storeBuffer,
        allowUwsFallback: options.allowUwsFallback ?? false,
        index,
        eventLogDir: options.eventLogDir ? join(options.eventLogDir, `worker-${index}`) : null,
        eventLogFsync: options.eventLogFsync,
        eventKeys,
      };
      const worker = new Worker(WORKER_ENTRY, { workerData: data });
      worker.on('message', (m: WorkerMessage) => {
        if (m.type === 'listening') {
          port = m.port;
          workers[index] = worker;
          resolve();
        } else if (m.type === 'failed') {
          reject(new SegbidError('LISTEN_FAILED', `worker ${index}: ${m.message}`));
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
        if (workers[index] === worker) workers[index] = null;
        if (stopping) return;
        logger.error({ worker: index, code }, 'worker exited; restarting');
        setTimeout(() => spawn(index).catch((e) => logger.error({ err: e }, 'worker restart failed')), 100);
      });
    });

  for (let i = 0; i < options.workers; i++) await spawn(i); // sequential: the first one fixes a port 0
  const alive = () => workers.filter((w) => w !== null).length;

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

  const opsApp = createOpsApp({
    metrics: mainMetrics,
    lifecycle,
    status: () => ({ config: options.configPath, workers: alive(), workersWanted: options.workers, uwsNative: isNativeUws() }),
    registry: aggregateRegistry,
    ready: () => alive() === options.workers,
  });
  const ops = await listen(opsApp, host, options.adminPort ?? 8081);
  lifecycle.ready = true;
  mainMetrics.ready.set(1);
  logger.info({ bidPort: port, adminPort: ops.port, workers: options.workers }, 'segbid listening');

  const reload = async (): Promise<boolean> => {
    lifecycle.reloading = true;
    try {
      const next = loadDecider(options.configPath);
      storeBuffer = readStoreShared(next.config.storePath);
      const live = workers.filter((w): w is Worker => w !== null);
      const results = await Promise.all(
        live.map(
          (w) =>
            new Promise<boolean>((resolve) => {
              const onMessage = (m: WorkerMessage) => {
                if (m.type !== 'reloaded') return;
                w.off('message', onMessage);
                resolve(m.ok);
              };
              w.on('message', onMessage);
              w.postMessage({ type: 'reload', storeBuffer } satisfies MainMessage);
            }),
        ),
      );
      lifecycle.lastError = results.every(Boolean) ? null : 'a worker rejected the reload';
      return results.every(Boolean);
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
            const timer = setTimeout(() => void w.terminate().then(() => resolve()), 5000);
            w.once('exit', () => (clearTimeout(timer), resolve()));
            w.postMessage({ type: 'shutdown' } satisfies MainMessage);
          }),
      ),
    );
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
