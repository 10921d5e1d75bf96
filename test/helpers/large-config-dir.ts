/**
 * The 1,000 line item x 256 segment config (src/fixtures/large-config.ts), written once for a test file (or a
 * describe block) into a temporary directory removed after it. Call at the top level of the file or block: it
 * registers the beforeAll / afterAll. The returned object is filled by beforeAll: `dir` (the temporary directory,
 * for the test's own files) and `configPath`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { writeLargeConfig } from '../../src/fixtures/large-config.js';

export interface LargeConfigDir {
  dir: string;
  configPath: string;
}

export function useLargeConfig(prefix: string, users: number): LargeConfigDir {
  const at: LargeConfigDir = { dir: '', configPath: '' };
  beforeAll(() => {
    at.dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
    at.configPath = writeLargeConfig(join(at.dir, 'config'), { users });
  });
  afterAll(() => rmSync(at.dir, { recursive: true, force: true }));
  return at;
}
