/**
 * Every outcome of the bid endpoint has a reason code. Codes are small integers so the hot path can return and
 * count them without allocating; labels are the Prometheus label values and the `reason` of a 400 body.
 * `nbr` maps a no-bid reason to the OpenRTB 2.6 no-bid reason code (used when noBidStyle = "nbr").
 */
export const enum Outcome {
  Bid = 0,
  NoBid = 1,
  BadRequest = 2,
  TooLarge = 3,
  Unsupported = 4,
}

export const NO_BID = {
  none: 0,
  test_request: 1,
  seat_blocked: 2,
  insufficient_time: 3,
  no_currency: 4,
  no_active_line_item: 5,
  supply_mismatch: 6,
  unmatched_user: 7,
  no_matching_format: 8,
  creative_blocked: 9,
  deal_mismatch: 10,
  below_floor: 11,
  no_floor_rate: 12,
  no_inventory: 13,
  privacy_restricted: 14,
  frequency_capped: 15,
  strategy_no_bid: 16,
  budget_exhausted: 17,
  paced: 18,
} as const;
export type NoBidReason = (typeof NO_BID)[keyof typeof NO_BID];
export const NO_BID_LABELS: readonly string[] = Object.keys(NO_BID);

/** OpenRTB no-bid reason code per internal reason (index = internal code). */
export const NBR_CODE: readonly number[] = [
  0, // none
  0, // test_request: unknown error (deliberate no-bid)
  0, // seat_blocked
  15, // insufficient_time: insufficient auction time
  0, // no_currency
  0, // no_active_line_item
  0, // supply_mismatch
  8, // unmatched_user
  0, // no_matching_format
  0, // creative_blocked
  0, // deal_mismatch
  0, // below_floor
  0, // no_floor_rate
  2, // no_inventory: no site, app or dooh: invalid request
  0, // privacy_restricted: no consent for the personal data every candidate needs
  9, // frequency_capped: daily user cap met
  0, // strategy_no_bid
  0, // budget_exhausted
  0, // paced
];

/**
 * How far the pipeline got before the last candidate was dropped. The reason reported for a no-bid is the
 * deepest stage any candidate reached: "below_floor" tells a trader more than "supply_mismatch".
 */
export const STAGE_OF: readonly number[] = [
  0, // none
  0, // test_request
  1, // seat_blocked
  1, // insufficient_time
  1, // no_currency
  2, // no_active_line_item
  3, // supply_mismatch
  4, // unmatched_user
  6, // no_matching_format
  7, // creative_blocked
  5, // deal_mismatch: checked before formats and creatives
  8, // below_floor
  8, // no_floor_rate
  1, // no_inventory
  3, // privacy_restricted: with the supply filters, before the user is looked at
  5, // frequency_capped
  5, // strategy_no_bid
  5, // budget_exhausted
  5, // paced
];

export const BAD_REQUEST = {
  invalid_json: 0,
  invalid_request: 1,
  bad_gzip: 2,
} as const;
export const BAD_REQUEST_LABELS: readonly string[] = Object.keys(BAD_REQUEST);
