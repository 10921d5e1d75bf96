/**
 * The fields of an event token for a bid of line item 0 / creative 0 of `config`, made now, for the event-handler
 * tests that sign notices (`handler.sign(tokenFields(CONFIG, { bidId, ... }), scope)`); `over` replaces any field.
 */
import type { CompiledConfig } from '../../src/config/compile.js';
import { configEpoch } from '../../src/events/bid-context.js';
import { NO_DEAL, hash32, type TokenFields } from '../../src/events/token.js';

export function tokenFields(config: CompiledConfig, over: Partial<TokenFields> = {}): TokenFields {
  return {
    requestHash: hash32('req-1'),
    impHash: hash32('imp-1'),
    impIndex: 0,
    epoch: configEpoch(config),
    lineItem: 0,
    arm: 0,
    segmentBit: -1,
    creative: 0,
    deal: NO_DEAL,
    priceMicros: 1_000_000,
    currency: 'USD',
    timeSec: Math.floor(Date.now() / 1000),
    test: false,
    exchange: 0,
    userHi: 0,
    userLo: 0,
    bidId: 'bid-0',
    ...over,
  };
}
