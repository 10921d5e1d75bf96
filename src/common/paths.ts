/** Locations inside the package, valid both from src/ (vitest) and dist/src/ (compiled). */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(resolve(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package root not found');
    dir = up;
  }
  return dir;
}

export const PACKAGE_ROOT = findRoot();
export const DEMO_DIR = resolve(PACKAGE_ROOT, 'fixtures/demo');
export const DEMO_CONFIG = resolve(DEMO_DIR, 'config.json');
