/**
 * Segment store bench: compile, size, load, resident bytes and lookups+match per second, for N users x 256
 * segments (default 1M), with a roaring-bitmap peer doing the same membership test in the same run.
 *
 *   node dist/bench/segments.js [--users 1000000] [--lookups 4000000] [--known-share 0.5] [--keep] [--workdir DIR]
 *
 * Phases:
 *   1. generate (not timed against a goal): a 256-segment segmentation (crm rules over 12 CRM columns, groups,
 *      third-party, contextual and lookalike segments) and a CRM CSV of N users with keys (buyeruid for all,
 *      ifa for half, hashed email for a fifth, like the demo) and 3rd-party data correlated with spending;
 *   2. compile: `segbid compile`'s code path (compileFiles) from the CSV file to the store file;
 *   3. probe, in a FRESH child process so that load time and RSS are not polluted by the compile: load the
 *      store (readStore), RSS before/after; then lookups+match on one core, the bid path's steps for one key
 *      (decide.ts: hash the key string, orInto a zeroed bitset, evaluate a line item's targeting program),
 *      share `--known-share` of known users, also split into known-only and unknown-only keys; then the peer: one
 *      RoaringBitmap32 per segment over user ordinals plus a key -> ordinal table (same hash, same probing), and
 *      the same program as bitmap `has` tests. The probe runs with huge pages asked of malloc, as a bidder
 *      started by npm start / the Docker image / bin/segbid does (src/common/node-flags.ts), then once more
 *      without (reported apart).
 * Goals: compile <= 20 s, load <= 1 s, <= 64 bytes per user, >= 2M lookups+match/s.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import roaring from 'roaring';
import { HUGE_PAGE_TUNABLE, hugePageBytes, withHugePages } from '../src/common/node-flags.js';
import { mulberry32 } from '../src/common/prng.js';
import { compileFiles } from '../src/segments/compiler/compile-files.js';
import { formatReport } from '../src/segments/compiler/report.js';
import { KEY_KIND, hashKey, keyHash } from '../src/segments/key-hash.js';
import { MAX_LOAD, fingerprintOf, readStore, slotOf } from '../src/segments/segment-store.js';
import { compileTargeting, evalTargeting } from '../src/segments/targeting.js';
import type { SegmentDef, SegmentationDef, TargetingExpr } from '../src/config/types.js';
import type { CrmRule } from '../src/segments/rules.js';

const { RoaringBitmap32 } = roaring;

const EID_SOURCE = 'crm.bench.example';
const NUMERIC = {
  frequency: [0, 30],
  monetary: [0, 5000],
  churn: [0, 1],
  recency: [0, 730],
  tenure: [0, 3000],
  age: [18, 80],
  visits: [0, 100],
  basket: [0, 300],
} as const;
const CATEGORICAL = {
  region: Array.from({ length: 20 }, (_, i) => `R${String(i).padStart(2, '0')}`),
  channel: ['web', 'store', 'app', 'phone'],
  tier: ['bronze', 'silver', 'gold', 'platinum'],
  newsletter: ['0', '1'],
} as const;
type Num = keyof typeof NUMERIC;
type Cat = keyof typeof CATEGORICAL;
const NUM_COLS = Object.keys(NUMERIC) as Num[];
const CAT_COLS = Object.keys(CATEGORICAL) as Cat[];
const COLUMNS = ['crm_id', 'buyeruid', 'ifa', 'email_sha256', ...NUM_COLS, ...CAT_COLS, 'tp_segments'];
const TP_SEGMENTS = 200;

const userId = (n: number) => `bu-${n.toString(36)}`;
const ROUNDS = 10;

/** The bench segmentation: 4 groups, 212 crm, 16 third-party, 16 contextual, 8 lookalikes = 256. */
export function benchSegmentation(): SegmentationDef {
  const rand = mulberry32(42);
  const pick = <T>(a: readonly T[]) => a[Math.floor(rand() * a.length)];
  const round = (x: number, col: Num) => (col === 'churn' ? Math.round(x * 100) / 100 : Math.round(x));
  const numeric = (): CrmRule => {
    const col = pick(NUM_COLS);
    const [lo, hi] = NUMERIC[col];
    const a = round(lo + rand() * (hi - lo), col);
    const b = round(a + rand() * (hi - a), col);
    const kind = rand();
    if (kind < 0.35) return { col, gte: a };
    if (kind < 0.6) return { col, lt: b };
    return { col, between: [a, b] };
  };
  const categorical = (): CrmRule => {
    const col = pick(CAT_COLS);
    const values = CATEGORICAL[col].filter(() => rand() < 0.4);
    return { col, in: values.length > 0 ? [...values] : [CATEGORICAL[col][0]] };
  };
  const rule = (): CrmRule => {
    const t = rand();
    if (t < 0.25) return numeric();
    if (t < 0.4) return categorical();
    if (t < 0.7) return { all: [numeric(), categorical()] };
    if (t < 0.85) return { any: [numeric(), numeric()] };
    return { all: [numeric(), { not: categorical() }] };
  };
  const segments: SegmentDef[] = [
    { id: 'g-customers', name: 'customers', kind: 'group' },
    { id: 'g-value', name: 'value tiers', parent: 'g-customers', kind: 'group' },
    { id: 'g-prospects', name: 'prospects', kind: 'group' },
    { id: 'g-context', name: 'context', kind: 'group' },
  ];
  // crm-0..7 (the lookalike seeds) are spending tiers, which the generated 3rd-party data correlates with.
  for (let i = 0; i < 212; i++) {
    const r: CrmRule = i < 8 ? { col: 'monetary', gte: 300 + 150 * i } : rule();
    segments.push({ id: `crm-${i}`, name: `crm ${i}`, parent: i % 3 === 0 ? 'g-value' : 'g-customers', kind: 'crm', rule: r });
  }
  for (let i = 0; i < 16; i++) {
    segments.push({ id: `tp-${i}`, name: `tp ${i}`, parent: 'g-prospects', kind: 'third_party', rule: { provider: '6', segments: [`s${i * 2}`, `s${i * 2 + 1}`] } });
  }
  for (let i = 0; i < 16; i++) segments.push({ id: `ctx-${i}`, name: `ctx ${i}`, parent: 'g-context', kind: 'contextual', rule: { cat: [`IAB${i + 1}`] } });
  for (let i = 0; i < 8; i++) {
    segments.push({ id: `lal-${i}`, name: `lal ${i}`, parent: 'g-prospects', kind: 'lookalike', rule: { seed: `crm-${i}`, threshold: 1, reach: 0.05 } });
  }
  return { width: 256, segments };
}

/** Writes the bench CRM as CSV; returns its size. */
function writeCrm(path: string, users: number): number {
  const rand = mulberry32(7);
  const fd = openSync(path, 'w');
  let size = 0;
  let chunk = COLUMNS.join(',') + '\n';
  const tp: string[] = [];
  for (let n = 0; n < users; n++) {
    const frequency = Math.floor(-Math.log(1 - rand()) * 4);
    const monetary = Math.round(frequency * (40 + rand() * 160));
    let line = `C${n},${userId(n)},${n % 2 === 0 ? `ifa-${n.toString(16)}` : ''},${n % 5 === 0 ? `em-${n.toString(36)}` : ''},${frequency},${monetary}`;
    line += `,${Math.round(rand() * 100) / 100},${Math.floor(rand() * 730)},${Math.floor(rand() * 3000)},${18 + Math.floor(rand() * 62)}`;
    line += `,${Math.floor(rand() * 100)},${Math.floor(rand() * 300)}`;
    for (const c of CAT_COLS) line += `,${CATEGORICAL[c][Math.floor(rand() * CATEGORICAL[c].length)]}`;
    tp.length = 0;
    if (rand() < 0.65) {
      const affinity = Math.min(1, monetary / 1500);
      for (let s = 0; s < 10; s++) if (rand() < 0.02 + 0.25 * affinity) tp.push(`6:s${s}`);
      const extra = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < extra; k++) tp.push(`6:s${10 + Math.floor(rand() * (TP_SEGMENTS - 10))}`);
    }
    chunk += `${line},${tp.join(';')}\n`;
    if (chunk.length > 1 << 20) {
      size += writeSync(fd, chunk);
      chunk = '';
    }
  }
  size += writeSync(fd, chunk);
  closeSync(fd);
  return size;
}

/** The program evaluated per lookup: a typical line item over CRM, lookalike and 3rd-party segments. */
const PROGRAM: TargetingExpr = { all: [{ any: ['crm-1', 'crm-2', 'lal-0'] }, { none: ['crm-3'] }, { any: ['g-customers', 'tp-0'] }] };

interface ProbeResult {
  users: number;
  storeBytes: number;
  loadMs: number;
  rssDelta: number;
  lookups: number;
  /** ns per lookup, one entry per round: the full loop, hash only, hash + orInto. */
  oursNs: number[];
  hashNs: number[];
  probeNs: number[];
  /** ns per lookup+match over known-only and unknown-only keys (same loop), one entry per round. */
  knownNs: number[];
  unknownNs: number[];
  matches: number;
  known: number;
  pool: number;
  roaringBytes: number;
  ordinalBytes: number;
  roaringBuildMs: number;
  roaringNs: number[];
  roaringMatches: number;
  /** Bytes of the probe process on transparent huge pages after the load (null: the kernel does not say). */
  hugePageBytes: number | null;
}

function rss(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().rss;
}

/** Phase 3, in its own process (node --expose-gc). */
function probe(storePath: string, segmentation: SegmentationDef, lookups: number, knownShare: number): ProbeResult {
  const rssBefore = rss();
  const t0 = performance.now();
  const store = readStore(storePath);
  const loadMs = performance.now() - t0;
  const rssDelta = rss() - rssBefore;
  const hugeBytes = hugePageBytes();
  const users = store.header.userCount;
  const bitOf = new Map(segmentation.segments.map((s, i) => [s.id, i] as const));
  const program = compileTargeting(PROGRAM, bitOf, store.words, '/bench', []);
  // Request keys: a fixed pool of 1M buyeruids, knownShare of them users of the store.
  const rand = mulberry32(99);
  // A power of two, so both loops index it with the same cheap mask.
  let pool = 1 << 20;
  while (pool > 1024 && pool > lookups) pool >>>= 1;
  const mask = pool - 1;
  const keys: string[] = new Array(pool);
  let known = 0;
  for (let i = 0; i < pool; i++) {
    if (rand() < knownShare) {
      keys[i] = userId(Math.floor(rand() * users));
      known++;
    } else keys[i] = `x-${Math.floor(rand() * 1e12).toString(36)}`;
  }
  // Known-only and unknown-only pools (a quarter of the size) for the split figures.
  const side = pool >>> 2;
  const knownKeys: string[] = new Array(side);
  const unknownKeys: string[] = new Array(side);
  for (let i = 0; i < side; i++) {
    knownKeys[i] = userId(Math.floor(rand() * users));
    unknownKeys[i] = `y-${Math.floor(rand() * 1e12).toString(36)}`;
  }
  const bits = new Uint32Array(store.words);
  const runOn = (list: string[]) => (from: number, count: number): number => {
    let matches = 0;
    const m = list.length - 1;
    for (let i = from; i < from + count; i++) {
      hashKey(KEY_KIND.buyeruid, list[i & m]);
      bits.fill(0);
      store.orInto(keyHash.hi, keyHash.lo, bits);
      if (evalTargeting(program, bits)) matches++;
    }
    return matches;
  };
  const runKnown = runOn(knownKeys);
  const runUnknown = runOn(unknownKeys);
  const run = (from: number, count: number): number => {
    let matches = 0;
    for (let i = from; i < from + count; i++) {
      hashKey(KEY_KIND.buyeruid, keys[i & mask]);
      bits.fill(0);
      store.orInto(keyHash.hi, keyHash.lo, bits);
      if (evalTargeting(program, bits)) matches++;
    }
    return matches;
  };
  // The same loop without the match, and without the store: where the time goes.
  const runProbe = (from: number, count: number): number => {
    let found = 0;
    for (let i = from; i < from + count; i++) {
      hashKey(KEY_KIND.buyeruid, keys[i & mask]);
      bits.fill(0);
      if (store.orInto(keyHash.hi, keyHash.lo, bits)) found++;
    }
    return found;
  };
  const runHash = (from: number, count: number): number => {
    let x = 0;
    for (let i = from; i < from + count; i++) {
      hashKey(KEY_KIND.buyeruid, keys[i & mask]);
      x ^= keyHash.lo;
    }
    return x;
  };
  // Peer: key -> ordinal table (same hash, same layout, same probing) + one RoaringBitmap32 per segment.
  // Two passes over the users (count, then fill typed arrays) so 10M users do not need JS arrays of ordinals.
  const t2 = performance.now();
  // The peer's key -> ordinal table has the store's layout and probe (fingerprints, MAX_LOAD), so the two
  // loops differ only in the membership test: a bitset row vs one RoaringBitmap32.has per segment.
  const capacity = Math.max(users + 1, Math.ceil(users / MAX_LOAD));
  const ordSlots = new Uint32Array(capacity * 3);
  const ordFps = new Uint8Array(capacity);
  const nSegments = segmentation.segments.length;
  const sizes = new Uint32Array(nSegments);
  const forEachMember = (fn: (segment: number, n: number) => void) => {
    for (let n = 0; n < users; n++) {
      hashKey(KEY_KIND.buyeruid, userId(n));
      bits.fill(0);
      store.orInto(keyHash.hi, keyHash.lo, bits);
      for (let w = 0; w < bits.length; w++) {
        let x = bits[w];
        while (x !== 0) {
          const low = x & -x;
          fn((w << 5) + 31 - Math.clz32(low), n);
          x ^= low;
        }
      }
    }
  };
  forEachMember((segment) => sizes[segment]++);
  const members = Array.from(sizes, (size) => new Uint32Array(size));
  const filled = new Uint32Array(nSegments);
  forEachMember((segment, n) => (members[segment][filled[segment]++] = n));
  for (let n = 0; n < users; n++) {
    hashKey(KEY_KIND.buyeruid, userId(n));
    let slot = slotOf(keyHash.lo, capacity);
    while (ordFps[slot] !== 0) if (++slot === capacity) slot = 0;
    ordSlots[slot * 3] = keyHash.lo;
    ordSlots[slot * 3 + 1] = keyHash.hi;
    ordSlots[slot * 3 + 2] = n + 1;
    ordFps[slot] = fingerprintOf(keyHash.hi);
  }
  const bitmaps = members.map((m) => {
    const b = new RoaringBitmap32(m);
    b.runOptimize();
    b.shrinkToFit();
    return b;
  });
  members.length = 0;
  const roaringBuildMs = performance.now() - t2;
  const roaringBytes = bitmaps.reduce((s, b) => s + b.getSerializationSizeInBytes('croaring'), 0);
  const bm = (id: string) => bitmaps[bitOf.get(id)!];
  const [c1, c2, l0, c3, gc, t0b] = [bm('crm-1'), bm('crm-2'), bm('lal-0'), bm('crm-3'), bm('g-customers'), bm('tp-0')];
  const ordinalOf = (hi: number, lo: number): number => {
    const fp = fingerprintOf(hi);
    let slot = slotOf(lo, capacity);
    for (;;) {
      const f = ordFps[slot];
      if (f === 0) return -1;
      if (f === fp && ordSlots[slot * 3] === lo && ordSlots[slot * 3 + 1] === hi) return ordSlots[slot * 3 + 2] - 1;
      if (++slot === capacity) slot = 0;
    }
  };
  const runRoaring = (from: number, count: number): number => {
    let matches = 0;
    for (let i = from; i < from + count; i++) {
      hashKey(KEY_KIND.buyeruid, keys[i & mask]);
      const o = ordinalOf(keyHash.hi, keyHash.lo);
      if (o < 0) continue; // unknown user: no segment, the program (needs a customer or tp-0) fails
      if ((c1.has(o) || c2.has(o) || l0.has(o)) && !c3.has(o) && (gc.has(o) || t0b.has(o))) matches++;
    }
    return matches;
  };
  // Timing: ROUNDS interleaved rounds of each loop over the same keys, so that both sides see the same
  // machine (a shared box makes single long runs noisy); the report gives the median and the best round.
  const warm = Math.min(lookups, 200_000);
  run(0, warm);
  runProbe(0, warm);
  runHash(0, warm);
  runRoaring(0, warm);
  runKnown(0, warm);
  runUnknown(0, warm);
  const per = Math.max(1, Math.floor(lookups / ROUNDS));
  const oursNs: number[] = [];
  const roaringNs: number[] = [];
  const hashNs: number[] = [];
  const probeNs: number[] = [];
  const knownNs: number[] = [];
  const unknownNs: number[] = [];
  let matches = 0;
  let roaringMatches = 0;
  const time = (fn: (from: number, count: number) => number, from: number, into: number[]): number => {
    const t = performance.now();
    const r = fn(from, per);
    into.push(((performance.now() - t) * 1e6) / per);
    return r;
  };
  for (let r = 0; r < ROUNDS; r++) {
    const from = r * per;
    matches += time(run, from, oursNs);
    roaringMatches += time(runRoaring, from, roaringNs);
    time(runHash, from, hashNs);
    time(runProbe, from, probeNs);
    time(runKnown, from, knownNs);
    time(runUnknown, from, unknownNs);
  }
  return {
    users,
    storeBytes: store.byteLength,
    loadMs,
    rssDelta,
    lookups: per * ROUNDS,
    oursNs,
    hashNs,
    probeNs,
    knownNs,
    unknownNs,
    matches,
    known,
    pool,
    roaringBytes,
    ordinalBytes: ordSlots.byteLength + ordFps.byteLength,
    roaringBuildMs,
    roaringNs,
    roaringMatches,
    hugePageBytes: hugeBytes,
  };
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

async function main(): Promise<void> {
  const program = new Command()
    .option('--users <n>', 'CRM users', (v) => Number(v), 1_000_000)
    .option('--lookups <n>', 'timed lookups', (v) => Number(v), 4_000_000)
    .option('--known-share <x>', 'share of lookups for known users', (v) => Number(v), 0.5)
    .option('--workdir <dir>', 'work folder (default: a temp folder, removed after); not --dir, which roaring\'s loader (node-pre-gyp) reads from argv')
    .option('--keep', 'keep the generated CRM and store', false)
    .option('--report', 'print the compile volume report', false)
    .option('--probe <store>', '(internal) run phase 3 on a store and print JSON')
    .parse(process.argv);
  const o = program.opts<{ users: number; lookups: number; knownShare: number; workdir?: string; keep: boolean; report: boolean; probe?: string }>();
  const segmentation = benchSegmentation();
  if (o.probe) {
    process.stdout.write(JSON.stringify(probe(o.probe, segmentation, o.lookups, o.knownShare)) + '\n');
    return;
  }
  const dir = o.workdir ?? mkdtempSync(join(tmpdir(), 'segbid-bench-segments-'));
  mkdirSync(dir, { recursive: true });
  try {
    const segPath = join(dir, 'segmentation.json');
    const crmPath = join(dir, 'crm.csv');
    const storePath = join(dir, 'segments.store');
    writeFileSync(segPath, JSON.stringify(segmentation));
    process.stdout.write(`segbid segments bench: ${fmt(o.users)} users x ${segmentation.segments.length} segments, node ${process.version}\n`);
    let t = performance.now();
    const crmBytes = writeCrm(crmPath, o.users);
    process.stdout.write(`generated CRM CSV: ${fmt(crmBytes / 1048576, 1)} MB in ${fmt((performance.now() - t) / 1000, 1)} s (not part of the goals)\n`);
    t = performance.now();
    const result = await compileFiles({ segments: segPath, crm: crmPath, out: storePath, eidSource: EID_SOURCE, createdAt: '2026-01-01T00:00:00.000Z' });
    const compileMs = performance.now() - t;
    if (o.report) process.stdout.write(formatReport(result.report, 1000));
    const fileBytes = statSync(storePath).size;
    // The probe runs as a bidder does (huge pages asked of malloc: src/common/node-flags.ts), then once more
    // without them, so the report shows what they are worth on this machine.
    const runProbe = (env: NodeJS.ProcessEnv): ProbeResult => {
      const child = spawnSync(
        process.execPath,
        ['--expose-gc', fileURLToPath(import.meta.url), '--probe', storePath, '--lookups', String(o.lookups), '--known-share', String(o.knownShare)],
        { encoding: 'utf8', maxBuffer: 1 << 20, env },
      );
      if (child.status !== 0) throw new Error(`probe failed: ${child.stderr}`);
      return JSON.parse(child.stdout.trim().split('\n').pop()!) as ProbeResult;
    };
    const p = runProbe(withHugePages(process.env));
    const plainEnv = { ...process.env };
    delete plainEnv.GLIBC_TUNABLES;
    const plain = runProbe(plainEnv);
    const perUser = p.storeBytes / p.users;
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
    const best = (a: number[]) => Math.min(...a);
    const rate = 1e9 / median(p.oursNs);
    const roaringRate = 1e9 / median(p.roaringNs);
    const lal = result.report.segments.filter((s) => s.lookalike);
    const rows: [string, string, string][] = [
      ['compile (CSV file -> store file)', `${fmt(compileMs / 1000, 2)} s`, compileMs <= 20_000 ? 'PASS (<= 20 s)' : 'MISS (> 20 s)'],
      ['  CRM records / rate', `${fmt(result.crm.records)} / ${fmt(result.crm.records / (compileMs / 1000))} per s`, ''],
      ['  keys / distinct rows', `${fmt(result.store.header.keyCount)} / ${fmt(result.store.header.rowCount)}`, ''],
      ['  lookalikes (8): mean features / reach', `${fmt(lal.reduce((s, x) => s + x.lookalike!.weights.length, 0) / lal.length, 1)} / ${fmt((100 * lal.reduce((s, x) => s + x.lookalike!.passing / Math.max(1, x.lookalike!.scoredBase), 0)) / lal.length, 2)}% (cap 5%)`, ''],
      ['store size on disk', `${fmt(fileBytes / 1048576, 1)} MB`, ''],
      ['load (readStore: read + CRC + checks)', `${fmt(p.loadMs, 0)} ms`, p.loadMs <= 1000 ? 'PASS (<= 1 s)' : 'MISS (> 1 s)'],
      ['resident bytes per user (byteLength / users)', fmt(perUser, 1), perUser <= 64 ? 'PASS (<= 64)' : 'MISS (> 64)'],
      ['  RSS delta of the load / users', fmt(p.rssDelta / p.users, 1), ''],
      [
        `lookups+match per s, 1 core, median of ${p.oursNs.length} rounds (${fmt((p.known / p.pool) * 100, 0)}% known)`,
        `${fmt(rate / 1e6, 2)} M/s`,
        rate >= 2e6 ? 'PASS (>= 2M/s)' : 'MISS (< 2M/s)',
      ],
      ['  best round', `${fmt(1e3 / best(p.oursNs), 2)} M/s`, ''],
      [
        '  memory on huge pages (GLIBC_TUNABLES=' + HUGE_PAGE_TUNABLE + ')',
        p.hugePageBytes === null ? 'unknown' : `${fmt(p.hugePageBytes / 1048576, 0)} MB`,
        p.hugePageBytes !== null && p.hugePageBytes < p.storeBytes / 2 ? 'the store is NOT on huge pages here (THP off?)' : '',
      ],
      ['  without huge pages: median / best', `${fmt(1e3 / median(plain.oursNs), 2)} / ${fmt(1e3 / best(plain.oursNs), 2)} M/s`, ''],
      ['  matches', `${fmt(p.matches)} of ${fmt(p.lookups)}`, ''],
      ['  ns per lookup (median): hash / + orInto / + match', `${fmt(median(p.hashNs), 0)} / ${fmt(median(p.probeNs), 0)} / ${fmt(median(p.oursNs), 0)}`, ''],
      ['  ns per lookup+match (median): known users / unknown users', `${fmt(median(p.knownNs), 0)} / ${fmt(median(p.unknownNs), 0)}`, ''],
      ['peer roaring: lookups+match per s (median / best)', `${fmt(roaringRate / 1e6, 2)} / ${fmt(1e3 / best(p.roaringNs), 2)} M/s`, p.roaringMatches === p.matches ? 'same matches' : `DIFFERENT matches (${fmt(p.roaringMatches)})`],
      ['peer roaring: bytes per user (bitmaps + key table)', `${fmt((p.roaringBytes + p.ordinalBytes) / p.users, 1)} (${fmt(p.roaringBytes / p.users, 1)} + ${fmt(p.ordinalBytes / p.users, 1)})`, ''],
      ['peer roaring: build from the store', `${fmt(p.roaringBuildMs / 1000, 2)} s`, ''],
    ];
    const w0 = Math.max(...rows.map((r) => r[0].length));
    const w1 = Math.max(...rows.map((r) => r[1].length));
    for (const [a, b, c] of rows) process.stdout.write(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}\n`.replace(/\s+\n$/, '\n'));
  } finally {
    if (!o.keep && !o.workdir) rmSync(dir, { recursive: true, force: true });
    else process.stdout.write(`kept ${dir}\n`);
  }
}

await main();
