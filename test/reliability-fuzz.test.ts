/**
 * Reliability fuzzing of the RUNNING bidder (one in-process bidder for the file, real uWebSockets.js ports):
 *
 *   (a) mutated corpus requests (fields dropped or replaced by JSON values of another type, imps duplicated,
 *       body truncated at a random byte, random bytes flipped) -> 200 (JSON, echoing the request id) / 204 /
 *       400 / 413 only, each within ANSWER_MS, never a 5xx, never a hang;
 *   (b) arbitrary JSON values and arbitrary bytes as bodies -> same rule;
 *   (c) arbitrary paths and query strings on the event endpoints (including real signed tokens, tampered) ->
 *       200 / 204 / 302 / 4xx only;
 *   (d) memory flat over 2 x 1000 fuzzed requests.
 * /healthz must answer 200 after every property.
 *
 * Every property runs with a fixed seed (SEED, or env SEGBID_FUZZ_SEED) so a failure reproduces: fast-check
 * prints the counterexample and the path to replay it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Agent, request as httpRequest } from 'node:http';
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { RunningBidder } from '../src/server/start.js';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { startTestBidder } from './helpers/bidder.js';

const SEED = Number(process.env.SEGBID_FUZZ_SEED ?? 20261126);
/** Upper bound for any single answer: the bid path is synchronous and sub-millisecond, 2 s means a hang. */
const ANSWER_MS = 2000;
const CORPUS = resolve(PACKAGE_ROOT, '../shared/corpus/openrtb');

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function loadCorpus(): { name: string; body: Buffer; json: Json }[] {
  const out: { name: string; body: Buffer; json: Json }[] = [];
  for (const dir of ['valid', 'invalid']) {
    for (const f of readdirSync(resolve(CORPUS, dir)).filter((n) => n.endsWith('.json')).sort()) {
      const body = readFileSync(resolve(CORPUS, dir, f));
      try {
        out.push({ name: `${dir}/${f}`, body, json: JSON.parse(body.toString('utf8')) as Json });
      } catch {
        // a corpus file that is not JSON is still a body worth sending (as bytes)
        out.push({ name: `${dir}/${f}`, body, json: null });
      }
    }
  }
  return out;
}

const corpus = loadCorpus();
const agent = new Agent({ keepAlive: true, maxSockets: 8 });

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  ms: number;
}

/** One HTTP exchange with a hard deadline: a hang rejects with "no answer within ... ms". */
function send(
  port: number,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer | string; deadlineMs?: number },
): Promise<Answer> {
  const deadline = opts.deadlineMs ?? ANSWER_MS;
  const started = performance.now();
  return new Promise((resolveAnswer, reject) => {
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body);
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (body !== undefined) headers['content-length'] = String(body.length);
    const req = httpRequest({ host: '127.0.0.1', port, method: opts.method ?? 'POST', path: opts.path ?? '/openrtb2/bid', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        clearTimeout(timer);
        resolveAnswer({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), ms: performance.now() - started });
      });
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer within ${deadline} ms for ${opts.method ?? 'POST'} ${(opts.path ?? '/openrtb2/bid').slice(0, 200)}`));
    }, deadline);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    if (body !== undefined) req.write(body);
    req.end();
  });
}

/** The id the server would read from this body, or undefined when the body is not a JSON object with a string id. */
function requestId(body: Buffer): string | undefined {
  try {
    const v = JSON.parse(body.toString('utf8')) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && typeof (v as { id?: unknown }).id === 'string') return (v as { id: string }).id;
  } catch {
    // not JSON
  }
  return undefined;
}

/** The bid endpoint's contract for any input: 200 JSON with the id, 204, 400 JSON, 413 JSON; never 5xx, never a hang. */
function expectBidAnswer(a: Answer, body: Buffer): void {
  expect([200, 204, 400, 413], `status ${a.status}: ${a.text.slice(0, 200)}`).toContain(a.status);
  expect(a.ms).toBeLessThan(ANSWER_MS);
  if (a.status === 200) {
    const parsed = JSON.parse(a.text) as { id?: unknown };
    expect(parsed.id).toBe(requestId(body));
  } else if (a.status === 400 || a.status === 413) {
    const parsed = JSON.parse(a.text) as { error?: unknown };
    expect(typeof parsed.error).toBe('string');
  } else {
    expect(a.text).toBe('');
  }
}

/* ---------- mutations ---------- */

type Path = (string | number)[];

function allPaths(v: Json, prefix: Path = [], out: Path[] = []): Path[] {
  if (out.length > 5000) return out;
  if (Array.isArray(v)) v.forEach((x, i) => (out.push([...prefix, i]), allPaths(x, [...prefix, i], out)));
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) out.push([...prefix, k]), allPaths(v[k], [...prefix, k], out);
  return out;
}

function typeOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

type Op =
  | { kind: 'drop'; pick: number }
  | { kind: 'replace'; pick: number; value: Json }
  | { kind: 'dupImps'; times: number; sameIds: boolean }
  | { kind: 'truncate'; at: number }
  | { kind: 'flip'; flips: { at: number; xor: number }[] };

const jsonValue = fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<Json>;

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('drop' as const), pick: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('replace' as const), pick: fc.nat(), value: jsonValue }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('dupImps' as const), times: fc.integer({ min: 1, max: 6 }), sameIds: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('flip' as const),
      flips: fc.array(fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 4 }),
    }),
  },
);

/** Applies the structural ops to a deep copy, then the byte ops to its serialisation, in order. */
function applyOps(source: Json, ops: Op[]): Buffer {
  const doc = { root: structuredClone(source) } as { root: Json };
  let bytes: Buffer | null = null;
  for (const op of ops) {
    if (op.kind === 'truncate' || op.kind === 'flip') {
      bytes ??= Buffer.from(JSON.stringify(doc.root));
      if (bytes.length === 0) continue;
      if (op.kind === 'truncate') bytes = bytes.subarray(0, op.at % bytes.length);
      else {
        bytes = Buffer.from(bytes);
        for (const f of op.flips) bytes[f.at % bytes.length] ^= f.xor;
      }
      continue;
    }
    if (bytes !== null) continue; // structure ops after a byte op have nothing to act on
    if (op.kind === 'dupImps') {
      const r = doc.root;
      if (r !== null && typeof r === 'object' && !Array.isArray(r) && Array.isArray(r.imp)) {
        const imps = r.imp;
        const copies: Json[] = [];
        for (let t = 0; t < op.times; t++) {
          for (const imp of imps) {
            const c = structuredClone(imp);
            if (!op.sameIds && c !== null && typeof c === 'object' && !Array.isArray(c)) c.id = `${String(c.id)}-dup${t}`;
            copies.push(c);
          }
        }
        r.imp = [...imps, ...copies];
      }
      continue;
    }
    const paths = allPaths(doc.root);
    if (paths.length === 0) {
      if (op.kind === 'replace') doc.root = op.value;
      continue;
    }
    const path = paths[op.pick % paths.length];
    let parent: Json = doc.root;
    for (let i = 0; i < path.length - 1; i++) parent = (parent as Record<string | number, Json>)[path[i]];
    const key = path[path.length - 1];
    const container = parent as Record<string | number, Json>;
    if (op.kind === 'drop') {
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete container[key];
    } else {
      // "another type": a value of the same type as the old one is turned into a string of it (or null)
      const old = container[key];
      container[key] = typeOf(op.value) !== typeOf(old) ? op.value : typeOf(old) === 'string' ? 0 : JSON.stringify(op.value);
    }
  }
  return bytes ?? Buffer.from(JSON.stringify(doc.root));
}

const mutatedArb = fc.record({ file: fc.nat({ max: corpus.length - 1 }), ops: fc.array(opArb, { minLength: 1, maxLength: 4 }) });

function mutatedBody(m: { file: number; ops: Op[] }): Buffer {
  const entry = corpus[m.file];
  return entry.json === null ? entry.body : applyOps(entry.json, m.ops);
}

/* ---------- bidder ---------- */

let bidder: RunningBidder;

async function expectHealthy(): Promise<void> {
  const h = await send(bidder.adminPort, { method: 'GET', path: '/healthz' });
  expect(h.status).toBe(200);
}

beforeAll(async () => {
  bidder = await startTestBidder();
});
afterAll(async () => {
  agent.destroy();
  await bidder?.close();
});

describe('fuzzing the bid endpoint', () => {
  it('loads the corpus', () => {
    expect(corpus.length).toBeGreaterThan(20);
  });

  it('answers every mutated corpus request with 200/204/400/413 in time, never 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(mutatedArb, async (m) => {
        const body = mutatedBody(m);
        expectBidAnswer(await send(bidder.bidPort, { body }), body);
      }),
      { seed: SEED, numRuns: 400 },
    );
    await expectHealthy();
  }, 60_000);

  it('answers arbitrary JSON values as bodies with 200/204/400/413, never 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (v) => {
        const body = Buffer.from(JSON.stringify(v) ?? 'null');
        expectBidAnswer(await send(bidder.bidPort, { body }), body);
      }),
      { seed: SEED + 1, numRuns: 300 },
    );
    await expectHealthy();
  }, 60_000);

  it('answers arbitrary bytes as bodies (with and without a gzip/deflate header) with 200/204/400/413, never 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 4096 }), fc.constantFrom('', 'gzip', 'deflate', 'identity'), async (bytes, encoding) => {
        const body = Buffer.from(bytes);
        const headers: Record<string, string> = encoding === '' ? {} : { 'content-encoding': encoding };
        const a = await send(bidder.bidPort, { body, headers });
        if (encoding === 'gzip' || encoding === 'deflate') {
          // random bytes are (almost) never a valid stream: 400 bad_gzip; the id check does not apply to them
          expect([200, 204, 400, 413], `status ${a.status}: ${a.text.slice(0, 200)}`).toContain(a.status);
          expect(a.ms).toBeLessThan(ANSWER_MS);
        } else {
          expectBidAnswer(a, body);
        }
      }),
      { seed: SEED + 2, numRuns: 300 },
    );
    await expectHealthy();
  }, 60_000);
});

/* ---------- event endpoints ---------- */

const EVENT_KINDS = ['win', 'bill', 'loss', 'imp', 'click', 'conv'];

/** Characters that survive node's request-target check (no spaces or controls) but mean something to a parser. */
const queryPiece = fc.oneof(
  fc.string({ maxLength: 40 }).map(encodeURIComponent),
  fc.constantFrom('%', '%zz', '%00', '%ff%fe', '&', '&&', '==', '=', ';', '+', '%2B', '${AUCTION_PRICE}', 'AUDIT', '-1', '1e309', 'NaN', '0x10', ':B64'),
  fc.base64String({ maxLength: 200 }).map((s) => encodeURIComponent(s)),
  fc.stringMatching(/^[A-Za-z0-9_-]{0,300}$/),
);

const queryArb = fc
  .array(fc.tuple(fc.constantFrom('t', 'p', 'c', 'a', 'i', 'r', 'm', 'u', 'x', ''), queryPiece), { maxLength: 6 })
  .map((pairs) => pairs.map(([k, v]) => (k === '' ? v : `${k}=${v}`)).join('&'));

/** Signed event URLs from real bids, so that the fuzz also tampers with authentic tokens. */
let realEventUrls: string[] = [];

describe('fuzzing the event endpoints', () => {
  beforeAll(async () => {
    const simple = readFileSync(resolve(CORPUS, 'valid/pbs-simple.json'));
    const urls = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const req = JSON.parse(simple.toString('utf8')) as { id: string };
      req.id = `fuzz-ev-${i}`;
      const a = await send(bidder.bidPort, { body: JSON.stringify(req) });
      if (a.status !== 200) continue;
      for (const m of a.text.matchAll(/https?:\/\/[^"'\s<>\\]+\/ev\/[a-z]+\?[^"'\s<>\\]+/g)) urls.add(m[0]);
    }
    realEventUrls = [...urls].map((u) => {
      const url = new URL(u);
      return url.pathname + url.search;
    });
  });

  it('found signed event URLs in real bids', () => {
    expect(realEventUrls.length).toBeGreaterThan(0);
  });

  const allowed = (s: number) => s === 200 || s === 204 || s === 302 || (s >= 400 && s < 500);

  it('answers arbitrary paths and query strings with 200/204/302/4xx, never 5xx', async () => {
    const pathArb = fc.oneof(
      fc.constantFrom(...EVENT_KINDS).map((k) => `/ev/${k}`),
      fc.stringMatching(/^[a-z%0-9._~-]{0,40}$/).map((s) => `/ev/${s}`),
      fc.constantFrom('/ev/', '/ev', '/ev//win', '/ev/win/', '/ev/../openrtb2/bid', '/ev/%2e%2e/x', '/ev/WIN'),
    );
    await fc.assert(
      fc.asyncProperty(pathArb, queryArb, fc.constantFrom('GET', 'GET', 'POST', 'HEAD', 'PUT'), async (path, query, method) => {
        const target = query === '' ? path : `${path}?${query}`;
        const a = await send(bidder.bidPort, { method, path: target, body: method === 'POST' ? '{"x":1}' : undefined });
        expect(allowed(a.status), `${method} ${target} -> ${a.status} ${a.text.slice(0, 200)}`).toBe(true);
      }),
      { seed: SEED + 3, numRuns: 300 },
    );
    await expectHealthy();
  }, 60_000);

  it('answers tampered real event URLs (byte edits in the token and parameters) with 200/204/302/4xx, never 5xx', async () => {
    const tamperArb = fc.record({
      url: fc.nat(),
      edits: fc.array(fc.record({ at: fc.nat(), ch: fc.constantFrom(...'AZaz09-_%&=.~+'.split('')), del: fc.boolean() }), { maxLength: 4 }),
      extra: fc.option(queryArb, { nil: undefined }),
      method: fc.constantFrom('GET', 'GET', 'POST'),
    });
    await fc.assert(
      fc.asyncProperty(tamperArb, async (t) => {
        const base = realEventUrls[t.url % realEventUrls.length];
        const q = base.indexOf('?');
        let query = base.slice(q + 1);
        for (const e of t.edits) {
          if (query.length === 0) break;
          const at = e.at % query.length;
          query = e.del ? query.slice(0, at) + query.slice(at + 1) : query.slice(0, at) + e.ch + query.slice(at + 1);
        }
        if (t.extra) query += `&${t.extra}`;
        const target = `${base.slice(0, q)}?${query}`;
        const a = await send(bidder.bidPort, { method: t.method, path: target, body: t.method === 'POST' ? '' : undefined });
        expect(allowed(a.status), `${t.method} ${target} -> ${a.status} ${a.text.slice(0, 200)}`).toBe(true);
      }),
      { seed: SEED + 4, numRuns: 300 },
    );
    await expectHealthy();
  }, 60_000);

  it('answers arbitrary conversion postbacks with 4xx/200, never 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.jsonValue().map((v) => JSON.stringify(v) ?? ''), fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b))),
        fc.dictionary(fc.constantFrom('x-segbid-secret', 'x-segbid-signature', 'content-type'), fc.stringMatching(/^[ -~]{0,80}$/), { maxKeys: 2 }),
        async (body, headers) => {
          const a = await send(bidder.bidPort, { path: '/ev/conv', body, headers });
          expect(allowed(a.status), `conv -> ${a.status} ${a.text.slice(0, 200)}`).toBe(true);
        },
      ),
      { seed: SEED + 5, numRuns: 200 },
    );
    await expectHealthy();
  }, 60_000);
});

/* ---------- memory ---------- */

/**
 * A real GC when V8 lets us switch it on at run time (`--expose-gc` set after start-up, then `gc` taken from a
 * fresh context); otherwise null and the heap figures include garbage not yet collected.
 */
function findGc(): (() => void) | null {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    return null;
  }
}

describe('memory under fuzzed traffic', () => {
  it('keeps the heap flat over 2 x 1000 fuzzed requests', async () => {
    /*
     * What this measures: the bidder runs in this very process, so process.memoryUsage().heapUsed is the
     * bidder's JS heap plus the test's own (fast-check, the HTTP client). The same 1000 inputs are sent twice;
     * the first half fills every bounded structure the traffic touches (dedupe/tally LRUs, metrics label sets,
     * JIT feedback, agent sockets), the second half must not add to it: a leak of even ~10 KB per request would
     * show as > 10 MB. RSS is not used: it includes freed pages the allocator keeps, and native (uWS) buffers.
     * With a GC available (see findGc) the heap is read after two full collections; without it the 20 MB
     * margin absorbs uncollected garbage.
     */
    const gc = findGc();
    const inputs = fc.sample(fc.oneof(mutatedArb.map(mutatedBody), fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? 'null'))), {
      seed: SEED + 6,
      numRuns: 1000,
    });
    const runHalf = async () => {
      const concurrency = 8;
      let next = 0;
      const statuses: number[] = [];
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < inputs.length) {
            const body = inputs[next++];
            const a = await send(bidder.bidPort, { body });
            statuses.push(a.status);
          }
        }),
      );
      expect(statuses.every((s) => s === 200 || s === 204 || s === 400 || s === 413)).toBe(true);
    };
    const heap = () => {
      if (gc) {
        gc();
        gc();
      }
      return process.memoryUsage().heapUsed;
    };
    await runHalf();
    const afterFirst = heap();
    await runHalf();
    const afterSecond = heap();
    const growthMb = (afterSecond - afterFirst) / 1024 / 1024;
    console.log(`heap after first half ${(afterFirst / 1048576).toFixed(1)} MB, after second ${(afterSecond / 1048576).toFixed(1)} MB (growth ${growthMb.toFixed(2)} MB, gc ${gc ? 'forced' : 'not available'})`);
    expect(growthMb).toBeLessThan(20);
    await expectHealthy();
  }, 60_000);
});
