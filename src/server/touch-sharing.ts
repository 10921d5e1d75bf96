/**
 * Attribution touches shared by the workers of one process (`serve --workers N`).
 *
 * A conversion postback is attributed to the user's last click or impression (src/events/attribution.ts), but
 * the kernel hands the click, the impression pixel and the postback to any worker: with a touch index per worker,
 * a postback found its touch only when it reached the worker that took the click (one time in N), and the KPIs
 * and the allocator saw N times too few conversions. Here each worker sends the touches it accepts to the others
 * over a BroadcastChannel, in batches every FLUSH_MS (a postback comes seconds after the click, not within
 * 100 ms), so every worker's index holds every touch of the process. A worker that starts (or restarts) also
 * reads the touches of its siblings' event logs (`<event-log>/worker-<k>`, read only, the segments written to
 * within twice the attribution window: EventHandler.restoreTouches), as it replays its own.
 *
 * A touch a sibling sends just before the new worker joins but writes to its log only after the new worker read
 * that log (the log is flushed every second) would fall between the two: on joining, a worker says hello and every
 * sibling sends again what it sent in the last RESEND_MS, addressed to it (the others ignore it); a touch it then
 * has twice (from the log and again) is kept once (TouchIndex.add).
 *
 * Contract: `shareTouches` is called once per worker after its event log was replayed; `close()` sends what is
 * pending and leaves the channel. Between processes (several machines) touches are not shared: a postback must
 * reach the machine that took the click (see README "Running in production").
 */
import { BroadcastChannel } from 'node:worker_threads';
import { randomUUID } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { EventHandler } from '../events/event-handler.js';
import type { Touch } from '../events/attribution.js';

const CHANNEL = 'segbid:touches';
const FLUSH_MS = 100;
/** A batch is sent at once past this size (a burst of impressions does not wait for the timer in a growing array). */
const MAX_BATCH = 2048;

/** What a sibling sends again to a worker that joins: longer than the event log's flush interval (1 s). */
const RESEND_MS = 3000;

type TouchBatch = { kind: 'imp' | 'click'; touch: Touch }[];
/** A batch for every worker (`to` absent) or resent for the one that said hello with that id. */
type TouchMessage = { hello: string } | { batch: TouchBatch; to?: string };

export interface TouchSharing {
  close(): void;
}

export function shareTouches(events: EventHandler, eventLogDir: string | null, logger: Logger): TouchSharing {
  const channel = new BroadcastChannel(CHANNEL);
  channel.unref(); // the channel alone does not keep a worker alive
  let pending: TouchBatch = [];
  /** What this worker sent in the last RESEND_MS, oldest first. */
  const recent: { at: number; batch: TouchBatch }[] = [];
  const post = (m: TouchMessage) => channel.postMessage(m);
  const self = randomUUID();
  channel.onmessage = (e) => {
    const m = (e as { data: TouchMessage }).data;
    if ('batch' in m) {
      if (m.to === undefined || m.to === self) events.addTouches(m.batch);
    } else for (const r of recent) post({ batch: r.batch, to: m.hello }); // the others had these already
  };
  const flush = () => {
    const now = Date.now();
    while (recent.length > 0 && now - recent[0].at > RESEND_MS) recent.shift();
    if (pending.length === 0) return;
    post({ batch: pending });
    recent.push({ at: now, batch: pending });
    pending = [];
  };
  events.onTouch = (kind, touch) => {
    pending.push({ kind, touch });
    if (pending.length >= MAX_BATCH) flush();
  };
  const timer = setInterval(flush, FLUSH_MS);
  timer.unref();
  // Joined the channel first: a touch a sibling accepts while its log is read arrives by both ways (harmless).
  post({ hello: self });
  if (eventLogDir !== null) {
    const parent = dirname(eventLogDir);
    const own = basename(eventLogDir);
    for (const name of readdirSync(parent)) {
      if (name === own || !/^worker-\d+$/.test(name)) continue;
      try {
        const replay = events.restoreTouches(join(parent, name));
        logger.info({ dir: join(parent, name), records: replay.records }, 'attribution touches of a sibling worker read');
      } catch (e) {
        logger.warn({ dir: join(parent, name), err: (e as Error).message }, 'could not read a sibling worker\'s event log: its touches are not attributed here');
      }
    }
  }
  return {
    close() {
      clearInterval(timer);
      flush();
      events.onTouch = null;
      channel.close();
    },
  };
}
