/**
 * A private copy of the embedded demo (config, segmentation, segment store) for the benches, written by the code
 * being measured into a fresh temporary folder. The bench then never depends on the state of fixtures/demo (a
 * store left there by an older build is refused by a newer bidder) and never rewrites files others use.
 * Deterministic: the same build writes the same bytes. Writing the 100k-user store takes a fraction of a second.
 *
 * One change from the demo: an https event base. The demo's http://127.0.0.1:8080 puts http event URLs into the
 * markup, so the config compiler marks every creative non-secure and the bidder passes on every `imp.secure = 1`,
 * i.e. most real traffic. A production config has an https event base; the bench measures that case.
 * Two more: a TCF vendor id (bidder.privacy, the `fast` decoder), so the consent strings of the request mix decide
 * who may be looked up, as in production; and `--scenario large` gets src/fixtures/large-config.ts instead
 * (writeBenchLarge: 1,000 line items, 256 segments, every feature on; ~1-2 s to write).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeDemo } from '../src/fixtures/demo.js';
import { LARGE_VENDOR_ID, writeLargeConfig } from '../src/fixtures/large-config.js';

export const BENCH_EVENT_BASE_URL = 'https://events.segbid.example';

export interface BenchDemo {
  dir: string;
  configPath: string;
  /** Removes the folder; safe to call twice. */
  remove(): void;
}

export function writeBenchDemo(): BenchDemo {
  const dir = mkdtempSync(join(tmpdir(), 'segbid-bench-demo-'));
  writeDemo(dir);
  const configPath = join(dir, 'config.json');
  const config = JSON.parse(readFileSync(configPath, 'utf8')) as { bidder?: { eventBaseUrl?: string; privacy?: object } };
  if (config.bidder !== undefined) {
    config.bidder.eventBaseUrl = BENCH_EVENT_BASE_URL;
    config.bidder.privacy = { vendorId: LARGE_VENDOR_ID, tcfDecoder: 'fast' };
    writeFileSync(configPath, JSON.stringify(config, null, 2) + '\n');
  }
  return { dir, configPath, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A private copy of the large config (src/fixtures/large-config.ts) and its store. */
export function writeBenchLarge(): BenchDemo {
  const dir = mkdtempSync(join(tmpdir(), 'segbid-bench-large-'));
  const configPath = writeLargeConfig(dir);
  return { dir, configPath, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The config of a bench scenario. */
export function writeBenchConfig(scenario: 'demo' | 'large'): BenchDemo {
  return scenario === 'large' ? writeBenchLarge() : writeBenchDemo();
}
