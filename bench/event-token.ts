/**
 * Micro-benchmark of the event-token hot path (src/events/token.ts): what a bid costs to sign, and what a
 * notice costs to verify, in ns per token, in-process.
 *
 *   node dist/bench/event-token.js [--iterations 300000] [--rounds 5]
 *
 * Stages (each: `--rounds` timed passes of `--iterations` calls after a warm-up pass; the median pass is
 * reported, with the best and worst, in wall-clock and in CPU time of the process):
 *   hash32          the request/imp id hashes a token carries (two per bid)
 *   sign            TokenSigner.sign: pack into the reused buffer + HMAC-SHA256 (@noble/hashes) + base64url
 *   tally           EventHandler.noteBid alone (the bid counter the KPIs read)
 *   sign+tally      both, what the response builder does per bid
 *   verify          verifyToken: base64url decode + HMAC + timingSafeEqual + unpack
 *   createHmac      node:crypto createHmac('sha256').update(60 B).digest() alone, for reference (what sign cost before)
 * Exit code 0 unless it crashes.
 */
import { createHmac } from 'node:crypto';
import { parseArgs } from 'node:util';
import { buildDictionary } from '../src/segments/segmentation.js';
import { Keyring } from '../src/events/keyring.js';
import { TokenSigner, emptyToken, hash32, verifyToken, type TokenFields } from '../src/events/token.js';
import { EventHandler } from '../src/events/event-handler.js';
import { configEpoch } from '../src/events/bid-context.js';
import type { CompiledConfig } from '../src/config/compile.js';
import { describeMachine, fmt, machineInfo, median, textTable } from './stats.js';

const { values } = parseArgs({
  options: {
    iterations: { type: 'string', default: '300000' },
    rounds: { type: 'string', default: '5' },
  },
});
const iterations = Number(values.iterations);
const rounds = Number(values.rounds);

/** A minimal compiled config: what the handler reads (ids, rates, segmentation), nothing of the bid path. */
function benchConfig(): CompiledConfig {
  const dictionary = buildDictionary({ segments: [{ id: 'customers', name: 'c', kind: 'group' }, { id: 'loyal', name: 'l', kind: 'crm', parent: 'customers' }] }, '/s', []);
  const creatives = [{ index: 0, id: 'cr-1', adomain: ['shop.example'] }];
  const lineItems = [{ index: 0, id: 'li-1', deals: new Set<string>(), creatives }];
  return {
    settings: { currency: 'USD' },
    dictionary,
    creatives,
    lineItems,
    rates: new Map([['USD', 1]]),
  } as unknown as CompiledConfig;
}

const keyring = new Keyring([{ kid: 1, secret: Buffer.alloc(32, 7) }]);
const signer = new TokenSigner(keyring);
const config = benchConfig();
const handler = new EventHandler({ config, keyring });
const fields: TokenFields = {
  requestHash: hash32('0f8c1e2a-5b7d-4c3e-9a1b-2d3e4f5a6b7c'),
  impHash: hash32('1'),
  impIndex: 0,
  epoch: configEpoch(config),
  lineItem: 0,
  arm: 3,
  segmentBit: 1,
  creative: 0,
  deal: 0xffff,
  priceMicros: 2_345_678,
  currency: 'USD',
  timeSec: Math.floor(Date.now() / 1000),
  test: false,
  exchange: 0,
  userHi: 0x12345678,
  userLo: 0x9abcdef0,
  bidId: 'k3j9x1ab2c-0',
};
const sample = signer.sign(fields);
const out = emptyToken();
const key = Buffer.alloc(32, 7);
const sixty = Buffer.alloc(60, 3);
let sink = 0;

const stages: [string, () => void][] = [
  [
    'hash32 x2',
    () => {
      sink ^= hash32('0f8c1e2a-5b7d-4c3e-9a1b-2d3e4f5a6b7c') ^ hash32('1');
    },
  ],
  ['sign', () => (sink ^= signer.sign(fields).length)],
  ['tally', () => handler.noteBid(fields)],
  [
    'sign+tally',
    () => {
      sink ^= signer.sign(fields).length;
      handler.noteBid(fields);
    },
  ],
  ['verify', () => (sink ^= verifyToken(keyring, sample, out) === null ? 1 : 0)],
  ['createHmac', () => (sink ^= createHmac('sha256', key).update(sixty).digest()[0])],
];

/** One timed pass: wall-clock ns per call, and CPU ns per call (user + system, this thread's process). */
function pass(fn: () => void, n: number): { wall: number; cpu: number } {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  const wall = Number(process.hrtime.bigint() - t0) / n;
  const c = process.cpuUsage(c0);
  return { wall, cpu: ((c.user + c.system) * 1000) / n };
}

// CPU time is shown next to wall time because on a shared machine wall time includes the time other
// processes held the core; CPU ns per call is the cost of the work itself.
const rows: string[][] = [['stage', 'wall ns/call (median)', 'best', 'worst', 'cpu ns/call (median)', 'calls/s/core (cpu)']];
for (const [name, fn] of stages) {
  pass(fn, Math.min(iterations, 50_000)); // warm-up: let the JIT settle
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const p = pass(fn, iterations);
    wall.push(p.wall);
    cpu.push(p.cpu);
  }
  handler.flushBids(Date.now());
  const m = median(wall);
  const c = median(cpu);
  rows.push([name, fmt(m, 0), fmt(Math.min(...wall), 0), fmt(Math.max(...wall), 0), fmt(c, 0), fmt(1e9 / c, 0)]);
}
process.stdout.write(`${describeMachine(machineInfo())}\n`);
process.stdout.write(`token: ${sample.length} characters (${Buffer.from(sample, 'base64url').length} bytes) for a ${fields.bidId.length}-character bid id\n`);
process.stdout.write(textTable(rows) + '\n');
if (sink === 0.5) process.stdout.write('\n'); // keeps `sink` observable so no stage is optimised away
