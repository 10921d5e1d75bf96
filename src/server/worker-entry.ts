/**
 * A bid worker thread of `segbid serve --workers N`: maps the shared segment store, builds its own decider
 * and metrics, listens on the shared bid port, and answers the main thread's metrics / reload / shutdown
 * messages. It never opens the operations port.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createBidApp } from './bid-server.js';
import { closeListenSocket, listen } from './uws.js';
import { Lifecycle } from './lifecycle.js';
import { BidHandler } from '../bidding/bid-handler.js';
import { loadDecider } from '../bidding/load-decider.js';
import { Metrics } from '../metrics/metrics.js';
import { pino } from 'pino';
import { setupEvents } from './events-setup.js';
import { startLearningTimers } from '../bidding/learning.js';
import { decodeStore, type SegmentStore } from '../segments/segment-store.js';
import type { MainMessage, WorkerData, WorkerMessage } from './cluster.js';

const data = workerData as WorkerData;
const port = parentPort!;
const send = (m: WorkerMessage) => port.postMessage(m);

function sharedStore(buffer: SharedArrayBuffer | null): SegmentStore | undefined {
  return buffer === null ? undefined : decodeStore(Buffer.from(buffer), 'shared segment store');
}

try {
  const metrics = new Metrics({ defaultMetrics: false });
  const lifecycle = new Lifecycle();
  const decider = loadDecider(data.configPath, sharedStore(data.storeBuffer));
  const logger = pino({ level: process.env.LOG_LEVEL ?? 'info', base: { service: 'segbid', worker: data.index } });
  const events = setupEvents(data, decider.config, metrics, logger);
  const handler = new BidHandler(decider, metrics, events);
  startLearningTimers(() => handler.current);
  const app = createBidApp({ handler, metrics, lifecycle });
  const { socket, port: bound } = await listen(app, data.host, data.port);
  lifecycle.ready = true;
  send({ type: 'listening', port: bound });
  port.on('message', (m: MainMessage) => {
    if (m.type === 'metrics') {
      void metrics.registry.getMetricsAsJSON().then((list) => send({ type: 'metrics', id: m.id, metrics: list }));
    } else if (m.type === 'reload') {
      try {
        handler.swap(loadDecider(data.configPath, sharedStore(m.storeBuffer)));
        send({ type: 'reloaded', ok: true });
      } catch (e) {
        send({ type: 'reloaded', ok: false, error: (e as Error).message });
      }
    } else if (m.type === 'shutdown') {
      lifecycle.draining = true;
      closeListenSocket(socket);
      // Decisions are synchronous, so nothing is in flight once the socket is closed; the event log is flushed
      // and fsynced before the thread exits.
      void events.close().finally(() => process.exit(0));
    }
  });
} catch (e) {
  send({ type: 'failed', message: (e as Error).message });
}
