/**
 * What a config or segmentation document may not hold whatever its schema says, checked before the schema: a
 * number that is not finite (`1e400` parses as Infinity, which JSON Schema's `integer` accepts, and which later
 * sized a cache or a window) and nesting deeper than MAX_DEPTH (a targeting expression nested thousands deep
 * overflowed the stack of the schema validator and of the compilers: a 500 and a stack trace instead of a path).
 *
 * Contract: `documentLimitErrors(doc)` walks the document with an explicit stack (no recursion, so any depth is
 * safe) and returns every offending path (JSON pointer) with its reason, [] when none. A too-deep branch is
 * reported once, at the first level past the limit, and not walked further.
 */
import type { ErrorDetail } from '../common/errors.js';

/** Deeper than any sensible targeting or rule tree (the demo's deepest is under 10). */
export const MAX_DEPTH = 64;

function pointer(path: readonly (string | number)[]): string {
  let out = '';
  for (const p of path) out += '/' + String(p).replaceAll('~', '~0').replaceAll('/', '~1');
  return out;
}

export function documentLimitErrors(doc: unknown, prefix = ''): ErrorDetail[] {
  const errors: ErrorDetail[] = [];
  const stack: { value: unknown; path: (string | number)[] }[] = [{ value: doc, path: [] }];
  while (stack.length > 0 && errors.length < 100) {
    const { value, path } = stack.pop()!;
    if (typeof value === 'number') {
      if (!Number.isFinite(value)) errors.push({ path: prefix + pointer(path), message: 'must be a finite number' });
      continue;
    }
    if (typeof value !== 'object' || value === null) continue;
    if (path.length >= MAX_DEPTH) {
      errors.push({ path: prefix + pointer(path), message: `nested deeper than ${MAX_DEPTH} levels` });
      continue;
    }
    if (Array.isArray(value)) {
      for (let i = value.length - 1; i >= 0; i--) stack.push({ value: value[i], path: [...path, i] });
    } else {
      const keys = Object.keys(value);
      for (let k = keys.length - 1; k >= 0; k--) stack.push({ value: (value as Record<string, unknown>)[keys[k]], path: [...path, keys[k]] });
    }
  }
  return errors;
}
