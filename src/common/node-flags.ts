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
import { readFileSync } from 'node:fs';

export const SEMI_SPACE_MB = 16;
export const BIDDER_NODE_FLAGS: readonly string[] = [`--min-semi-space-size=${SEMI_SPACE_MB}`, `--max-semi-space-size=${SEMI_SPACE_MB}`];

/** True when this process was started with every flag of BIDDER_NODE_FLAGS. */
export function runsWithBidderFlags(execArgv: readonly string[] = process.execArgv): boolean {
  return BIDDER_NODE_FLAGS.every((flag) => execArgv.includes(flag));
}

/**
 * Huge pages for the big typed arrays (segment store, shared cap and ledger tables), through glibc's malloc
 * (glibc >= 2.35): with `glibc.malloc.hugetlb=1` malloc advises the kernel (madvise MADV_HUGEPAGE) on every
 * block it maps, which is how a Buffer or a SharedArrayBuffer of a few MB gets 2 MiB pages when the machine's
 * transparent huge pages are in `madvise` mode (Debian's default). Why: a known user costs two dependent random
 * reads in the store (its key slot, then its row) and on 4 KiB pages each also misses the TLB. Measured on the
 * 1M-user store (bench/segments.ts, which runs its probe both ways): a pointer chase over 32 MB went from ~270
 * to ~190 ns a read, a known user's lookup+match from ~800-1000 to ~650-730 ns.
 *
 * Like the V8 flags it must be there when the process starts (the dynamic loader reads it), so `npm start`, the
 * Docker image and bin/segbid.js set it; the benches' bidders and baselines get it too. Elsewhere (musl, macOS,
 * THP `never`) it is ignored and changes nothing.
 */
export const HUGE_PAGE_TUNABLE = 'glibc.malloc.hugetlb=1';

/** The environment with HUGE_PAGE_TUNABLE added to GLIBC_TUNABLES (other tunables kept; one already set wins). */
export function withHugePages(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const current = env.GLIBC_TUNABLES ?? '';
  if (current.split(':').some((t) => t.startsWith('glibc.malloc.hugetlb='))) return { ...env };
  return { ...env, GLIBC_TUNABLES: current === '' ? HUGE_PAGE_TUNABLE : `${current}:${HUGE_PAGE_TUNABLE}` };
}

/** True when this process was started with huge pages asked of malloc (see HUGE_PAGE_TUNABLE). */
export function runsWithHugePages(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.GLIBC_TUNABLES ?? '').split(':').includes(HUGE_PAGE_TUNABLE);
}

/** MB of this process's memory on huge pages (rounded), or null: the figure of the "segbid listening" log line. */
export function hugePagesMB(): number | null {
  const bytes = hugePageBytes();
  return bytes === null ? null : Math.round(bytes / 1048576);
}

/** Bytes of this process's memory on transparent huge pages (Linux), or null where the kernel does not say. */
export function hugePageBytes(): number | null {
  try {
    const m = /^AnonHugePages:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
    return m === null ? null : Number(m[1]) * 1024;
  } catch {
    return null;
  }
}
