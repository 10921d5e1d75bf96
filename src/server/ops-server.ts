/**
 * The operations port: never reachable from the bid port. GET /metrics (Prometheus text), /healthz (the
 * process is alive and its event loop turns), /readyz (a config is serving, the bidder is not draining or
 * reloading and every component health check passes, e.g. the event log writes: load balancers take it out of
 * rotation otherwise).
 */
import type client from 'prom-client';
import { uWS } from './uws.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Lifecycle } from './lifecycle.js';
import { AdminApi, statusLine, type AdminResponse } from '../admin/admin-api.js';
import { registerConsole } from './console-routes.js';

export interface OpsServerOptions {
  metrics: Metrics;
  lifecycle: Lifecycle;
  /** Extra status for /readyz and /healthz bodies. */
  status: () => Record<string, unknown>;
  /** The registry to expose (default: metrics.registry); the cluster aggregates its workers' here. */
  registry?: () => Promise<client.Registry>;
  /** An extra readiness condition (the cluster: every worker is up and healthy). */
  ready?: () => boolean;
  /** Extra fields of the /readyz body (the cluster: workers alive, restarts, each worker's checks). */
  readyDetail?: () => Record<string, unknown>;
  /** The admin API (src/admin), served under /admin on this port only. */
  admin?: AdminApi;
}

/** Routes /admin and /admin/* to the transport-independent AdminApi: reads headers, caps and collects the body. */
function serveAdmin(app: uWS.TemplatedApp, admin: AdminApi): void {
  const handler = (res: uWS.HttpResponse, req: uWS.HttpRequest) => {
    // Everything from req must be read now: uWS reuses the request object after this returns.
    const method = req.getCaseSensitiveMethod();
    const query = req.getQuery();
    const path = query ? `${req.getUrl()}?${query}` : req.getUrl();
    const headers: Record<string, string> = {};
    req.forEach((k, v) => {
      headers[k] = v;
    });
    let aborted = false;
    let watching = false; // onAborted attached
    const write = (r: AdminResponse, close: boolean) => {
      if (aborted) return;
      aborted = true; // answered: ignore any further data
      res.cork(() => {
        res.writeStatus(statusLine(r.status));
        for (const [k, v] of Object.entries(r.headers)) res.writeHeader(k, v);
        res.end(r.body, close);
      });
    };
    // An async read endpoint answers later: the client may be gone by then (onAborted is set before returning).
    const send = (r: AdminResponse | Promise<AdminResponse>, close = false) => {
      if (!(r instanceof Promise)) return write(r, close);
      if (!watching) res.onAborted(() => (aborted = true));
      watching = true;
      void r.then(
        (answer) => write(answer, close),
        () => write({ status: 500, headers: { 'content-type': 'application/json' }, body: '{"error":"internal"}' }, close),
      );
    };
    const declared = headers['content-length'];
    const hasBody = (declared !== undefined && declared !== '0') || headers['transfer-encoding'] !== undefined;
    if (!hasBody) {
      send(admin.handle({ method, path, headers, body: null }));
      return;
    }
    watching = true;
    res.onAborted(() => {
      aborted = true;
    });
    if (declared !== undefined && !(Number(declared) <= admin.bodyLimit)) {
      send(admin.tooLarge(), true);
      return;
    }
    const chunks: Buffer[] = [];
    let length = 0;
    res.onData((chunk, isLast) => {
      if (aborted) return;
      length += chunk.byteLength;
      if (length > admin.bodyLimit) {
        send(admin.tooLarge(), true);
        return;
      }
      chunks.push(Buffer.copyBytesFrom(new Uint8Array(chunk))); // uWS neuters the chunk after this callback
      if (isLast) send(admin.handle({ method, path, headers, body: Buffer.concat(chunks, length) }));
    });
  };
  app.any('/admin', handler);
  app.any('/admin/*', handler);
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
    // Component checks (the event log): a bidder that cannot record the events it signs is taken out of rotation.
    const health = metrics.health();
    let healthy = true;
    const checks: Record<string, Record<string, unknown>> = {};
    for (const h of health) {
      healthy &&= h.ok;
      checks[h.name] = h.detail;
    }
    const ready = lifecycle.serving && extraReady() && healthy;
    const body = JSON.stringify({
      ready,
      draining: lifecycle.draining,
      reloading: lifecycle.reloading,
      lastError: lifecycle.lastError,
      checks,
      ...(options.readyDetail ? options.readyDetail() : {}),
    });
    res.cork(() => res.writeStatus(ready ? '200 OK' : '503 Service Unavailable').writeHeader('content-type', 'application/json').end(body));
  });
  if (options.admin) serveAdmin(app, options.admin);
  registerConsole(app);
  app.any('/*', (res) => {
    res.cork(() => res.writeStatus('404 Not Found').end('{"error":"not_found"}'));
  });
  return app;
}
