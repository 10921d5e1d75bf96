/**
 * Attribution touches shared by the workers of one process (`serve --workers N`).
 *
 * A conversion postback is attributed to the user's last click or impression (src/events/attribution.ts), but
 * the kernel hands the click, the impression pixel and the postback to any worker: with a touch index per worker,
 * a postback found its touch only when it reached the worker that took the click (one time in N), and the KPIs
 * and the allocator saw N times too few conversions. Here each worker sends the touches it accepts to the others
 * over a BroadcastChannel, in batches every FLUSH_MS (a postback comes seconds after the click, not within
 * 100 ms), so every worker's index holds every touch of the process. A worker that starts (or restarts) also
 * reads the touches of its siblings' event logs (`<event-log>/worker-<k>`, read only), as it replays its own.
 *
 * Contract: `shareTouches` is called once per worker after its event log was replayed; `close()` sends what is
 * pending and leaves the channel. Between processes (several machines) touches are not shared: a postback must
 * reach the machine that took the click (see README "Running in production").
 */
import { BroadcastChannel } from 'node:worker_threads';
import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { EventHandler } from '../events/event-handler.js';
import type { Touch } from '../events/attribution.js';

const CHANNEL = 'segbid:touches';
const FLUSH_MS = 100;
/** A batch is sent at once past this size (a burst of impressions does not wait for the timer in a growing array). */
const MAX_BATCH = 2048;

type TouchBatch = { kind: 'imp' | 'click'; touch: Touch }[];

export interface TouchSharing {
  close(): void;
}

export function shareTouches(events: EventHandler, eventLogDir: string | null, logger: Logger): TouchSharing {
  const channel = new BroadcastChannel(CHANNEL);
  channel.unref(); // the channel alone does not keep a worker alive
  channel.onmessage = (e) => events.addTouches((e as { data: TouchBatch }).data);
  let pending: TouchBatch = [];
  const flush = () => {
    if (pending.length === 0) return;
    channel.postMessage(pending);
    pending = [];
  };
  events.onTouch = (kind, touch) => {
    pending.push({ kind, touch });
    if (pending.length >= MAX_BATCH) flush();
  };
  const timer = setInterval(flush, FLUSH_MS);
  timer.unref();
  // Joined the channel first: a touch a sibling accepts while its log is read arrives by both ways (harmless).
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
