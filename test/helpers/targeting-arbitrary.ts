/** Random targeting expressions over the given segment ids (fast-check), for the targeting property tests. */
import fc from 'fast-check';
import type { TargetingExpr } from '../../src/config/types.js';

export function targetingExprArbitrary(segments: readonly string[]): fc.Arbitrary<TargetingExpr> {
  const { expr } = fc.letrec<{ expr: TargetingExpr }>((tie) => ({
    expr: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constantFrom(...segments),
      fc.record({ all: fc.array(tie('expr'), { minLength: 1, maxLength: 4 }) }),
      fc.record({ any: fc.array(tie('expr'), { minLength: 1, maxLength: 4 }) }),
      fc.record({ none: fc.array(tie('expr'), { minLength: 1, maxLength: 4 }) }),
    ),
  }));
  return expr;
}
