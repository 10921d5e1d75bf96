/**
 * The touch index keeps each user's touches in time order whatever order they arrive in: a touch passed on by
 * another worker (src/server/touch-sharing.ts) may be older than one this worker noted since, and "the latest
 * click in the window" must still be the latest.
 */
import { describe, expect, it } from 'vitest';
import { TouchIndex, type Touch } from '../src/events/attribution.js';

const touch = (b: string, t: number): Touch => ({ t, b, li: 'li-' + b, cr: 'cr', sg: null, arm: 0, x: 'other', dl: null, at: Math.floor(t / 1000), ts: 0, u: 'user-1' });

describe('TouchIndex.add', () => {
  it('attributes to the latest click in the window, not the last to arrive', () => {
    const index = new TouchIndex({ clickWindowSec: 3600, viewWindowSec: 600, perUser: 3 });
    index.add('click', touch('newer', 50_000));
    index.add('click', touch('older', 20_000)); // from another worker, late
    expect(index.attribute('', 'user-1', 60_000).touch!.b).toBe('newer');
    // A conversion between the two clicks goes to the one before it.
    expect(index.attribute('', 'user-1', 30_000).touch!.b).toBe('older');
    // The click id finds its own click whatever its age in the list.
    expect(index.attribute('older', 'user-1', 60_000).touch!.b).toBe('older');
  });

  it('keeps the newest touches when a user has more than perUser', () => {
    const index = new TouchIndex({ clickWindowSec: 3600, viewWindowSec: 600, perUser: 2 });
    index.add('imp', touch('a', 30_000));
    index.add('imp', touch('b', 10_000));
    index.add('imp', touch('c', 20_000)); // the oldest of three goes: b
    expect(index.attribute('', 'user-1', 15_000).attr).toBe('none');
    expect(index.attribute('', 'user-1', 25_000).touch!.b).toBe('c');
    expect(index.attribute('', 'user-1', 35_000).touch!.b).toBe('a');
  });

  it('keeps a touch it is given twice once (read from a sibling\'s log and sent again): a real one is not pushed out', () => {
    const index = new TouchIndex({ clickWindowSec: 3600, viewWindowSec: 600, perUser: 2 });
    index.add('click', touch('a', 10_000));
    index.add('click', touch('b', 20_000));
    index.add('click', touch('b', 20_000)); // the same click again
    expect(index.attribute('', 'user-1', 15_000).touch?.b).toBe('a');
    expect(index.attribute('', 'user-1', 25_000).touch?.b).toBe('b');
  });
});
