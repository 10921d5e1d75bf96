/**
 * The smallest valid config the HTTP-level tests start a bidder on: no segment store, one crm segment, 300x250
 * banner creatives `cr-a`, `cr-b`... and line items `li-a`, `li-b`... (one creative each) at `cpm`.
 */
export function smallConfig(options: { lineItems?: number; cpm?: number } = {}): Record<string, unknown> {
  const n = options.lineItems ?? 1;
  const ids = Array.from({ length: n }, (_, i) => String.fromCharCode(97 + i));
  return {
    version: 1,
    bidder: { currency: 'USD', rates: { USD: 1 }, eventBaseUrl: 'https://ev.segbid.test', defaultTmaxMs: 200, minTmaxMs: 10 },
    segmentation: { segments: [{ id: 'loyal', name: 'Loyal', kind: 'crm', rule: { col: 'tier', eq: 'x' } }] },
    segmentStore: null,
    creatives: ids.map((x) => ({ id: `cr-${x}`, format: 'banner', w: 300, h: 250, adomain: ['shop.example'], adm: `<img src="https://cdn.shop.example/cr-${x}.png">` })),
    lineItems: ids.map((x) => ({ id: `li-${x}`, bid: { cpm: options.cpm ?? 1 }, creatives: [`cr-${x}`] })),
  };
}
