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
