/** Variants of the demo config written to a temp directory, for the suites that start bidders on them. */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO_DIR } from '../../src/common/paths.js';
import { ensureDemoStore } from '../../src/fixtures/ensure-demo.js';

/** The demo reduced to its line item of `cr-winback-300x250`, capped at one impression per hour. */
export function cappedDemo(prefix: string): string {
  ensureDemoStore();
  const dir = mkdtempSync(join(tmpdir(), prefix));
  for (const f of ['segmentation.json', 'segments.store']) copyFileSync(join(DEMO_DIR, f), join(dir, f));
  const doc = JSON.parse(readFileSync(join(DEMO_DIR, 'config.json'), 'utf8'));
  doc.lineItems = doc.lineItems.filter((li: { creatives: string[] }) => li.creatives.includes('cr-winback-300x250'));
  doc.lineItems[0].frequencyCaps = [{ window: '1h', max: 1 }];
  const path = join(dir, 'config.json');
  writeFileSync(path, JSON.stringify(doc));
  return path;
}
