/** Process-wide state the operations port reports: ready once a config is serving, draining on shutdown. */
export class Lifecycle {
  ready = false;
  draining = false;
  reloading = false;
  lastError: string | null = null;

  get serving(): boolean {
    return this.ready && !this.draining && !this.reloading;
  }
}

/**
 * Graceful shutdown, after the listen socket is closed: waits until no bid request is being read or decided
 * (`inFlight()` is 0: a body still arriving gets its answer) or `boundMs` has passed (a client that stalls
 * mid-body must not hold the shutdown). Resolves with the number still in flight at the end (0 = all answered).
 */
export async function drainInFlight(inFlight: () => number, boundMs: number, pollMs = 10): Promise<number> {
  const deadline = Date.now() + boundMs;
  while (inFlight() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, pollMs));
  return inFlight();
}

/**
 * Logs requests whose handling threw (bid-server.ts answers them 204 and counts them), at most once per
 * `everyMs` with the count since the last line: a bug hit by every request must not flood the log.
 */
export function internalErrorLog(warn: (fields: object, message: string) => void, everyMs = 10_000): (e: Error) => void {
  let lastMs = -Infinity;
  let since = 0;
  return (e) => {
    since++;
    const now = Date.now();
    if (now - lastMs < everyMs) return;
    lastMs = now;
    warn({ err: e.message, stack: e.stack, requests: since }, 'bid request handling threw: answered 204 (segbid_bid_requests_total{outcome="error"})');
    since = 0;
  };
}
