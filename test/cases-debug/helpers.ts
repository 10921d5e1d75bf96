/**
 * Helpers of the `?debug=1` suites (test/debug-*.test.ts): a case config is test/cases/base.json with debug
 * enabled and a JSON merge patch applied; the segment store is built from the case's users as in
 * test/decision-cases.test.ts (test/helpers/case-fixtures.ts).
 */
import type { CompiledConfig } from '../../src/config/compile.js';
import { compileCaseConfig, type CaseUser } from '../helpers/case-fixtures.js';

export { buildStore } from '../helpers/case-fixtures.js';
export type DebugCaseUser = CaseUser;

export function compileDebugCase(patch: unknown, name: string): CompiledConfig {
  return compileCaseConfig(name, { debug: { enabled: true } }, patch ?? {});
}
