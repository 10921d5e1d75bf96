/**
 * The operations port: never reachable from the bid port. GET /metrics (Prometheus text), /healthz (the
 * process is alive and its event loop turns), /readyz (a config is serving and the bidder is not draining or
 * reloading: load balancers take it out of rotation otherwise).
 */
import type client from 'prom-client';
import { uWS } from './uws.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Lifecycle } from './lifecycle.js';

export interface OpsServerOptions {
  metrics: Metrics;
  lifecycle: Lifecycle;
  /** Extra status for /readyz and /healthz bodies. */
  status: () => Record<string, unknown>;
  /** The registry to expose (default: metrics.registry); the cluster aggregates its workers' here. */
  registry?: () => Promise<client.Registry>;
  /** An extra readiness condition (the cluster: every worker is up). */
  ready?: () => boolean;
}

export function createOpsApp(options: OpsServerOptions): uWS.TemplatedApp {
  const { metrics, lifecycle, status } = options;
  const registry = options.registry ?? (() => Promise.resolve(metrics.registry));
  const extraReady = options.ready ?? (() => true);
  const app = uWS.App();
  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    registry()
      .then((r) => r.metrics())
      .then(
      (text) => {
        if (aborted) return;
        res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', metrics.registry.contentType).end(text));
      },
      (e: Error) => {
        if (aborted) return;
        res.cork(() => res.writeStatus('500 Internal Server Error').end(String(e.message)));
      },
    );
  });
  app.get('/healthz', (res) => {
    res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', 'application/json').end(JSON.stringify({ ok: true, ...status() })));
  });
  app.get('/readyz', (res) => {
    const ready = lifecycle.serving && extraReady();
    const body = JSON.stringify({ ready, draining: lifecycle.draining, reloading: lifecycle.reloading, lastError: lifecycle.lastError });
    res.cork(() => res.writeStatus(ready ? '200 OK' : '503 Service Unavailable').writeHeader('content-type', 'application/json').end(body));
  });
  app.any('/*', (res) => {
    res.cork(() => res.writeStatus('404 Not Found').end('{"error":"not_found"}'));
  });
  return app;
}
