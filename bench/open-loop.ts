/**
 * An open-loop HTTP/1.1 load driver: requests are sent on a fixed schedule (rate r: request i is due at
 * t0 + i / r) whatever the server does, and each latency is measured from the request's SCHEDULED send time, not
 * from when a connection happened to be free to send it. A server that stalls therefore shows every request it
 * delayed, instead of the one slow response a closed-loop client (autocannon, even with `overallRate`) records
 * while it politely stops sending: that is coordinated omission, and it hides exactly the tail the 2 ms goal is
 * about.
 *
 * Contract:
 *   runOpenLoop(options) -> Promise<OpenLoopResult>   never rejects for server behaviour (errors, resets, slow
 *     answers are counted); rejects only on bad options. Latencies are in ms, sorted ascending.
 *   Due requests are picked up by a ~1 ms timer AND by every batch of responses that arrives: node's timers
 *   cannot fire sooner than 1 ms, so with the timer alone a request waited 0.5 ms on average (up to 1 ms, more
 *   when the timer fired late) before it was even written, and that wait counted as the server's latency (on the
 *   bare baseline at a third of its max: p50 1.38 ms, of which 0.75 ms was the driver's own lateness; with the
 *   responses' events too, 0.26-0.46 ms, lateness p50 0.07 ms). Under load responses arrive every few dozen µs,
 *   so the schedule is kept to that precision at no CPU cost (no busy wait, which would take a core from the
 *   server on a 2-core machine).
 *   Besides latency from the schedule (the figure that counts), each result carries the latency from the actual
 *   write (`fromSendMs`: the server's answer time without the driver's lateness or a wait for a free connection)
 *   and the driver's own lateness per request (`lateMs`), so a reader can tell a slow server from a late driver.
 *   Due requests wait in one FIFO when all `connections` keep-alive sockets are busy; the wait counts in their
 *   latency. After `durationS` no new request is scheduled; outstanding and queued ones get `drainMs` to finish,
 *   then count as timeouts.
 *
 * Why raw sockets (node:net) and not node:http agents or undici: on this project's 2-core machine the load
 * generator shares the CPU with the server, and node:http's client costs several times what a pre-serialised
 * request write plus a minimal response parser cost; the driver would measure itself. undici is only a transitive
 * dependency here (not ours to rely on). The parser handles what the bench servers answer: a status line,
 * Content-Length or chunked bodies, 204 without a body, `Connection: close` (the socket is reopened).
 */
import { connect, type Socket } from 'node:net';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import { PACKAGE_ROOT } from '../src/common/paths.js';

export interface OpenLoopOptions {
  /** http://host:port/path */
  url: string;
  /** Requests per second. */
  rate: number;
  durationS: number;
  /** Request bodies, cycled in order. */
  bodies: readonly string[];
  /** Keep-alive connections (default 64). */
  connections?: number;
  headers?: Record<string, string>;
  /** Time given to outstanding requests after the schedule ends (default 3000 ms). */
  drainMs?: number;
}

export interface OpenLoopResult {
  targetRate: number;
  durationS: number;
  /** Requests scheduled (rate x duration). */
  scheduled: number;
  /** Responses received (any status). */
  completed: number;
  /** completed / durationS. */
  achievedRate: number;
  /** Response latencies from the scheduled send time, ms, sorted ascending (one per completed request). */
  latenciesMs: Float64Array;
  /** The same responses' latencies from the moment their request was written, ms, sorted ascending. */
  fromSendMs: Float64Array;
  /** Per scheduled request, how late the driver noticed it was due (before any wait for a connection), ms, sorted. */
  lateMs: Float64Array;
  statusCodes: Record<string, number>;
  non2xx: number;
  /** Socket errors and resets (the request in flight is lost). */
  errors: number;
  /** Requests not answered within the drain window (including those never sent). */
  timeouts: number;
  /** Largest number of due requests waiting for a free connection. */
  maxQueued: number;
  /** Largest lateness of the scheduler itself (ms): a timer that fires late sends a burst. */
  maxSchedulerLagMs: number;
  /** Garbage collections of the driver's own heap during the run: while one runs, nothing is sent or read. */
  driverGc: { count: number; totalMs: number; maxMs: number };
}

interface Conn {
  socket: Socket | null;
  busy: boolean;
  /** Scheduled time of the request in flight. */
  scheduled: number;
  /** When the request in flight was written. */
  sentAt: number;
  buf: Buffer;
  connecting: boolean;
}

const CRLF2 = Buffer.from('\r\n\r\n');

/**
 * Parses one complete response at the start of `buf`: [status, bytes consumed, close] or null when incomplete.
 * Only what a bench server sends is understood; anything else is reported as status 0 (an error).
 */
export function parseResponse(buf: Buffer): [status: number, consumed: number, close: boolean] | null {
  const headEnd = buf.indexOf(CRLF2);
  if (headEnd === -1) return null;
  const head = buf.toString('latin1', 0, headEnd);
  const status = Number(head.slice(9, 12));
  const lower = head.toLowerCase();
  const close = lower.includes('\r\nconnection: close');
  let pos = headEnd + 4;
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return [status, pos, close];
  const cl = /\r\ncontent-length:\s*(\d+)/.exec(lower);
  if (cl !== null) {
    const end = pos + Number(cl[1]);
    return end <= buf.length ? [status, end, close] : null;
  }
  if (lower.includes('\r\ntransfer-encoding: chunked')) {
    for (;;) {
      const lineEnd = buf.indexOf('\r\n', pos);
      if (lineEnd === -1) return null;
      const size = parseInt(buf.toString('latin1', pos, lineEnd), 16);
      if (!Number.isFinite(size)) return [0, buf.length, true];
      pos = lineEnd + 2 + size + 2;
      if (pos > buf.length) return null;
      if (size === 0) return [status, pos, close];
    }
  }
  // No length: the body runs to the end of the connection; the bench servers never do this.
  return [status, buf.length, true];
}

export function runOpenLoop(options: OpenLoopOptions): Promise<OpenLoopResult> {
  const url = new URL(options.url);
  if (url.protocol !== 'http:') throw new Error(`open loop: http only, got ${url.protocol}`);
  if (!(options.rate > 0) || !(options.durationS > 0) || options.bodies.length === 0) throw new Error('open loop: rate, duration and bodies are required');
  const host = url.hostname;
  const port = Number(url.port || 80);
  const nConn = options.connections ?? 64;
  const drainMs = options.drainMs ?? 3000;
  const extra = Object.entries({ 'content-type': 'application/json', ...(options.headers ?? {}) })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  // Pre-serialised requests: sending is one socket write.
  const wire = options.bodies.map((b) =>
    Buffer.from(`POST ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\n${extra}content-length: ${Buffer.byteLength(b)}\r\n\r\n${b}`),
  );
  const total = Math.max(1, Math.round(options.rate * options.durationS));
  const intervalMs = 1000 / options.rate;
  const latencies = new Float64Array(total);
  const fromSend = new Float64Array(total);
  const lateness = new Float64Array(total);
  const statusCodes: Record<string, number> = {};
  let completed = 0;
  let non2xx = 0;
  let errors = 0;
  let maxQueued = 0;
  // FIFO of scheduled times of due requests waiting for a connection (ring over a typed array: no allocation).
  const queue = new Float64Array(total);
  let qHead = 0;
  let qTail = 0;
  let next = 0; // index of the next request to schedule
  let sentBody = 0;
  const conns: Conn[] = [];
  const idle: Conn[] = [];
  let t0 = 0;
  let finished = false;

  const driverGc = { count: 0, totalMs: 0, maxMs: 0 };
  const countGc = (entries: readonly { duration: number }[]) => {
    for (const e of entries) {
      driverGc.count++;
      driverGc.totalMs += e.duration;
      if (e.duration > driverGc.maxMs) driverGc.maxMs = e.duration;
    }
  };
  const gcObserver = new PerformanceObserver((list) => countGc(list.getEntries()));
  gcObserver.observe({ entryTypes: ['gc'] });

  return new Promise<OpenLoopResult>((resolveRun) => {
    let timer: NodeJS.Timeout | null = null;
    let drainTimer: NodeJS.Timeout | null = null;

    let busy = 0;
    const send = (c: Conn, scheduled: number) => {
      c.busy = true;
      busy++;
      c.scheduled = scheduled;
      c.sentAt = performance.now();
      c.socket!.write(wire[sentBody++ % wire.length]);
    };
    const pump = () => {
      while (qHead < qTail && idle.length > 0) send(idle.pop()!, queue[qHead++]);
    };
    const outstanding = () => qTail - qHead + busy;
    const maybeDone = () => {
      if (!finished && next >= total && outstanding() === 0) finish();
    };
    const onResponse = (c: Conn, status: number) => {
      const now = performance.now();
      fromSend[completed] = now - c.sentAt;
      latencies[completed++] = now - c.scheduled;
      statusCodes[status] = (statusCodes[status] ?? 0) + 1;
      if (status < 200 || status >= 300) non2xx++;
      c.busy = false;
      busy--;
    };
    const open = (c: Conn) => {
      c.connecting = true;
      c.buf = Buffer.alloc(0);
      const s = connect({ host, port, noDelay: true });
      c.socket = s;
      s.on('connect', () => {
        c.connecting = false;
        if (finished) return;
        if (!c.busy) idle.push(c);
        pump();
      });
      s.on('data', (chunk: Buffer) => {
        c.buf = c.buf.length === 0 ? chunk : Buffer.concat([c.buf, chunk]);
        for (;;) {
          if (!c.busy) {
            c.buf = Buffer.alloc(0); // bytes nobody asked for: drop them
            break;
          }
          const r = parseResponse(c.buf);
          if (r === null) break;
          onResponse(c, r[0]);
          c.buf = c.buf.subarray(r[1]);
          if (r[2]) {
            s.destroy();
            return; // 'close' reopens
          }
          if (finished) return;
          if (qHead < qTail) send(c, queue[qHead++]);
          else idle.push(c);
        }
        if (t0 > 0 && next < total) enqueueDue();
        maybeDone();
      });
      s.on('error', () => {
        // counted in 'close'
      });
      s.on('close', (hadError: boolean) => {
        const i = idle.indexOf(c);
        if (i !== -1) idle.splice(i, 1);
        if (c.busy) {
          errors++;
          c.busy = false;
          busy--;
        } else if (hadError && c.connecting) {
          errors++;
        }
        c.socket = null;
        if (!finished) setTimeout(() => !finished && open(c), c.connecting ? 100 : 0);
        maybeDone();
      });
    };

    /** Everything due by now joins the queue with its own scheduled time, and goes out on the idle connections. */
    const enqueueDue = () => {
      const now = performance.now();
      while (next < total) {
        const due = t0 + next * intervalMs;
        if (due > now) break;
        lateness[next] = now - due;
        queue[qTail++] = due;
        next++;
      }
      if (qTail - qHead > maxQueued) maxQueued = qTail - qHead;
      pump();
    };

    const tick = () => {
      enqueueDue();
      if (next < total) {
        // setTimeout's floor is ~1 ms: at higher rates a tick sends the few requests due since the last one.
        timer = setTimeout(tick, Math.max(0, Math.min(1, t0 + next * intervalMs - performance.now())));
      } else {
        timer = null;
        drainTimer = setTimeout(finish, drainMs);
        maybeDone();
      }
    };

    const finish = () => {
      if (finished) return;
      finished = true;
      if (timer !== null) clearTimeout(timer);
      if (drainTimer !== null) clearTimeout(drainTimer);
      for (const c of conns) c.socket?.destroy();
      countGc(gcObserver.takeRecords());
      gcObserver.disconnect();
      const lat = latencies.slice(0, completed).sort();
      const sent = fromSend.slice(0, completed).sort();
      const late = lateness.slice(0, next).sort();
      resolveRun({
        targetRate: options.rate,
        durationS: options.durationS,
        scheduled: total,
        completed,
        achievedRate: completed / options.durationS,
        latenciesMs: lat,
        fromSendMs: sent,
        lateMs: late,
        statusCodes,
        non2xx,
        errors,
        timeouts: Math.max(0, total - completed - errors),
        maxQueued,
        maxSchedulerLagMs: late.length > 0 ? late[late.length - 1] : 0,
        driverGc,
      });
    };

    for (let i = 0; i < nConn; i++) {
      const c: Conn = { socket: null, busy: false, scheduled: 0, sentAt: 0, buf: Buffer.alloc(0), connecting: false };
      conns.push(c);
      open(c);
    }
    // Start the schedule once the sockets had a moment to connect (loopback: well under 50 ms).
    setTimeout(() => {
      t0 = performance.now();
      tick();
    }, 50);
  });
}

/**
 * runOpenLoop in a worker thread of its own (bench/open-loop-worker.ts, compiled): a fresh V8 heap holding only
 * the driver. Run from the bench's main thread, whose heap autocannon's closed-loop rounds leave at ~60 MB, the
 * driver stopped for scavenges of 4-8 ms (10 a 6 s window at ~11k req/s), and every request due or answered during
 * one counted those ms against the server; in its own heap, 1.1-1.5 ms at most. Same options and result.
 */
export function runOpenLoopInWorker(options: OpenLoopOptions): Promise<OpenLoopResult> {
  const entry = resolve(PACKAGE_ROOT, 'dist/bench/open-loop-worker.js');
  return new Promise<OpenLoopResult>((resolveRun, reject) => {
    const worker = new Worker(entry, { workerData: options });
    let done = false;
    worker.once('message', (r: OpenLoopResult) => {
      done = true;
      resolveRun(r);
      void worker.terminate(); // the driver's sockets are closed; a pending reconnect timer need not be waited for
    });
    worker.once('error', (e) => {
      done = true;
      reject(e);
    });
    worker.once('exit', (code) => {
      if (!done) reject(new Error(`open loop worker exited (code ${code}) without a result`));
    });
  });
}
