/**
 * One frequency-cap table for every worker thread of `segbid serve --workers N`.
 *
 * Contract
 * - The main thread owns the table: `CapTableOwner.forPlan(plan, settings)` returns a SharedArrayBuffer for the
 *   plan's table layout (capacity, ring, capped item names in order) and its signature; a config whose layout
 *   is unchanged keeps the SAME buffer, so a reload loses nothing. The buffer travels in workerData and in the
 *   reload message (postMessage shares it, it is not copied).
 * - A worker calls `installSharedCapTable(buffer, signature)` before it compiles a config: every cap store of a
 *   plan with that signature then lies over the buffer (frequency-caps.ts `setSharedCapTable`); a plan with
 *   another layout (a worker that reloaded a file the main thread has not read) gets a private table, counted in
 *   `sharedCapMisses`. A record on any worker is seen by every worker's next check (writes lock their set).
 * - When the layout changes, the new table starts empty and each worker's swap merges the old shared table into
 *   it (mergeTimes is idempotent, so N workers doing it count each impression once).
 */
import type { CapStoreSettingsDef } from './strategies/schema.js';
import { InProcessCapStore, setSharedCapTable, type CapPlan } from './frequency-caps.js';

export interface SharedCapTable {
  buffer: SharedArrayBuffer;
  signature: string;
}

/** Identifies the table layout: two plans with one signature index the same bytes the same way. */
export function capTableSignature(plan: CapPlan, capacity: number): string {
  return `${capacity}/${plan.ring}/${plan.itemNames.join('\u0000')}`;
}

/** Main thread: hands out the shared table of the current config. */
export class CapTableOwner {
  private current: SharedCapTable | null = null;

  forPlan(plan: CapPlan, settings: CapStoreSettingsDef | undefined): SharedCapTable {
    const signature = capTableSignature(plan, InProcessCapStore.capacityOf(settings));
    if (this.current === null || this.current.signature !== signature) {
      this.current = { buffer: InProcessCapStore.sharedBuffer(plan, settings), signature };
    }
    return this.current;
  }
}

/** Plans compiled in this thread that could not use the shared table (another layout). */
export let sharedCapMisses = 0;

/** Worker thread: from now on, cap stores of plans with this layout lie over `table`. */
export function installSharedCapTable(table: SharedCapTable | null): void {
  if (table === null) {
    setSharedCapTable(null);
    return;
  }
  setSharedCapTable((plan, capacity) => {
    if (capTableSignature(plan, capacity) === table.signature) return table.buffer;
    sharedCapMisses++;
    return undefined;
  });
}
