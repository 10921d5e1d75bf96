/**
 * The buyers' brief from the demo config: the tree, a segment's line items and messages, KPI definitions and
 * attribution windows appear in both brief.html and brief.md; config strings are escaped in the HTML.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBrief, writeBrief } from '../src/admin/brief.js';
import { loadConfigFile } from '../src/config/load.js';
import { DEMO_CONFIG } from '../src/common/paths.js';
import { ensureDemoStore } from '../src/fixtures/ensure-demo.js';

describe('segbid brief', () => {
  it('writes the tree, the strategy per segment and the KPI definitions in HTML and Markdown', () => {
    ensureDemoStore();
    const out = mkdtempSync(join(tmpdir(), 'segbid-brief-'));
    const written = writeBrief({ configPath: DEMO_CONFIG, outDir: out, generatedAt: '2026-01-01T00:00:00Z' });
    const html = readFileSync(written.html, 'utf8');
    const md = readFileSync(written.markdown, 'utf8');
    for (const text of [html, md]) {
      // The tree: the group and its children, nested.
      expect(text).toContain('CRM customers');
      expect(text).toContain('Loyal, high value');
      // A segment's line items and its message.
      expect(text).toContain('li-loyal-display');
      expect(text).toContain('cr-loyal-300x250');
      // Per-segment volumes come from the store header (segmentUsers), not a pointer to the compile report.
      expect(text).toMatch(/\(crm; \d[\d,]* users\)/);
      expect(text).toContain('win notices (nurl) accepted');
      expect(text).toContain('7 days');
      expect(text).toContain('no campaigns');
    }
    // Nesting: "Loyal, high value" is a child list item of "CRM customers".
    expect(html).toMatch(/<li>CRM customers[^<]*<ul><li>Loyal, high value/);
    expect(md).toMatch(/^- CRM customers.*\n {2}- Loyal, high value/m);
    // The loyal segment's section lists its line item with its strategy.
    const section = md.slice(md.indexOf('### Loyal, high value'), md.indexOf('###', md.indexOf('### Loyal, high value') + 4));
    expect(section).toContain('li-loyal-display');
    expect(section).toContain('fixed bid 4.00 USD CPM');
  });

  it('escapes config strings and shows campaign guard rails', () => {
    ensureDemoStore();
    const loaded = loadConfigFile(DEMO_CONFIG);
    const segmentation = structuredClone(loaded.segmentation);
    segmentation.segments[1].name = '<script>alert(1)</script> | pipes';
    const config = structuredClone(loaded.config) as typeof loaded.config & { campaigns?: unknown[] };
    config.campaigns = [
      {
        id: 'camp-1',
        name: 'Spring',
        kpi: 'cpa',
        budget: { flight: 30000, daily: 1000, flightStart: '2026-03-01T00:00:00Z', flightEnd: '2026-04-01T00:00:00Z' },
        guardRails: { 'loyal-high-value': { minShare: 0.2, maxShare: 0.6 } },
        lineItems: ['li-loyal-display'],
      },
    ];
    const brief = buildBrief({ config, segmentation, source: 'test', generatedAt: 'now', store: null, kpis: null });
    expect(brief.html).not.toContain('<script>');
    expect(brief.html).toContain('&lt;script&gt;');
    expect(brief.markdown).toContain('\\<script\\>');
    expect(brief.markdown).toContain('\\| pipes');
    for (const text of [brief.html, brief.markdown]) {
      expect(text).toContain('30000 USD');
      expect(text).toContain('20 %');
      expect(text).toContain('60 %');
    }
  });
});
