/**
 * The Node (V8) flags a production bidder runs with, in one place: `npm start`, the Dockerfile, `bin/segbid.js`
 * and the benches' and soak's spawned bidders use exactly these (a test reads them back from each).
 *
 * Why: V8 grows the young generation (two semi-spaces) under load and shrinks it again when its memory reducer
 * decides the process has gone quiet, which under a steady bid load it does every minute or two. Each shrink
 * gives back ~30 MB and each regrowth takes it again, so the RSS of a healthy bidder swung between ~116 and
 * ~148 MB and a soak could not tell a leak from the breathing (the JS heap in use stayed flat at 41-56 MB).
 * Pinning both semi-spaces at 16 MB (V8's own maximum on 64-bit, so nothing grows beyond the default) keeps the
 * young generation one size: RSS moves by the old generation only. Scavenges stay as frequent as at the default
 * maximum, so throughput is unchanged.
 *
 * These flags must be given to `node` itself (V8 sizes the heap when the isolate is created; min-semi-space-size
 * is not accepted in NODE_OPTIONS). Worker threads (`serve --workers N`) inherit them: V8 flags are per process.
 */
export const SEMI_SPACE_MB = 16;
export const BIDDER_NODE_FLAGS: readonly string[] = [`--min-semi-space-size=${SEMI_SPACE_MB}`, `--max-semi-space-size=${SEMI_SPACE_MB}`];

/** True when this process was started with every flag of BIDDER_NODE_FLAGS. */
export function runsWithBidderFlags(execArgv: readonly string[] = process.execArgv): boolean {
  return BIDDER_NODE_FLAGS.every((flag) => execArgv.includes(flag));
}
