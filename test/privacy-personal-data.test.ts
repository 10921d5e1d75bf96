import { describe, expect, it } from 'vitest';
import { compileFrequencyCaps } from '../src/bidding/frequency-caps.js';
import { compilePersonalDataMask, personalSegments } from '../src/privacy/personal-data.js';
import { TREE, segmentation } from './cases-strategy/helpers.js';

const { dictionary, tree } = segmentation(TREE);

describe('line items that need personal data', () => {
  it('segments: crm, third-party and lookalike are personal, contextual is not, groups follow their members', () => {
    const personal = personalSegments(dictionary, tree);
    const of = (id: string) => personal[dictionary.bitOf.get(id)!];
    expect(of('loyal')).toBe(1);
    expect(of('customers')).toBe(1); // a group of CRM segments
    expect(of('lal-top10')).toBe(1);
    expect(of('prospects')).toBe(1); // holds lookalikes
    expect(of('news-context')).toBe(0);
  });

  it('targeting anywhere (even under none) or a frequency cap makes a line item personal', () => {
    const lineItems = [
      { id: 'contextual', targeting: 'news-context' },
      { id: 'crm', targeting: 'loyal-high-value' },
      { id: 'exclusion', targeting: { all: ['news-context', { none: ['customers'] }] } },
      { id: 'run-of-network' },
      { id: 'capped', frequencyCaps: [{ window: '1h', max: 3 }] },
      { id: 'campaign-capped', campaign: 'c' },
    ];
    const plan = compileFrequencyCaps(lineItems, [{ id: 'c', frequencyCaps: [{ window: '1d', max: 5 }] }], []);
    const mask = compilePersonalDataMask(lineItems, dictionary, tree, 1, (li) => plan.capped[li] === 1);
    const personal = lineItems.map((_, i) => (mask[0] >>> i) & 1);
    expect(personal).toEqual([0, 1, 1, 0, 1, 1]);
  });
});
