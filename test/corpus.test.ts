/**
 * The real-world corpus (../shared/corpus/openrtb, written outside the project, used as it is) against a
 * running bidder on the demo configuration:
 *   valid/*   -> 200 with a response that validates, or 204
 *   invalid/* -> 400 (with a JSON reason) or 204; files listed in corpus-expectations.json are invalid only
 *                for an exchange (rules on fields a bidder does not read) and may also get a valid 200.
 * After each file the bidder must still be healthy.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { RunningBidder } from '../src/server/start.js';
import { PACKAGE_ROOT } from '../src/common/paths.js';
import { raw, startTestBidder } from './helpers/bidder.js';
import { validateBidResponse } from './helpers/validate-response.js';
import expectations from './corpus-expectations.json' with { type: 'json' };

const corpus = resolve(PACKAGE_ROOT, '../shared/corpus/openrtb');
const files = (dir: string) => readdirSync(resolve(corpus, dir)).filter((f) => f.endsWith('.json')).sort();
const exchangeSideOnly = expectations.exchangeSideOnly as Record<string, string>;

let bidder: RunningBidder;
let rates: Record<string, number>;
beforeAll(async () => {
  bidder = await startTestBidder();
  rates = bidder.handler.current.config.settings.rates;
});
afterAll(async () => {
  await bidder?.close();
});

async function post(dir: string, file: string) {
  const body = readFileSync(resolve(corpus, dir, file));
  const r = await raw(bidder.bidPort, { body });
  const health = await fetch(`http://127.0.0.1:${bidder.adminPort}/healthz`);
  expect(health.status).toBe(200);
  return { r, body };
}

describe('valid corpus requests', () => {
  it('has requests to test', () => expect(files('valid').length).toBeGreaterThan(40));
  it.each(files('valid'))('%s gets a valid bid or a no-bid', async (file) => {
    const { r, body } = await post('valid', file);
    expect([200, 204]).toContain(r.status);
    if (r.status === 200) expect(validateBidResponse(JSON.parse(body.toString()), JSON.parse(r.text), rates)).toEqual([]);
  });
  it('bids on most of them (the demo has a run-of-network line item)', async () => {
    let bids = 0;
    for (const file of files('valid')) if ((await post('valid', file)).r.status === 200) bids++;
    expect(bids).toBeGreaterThan(files('valid').length / 2);
  });
});

describe('invalid corpus requests', () => {
  it('has requests to test', () => expect(files('invalid').length).toBeGreaterThan(60));
  it('lists only files that exist as exchange-side-only', () => {
    for (const f of Object.keys(exchangeSideOnly)) expect(files('invalid')).toContain(f);
  });
  it.each(files('invalid'))('%s gets a clean answer', async (file) => {
    const { r, body } = await post('invalid', file);
    if (r.status === 400) {
      const reason = JSON.parse(r.text);
      expect(typeof reason.error).toBe('string');
      expect(typeof reason.reason).toBe('string');
      return;
    }
    if (r.status === 200 && file in exchangeSideOnly) {
      expect(validateBidResponse(JSON.parse(body.toString()), JSON.parse(r.text), rates)).toEqual([]);
      return;
    }
    expect(r.status).toBe(204);
  });
});
